// Compare page: up to five runs side by side, with their QPS and p95
// latency overlaid on one time axis (seconds since each run's measurement
// started).

import { get, getAll, query } from './api.js';
import { alignSeries, COLORS, lineChart } from './charts.js';
import { duration, h, ms, num, pct, replace, statusBadge, table, time, TERMINAL } from './dom.js';
import { MAX_COMPARED } from './history.js';
import { maxOf, measurementSeries, sumOfWorkerMeans } from './results.js';

export function render(main, params) {
  const runIds = (params.get('runs') ?? '').split(',').map((id) => id.trim()).filter(Boolean);
  const charts = [];
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, 'Compare runs')));
  const picker = h('details', { class: 'panel', open: runIds.length === 0 }, h('summary', {}, 'Choose runs'));
  const body = h('div', { class: 'stack compare-body' });
  main.append(picker, body);
  renderPicker(picker, runIds);
  if (runIds.length) {
    replace(body, h('p', { class: 'muted' }, 'Loading…'));
    renderComparison(body, runIds, charts).catch((error) => replace(body, h('p', { class: 'error' }, error.message)));
  }
  return () => charts.forEach((chart) => chart.destroy());
}

async function renderPicker(picker, chosen) {
  let runs;
  try {
    ({ runs } = await get(`/api/runs${query({ limit: 100 })}`));
  } catch (error) {
    picker.append(h('p', { class: 'error' }, error.message));
    return;
  }
  const ended = runs.filter((run) => TERMINAL.has(run.status) || chosen.includes(run.run_id));
  const selected = new Set(chosen);
  const button = h('button', { type: 'submit', class: 'primary', 'data-testid': 'compare-submit' }, 'Compare');
  const sync = () => {
    button.disabled = selected.size === 0 || selected.size > MAX_COMPARED;
    button.textContent = selected.size > MAX_COMPARED ? `Choose at most ${MAX_COMPARED}` : `Compare ${selected.size} runs`;
  };
  const rows = ended.map((run) => h('tr', { 'data-testid': 'compare-choice', 'data-run-id': run.run_id },
    h('td', {}, h('input', { type: 'checkbox', checked: selected.has(run.run_id), 'aria-label': `Compare ${run.test_name}`, onchange: (event) => {
      if (event.target.checked) selected.add(run.run_id);
      else selected.delete(run.run_id);
      sync();
    } })),
    h('td', {}, run.test_name, h('div', { class: 'muted small mono' }, run.run_id)),
    h('td', {}, statusBadge(run.status)),
    h('td', { class: 'small' }, time(run.start_time ?? run.created_at))));
  const form = h('form', { class: 'stack' },
    ended.length ? table(['', 'Name', 'Status', 'Started'], rows) : h('p', { class: 'empty' }, 'No ended runs yet.'),
    h('div', { class: 'buttons' }, button));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/compare?runs=${[...selected].map(encodeURIComponent).join(',')}`;
  });
  sync();
  picker.append(form);
}

async function renderComparison(body, runIds, charts) {
  const { runs } = await get(`/api/compare${query({ runs: runIds.join(',') })}`);
  const series = await Promise.all(runs.map((entry) => runSeries(entry.run)));
  const label = (entry, index) => `${index + 1}. ${entry.run.test_name}`;
  const qpsBox = h('div', { class: 'chart', 'data-testid': 'compare-chart-qps' });
  const latencyBox = h('div', { class: 'chart', 'data-testid': 'compare-chart-latency' });

  replace(body,
    comparisonTable(runs, label),
    h('div', { class: 'grid2' },
      h('section', {}, h('h2', {}, 'Queries per second'), qpsBox),
      h('section', {}, h('h2', {}, 'Latency p95, worst worker per second'), latencyBox)));

  const lines = runs.map((entry, index) => ({ label: label(entry, index), color: COLORS[index % COLORS.length] }));
  const xLabel = 'seconds since measurement start';
  const qps = lineChart(qpsBox, { series: lines, unit: 'QPS', xLabel });
  const latency = lineChart(latencyBox, { series: lines, unit: 'ms', xLabel });
  charts.push(qps, latency);
  qps.set(...alignSeries(series.map(({ xs, qps: values }) => [xs, values])));
  latency.set(...alignSeries(series.map(({ xs, p95 }) => [xs, p95])));
}

/** Per-second QPS and p95 of one run's measurement. */
async function runSeries(run) {
  const snapshots = await getAll(`/api/tests/${encodeURIComponent(run.run_id)}/timeseries`, 'snapshots', { phase: 'MEASUREMENT' });
  const start = Date.parse(run.warmup_end_time ?? run.start_time ?? snapshots[0]?.timestamp);
  const [xs, [qps, p95]] = measurementSeries(snapshots, start, (rows) => [sumOfWorkerMeans(rows, 'qps'), maxOf(rows, 'p95_latency_ms')]);
  return { xs, qps, p95 };
}

function comparisonTable(runs, label) {
  const metric = (name, value) => h('tr', {}, h('th', { scope: 'row' }, name), runs.map((entry) => h('td', { class: 'num' }, value(entry))));
  const latency = (key) => (entry) => ms(entry.result?.latency?.[key]);
  const kinds = [...new Set(runs.flatMap((entry) => Object.keys(entry.result?.latency_by_kind ?? {})))];
  return h('div', { class: 'table-wrap' }, h('table', { class: 'compare', 'data-testid': 'compare-table' },
    h('thead', {}, h('tr', {}, h('th', {}, ''), runs.map((entry, index) =>
      h('th', { scope: 'col' }, h('a', { href: `#/runs/${encodeURIComponent(entry.run.run_id)}` }, label(entry, index)))))),
    h('tbody', {},
      metric('Status', (entry) => statusBadge(entry.run.status)),
      metric('Target', (entry) => (entry.template ? `${entry.template.target.kind} · ${entry.template.target.table}` : '–')),
      metric('Started', (entry) => time(entry.run.start_time)),
      metric('Measured for', (entry) => duration(entry.result?.duration_seconds)),
      metric('Connections', (entry) => num(entry.result?.concurrent_connections)),
      metric('Queries', (entry) => num(entry.result?.total_operations)),
      metric('QPS', (entry) => num(entry.result?.qps, 1)),
      metric('Error rate', (entry) => pct(entry.result?.error_rate)),
      metric('Latency avg', latency('avg_ms')),
      metric('p50', latency('p50_ms')),
      metric('p95', latency('p95_ms')),
      metric('p99', latency('p99_ms')),
      metric('Max', latency('max_ms')),
      kinds.map((kind) => metric(`${kind} p95`, (entry) => ms(entry.result?.latency_by_kind?.[kind]?.p95_ms))))));
}
