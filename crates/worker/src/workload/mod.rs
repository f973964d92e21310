//! The compiled workload a worker executes: for each query, which operation
//! to run and the values to bind to its placeholders.
//!
//! [`CompiledWorkload::compile`] checks the template, loads the key pool
//! from the template's value pools, computes the worker's shard of new
//! keys, and builds one generator per parameter. The result is immutable
//! apart from the atomic new-key counter, so one `Arc<CompiledWorkload>`
//! serves every connection task of a worker. Each connection passes its
//! own random number generator (any `rand::Rng`, such as `SmallRng`), so
//! draws never contend.

pub mod generator;
pub mod key_pool;
pub mod new_key;
pub mod picker;
pub mod zipfian;

use std::sync::Arc;

use rand::Rng;
use serde_json::Value;
use unibench_model::scenario::{QueryKind, Template};
use unibench_model::template_check::{check_template, InvalidTemplate, ParamSpec, TemplateProblem};
use unibench_store::ValuePoolRow;
use unibench_target::ParamValue;

pub use generator::{GenerateError, ParamGenerator};
pub use key_pool::{InvalidPoolValue, KeyPool};
pub use new_key::{KeyShard, NewKeySequence, ShardError, KEY_SPAN_PER_WORKER};
pub use picker::OperationPicker;

use key_pool::{json_to_param, KEY_POOL_KIND, RANGE_POOL_KIND};

/// One operation of the mix, ready to execute.
#[derive(Debug, Clone)]
pub struct CompiledOperation {
    pub kind: QueryKind,
    /// The template's SQL, with `{table}` still unexpanded.
    pub sql: String,
    /// One generator per placeholder: `generators[0]` binds `$1`.
    pub generators: Vec<ParamGenerator>,
}

/// The operations of a template with their generators and weights.
#[derive(Debug)]
pub struct CompiledWorkload {
    operations: Vec<CompiledOperation>,
    picker: OperationPicker,
    keys: Arc<KeyPool>,
    new_keys: Arc<NewKeySequence>,
}

/// Error raised when a workload cannot be compiled. Every variant names the
/// template, and the per-operation variants also name the field path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    InvalidTemplate(#[from] InvalidTemplate),
    #[error(
        "template \"{template}\": workload.operations[{operation}].params[{param}]: `key` in the {kind} operation needs existing keys, but the KEY value pool is empty. Keys are sampled from the table when the template is saved or a run is prepared, so check that the table has rows and prepare the run again"
    )]
    EmptyKeyPool { template: String, operation: usize, param: usize, kind: QueryKind },
    #[error("template \"{template}\": value pools: {source}")]
    InvalidPoolValue { template: String, source: InvalidPoolValue },
    #[error(
        "template \"{template}\": workload.operations[{operation}].params[{param}]: `new_key` needs integer keys, but the KEY value pool holds {found}"
    )]
    NonIntegerKeys { template: String, operation: usize, param: usize, found: String },
    #[error("template \"{template}\": new_key: {source}")]
    KeyShard { template: String, source: ShardError },
}

/// Error raised while building a query's parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {operation}, parameter {param}: {source}")]
pub struct WorkloadError {
    pub operation: usize,
    /// Index in the operation's `params`: 0 binds `$1`.
    pub param: usize,
    pub source: GenerateError,
}

impl CompiledWorkload {
    /// Compiles `template` for worker `worker_group_id` of
    /// `worker_group_count`.
    ///
    /// `pools` are the template's `TEMPLATE_VALUE_POOLS` rows. `KEY` rows,
    /// in `seq` order, are the keys that `key` draws. New keys start one
    /// above the largest integer among the `KEY` rows and the key column's
    /// `RANGE` rows (see [`new_key_base`]), or at 1 when the pools hold no
    /// key.
    pub fn compile(
        template: &Template,
        pools: &[ValuePoolRow],
        worker_group_id: u32,
        worker_group_count: u32,
    ) -> Result<Self, CompileError> {
        check_template(template)?;
        let name = || template.name.clone();

        let key_pool = KeyPool::from_rows(pools, template.workload.key_distribution)
            .map_err(|source| CompileError::InvalidPoolValue { template: name(), source })?;
        let specs = parse_specs(template)?;
        check_key_sources(template, &specs, &key_pool)?;

        let keys = Arc::new(key_pool);
        let new_keys = Arc::new(new_key_sequence(template, &specs, pools, worker_group_id, worker_group_count)?);
        let operations = compile_operations(template, &specs, &keys, &new_keys);

        let weights: Vec<f64> = template.workload.operations.iter().map(|operation| operation.weight_pct).collect();
        // The template check above accepted these weights, so this fails
        // only if the picker and the check disagree.
        let picker = OperationPicker::new(&weights)
            .map_err(|error| template_problem(template, "workload.operations[*].weight_pct", error.to_string()))?;

        Ok(CompiledWorkload { operations, picker, keys, new_keys })
    }

