// Client-side template checks and workload presets. The controller runs
// the complete checks on save. These catch the common mistakes before a
// request and report them with the same field paths that the API uses.

/** Operation weights of each preset, in percent. */
export const PRESETS = {
  READ_ONLY: { POINT_LOOKUP: 90, RANGE_SCAN: 10 },
  WRITE_ONLY: { UPDATE: 70, INSERT: 30 },
  READ_HEAVY: { POINT_LOOKUP: 80, RANGE_SCAN: 10, UPDATE: 10 },
  WRITE_HEAVY: { POINT_LOOKUP: 20, UPDATE: 60, INSERT: 20 },
  MIXED: { POINT_LOOKUP: 50, RANGE_SCAN: 10, UPDATE: 30, INSERT: 10 },
};

/**
 * Default SQL of each operation kind on a table keyed by `key`. It touches
 * only the key column, so it runs on any table with a numeric key; the
 * update writes the key's own value back.
 */
function defaultSql(kind, key) {
  switch (kind) {
    case 'POINT_LOOKUP': return { sql: `SELECT * FROM {table} WHERE ${key} = $1`, params: ['key'] };
    case 'RANGE_SCAN': return { sql: `SELECT * FROM {table} WHERE ${key} BETWEEN $1 AND $1 + 100 LIMIT 100`, params: ['key'] };
    case 'UPDATE': return { sql: `UPDATE {table} SET ${key} = ${key} WHERE ${key} = $1`, params: ['key'] };
    case 'INSERT': return { sql: `INSERT INTO {table} (${key}) VALUES ($1)`, params: ['new_key'] };
    default: return { sql: '', params: [] };
  }
}

/** Returns the operations a preset fills in, with SQL on the key column. */
export function presetOperations(preset, key) {
  return Object.entries(PRESETS[preset]).map(([kind, weight]) => ({ kind, weight_pct: weight, ...defaultSql(kind, key) }));
}

/** Splits `random_int(1, 5), key` at commas outside brackets and quotes. */
export function splitParams(text) {
  const params = [];
  let depth = 0;
  let quoted = false;
  let current = '';
  for (const char of text) {
    if (char === "'") quoted = !quoted;
    else if (!quoted && char === '(') depth += 1;
    else if (!quoted && char === ')') depth = Math.max(0, depth - 1);
    if (char === ',' && depth === 0 && !quoted) {
      params.push(current.trim());
      current = '';
    } else {
      current += char;
    }
  }
  if (current.trim() || params.length) params.push(current.trim());
  return params;
}

/**
 * Returns the placeholder numbers (`$1` is 1) in `sql`, ignoring string
 * literals, quoted identifiers, dollar-quoted text and comments.
 */
export function placeholders(sql) {
  const code = sql
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/--[^\n]*/g, ' ')
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?\$\1\$/g, ' ')
    .replace(/'(?:[^']|'')*'/g, ' ')
    .replace(/"(?:[^"]|"")*"/g, ' ');
  const numbers = new Set([...code.matchAll(/(?<![A-Za-z0-9_$])\$(\d+)/g)].map((match) => Number(match[1])));
  return [...numbers].sort((a, b) => a - b);
}

const GENERATOR = /^(key|new_key|now|uuid)(\(\s*\))?$|^(random_int|random_float)(\(.*\))?$|^random_string\(\s*\d+\s*\)$|^const\(.+\)$/s;

const isWhole = (value) => Number.isInteger(value);
const isFiniteNumber = (value) => typeof value === 'number' && Number.isFinite(value);

/** Returns `[{field, message}]` for every problem found in `template`. */
export function checkTemplate(template) {
  const problems = [];
  const add = (field, message) => problems.push({ field, message });
  const workload = template.workload;

  if (!template.name) add('name', 'must not be empty');
  if (!template.target.table) add('target.table', 'must not be empty');
  if (!isWhole(workload.concurrent_connections) || workload.concurrent_connections < 1) {
    add('workload.concurrent_connections', 'must be a whole number of at least 1');
  }
  if (!isFiniteNumber(workload.duration_seconds) || workload.duration_seconds <= 0) add('workload.duration_seconds', 'must be greater than 0');
  if (!isFiniteNumber(workload.warmup_seconds) || workload.warmup_seconds < 0) add('workload.warmup_seconds', 'must be at least 0');
  checkQueryLog(workload.query_log, add);
  if (workload.load_mode === 'QPS' && !(workload.target_qps > 0)) add('workload.target_qps', 'is required in QPS mode and must be greater than 0');
  checkOperations(workload.operations, add);

  for (const name of ['worker_count', 'per_worker_connections']) {
    const value = template.scaling[name];
    if (value !== 'auto' && !(isWhole(value) && value >= 1)) add(`scaling.${name}`, 'must be a whole number of at least 1, or auto');
  }
  for (const name of ['max_cpu_percent', 'max_memory_percent']) {
    const value = template.guardrails[name];
    if (!(value > 0 && value <= 100)) add(`guardrails.${name}`, 'must be greater than 0 and at most 100');
  }
  for (const [name, value] of Object.entries(template.find_max ?? {})) {
    if (!isFiniteNumber(value) || value < 0) add(`find_max.${name}`, 'must be a number of at least 0');
  }
  return problems;
}

function checkQueryLog(policy, add) {
  if (['all', 'errors', 'off'].includes(policy)) return;
  const fraction = policy.startsWith('sample:') ? Number(policy.slice('sample:'.length)) : NaN;
  if (!(fraction >= 0 && fraction <= 1)) add('workload.query_log', 'must be all, errors, off or sample:FRACTION with a fraction from 0 to 1');
}

function checkOperations(operations, add) {
  if (!operations.length) {
    add('workload.operations', 'must contain at least one operation');
    return;
  }
  let weightsValid = true;
  operations.forEach((operation, index) => {
    const path = `workload.operations[${index}]`;
    if (!(operation.weight_pct > 0)) {
      add(`${path}.weight_pct`, 'must be greater than 0');
      weightsValid = false;
    }
    if (!operation.sql) {
      add(`${path}.sql`, 'must not be empty');
      return;
    }
    const used = placeholders(operation.sql);
    for (const number of used) {
      if (number === 0) add(`${path}.sql`, 'placeholder $0 is invalid: placeholders start at $1');
      else if (number > operation.params.length) add(`${path}.sql`, `placeholder $${number} has no parameter`);
    }
    operation.params.forEach((spec, paramIndex) => {
      if (!used.includes(paramIndex + 1)) add(`${path}.params`, `parameter ${paramIndex + 1} (${spec || 'empty'}) is unused: the SQL has no $${paramIndex + 1}`);
      else if (!GENERATOR.test(spec)) add(`${path}.params`, `unknown generator "${spec}"`);
    });
  });
  const sum = operations.reduce((total, operation) => total + (operation.weight_pct || 0), 0);
  if (weightsValid && Math.abs(sum - 100) > 0.001) {
    add('workload.operations[*].weight_pct', `weights sum to ${Number(sum.toFixed(3))}, expected 100`);
  }
}
