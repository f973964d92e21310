// Client of the controller's HTTP API and live stream.
//
// When the controller has an API token, every /api and /ws request must
// carry it. The user types it once; it stays in this tab's sessionStorage
// and is never shown.

const TOKEN_KEY = 'unibench.apiToken';

/** An error response: `{"error": {"field", "message", "problems"}}`. */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const detail = body?.error ?? {};
    super(detail.message || fallback || `request failed with HTTP ${status}`);
    this.status = status;
    this.field = detail.field ?? null;
    this.problems = detail.problems?.length ? detail.problems : [{ field: this.field, message: this.message }];
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Listeners called with no argument when a request gets HTTP 401. */
export const unauthorizedListeners = new Set();

/**
 * Sends a request and returns the parsed JSON (or text, with `text: true`).
 * `body` is sent as JSON unless `contentType` is given. Throws ApiError.
 */
export async function request(method, path, body, { contentType, text = false, raw = false } = {}) {
  const headers = { Accept: text ? '*/*' : 'application/json' };
  const saved = token();
  if (saved) headers.Authorization = `Bearer ${saved}`;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType ?? 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }

  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, null, `the controller is unreachable: ${error.message}`);
  }
  if (response.status === 401) unauthorizedListeners.forEach((listener) => listener());
  if (!response.ok) {
    const errorBody = await response.json().catch(() => null);
    throw new ApiError(response.status, errorBody);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return text ? response.text() : response.json();
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body);
export const put = (path, body) => request('PUT', path, body);
export const del = (path) => request('DELETE', path);

/** Builds a query string from the non-empty values of `params`. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** Reads every page of a paged list (`next_offset`) into one array. */
export async function getAll(path, key, params = {}, limit = 10000) {
  const rows = [];
  let offset = params.offset ?? 0;
  while (offset !== null && offset !== undefined) {
    const page = await get(`${path}${query({ ...params, limit, offset })}`);
    rows.push(...(page[key] ?? []));
    offset = page.next_offset;
  }
  return rows;
}

/** Opens the live stream of a run; the token goes in the query string. */
export function openLiveStream(runId) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const saved = token();
  const suffix = saved ? `?token=${encodeURIComponent(saved)}` : '';
  return new WebSocket(`${scheme}//${location.host}/ws/test/${encodeURIComponent(runId)}${suffix}`);
}

/** Saves a text as a file through a temporary link. */
export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
