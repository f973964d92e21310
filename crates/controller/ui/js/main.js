// Entry point: the hash router, the controller health indicator and the
// API token prompt.

import { get, setToken, token, unauthorizedListeners } from './api.js';
import { h, notify, replace, takeFlash } from './dom.js';
import * as templates from './templates.js';
import * as live from './live.js';
import * as historyPage from './history.js';
import * as compare from './compare.js';

const HEALTH_POLL_MS = 15000;

const main = document.getElementById('main');
let cleanup = null;

/** Splits `#/a/b?x=1` into `['a', 'b']` and its query parameters. */
function parseHash() {
  const [path, search = ''] = location.hash.replace(/^#\/?/, '').split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(search) };
}

function route() {
  const { parts, params } = parseHash();
  const [section, id] = parts;
  if (cleanup) cleanup();
  cleanup = null;
  notify(takeFlash());
  main.replaceChildren();
  document.querySelectorAll('[data-nav]').forEach((link) => {
    const current = link.dataset.nav === section || (section === 'runs' && link.dataset.nav === 'history');
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  });

  if (section === 'templates' && id) cleanup = templates.renderEditor(main, id === 'new' ? null : id);
  else if (section === 'templates' || !section) cleanup = templates.renderList(main);
  else if (section === 'runs' && id) cleanup = live.render(main, id);
  else if (section === 'history') cleanup = historyPage.render(main, params);
  else if (section === 'compare') cleanup = compare.render(main, params);
  else replace(main, h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/templates' }, 'Go to the templates')));
  main.focus({ preventScroll: true });
}

/** Shows the version and the store's state from `GET /health`. */
async function checkHealth() {
  const indicator = document.getElementById('health');
  try {
    const response = await fetch('/health', { cache: 'no-store' });
    const body = await response.json().catch(() => ({}));
    const store = body.store ?? {};
    const ok = response.ok && body.status === 'ok';
    indicator.className = `health ${ok ? 'health-ok' : 'health-bad'}`;
    indicator.textContent = `unibench ${body.version ?? ''} · ${store.backend ?? ''} store ${String(store.status ?? `HTTP ${response.status}`).replaceAll('_', ' ')}`;
    indicator.title = store.error ?? '';
  } catch {
    indicator.className = 'health health-bad';
    indicator.textContent = 'Controller unreachable';
  }
}

/** Asks for the API token after a 401, once per page load at a time. */
function promptForToken() {
  if (document.getElementById('token-form')) return;
  const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'off', required: true, 'data-testid': 'token-input' });
  const form = h('form', { id: 'token-form', class: 'token-form' },
    h('label', { for: 'token-input' }, token() ? 'The API token was rejected. API token:' : 'This controller requires an API token:'),
    input,
    h('button', { type: 'submit' }, 'Use token'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    form.remove();
    route();
  });
  document.getElementById('notice').append(form);
  input.focus();
}

unauthorizedListeners.add(promptForToken);
window.addEventListener('hashchange', route);
if (!location.hash) history.replaceState(null, '', '#/templates');
route();
checkHealth();
setInterval(checkHealth, HEALTH_POLL_MS);
