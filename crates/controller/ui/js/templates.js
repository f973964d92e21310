// Templates page: the list (with run creation, YAML import and export)
// and the editor with workload presets and per-field validation.

import { ApiError, del, download, get, post, put, request } from './api.js';
import { duration, flash, go, h, notify, num, replace, table } from './dom.js';
import { checkTemplate, PRESETS, presetOperations, splitParams } from './template_rules.js';

const KINDS = ['POINT_LOOKUP', 'RANGE_SCAN', 'INSERT', 'UPDATE', 'DELETE', 'CUSTOM'];
const TARGET_KINDS = ['postgres', 'sqlite', 'snowflake'];
const TABLE_TYPES = ['', 'POSTGRES', 'SQLITE', 'STANDARD', 'HYBRID', 'INTERACTIVE'];
const LOAD_MODES = ['CONCURRENCY', 'QPS', 'FIND_MAX_CONCURRENCY'];
const DISTRIBUTIONS = ['uniform', 'zipfian', 'hotspot'];
const FIND_MAX_DEFAULTS = {
  start_connections: 5, connections_increment: 10, step_duration_seconds: 30,
  qps_stability_pct: 5, latency_stability_pct: 20, max_error_rate_pct: 1,
};
const FIND_MAX_LABELS = {
  start_connections: 'Start connections', connections_increment: 'Connections added per step',
  step_duration_seconds: 'Step duration (s)', qps_stability_pct: 'Max QPS drop %',
  latency_stability_pct: 'Max p95 rise over step 1 %', max_error_rate_pct: 'Max error rate %',
};

/** Returns the starting point of a new template. */
function blankTemplate() {
  return {
    name: '',
    target: { kind: 'postgres', connection: '', table: '', key_column: 'id' },
    workload: {
      load_mode: 'CONCURRENCY', concurrent_connections: 8, warmup_seconds: 10, duration_seconds: 60,
      operations: presetOperations('READ_ONLY', 'id'), key_distribution: 'uniform', query_log: 'all',
    },
    scaling: { per_worker_connections: 'auto', worker_count: 'auto' },
    guardrails: { max_cpu_percent: 85, max_memory_percent: 90 },
  };
}

// ---------------------------------------------------------------- list

export function renderList(main) {
  const body = h('div', { class: 'stack' }, h('p', { class: 'muted' }, 'Loading templates…'));
  replace(main,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Templates'),
      h('a', { class: 'button primary', href: '#/templates/new', 'data-testid': 'template-new' }, 'New template')),
    body,
    importPanel());
  loadList(body);
}

async function loadList(body) {
  let templates;
  try {
    ({ templates } = await get('/api/templates'));
  } catch (error) {
    replace(body, h('p', { class: 'error' }, error.message));
    return;
  }
  if (!templates.length) {
    replace(body, h('p', { class: 'empty' }, 'No templates yet. Create one, or import a YAML file below.'));
    return;
  }
  const rows = templates.map((row) => templateRow(row, body));
  replace(body, table(['Name', 'Target', 'Operations', 'Load', 'Runs', ''], rows, { 'data-testid': 'template-table' }, [4]));
}

function templateRow(row, body) {
  const config = row.config ?? {};
  const target = config.target ?? {};
  const workload = config.workload ?? {};
  const mix = (workload.operations ?? []).map((op) => `${op.kind} ${num(op.weight_pct, 0)} %`).join(', ');
  const runCell = h('td', { class: 'run-cell' });
  const tr = h('tr', { 'data-testid': 'template-row', 'data-template-id': row.template_id },
    h('td', {}, h('a', { href: `#/templates/${encodeURIComponent(row.template_id)}` }, row.name),
      row.description ? h('div', { class: 'muted small' }, row.description) : null),
    h('td', {}, `${target.kind} · ${target.table}`, h('div', { class: 'muted small' }, target.connection ? `connection ${target.connection}` : 'connection from environment')),
    h('td', { class: 'small' }, mix),
    h('td', { class: 'small' }, `${workload.concurrent_connections ?? '–'} connections · ${duration(workload.duration_seconds)}`),
    h('td', { class: 'num' }, num(row.usage_count)),
    h('td', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', 'data-testid': 'template-run', onclick: () => toggleRunForm(runCell, row) }, 'Run…'),
      h('button', { type: 'button', onclick: () => exportTemplate(row) }, 'Export'),
      h('button', { type: 'button', class: 'danger', onclick: () => deleteTemplate(row, body) }, 'Delete')));
  return [tr, h('tr', { class: 'run-row' }, runCell)];
}

