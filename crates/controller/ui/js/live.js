// Run page. While the run is active it shows live numbers from the
// WebSocket, the start and stop buttons, the worker grid and the log
// panel. Once the run has ended, it shows the final status and the stored
// results.

import { get, getAll, openLiveStream, post } from './api.js';
import { lineChart } from './charts.js';
import { duration, facts, h, ms, notify, num, pct, replace, statusBadge, TERMINAL } from './dom.js';
import { renderResults } from './results.js';

const LOG_POLL_MS = 3000;
const RECONNECT_MS = 2000;
const MAX_LOG_LINES = 500;
const WORKER_HISTORY = 600;
const MEASUREMENT_PENDING = 'Points appear once the workers measure (after the warmup).';

const AGGREGATION_LABELS = { merged_histogram: 'merged histogram of all workers' };

export function render(main, runId) {
  const page = new RunPage(main, runId);
  page.load();
  return () => page.close();
}

class RunPage {
  constructor(main, runId) {
    this.main = main;
    this.runId = runId;
    this.closed = false;
    this.ended = false;
    this.socket = null;
    this.timers = new Set();
    this.charts = [];
    this.workers = new Map();
    this.logOffset = 0;
    this.logChain = Promise.resolve();
  }

  async load() {
    replace(this.main, h('p', { class: 'muted' }, 'Loading run…'));
    let run;
    try {
      run = await get(`/api/runs/${encodeURIComponent(this.runId)}`);
    } catch (error) {
      replace(this.main, h('h1', {}, 'Run'), h('p', { class: 'error' }, error.message));
      return;
    }
    if (this.closed) return;
    this.build(run);
    this.showHeader(run.status, run.phase, null, run.status_reason);
    this.pollLogs();
    if (TERMINAL.has(run.status)) this.finish(run.status, run.status_reason);
    else this.connect();
  }

  build(run) {
    const template = run.scenario_config?.template;
    const card = (key, label) => h('div', { class: 'card', 'data-testid': `card-${key}` },
      h('div', { class: 'card-label' }, label),
      h('div', { class: 'card-value', 'data-testid': `${key}-value` }, '–'),
      h('div', { class: 'card-note', 'data-testid': `${key}-note` }));
    this.el = {
      status: h('span', { 'data-testid': 'run-status' }),
      phase: h('span', { class: 'phase', 'data-testid': 'run-phase' }),
      elapsed: h('span', { 'data-testid': 'run-elapsed' }),
      start: h('button', { type: 'button', class: 'primary', 'data-testid': 'run-start', onclick: () => this.command('start') }, 'Start'),
      stop: h('button', { type: 'button', class: 'danger-solid', 'data-testid': 'run-stop', onclick: () => this.command('stop') }, 'Stop'),
      final: h('div', { class: 'final', 'data-testid': 'run-final', hidden: true }),
      live: h('div', { class: 'stack' }),
      cards: h('div', { class: 'cards' },
        card('qps', 'QPS'), card('p50', 'Latency p50'), card('p95', 'Latency p95'), card('p99', 'Latency p99'),
        card('errors', 'Error rate'), card('connections', 'Connections active / target')),
      method: h('p', { class: 'muted small', 'data-testid': 'aggregation-method' }),
      qpsChart: h('div', { class: 'chart', 'data-testid': 'chart-qps' }),
      latencyChart: h('div', { class: 'chart', 'data-testid': 'chart-latency' }),
      grid: h('div', { class: 'worker-grid', 'data-testid': 'worker-grid' }),
      findMax: h('section', { class: 'panel', 'data-testid': 'find-max-panel', hidden: true }),
      warehouse: h('section', { class: 'panel', 'data-testid': 'warehouse-panel', hidden: true }),
      results: h('div', { class: 'stack', 'data-testid': 'run-results' }),
      logs: h('ol', { class: 'log', 'data-testid': 'log-panel', 'aria-live': 'off' }),
    };
    replace(this.el.live,
      this.el.cards, this.el.method,
      h('div', { class: 'grid2' },
        h('section', {}, h('h2', {}, 'Queries per second'), this.el.qpsChart),
        h('section', {}, h('h2', {}, 'Latency'), this.el.latencyChart)),
      h('section', {}, h('h2', {}, 'Workers'), this.el.grid),
      this.el.findMax, this.el.warehouse);
    const target = template?.target;
    replace(this.main,
      h('div', { class: 'run-head' },
        h('div', {},
          h('h1', {}, run.test_name),
          h('p', { class: 'muted small' }, `Run ${run.run_id}`,
            target ? ` · ${target.kind} · ${target.table}${target.connection ? ` via ${target.connection}` : ''}` : '')),
        h('div', { class: 'run-state' }, this.el.status, this.el.phase, this.el.elapsed),
        h('div', { class: 'buttons' }, this.el.start, this.el.stop)),
      this.el.final, this.el.live, this.el.results,
      h('section', {}, h('h2', {}, 'Logs'), this.el.logs));
    this.charts.push(
      this.qps = lineChart(this.el.qpsChart, { series: [{ label: 'QPS' }], unit: 'QPS', emptyText: MEASUREMENT_PENDING }),
      this.latency = lineChart(this.el.latencyChart, { series: [{ label: 'p50' }, { label: 'p95' }, { label: 'p99' }], unit: 'ms', emptyText: MEASUREMENT_PENDING }));
  }