    /// Returns the operations, in template order.
    pub fn operations(&self) -> &[CompiledOperation] {
        &self.operations
    }

    /// Returns the pool that `key` parameters draw from.
    pub fn key_pool(&self) -> &KeyPool {
        &self.keys
    }

    /// Returns this worker's range of new keys.
    pub fn key_shard(&self) -> KeyShard {
        self.new_keys.shard()
    }

    /// Picks the next operation and generates its parameters.
    ///
    /// Never fails: once `new_key` has used every key of the worker's
    /// shard, it starts again at the shard's first key (logging a warning
    /// once), and the target rejects the repeated keys as errors. Use
    /// [`CompiledWorkload::try_next`] to stop at that point instead.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> (usize, Vec<ParamValue>) {
        let index = self.picker.pick_with(rng);
        let generators = &self.operations[index].generators;
        let params = generators.iter().map(|generator| generator.generate(rng)).collect();
        (index, params)
    }

    /// Picks the next operation and generates its parameters, failing once
    /// `new_key` has used every key of the worker's shard.
    pub fn try_next<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<(usize, Vec<ParamValue>), WorkloadError> {
        let mut params = Vec::new();
        let index = self.try_next_into(rng, &mut params)?;
        Ok((index, params))
    }

    /// Does what [`CompiledWorkload::try_next`] does, but writes the
    /// parameters into `params`, replacing what it held, so a connection
    /// can reuse one vector.
    pub fn try_next_into<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        params: &mut Vec<ParamValue>,
    ) -> Result<usize, WorkloadError> {
        let index = self.picker.pick_with(rng);
        let operation = &self.operations[index];

        params.clear();
        params.reserve(operation.generators.len());
        for (param, generator) in operation.generators.iter().enumerate() {
            let value =
                generator.try_generate(rng).map_err(|source| WorkloadError { operation: index, param, source })?;
            params.push(value);
        }
        Ok(index)
    }
}

/// Parses every operation's parameter specs. `check_template` has already
/// parsed them, so an error here means the two disagree. Such an error is
/// still reported as a template problem.
fn parse_specs(template: &Template) -> Result<Vec<Vec<ParamSpec>>, CompileError> {
    let mut problems = Vec::new();
    let mut specs = Vec::with_capacity(template.workload.operations.len());
    for (operation_index, operation) in template.workload.operations.iter().enumerate() {
        let mut parsed = Vec::with_capacity(operation.params.len());
        for (param_index, text) in operation.params.iter().enumerate() {
            match text.parse::<ParamSpec>() {
                Ok(spec) => parsed.push(spec),
                Err(error) => problems.push(TemplateProblem {
                    template: template.name.clone(),
                    path: format!("workload.operations[{operation_index}].params[{param_index}]"),
                    message: error.to_string(),
                }),
            }
        }
        specs.push(parsed);
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(CompileError::InvalidTemplate(InvalidTemplate { problems }))
    }
}

fn template_problem(template: &Template, path: &str, message: String) -> CompileError {
    let problem = TemplateProblem { template: template.name.clone(), path: path.to_owned(), message };
    CompileError::InvalidTemplate(InvalidTemplate { problems: vec![problem] })
}

/// Positions of every parameter with spec `wanted`, as (operation, param).
fn positions_of<'a>(specs: &'a [Vec<ParamSpec>], wanted: &'a ParamSpec) -> impl Iterator<Item = (usize, usize)> + 'a {
    specs.iter().enumerate().flat_map(move |(operation, params)| {
        params.iter().enumerate().filter(move |(_, spec)| *spec == wanted).map(move |(param, _)| (operation, param))
    })
}