/** Shows or hides the overrides form that creates a run from a template. */
function toggleRunForm(cell, row) {
  if (cell.firstChild) {
    cell.replaceChildren();
    return;
  }
  cell.colSpan = 6;
  const workload = row.config?.workload ?? {};
  const input = (name, label, placeholder, step = '1') => field(`overrides.${name}`, label,
    h('input', { type: 'number', min: '0', step, placeholder: String(placeholder ?? ''), 'data-testid': `override-${name}` }));
  const form = h('form', { class: 'run-form', 'data-testid': 'run-form' },
    h('p', { class: 'muted small' }, 'Leave a field empty to keep the template’s value.'),
    h('div', { class: 'grid4' },
      input('workers', 'Workers', 'auto'),
      input('connections', 'Connections (total)', workload.concurrent_connections),
      input('warmup_seconds', 'Warmup (s)', workload.warmup_seconds, 'any'),
      input('duration_seconds', 'Duration (s)', workload.duration_seconds, 'any')),
    h('p', { class: 'form-error', 'data-testid': 'form-errors', hidden: true }),
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'run-create' }, 'Create run'),
      h('button', { type: 'button', onclick: () => cell.replaceChildren() }, 'Cancel')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const overrides = {};
    for (const element of form.querySelectorAll('[data-field]')) {
      if (element.value !== '') overrides[element.dataset.field.split('.')[1]] = Number(element.value);
    }
    const button = form.querySelector('[type=submit]');
    button.disabled = true;
    try {
      const run = await post('/api/runs', { template_id: row.template_id, overrides });
      location.hash = `#/runs/${encodeURIComponent(run.run_id)}`;
    } catch (error) {
      showProblems(form, error);
      button.disabled = false;
    }
  });
  cell.append(form);
  form.querySelector('input').focus();
}

async function exportTemplate(row) {
  try {
    const yaml = await request('GET', `/api/templates/${encodeURIComponent(row.template_id)}/export`, undefined, { text: true });
    const stem = row.name.replace(/[^A-Za-z0-9_]+/g, '-').replace(/^-+|-+$/g, '') || 'template';
    download(`${stem}.yaml`, yaml, 'application/yaml');
  } catch (error) {
    notify(`Export failed: ${error.message}`, 'error');
  }
}

async function deleteTemplate(row, body) {
  if (!window.confirm(`Delete the template "${row.name}"? Runs made from it keep their own copy.`)) return;
  try {
    await del(`/api/templates/${encodeURIComponent(row.template_id)}`);
    notify(`Deleted the template "${row.name}".`);
    loadList(body);
  } catch (error) {
    notify(`Delete failed: ${error.message}`, 'error');
  }
}

function importPanel() {
  const text = h('textarea', { id: 'import-text', rows: 8, spellcheck: false, 'data-testid': 'template-import-text', placeholder: 'name: orders point lookups\ntarget:\n  kind: postgres\n  …' });
  const file = h('input', { type: 'file', id: 'import-file', accept: '.yaml,.yml,text/yaml,application/yaml', 'data-testid': 'template-import-file' });
  const replaceBox = h('input', { type: 'checkbox', id: 'import-replace' });
  const errors = h('ul', { class: 'form-error', 'data-testid': 'import-errors', hidden: true });
  file.addEventListener('change', async () => {
    if (file.files[0]) text.value = await file.files[0].text();
  });
  const form = h('form', { class: 'stack' },
    h('label', { for: 'import-text' }, 'Paste a YAML template, or choose a file'),
    text, file,
    h('label', { class: 'inline' }, replaceBox, ' Replace the template with the same name'),
    errors,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-testid': 'template-import-submit' }, 'Import')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errors.hidden = true;
    try {
      const path = `/api/templates/import${replaceBox.checked ? '?replace=true' : ''}`;
      const saved = await request('POST', path, text.value, { contentType: 'application/yaml' });
      flash(`Imported the template "${saved.name}".`);
      go('#/templates');
    } catch (error) {
      replace(errors, (error.problems ?? [{ message: error.message }]).map((problem) =>
        h('li', {}, problem.field && problem.field !== 'body' ? `${problem.field}: ` : '', cleanMessage(problem.message))));
      errors.hidden = false;
    }
  });
  return h('details', { class: 'panel' }, h('summary', {}, 'Import YAML'), form);
}