  showHeader(status, phase, elapsed, reason) {
    replace(this.el.status, statusBadge(status, { title: reason ?? '' }));
    this.el.status.dataset.status = status;
    this.el.phase.textContent = phase ?? '';
    this.el.elapsed.textContent = elapsed === null ? '' : `elapsed ${duration(elapsed)}`;
    this.el.start.disabled = status !== 'PREPARED';
    this.el.stop.disabled = !['PREPARED', 'RUNNING'].includes(status);
  }

  connect() {
    if (this.closed || this.ended) return;
    const socket = openLiveStream(this.runId);
    this.socket = socket;
    socket.addEventListener('message', (event) => {
      try {
        const message = JSON.parse(event.data);
        if (message.event === 'RUN_UPDATE') this.update(message.data);
      } catch (error) {
        console.error('invalid live message', error);
      }
    });
    socket.addEventListener('close', () => {
      if (this.socket === socket) this.socket = null;
      if (!this.closed && !this.ended) this.later(() => this.reconnect(), RECONNECT_MS);
    });
  }

  /** Reconnects after the stream closed without a final update, unless the run has ended meanwhile. */
  async reconnect() {
    try {
      const run = await get(`/api/runs/${encodeURIComponent(this.runId)}`);
      if (TERMINAL.has(run.status)) {
        this.showHeader(run.status, run.phase, null, run.status_reason);
        this.finish(run.status, run.status_reason);
        return;
      }
    } catch {
      // The controller may be restarting; keep trying.
    }
    this.connect();
  }

  update(data) {
    const run = data.run;
    this.showHeader(run.status, run.phase, run.elapsed_seconds, run.status_reason);
    this.updateCards(run);
    if (run.ops && run.latency) {
      const x = Math.round(run.elapsed_seconds * 10) / 10;
      this.qps.push(x, [run.ops.current_per_sec]);
      this.latency.push(x, [run.latency.p50, run.latency.p95, run.latency.p99]);
    }
    this.updateWorkers(data.workers ?? [], run.elapsed_seconds);
    this.updatePanel(this.el.findMax, 'Find max', data.find_max);
    this.updatePanel(this.el.warehouse, 'Warehouse', data.warehouse);
    if (TERMINAL.has(run.status)) this.finish(run.status, run.status_reason);
  }