fn check_key_sources(template: &Template, specs: &[Vec<ParamSpec>], keys: &KeyPool) -> Result<(), CompileError> {
    let first_key = positions_of(specs, &ParamSpec::Key).next();
    if let (Some((operation, param)), true) = (first_key, keys.is_empty()) {
        return Err(CompileError::EmptyKeyPool {
            template: template.name.clone(),
            operation,
            param,
            kind: template.workload.operations[operation].kind,
        });
    }

    let first_new_key = positions_of(specs, &ParamSpec::NewKey).next();
    let non_integer = keys.values().iter().find(|value| !matches!(value, ParamValue::Int(_)));
    if let (Some((operation, param)), Some(value)) = (first_new_key, non_integer) {
        return Err(CompileError::NonIntegerKeys {
            template: template.name.clone(),
            operation,
            param,
            found: describe_param(value).to_owned(),
        });
    }
    Ok(())
}

fn describe_param(value: &ParamValue) -> &'static str {
    match value {
        ParamValue::Null => "null",
        ParamValue::Int(_) => "an integer",
        ParamValue::Float(_) => "a float",
        ParamValue::Text(_) => "text",
        ParamValue::Bool(_) => "a boolean",
        ParamValue::Timestamp(_) => "a timestamp",
    }
}

/// Builds the worker's new-key sequence. Without a `new_key` parameter
/// the sequence is empty, so pools of non-integer keys compile.
fn new_key_sequence(
    template: &Template,
    specs: &[Vec<ParamSpec>],
    pools: &[ValuePoolRow],
    worker_group_id: u32,
    worker_group_count: u32,
) -> Result<NewKeySequence, CompileError> {
    if positions_of(specs, &ParamSpec::NewKey).next().is_none() {
        return Ok(NewKeySequence::new(KeyShard { start: 0, end: 0 }));
    }
    let base = new_key_base(pools, template.target.key_column.as_deref());
    let shard = KeyShard::for_worker(base, worker_group_id, worker_group_count)
        .map_err(|source| CompileError::KeyShard { template: template.name.clone(), source })?;
    Ok(NewKeySequence::new(shard))
}

/// Returns the first key of the new-key space: one above the largest
/// integer key the pools record, or 1 when they record none.
///
/// Every `KEY` row counts. A `RANGE` row counts when it has no column name
/// or belongs to the key column, which is `key_column` when given and
/// otherwise the column of the `KEY` rows. A `RANGE` value may be an
/// integer or an array or object of integers (such as
/// `{"min": 1, "max": 900}`). `RANGE` rows matter because the `KEY` rows
/// are a bounded sample that may miss the largest key.
pub fn new_key_base(pools: &[ValuePoolRow], key_column: Option<&str>) -> i64 {
    let key_rows = pools.iter().filter(|row| row.pool_kind == KEY_POOL_KIND);
    let sampled_column = key_rows.clone().find_map(|row| row.column_name.as_deref());
    let column = key_column.or(sampled_column);
    let range_rows = pools.iter().filter(|row| {
        row.pool_kind == RANGE_POOL_KIND && (row.column_name.is_none() || row.column_name.as_deref() == column)
    });

    let key_max = key_rows.filter_map(|row| integer(&row.value)).max();
    let range_max = range_rows.flat_map(|row| range_integers(&row.value)).max();
    match key_max.max(range_max) {
        Some(max) => max.saturating_add(1),
        None => 1,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match json_to_param(value) {
        Some(ParamValue::Int(number)) => Some(number),
        _ => None,
    }
}

fn range_integers(value: &Value) -> Vec<i64> {
    match value {
        Value::Array(items) => items.iter().filter_map(integer).collect(),
        Value::Object(fields) => fields.values().filter_map(integer).collect(),
        _ => integer(value).into_iter().collect(),
    }
}

fn compile_operations(
    template: &Template,
    specs: &[Vec<ParamSpec>],
    keys: &Arc<KeyPool>,
    new_keys: &Arc<NewKeySequence>,
) -> Vec<CompiledOperation> {
    template
        .workload
        .operations
        .iter()
        .zip(specs)
        .map(|(operation, specs)| CompiledOperation {
            kind: operation.kind,
            sql: operation.sql.clone(),
            generators: specs.iter().map(|spec| ParamGenerator::from_spec(spec, keys, new_keys)).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