// -------------------------------------------------------------- editor

export function renderEditor(main, templateId) {
  replace(main, h('p', { class: 'muted' }, 'Loading…'));
  (templateId ? get(`/api/templates/${encodeURIComponent(templateId)}`) : Promise.resolve(null))
    .then((row) => replace(main, editorForm(row)))
    .catch((error) => replace(main, h('h1', {}, 'Template'), h('p', { class: 'error' }, error.message)));
}

function editorForm(row) {
  const template = row?.config ?? blankTemplate();
  const target = template.target ?? {};
  const workload = template.workload ?? {};
  const scaling = template.scaling ?? {};
  const guardrails = template.guardrails ?? {};
  const findMax = { ...FIND_MAX_DEFAULTS, ...(template.find_max ?? {}) };
  const operations = h('div', { class: 'operations', 'data-testid': 'operations' });
  const weightSum = h('p', { class: 'weight-sum', 'data-testid': 'weight-sum', 'data-field': 'workload.operations[*].weight_pct' });

  const form = h('form', { class: 'editor', novalidate: true, 'data-testid': 'template-form' },
    h('div', { class: 'page-head' }, h('h1', {}, row ? `Template: ${row.name}` : 'New template')),
    h('p', { class: 'form-error', 'data-testid': 'form-errors', hidden: true }),
    h('fieldset', {}, h('legend', {}, 'General'),
      h('div', { class: 'grid2' },
        field('name', 'Name', textInput(template.name, 'template-name', { required: true })),
        field('description', 'Description', textInput(template.description, 'template-description')))),
    h('fieldset', {}, h('legend', {}, 'Target'),
      h('div', { class: 'grid3' },
        field('target.kind', 'Database', select(TARGET_KINDS, target.kind, 'target-kind')),
        field('target.connection', 'Connection name', textInput(target.connection, 'target-connection'),
          { hint: 'A section of connections.toml on the controller’s host. Empty: the environment’s settings.' }),
        field('target.table', 'Table', textInput(target.table, 'target-table', { required: true, placeholder: 'public.orders' })),
        field('target.key_column', 'Key column', textInput(target.key_column, 'target-key-column')),
        field('target.table_type', 'Table type', select(TABLE_TYPES, target.table_type ?? '', 'target-table-type')),
        field('target.warehouse', 'Warehouse (Snowflake)', textInput(target.warehouse, 'target-warehouse')))),
    h('fieldset', {}, h('legend', {}, 'Workload'),
      h('div', { class: 'grid3' },
        field('workload.load_mode', 'Load mode', select(LOAD_MODES, workload.load_mode ?? 'CONCURRENCY', 'load-mode')),
        field('workload.concurrent_connections', 'Connections (total)', numberInput(workload.concurrent_connections, 'concurrent-connections', '1')),
        field('workload.warmup_seconds', 'Warmup (s)', numberInput(workload.warmup_seconds, 'warmup-seconds')),
        field('workload.duration_seconds', 'Duration (s)', numberInput(workload.duration_seconds, 'duration-seconds')),
        field('workload.key_distribution', 'Key distribution', select(DISTRIBUTIONS, workload.key_distribution ?? 'uniform', 'key-distribution')),
        field('workload.query_log', 'Query log', textInput(workload.query_log ?? 'all', 'query-log'), { hint: 'all, errors, off or sample:FRACTION' }),
        field('workload.target_qps', 'Target QPS', numberInput(workload.target_qps, 'target-qps'), { cls: 'qps-only' }),
        field('workload.min_connections', 'Min connections', numberInput(workload.min_connections, 'min-connections', '1'), { cls: 'qps-only' }))),
    h('fieldset', {}, h('legend', {}, 'Operations'),
      presetPicker(operations),
      h('p', { class: 'muted small' },
        'Each query picks an operation by weight. Write {table} for the table and $1, $2, … for parameters. ',
        'Parameters, comma-separated: key, new_key, random_int(min, max), random_float(min, max), random_string(len), now, uuid, const(value).'),
      h('span', { 'data-field': 'workload.operations' }),
      operations,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', 'data-testid': 'op-add', onclick: () => { addOperation(operations, { kind: 'POINT_LOOKUP', weight_pct: 0, sql: '', params: [] }); updateWeightSum(operations, weightSum); } }, 'Add operation'),
        weightSum)),
    h('details', { class: 'panel' }, h('summary', {}, 'Scaling, find-max and guardrails'),
      h('div', { class: 'grid3' },
        field('scaling.worker_count', 'Workers', textInput(String(scaling.worker_count ?? 'auto'), 'worker-count'), { hint: 'a number or auto' }),
        field('scaling.per_worker_connections', 'Connections per worker', textInput(String(scaling.per_worker_connections ?? 'auto'), 'per-worker-connections'), { hint: 'a number or auto' }),
        field('guardrails.max_cpu_percent', 'Max CPU %', numberInput(guardrails.max_cpu_percent ?? 85, 'guardrail-cpu')),
        field('guardrails.max_memory_percent', 'Max memory %', numberInput(guardrails.max_memory_percent ?? 90, 'guardrail-memory'))),
      h('div', { class: 'find-max-only' },
        h('h3', {}, 'Find max: when a step counts as degraded'),
        h('div', { class: 'grid3' }, Object.entries(FIND_MAX_LABELS).map(([name, label]) =>
          field(`find_max.${name}`, label, numberInput(findMax[name], `find-max-${name.replaceAll('_', '-')}`)))))),
    h('div', { class: 'buttons sticky' },
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'template-save' }, row ? 'Save changes' : 'Save template'),
      row ? h('button', { type: 'button', 'data-testid': 'template-export', onclick: () => exportTemplate(row) }, 'Export YAML') : null,
      h('a', { class: 'button', href: '#/templates' }, 'Cancel')));

  for (const operation of workload.operations ?? []) addOperation(operations, operation);
  operations.addEventListener('input', () => updateWeightSum(operations, weightSum));
  updateWeightSum(operations, weightSum);
  const modeSelect = form.querySelector('[data-field="workload.load_mode"]');
  const kindSelect = form.querySelector('[data-field="target.kind"]');
  const toggle = () => {
    form.querySelectorAll('.qps-only').forEach((element) => { element.hidden = modeSelect.value !== 'QPS'; });
    form.querySelector('.find-max-only').hidden = modeSelect.value !== 'FIND_MAX_CONCURRENCY';
    form.querySelector('[data-field="target.warehouse"]').closest('.field').hidden = kindSelect.value !== 'snowflake';
  };
  modeSelect.addEventListener('change', toggle);
  kindSelect.addEventListener('change', toggle);
  toggle();
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    saveTemplate(form, row);
  });
  return form;
}