  updateCards(run) {
    const set = (key, value, note = '') => {
      this.el.cards.querySelector(`[data-testid="${key}-value"]`).textContent = value;
      this.el.cards.querySelector(`[data-testid="${key}-note"]`).textContent = note;
    };
    const method = AGGREGATION_LABELS[run.latency_aggregation_method] ?? run.latency_aggregation_method;
    this.el.method.textContent = method ? `Latency percentiles: ${method}.` : '';
    this.el.cards.classList.toggle('warming', Boolean(run.warming_up));
    set('connections', `${num(run.connections?.active)} / ${num(run.connections?.target)}`,
      `${run.workers_healthy} of ${run.worker_count} workers healthy`);
    if (run.warming_up) {
      for (const key of ['qps', 'p50', 'p95', 'p99', 'errors']) set(key, 'warming up');
      return;
    }
    const worst = run.latency_worst_worker ?? {};
    set('qps', run.ops ? num(run.ops.current_per_sec, 1) : '–', run.ops ? `${num(run.ops.total)} queries measured` : '');
    set('p50', ms(run.latency?.p50), run.latency ? `avg ${ms(run.latency.avg)}` : '');
    set('p95', ms(run.latency?.p95), worst.p95 !== undefined ? `worst worker ${ms(worst.p95)}` : '');
    set('p99', ms(run.latency?.p99), worst.p99 !== undefined ? `worst worker ${ms(worst.p99)}` : '');
    set('errors', run.errors ? pct(run.errors.rate) : '–', run.errors ? `${num(run.errors.count)} errors` : '');
  }

  updateWorkers(workers, elapsed) {
    for (const worker of workers) {
      let entry = this.workers.get(worker.worker_id);
      if (!entry) {
        entry = this.addWorker(worker.worker_id);
        this.workers.set(worker.worker_id, entry);
      }
      entry.data = worker;
      // A worker reports 0 QPS until it measures, so its chart starts with the measurement.
      if (worker.phase === 'MEASUREMENT') entry.history.push([elapsed, worker.metrics.qps, worker.metrics.p95_latency_ms]);
      if (entry.history.length > WORKER_HISTORY) entry.history.shift();
      const health = worker.health ?? 'UNKNOWN';
      entry.cell.dataset.health = health;
      entry.cell.className = `worker health-${health.toLowerCase()}`;
      replace(entry.cell,
        h('span', { class: 'worker-id' }, worker.worker_id),
        h('span', { class: 'worker-health' }, health),
        h('span', { class: 'small' }, `${worker.status} · ${worker.phase === 'WARMUP' ? 'warming up' : `${num(worker.metrics.qps, 0)} QPS`}`));
      if (entry.detail) this.fillDetail(entry);
    }
  }

  addWorker(workerId) {
    const cell = h('button', { type: 'button', class: 'worker', 'data-testid': 'worker-cell', 'data-worker-id': workerId, 'aria-expanded': 'false' });
    const entry = { cell, history: [], detail: null, chart: null, data: null };
    cell.addEventListener('click', () => this.toggleWorker(entry));
    const sorted = [...this.workers.keys(), workerId].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const next = this.workers.get(sorted[sorted.indexOf(workerId) + 1]);
    this.el.grid.insertBefore(cell, next ? next.cell : null);
    return entry;
  }

  toggleWorker(entry) {
    if (entry.detail) {
      entry.chart.destroy();
      entry.detail.remove();
      entry.detail = entry.chart = null;
      entry.cell.setAttribute('aria-expanded', 'false');
      return;
    }
    const chartBox = h('div', { class: 'chart small-chart' });
    entry.detail = h('div', { class: 'worker-detail', 'data-testid': 'worker-detail' }, h('div', { class: 'detail-facts' }), chartBox);
    entry.cell.after(entry.detail);
    entry.cell.setAttribute('aria-expanded', 'true');
    entry.chart = lineChart(chartBox, { series: [{ label: 'QPS' }], unit: 'QPS', height: 140 });
    this.fillDetail(entry);
  }

  fillDetail(entry) {
    const worker = entry.data;
    const metrics = worker.metrics;
    replace(entry.detail.firstChild, facts([
      ['Status', `${worker.status} · ${worker.phase ?? '–'}`],
      ['Health', `${worker.health} (last heartbeat ${worker.last_heartbeat_ago_s ?? '–'} s ago)`],
      ['QPS', num(metrics.qps, 1)],
      ['p95', ms(metrics.p95_latency_ms)],
      ['Errors', num(metrics.error_count)],
      ['Connections', `${num(metrics.active_connections)} / ${num(metrics.target_connections)}`],
      ['CPU', metrics.cpu_percent === null ? '–' : `${num(metrics.cpu_percent, 1)} %`],
      ['Memory', metrics.memory_percent === null ? '–' : `${num(metrics.memory_percent, 1)} %`],
    ]));
    entry.chart.set(entry.history.map(([x]) => x), [entry.history.map(([, qps]) => qps)]);
  }

