// History page: every run, newest first, filtered by status and name, with
// a selection of up to five runs to compare.

import { get, query } from './api.js';
import { duration, h, num, replace, secondsBetween, statusBadge, STATUSES, table, time } from './dom.js';

const PAGE_SIZE = 50;
export const MAX_COMPARED = 5;

export function render(main, params) {
  const filters = { status: params.get('status') ?? '', name: params.get('name') ?? '', offset: Number(params.get('offset') ?? 0) || 0 };
  const selected = new Set();
  const status = h('select', { id: 'history-status', 'data-testid': 'history-status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((value) => h('option', { value, selected: value === filters.status }, value)));
  const name = h('input', { type: 'search', id: 'history-name', value: filters.name, placeholder: 'part of the name', 'data-testid': 'history-name' });
  const compareButton = h('button', { type: 'button', disabled: true, 'data-testid': 'history-compare', onclick: () => {
    location.hash = `#/compare?runs=${[...selected].map(encodeURIComponent).join(',')}`;
  } }, 'Compare selected');
  const form = h('form', { class: 'filters', role: 'search' },
    h('label', { for: 'history-status' }, 'Status'), status,
    h('label', { for: 'history-name' }, 'Name'), name,
    h('button', { type: 'submit', 'data-testid': 'history-filter' }, 'Filter'),
    compareButton);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/history${query({ status: status.value, name: name.value.trim() })}`;
  });
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading runs…'));
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, 'History')), form, body);

  const onSelect = (runId, checked, box) => {
    if (checked && selected.size >= MAX_COMPARED) {
      box.checked = false;
      box.setCustomValidity(`At most ${MAX_COMPARED} runs can be compared.`);
      box.reportValidity();
      return;
    }
    box.setCustomValidity('');
    if (checked) selected.add(runId);
    else selected.delete(runId);
    compareButton.disabled = selected.size === 0;
    compareButton.textContent = selected.size ? `Compare ${selected.size} selected` : 'Compare selected';
  };
  load(body, filters, onSelect);
}

async function load(body, filters, onSelect) {
  let runs;
  try {
    ({ runs } = await get(`/api/runs${query({ status: filters.status, name: filters.name, limit: PAGE_SIZE, offset: filters.offset })}`));
  } catch (error) {
    replace(body, h('p', { class: 'error' }, error.message));
    return;
  }
  if (!runs.length) {
    replace(body, h('p', { class: 'empty' }, filters.offset ? 'No more runs.' : 'No runs match.'));
    return;
  }
  const rows = runs.map((run) => {
    const box = h('input', { type: 'checkbox', 'aria-label': `Select ${run.test_name} for comparison`, onchange: (event) => onSelect(run.run_id, event.target.checked, event.target) });
    const seconds = secondsBetween(run.start_time, run.end_time);
    return h('tr', { 'data-testid': 'history-row', 'data-run-id': run.run_id, 'data-status': run.status },
      h('td', {}, box),
      h('td', {}, h('a', { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.test_name),
        h('div', { class: 'muted small mono' }, run.run_id)),
      h('td', {}, statusBadge(run.status, { title: run.status_reason ?? '' })),
      h('td', { class: 'small' }, time(run.start_time ?? run.created_at)),
      h('td', { class: 'num' }, seconds === null ? '–' : duration(seconds)),
      h('td', { class: 'num' }, num(run.total_workers_expected)),
      h('td', { class: 'num' }, num(run.total_ops)),
      h('td', { class: 'num' }, num(run.error_count)));
  });
  const page = (offset) => `#/history${query({ status: filters.status, name: filters.name, offset: offset || '' })}`;
  replace(body,
    table(['', 'Name', 'Status', 'Started', 'Duration', 'Workers', 'Queries', 'Errors'], rows, { 'data-testid': 'history-table' }, [4, 5, 6, 7]),
    h('nav', { class: 'pager', 'aria-label': 'Pages' },
      filters.offset > 0 ? h('a', { class: 'button', href: page(Math.max(0, filters.offset - PAGE_SIZE)) }, 'Newer') : null,
      runs.length === PAGE_SIZE ? h('a', { class: 'button', href: page(filters.offset + PAGE_SIZE) }, 'Older') : null));
}
