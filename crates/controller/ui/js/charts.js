// Line charts on uPlot (loaded as the global `uPlot` by index.html). The
// x axis is seconds. A series may have gaps (null), which the line spans.

export const COLORS = ['#2563eb', '#d97706', '#dc2626', '#059669', '#7c3aed'];

/** Maximum number of points a live chart keeps. Older ones scroll out. */
const MAX_POINTS = 3600;

/**
 * Draws a chart into `container` and returns `{push, set, destroy}`.
 * `series` is a list of `{label, color?}`, `unit` labels the y axis, and
 * `emptyText` shows over the chart while it has no points.
 */
export function lineChart(container, { series, height = 220, unit = '', xLabel = 'seconds', emptyText = 'No data yet' }) {
  const data = [[], ...series.map(() => [])];
  const width = () => Math.max(container.clientWidth, 260);
  const format = (value) => (value === null || value === undefined ? '–' : `${round(value)}${unit ? ` ${unit}` : ''}`);
  const options = {
    width: width(),
    height,
    scales: { x: { time: false } },
    axes: [
      { label: xLabel, labelSize: 20, stroke: '#475569' },
      { label: unit, labelSize: 20, size: 64, stroke: '#475569', grid: { stroke: '#e2e8f0' } },
    ],
    series: [
      { label: 'second', value: (_, value) => (value === null ? '–' : round(value)) },
      ...series.map((line, index) => ({
        label: line.label,
        stroke: line.color ?? COLORS[index % COLORS.length],
        width: 2,
        spanGaps: true,
        points: { show: false },
        value: (_, value) => format(value),
      })),
    ],
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
  };
  const plot = new window.uPlot(options, data, container);
  const empty = document.createElement('p');
  empty.className = 'chart-empty';
  empty.textContent = emptyText;
  container.append(empty);
  const refresh = () => {
    empty.hidden = data[0].length > 0;
    plot.setData(data);
  };
  const observer = new ResizeObserver(() => {
    if (container.clientWidth > 0) plot.setSize({ width: width(), height });
  });
  observer.observe(container);

  return {
    /** Appends one point per series at `x`. */
    push(x, values) {
      data[0].push(x);
      values.forEach((value, index) => data[index + 1].push(value ?? null));
      if (data[0].length > MAX_POINTS) data.forEach((column) => column.shift());
      refresh();
    },
    /** Replaces the data: `xs` and one array per series. */
    set(xs, columns) {
      data.splice(0, data.length, xs, ...columns);
      refresh();
    },
    destroy() {
      observer.disconnect();
      plot.destroy();
      empty.remove();
    },
  };
}

function round(value) {
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  return Number(value.toPrecision(3)).toString();
}

/**
 * Buckets rows into whole seconds: `xOf(row)` gives the second and
 * `valuesOf(rows)` reduces the rows of one second to one value per series.
 * Returns `[xs, columns]` for `set`.
 */
export function bucketBySecond(rows, xOf, valuesOf, seriesCount) {
  const buckets = new Map();
  for (const row of rows) {
    const second = Math.round(xOf(row));
    if (!Number.isFinite(second)) continue;
    if (!buckets.has(second)) buckets.set(second, []);
    buckets.get(second).push(row);
  }
  const xs = [...buckets.keys()].sort((a, b) => a - b);
  const columns = Array.from({ length: seriesCount }, () => []);
  for (const second of xs) {
    valuesOf(buckets.get(second)).forEach((value, index) => columns[index].push(value ?? null));
  }
  return [xs, columns];
}

/** Aligns several `[xs, values]` series on the union of their x values. */
export function alignSeries(list) {
  const xs = [...new Set(list.flatMap(([seriesXs]) => seriesXs))].sort((a, b) => a - b);
  const columns = list.map(([seriesXs, values]) => {
    const byX = new Map(seriesXs.map((x, index) => [x, values[index]]));
    return xs.map((x) => byX.get(x) ?? null);
  });
  return [xs, columns];
}