  updatePanel(panel, title, data) {
    panel.hidden = !data;
    if (!data) return;
    const label = (key) => key.replaceAll('_', ' ');
    const show = (value) => (typeof value === 'number' ? num(value, Number.isInteger(value) ? 0 : 2) : String(value ?? '–'));
    replace(panel, h('h2', {}, title), facts(Object.entries(data).filter(([, value]) => typeof value !== 'object' || value === null)
      .map(([key, value]) => [label(key), show(value)])));
  }

  async command(action) {
    const button = action === 'start' ? this.el.start : this.el.stop;
    button.disabled = true;
    try {
      const run = await post(`/api/runs/${encodeURIComponent(this.runId)}/${action}`);
      this.showHeader(run.status, run.phase, null, run.status_reason);
      notify(action === 'start' ? 'Start requested: the run turns RUNNING once every worker has registered.' : 'Stop requested: workers drain their in-flight queries.');
      if (!this.socket && !this.ended) this.connect();
    } catch (error) {
      notify(`${action === 'start' ? 'Start' : 'Stop'} failed: ${error.message}`, 'error');
      button.disabled = false;
    }
  }

  finish(status, reason) {
    if (this.ended) return;
    this.ended = true;
    this.socket?.close();
    this.el.live.hidden = true;
    // An ended run's phase is that of its last step (PROCESSING, COOLDOWN),
    // which reads as if it were still going; the final status replaces it.
    this.el.phase.hidden = true;
    this.el.start.hidden = true;
    this.el.stop.hidden = true;
    this.el.final.hidden = false;
    this.el.final.className = `final final-${status.toLowerCase()}`;
    replace(this.el.final,
      h('span', { class: 'final-status', 'data-testid': 'run-final-status' }, status),
      reason ? h('span', { class: 'final-reason' }, reason) : null);
    this.closeResults = renderResults(this.el.results, this.runId);
    this.later(() => this.pollLogs(false), 1000);
  }

  /**
   * Fetches the log lines written since the last fetch, and keeps polling
   * while the run is active. Fetches run one after another, so that two
   * never read the same offset.
   */
  pollLogs(repeat = true) {
    this.logChain = this.logChain.then(() => this.fetchLogs()).then(() => {
      if (repeat && !this.ended) this.later(() => this.pollLogs(), LOG_POLL_MS);
    });
  }

  async fetchLogs() {
    if (this.closed) return;
    try {
      const path = `/api/tests/${encodeURIComponent(this.runId)}/logs`;
      this.appendLogs(await getAll(path, 'logs', { offset: this.logOffset }, 500));
    } catch (error) {
      this.el.logs.title = `Logs could not be read: ${error.message}`;
    }
  }

  appendLogs(rows) {
    if (!rows.length) return;
    this.logOffset += rows.length;
    const panel = this.el.logs;
    const atBottom = panel.scrollTop + panel.clientHeight >= panel.scrollHeight - 4;
    for (const row of rows) {
      const stamp = new Date(row.timestamp).toLocaleTimeString('en-GB');
      panel.append(h('li', { class: `log-${String(row.level).toLowerCase()}` },
        h('time', { datetime: row.timestamp }, stamp), ' ',
        h('span', { class: 'log-level' }, row.level), ' ',
        h('span', { class: 'log-source' }, row.worker_id ?? 'orchestrator'), ' ',
        row.message));
    }
    while (panel.children.length > MAX_LOG_LINES) panel.firstChild.remove();
    if (atBottom) panel.scrollTop = panel.scrollHeight;
  }

  later(callback, delay) {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) callback();
    }, delay);
    this.timers.add(timer);
  }

  close() {
    this.closed = true;
    this.timers.forEach(clearTimeout);
    this.socket?.close();
    this.charts.forEach((chart) => chart.destroy());
    this.workers.forEach((entry) => entry.chart?.destroy());
    this.closeResults?.();
  }
}