function presetPicker(operations) {
  const picker = select(['', ...Object.keys(PRESETS)], '', 'preset-select');
  picker.id = 'preset-select';
  picker.options[0].textContent = 'Choose a preset…';
  const apply = () => {
    if (!picker.value) return;
    const form = operations.closest('form');
    const keyColumn = form.querySelector('[data-field="target.key_column"]').value.trim();
    operations.replaceChildren();
    for (const operation of presetOperations(picker.value, keyColumn || 'id')) addOperation(operations, operation);
    operations.dispatchEvent(new Event('input', { bubbles: true }));
  };
  return h('div', { class: 'preset' },
    h('label', { for: 'preset-select' }, 'Workload preset'), picker,
    h('button', { type: 'button', 'data-testid': 'preset-apply', onclick: apply }, 'Fill operations'),
    h('span', { class: 'muted small' }, 'Presets write generic SQL on the key column: adapt it to your table.'));
}

function addOperation(container, operation) {
  const row = h('div', { class: 'operation', 'data-testid': 'operation' },
    field('kind', 'Kind', select(KINDS, operation.kind, 'op-kind'), { operation: true }),
    field('weight_pct', 'Weight %', numberInput(operation.weight_pct, 'op-weight'), { operation: true }),
    field('sql', 'SQL', h('textarea', { rows: 2, spellcheck: false, value: operation.sql ?? '', 'data-testid': 'op-sql' }), { operation: true, cls: 'wide' }),
    field('params', 'Parameters', textInput((operation.params ?? []).join(', '), 'op-params'), { operation: true, cls: 'wide' }),
    h('button', { type: 'button', class: 'danger remove', 'data-testid': 'op-remove', 'aria-label': 'Remove operation', onclick: () => {
      row.remove();
      renumber(container);
      container.dispatchEvent(new Event('input', { bubbles: true }));
    } }, 'Remove'));
  container.append(row);
  renumber(container);
}

