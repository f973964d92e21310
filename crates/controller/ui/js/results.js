// Stored results of an ended run: final numbers, latency per query kind,
// charts from the metric snapshots, and one row per worker.

import { get, getAll } from './api.js';
import { bucketBySecond, lineChart } from './charts.js';
import { duration, facts, h, ms, num, pct, replace, table, time } from './dom.js';

/** Most workers whose own results are fetched for the worker table. */
const MAX_WORKER_ROWS = 50;

/**
 * Renders the run's results into `container` and returns a function that
 * removes its charts.
 */
export function renderResults(container, runId) {
  const state = { closed: false, charts: [] };
  replace(container, h('p', { class: 'muted' }, 'Loading results…'));
  load(container, runId, state).catch((error) => replace(container, h('p', { class: 'error' }, `Results could not be read: ${error.message}`)));
  return () => {
    state.closed = true;
    state.charts.forEach((chart) => chart.destroy());
  };
}

async function load(container, runId, state) {
  const id = encodeURIComponent(runId);
  const [test, snapshots] = await Promise.all([
    get(`/api/tests/${id}`),
    getAll(`/api/tests/${id}/timeseries`, 'snapshots', { phase: 'MEASUREMENT' }),
  ]);
  if (state.closed) return;
  const { run, result } = test;
  const qpsBox = h('div', { class: 'chart', 'data-testid': 'history-chart-qps' });
  const latencyBox = h('div', { class: 'chart', 'data-testid': 'history-chart-latency' });
  const workerBox = h('div', {}, h('p', { class: 'muted' }, 'Loading workers…'));

  replace(container,
    h('section', {}, h('h2', {}, 'Final results'),
      result ? summary(run, result) : h('p', { class: 'empty' }, 'This run has no final results (it ended before any worker measured).')),
    result ? kindTable(result) : null,
    snapshots.length ? h('div', { class: 'grid2' },
      h('section', {}, h('h2', {}, 'Queries per second'), qpsBox),
      h('section', {}, h('h2', {}, 'Latency, worst worker per second'), latencyBox)) : null,
    h('section', {}, h('h2', {}, 'Workers'), workerBox));

  if (snapshots.length) {
    const start = Date.parse(run.start_time ?? snapshots[0].timestamp);
    const [xs, [qps]] = measurementSeries(snapshots, start, (rows) => [sumOfWorkerMeans(rows, 'qps')]);
    const [latencyXs, latency] = measurementSeries(snapshots, start, (rows) =>
      ['p50_latency_ms', 'p95_latency_ms', 'p99_latency_ms'].map((key) => maxOf(rows, key)));
    const charts = [
      lineChart(qpsBox, { series: [{ label: 'QPS' }], unit: 'QPS', xLabel: 'seconds since start' }),
      lineChart(latencyBox, { series: [{ label: 'p50' }, { label: 'p95' }, { label: 'p99' }], unit: 'ms', xLabel: 'seconds since start' })];
    state.charts.push(...charts);
    charts[0].set(xs, [qps]);
    charts[1].set(latencyXs, latency);
  }
  replace(workerBox, await workerTable(snapshots));
}

function summary(run, result) {
  const latency = result.latency ?? {};
  return h('div', { class: 'grid2' },
    facts([
      ['Status', result.status],
      ['Started', time(result.start_time ?? run.start_time)],
      ['Measured for', duration(result.duration_seconds)],
      ['Connections', num(result.concurrent_connections)],
      ['Queries', `${num(result.total_operations)} (${num(result.read_operations)} reads, ${num(result.write_operations)} writes)`],
      ['Failed', num(result.failed_operations)],
      ['QPS', h('strong', { 'data-testid': 'result-qps' }, num(result.qps, 1))],
      ['Error rate', pct(result.error_rate)],
    ]),
    facts([
      ['Average', ms(latency.avg_ms)], ['Min', ms(latency.min_ms)], ['p50', ms(latency.p50_ms)],
      ['p90', ms(latency.p90_ms)], ['p95', ms(latency.p95_ms)], ['p99', ms(latency.p99_ms)],
      ['p99.9', ms(latency.p999_ms)], ['Max', ms(latency.max_ms)],
    ]));
}

function kindTable(result) {
  const kinds = Object.entries(result.latency_by_kind ?? {});
  if (!kinds.length) return null;
  return h('section', {}, h('h2', {}, 'Latency by query kind'),
    table(['Kind', 'p50', 'p95', 'p99'], kinds.map(([kind, latency]) =>
      h('tr', { 'data-testid': 'kind-row' }, h('td', {}, kind), h('td', { class: 'num' }, ms(latency.p50_ms)),
        h('td', { class: 'num' }, ms(latency.p95_ms)), h('td', { class: 'num' }, ms(latency.p99_ms)))), {}, [1, 2, 3]));
}

/** Snapshots bucketed by whole seconds since `startMs`. */
export function measurementSeries(snapshots, startMs, reduce) {
  const seriesCount = reduce([]).length;
  return bucketBySecond(snapshots, (row) => (Date.parse(row.timestamp) - startMs) / 1000, reduce, seriesCount);
}

/** Sums, across workers, each worker's mean of `key` within the rows. */
export function sumOfWorkerMeans(rows, key) {
  if (!rows.length) return null;
  const byWorker = new Map();
  for (const row of rows) {
    if (typeof row[key] !== 'number') continue;
    const values = byWorker.get(row.worker_id) ?? [];
    values.push(row[key]);
    byWorker.set(row.worker_id, values);
  }
  let total = 0;
  for (const values of byWorker.values()) total += values.reduce((a, b) => a + b, 0) / values.length;
  return total;
}

export function maxOf(rows, key) {
  const values = rows.map((row) => row[key]).filter((value) => typeof value === 'number');
  return values.length ? Math.max(...values) : null;
}

/** Builds one row per worker from each worker's own (child) results. */
async function workerTable(snapshots) {
  const children = new Map();
  for (const row of snapshots) children.set(row.worker_id, row.test_id);
  if (!children.size) return h('p', { class: 'empty' }, 'No worker measured.');
  const ids = [...children.entries()].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })).slice(0, MAX_WORKER_ROWS);
  const tests = await Promise.all(ids.map(([, testId]) => get(`/api/tests/${encodeURIComponent(testId)}`).catch(() => null)));
  const rows = ids.map(([workerId], index) => {
    const result = tests[index]?.result ?? {};
    const latency = result.latency ?? {};
    return h('tr', { 'data-testid': 'worker-row', 'data-worker-id': workerId },
      h('td', {}, workerId), h('td', {}, result.status ?? '–'), h('td', { class: 'num' }, num(result.total_operations)),
      h('td', { class: 'num' }, num(result.qps, 1)), h('td', { class: 'num' }, ms(latency.p50_ms)),
      h('td', { class: 'num' }, ms(latency.p95_ms)), h('td', { class: 'num' }, ms(latency.p99_ms)),
      h('td', { class: 'num' }, num(result.failed_operations)), h('td', { class: 'num' }, num(result.concurrent_connections)));
  });
  const note = children.size > MAX_WORKER_ROWS ? h('p', { class: 'muted small' }, `Showing the first ${MAX_WORKER_ROWS} of ${children.size} workers.`) : null;
  const headers = ['Worker', 'Status', 'Queries', 'QPS', 'p50', 'p95', 'p99', 'Failed', 'Connections'];
  return [table(headers, rows, {}, [2, 3, 4, 5, 6, 7, 8]), note];
}
