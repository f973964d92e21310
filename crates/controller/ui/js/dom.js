// DOM building and number formatting shared by every page.

/**
 * Creates an element. `attrs` keys: `class`, `text`, `on<event>` handlers,
 * `dataset`-style `data-*` and `aria-*` names, and any property or attribute
 * of the element (`value`, `disabled`, `href`, ...). `null` and `false`
 * attribute values are skipped; children may be nodes, strings or arrays.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'text') element.textContent = value;
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name.startsWith('data-') || name.startsWith('aria-') || name === 'role' || name === 'for') element.setAttribute(name, value);
    else if (name in element) element[name] = value;
    else element.setAttribute(name, value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces the children of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** Whether a value is a finite number. */
export const isNumber = (value) => typeof value === 'number' && Number.isFinite(value);

/** Formats a count or rate with thousands separators. */
export function num(value, digits = 0) {
  if (!isNumber(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Formats a latency in milliseconds with three significant figures. */
export function ms(value) {
  if (!isNumber(value)) return '–';
  if (value >= 100) return `${num(value, 0)} ms`;
  return `${Number(value.toPrecision(3))} ms`;
}

/** Formats a fraction (0 to 1) as a percentage. */
export function pct(fraction, digits = 2) {
  if (!isNumber(fraction)) return '–';
  return `${(fraction * 100).toFixed(digits)} %`;
}

/** Formats seconds as `1h 02m 03s`, `2m 05s` or `7.5 s`. */
export function duration(seconds) {
  if (!isNumber(seconds)) return '–';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const whole = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, '0');
  const [hours, minutes, rest] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  return hours > 0 ? `${hours}h ${pad(minutes)}m ${pad(rest)}s` : `${minutes}m ${pad(rest)}s`;
}

/** Formats an ISO timestamp in the browser's time zone. */
export function time(iso) {
  if (!iso) return '–';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'medium' });
}

/** Seconds between two ISO timestamps, or null. */
export function secondsBetween(startIso, endIso) {
  if (!startIso || !endIso) return null;
  return (Date.parse(endIso) - Date.parse(startIso)) / 1000;
}

export const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);
export const STATUSES = ['PREPARED', 'RUNNING', 'CANCELLING', 'COMPLETED', 'FAILED', 'CANCELLED'];

/** Renders a run status as a coloured badge. */
export function statusBadge(status, attrs = {}) {
  return h('span', { class: `badge status-${String(status).toLowerCase()}`, ...attrs }, status ?? '–');
}

/** Builds a definition list of label and value pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]));
}

/**
 * Builds a table with a header row. Cells may be nodes or text; the
 * headers of the columns listed in `numeric` are right-aligned like
 * their numbers.
 */
export function table(headers, rows, attrs = {}, numeric = []) {
  const header = (text, index) => h('th', { scope: 'col', class: numeric.includes(index) ? 'num' : null }, text);
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map(header))),
      h('tbody', {}, rows)));
}

/** Shows a message in the page's notice bar; `kind` is `info` or `error`. */
export function notify(message, kind = 'info') {
  const bar = document.getElementById('notice');
  if (!message) {
    bar.replaceChildren();
    return;
  }
  replace(bar, h('p', { class: `notice-${kind}`, 'data-testid': 'notice' }, message,
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => bar.replaceChildren() }, '×')));
}

let pendingFlash = null;

/** Shows `message` in the notice bar after the next page change. */
export function flash(message) {
  pendingFlash = message;
}

/** Returns the message left by `flash` and clears it. */
export function takeFlash() {
  const message = pendingFlash;
  pendingFlash = null;
  return message;
}

/** Navigates to `hash`, rendering the page again when it is the current one. */
export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}