/** Gives each operation's inputs their field paths, `workload.operations[i].sql`. */
function renumber(container) {
  [...container.children].forEach((row, index) => {
    row.dataset.index = index;
    for (const element of row.querySelectorAll('[data-name]')) {
      element.dataset.field = `workload.operations[${index}].${element.dataset.name}`;
    }
  });
}

function updateWeightSum(container, output) {
  const sum = [...container.querySelectorAll('[data-name="weight_pct"]')].reduce((total, input) => total + (Number(input.value) || 0), 0);
  const ok = Math.abs(sum - 100) <= 0.001;
  output.textContent = `Weights sum to ${Number(sum.toFixed(3))} %${ok ? '' : ' (must be 100)'}`;
  output.classList.toggle('bad', !ok);
}

// ---------------------------------------------------- reading and saving

function readTemplate(form) {
  const value = (path) => form.querySelector(`[data-field="${path}"]`)?.value.trim() ?? '';
  const number = (path) => (value(path) === '' ? undefined : Number(value(path)));
  const optional = (path) => value(path) || undefined;
  const autoOr = (path) => (value(path) === '' || value(path) === 'auto' ? 'auto' : Number(value(path)));
  const loadMode = value('workload.load_mode');
  const operations = [...form.querySelectorAll('.operation')].map((row) => ({
    kind: row.querySelector('[data-name="kind"]').value,
    weight_pct: Number(row.querySelector('[data-name="weight_pct"]').value || NaN),
    sql: row.querySelector('[data-name="sql"]').value.trim(),
    params: splitParams(row.querySelector('[data-name="params"]').value),
  }));
  const template = {
    name: value('name'),
    description: optional('description'),
    target: {
      kind: value('target.kind'), connection: optional('target.connection'), table: value('target.table'),
      table_type: optional('target.table_type'), key_column: optional('target.key_column'),
      warehouse: value('target.kind') === 'snowflake' ? optional('target.warehouse') : undefined,
    },
    workload: {
      load_mode: loadMode, concurrent_connections: number('workload.concurrent_connections'),
      warmup_seconds: number('workload.warmup_seconds') ?? 0, duration_seconds: number('workload.duration_seconds'),
      operations, key_distribution: value('workload.key_distribution'), query_log: value('workload.query_log') || 'all',
      target_qps: loadMode === 'QPS' ? number('workload.target_qps') : undefined,
      min_connections: loadMode === 'QPS' ? number('workload.min_connections') : undefined,
    },
    scaling: { worker_count: autoOr('scaling.worker_count'), per_worker_connections: autoOr('scaling.per_worker_connections') },
    guardrails: { max_cpu_percent: number('guardrails.max_cpu_percent'), max_memory_percent: number('guardrails.max_memory_percent') },
  };
  if (loadMode === 'FIND_MAX_CONCURRENCY') {
    template.find_max = Object.fromEntries(Object.keys(FIND_MAX_DEFAULTS).map((name) => [name, number(`find_max.${name}`)]));
  }
  return template;
}

async function saveTemplate(form, row) {
  const template = readTemplate(form);
  const problems = checkTemplate(template);
  if (problems.length) {
    showProblems(form, new ApiError(422, { error: { problems } }));
    return;
  }
  const button = form.querySelector('[data-testid="template-save"]');
  button.disabled = true;
  try {
    const saved = row
      ? await put(`/api/templates/${encodeURIComponent(row.template_id)}`, template)
      : await post('/api/templates', template);
    flash(`Saved the template "${saved.name}".`);
    go('#/templates');
  } catch (error) {
    showProblems(form, error);
  } finally {
    button.disabled = false;
  }
}

/** Template problems repeat the template's name; the form shows it already. */
function cleanMessage(message) {
  return String(message ?? '').replace(/^template ".*?": /s, '');
}

/**
 * Shows each problem next to the input whose `data-field` matches its path
 * or the nearest enclosing path, so `...params[1]` falls back to
 * `...params`. Problems with no matching input go to the form's error box.
 */
export function showProblems(form, error) {
  form.querySelectorAll('.field-error').forEach((element) => element.remove());
  form.querySelectorAll('[aria-invalid]').forEach((element) => element.removeAttribute('aria-invalid'));
  const general = form.querySelector('[data-testid="form-errors"]');
  const unplaced = [];
  for (const problem of error.problems ?? [{ field: error.field, message: error.message }]) {
    const target = findField(form, problem.field);
    if (!target) {
      unplaced.push(`${problem.field ? `${problem.field}: ` : ''}${cleanMessage(problem.message)}`);
      continue;
    }
    const id = `error-${Math.random().toString(36).slice(2)}`;
    const message = h('p', { class: 'field-error', id, role: 'alert', 'data-testid': 'field-error', 'data-for': problem.field }, cleanMessage(problem.message));
    if (target.matches('input, select, textarea')) {
      target.setAttribute('aria-invalid', 'true');
      target.setAttribute('aria-describedby', id);
    }
    target.hidden = false;
    target.after(message);
  }
  general.hidden = unplaced.length === 0;
  general.textContent = unplaced.join('\n');
  if (error.status !== 422 && !unplaced.length && !error.problems?.length) general.textContent = error.message;
  form.querySelector('[aria-invalid], .field-error, [data-testid="form-errors"]:not([hidden])')?.scrollIntoView({ block: 'center' });
}

function findField(form, path) {
  let candidate = path ?? '';
  while (candidate) {
    const found = form.querySelector(`[data-field="${CSS.escape(candidate)}"]`);
    if (found) return found;
    const shorter = candidate.replace(/(\[[^\]]*\]|\.[^.[\]]*)$/, '');
    if (shorter === candidate) return null;
    candidate = shorter;
  }
  return null;
}

// ------------------------------------------------------------ widgets

let fieldCounter = 0;

/**
 * Builds a labelled field. The input gets `path` as `data-field`, which
 * error messages are matched against. Inside an operation row it gets the
 * name as `data-name` instead, and `renumber` derives the path.
 */
function field(path, label, input, { hint = '', cls = '', operation = false } = {}) {
  const id = `field-${++fieldCounter}`;
  input.id = id;
  if (operation) input.dataset.name = path;
  else input.dataset.field = path;
  return h('div', { class: `field ${cls}` },
    h('label', { for: id }, label),
    input,
    hint ? h('small', { class: 'hint' }, hint) : null);
}

function textInput(value, testId, extra = {}) {
  return h('input', { type: 'text', value: value ?? '', 'data-testid': testId, autocomplete: 'off', ...extra });
}

function numberInput(value, testId, step = 'any') {
  return h('input', { type: 'number', step, value: value ?? '', 'data-testid': testId, inputMode: 'decimal' });
}

function select(options, value, testId) {
  return h('select', { 'data-testid': testId },
    options.map((option) => h('option', { value: option, selected: option === value }, option || '(not set)')));
}
