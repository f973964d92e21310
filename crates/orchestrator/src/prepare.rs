//! Everything that happens before a run exists: resolving a template and
//! its overrides into a scenario, sizing the worker fleet, the fail-fast
//! checks (store schema, template, target reachable, table present, SQL
//! accepted by the target), and sampling the key pool. A run that fails any
//! of these is never written.

use std::path::Path;

use serde_json::json;
use unibench_model::scenario::{AutoOr, LoadMode, ScenarioConfig, Template, Timings};
use unibench_model::target::{auto_capacity, workers_needed, CapacityInputs};
use unibench_model::template_check::{check_template, ParamSpec};
use unibench_model::UNIBENCH_VERSION;
use unibench_store::{new_id, Store, ValuePoolRow};
use unibench_target::{expand_table, quote_table, TargetConfig, TargetConnection};

use crate::error::OrchestratorError;

/// Values sampled from the key column for `key` parameters.
const KEY_POOL_SIZE: usize = 10_000;

/// Settings a user may override when starting a template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub workers: Option<u32>,
    pub connections: Option<u32>,
    pub warmup_seconds: Option<f64>,
    pub duration_seconds: Option<f64>,
}

impl Overrides {
    /// Applies the overrides to a copy of the template.
    pub fn apply(&self, template: &Template) -> Template {
        let mut template = template.clone();
        if let Some(workers) = self.workers {
            template.scaling.worker_count = AutoOr::Fixed(workers);
        }
        if let Some(connections) = self.connections {
            template.workload.concurrent_connections = connections;
        }
        if let Some(warmup) = self.warmup_seconds {
            template.workload.warmup_seconds = warmup;
        }
        if let Some(duration) = self.duration_seconds {
            template.workload.duration_seconds = duration;
        }
        template
    }
}

/// Per-connection figures behind the automatic worker capacity.
const CONNECTIONS_PER_CORE: u32 = 64;
const MEMORY_PER_CONNECTION_GB: f64 = 0.004;
const MAX_CONNECTIONS_PER_WORKER: u32 = 256;

/// Returns the number of workers of a run: the fixed count when set,
/// otherwise `ceil(total / per_worker_capacity)`.
pub fn worker_count(template: &Template) -> u32 {
    if let AutoOr::Fixed(count) = template.scaling.worker_count {
        return count.max(1);
    }
    let capacity = match template.scaling.per_worker_connections {
        AutoOr::Fixed(capacity) => capacity.max(1),
        AutoOr::Auto => auto_capacity(host_capacity_inputs()),
    };
    let total = match template.workload.load_mode {
        LoadMode::Concurrency => template.workload.concurrent_connections,
        // QPS and find-max runs start small and grow.
        LoadMode::Qps => template.workload.min_connections.unwrap_or(1),
        LoadMode::FindMaxConcurrency => template.find_max.unwrap_or_default().start_connections,
    };
    workers_needed(total, capacity)
}

fn host_capacity_inputs() -> CapacityInputs {
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let memory_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(4.0, |kilobytes| kilobytes / 1024.0 / 1024.0);
    CapacityInputs {
        cores,
        connections_per_core: CONNECTIONS_PER_CORE,
        memory_gb,
        memory_per_connection_gb: MEMORY_PER_CONNECTION_GB,
        max_per_worker: MAX_CONNECTIONS_PER_WORKER,
    }
}

/// Builds the scenario stored in `RUN_STATUS.SCENARIO_CONFIG`.
pub fn scenario(template: Template, template_id: Option<String>, timings: Timings) -> ScenarioConfig {
    ScenarioConfig { unibench_version: UNIBENCH_VERSION.to_owned(), template_id, template, timings }
}

/// Runs the fail-fast checks a template must pass before a run exists.
pub async fn check_before_run(
    store: &Store,
    template: &Template,
    connections_file: Option<&Path>,
) -> Result<TargetConfig, OrchestratorError> {
    store.require_schema().await.map_err(OrchestratorError::Store)?;
    check_template(template)
        .map_err(|problems| OrchestratorError::InvalidTemplate { problems: problems.to_string() })?;

    let target_error = |field: &str, reason: String| OrchestratorError::Target {
        template: template.name.clone(),
        field: field.to_owned(),
        reason,
    };
    let config = TargetConfig::resolve(&template.target, connections_file)
        .map_err(|error| target_error("target.connection", error.to_string()))?;
    unibench_target::check_reachable(&config)
        .await
        .map_err(|error| target_error("target.connection", error.to_string()))?;
    let exists = unibench_target::table_exists(&config, &template.target.table)
        .await
        .map_err(|error| target_error("target.table", error.to_string()))?;
    if !exists {
        return Err(target_error("target.table", format!("table `{}` not found", template.target.table)));
    }
    check_statements(template, &config).await?;
    Ok(config)
}

/// Prepares each operation's SQL on the target, one by one, so that a
/// syntax error or an unknown column names its operation. Preparing runs
/// nothing.
async fn check_statements(template: &Template, config: &TargetConfig) -> Result<(), OrchestratorError> {
    let quoted =
        quote_table(template.target.kind, &template.target.table).map_err(|error| OrchestratorError::Target {
            template: template.name.clone(),
            field: "target.table".to_owned(),
            reason: error.to_string(),
        })?;
    let mut connection = TargetConnection::open(config).await.map_err(|error| OrchestratorError::Target {
        template: template.name.clone(),
        field: "target.connection".to_owned(),
        reason: error.to_string(),
    })?;
    for (index, operation) in template.workload.operations.iter().enumerate() {
        let sql = expand_table(&operation.sql, &quoted);
        if let Err(error) = connection.prepare(&[sql]).await {
            connection.close().await;
            return Err(OrchestratorError::InvalidTemplate {
                problems: format!(
                    "template \"{}\": workload.operations[{index}].sql: the target rejected it: {error}",
                    template.name
                ),
            });
        }
    }
    connection.close().await;
    Ok(())
}

/// Returns whether any operation binds `key` or `new_key` parameters,
/// which need the key column's sampled values and bounds.
pub fn uses_key_pool(template: &Template) -> bool {
    uses_param(template, |spec| matches!(spec, ParamSpec::Key | ParamSpec::NewKey))
}

fn uses_param(template: &Template, matches: impl Fn(&ParamSpec) -> bool) -> bool {
    template
        .workload
        .operations
        .iter()
        .flat_map(|operation| &operation.params)
        .any(|spec| spec.parse::<ParamSpec>().is_ok_and(|spec| matches(&spec)))
}

/// Samples the key column and stores it as the template's `KEY` pool.
pub async fn sample_key_pool(
    store: &Store,
    template: &Template,
    template_id: &str,
    config: &TargetConfig,
) -> Result<usize, OrchestratorError> {
    let key_column = template.target.key_column.as_deref().ok_or_else(|| OrchestratorError::Target {
        template: template.name.clone(),
        field: "target.key_column".to_owned(),
        reason: "operations use `key` parameters, so the template must name the key column".to_owned(),
    })?;
    let sample = unibench_target::sample_keys(config, &template.target.table, key_column, KEY_POOL_SIZE)
        .await
        .map_err(|error| OrchestratorError::Target {
            template: template.name.clone(),
            field: "target.key_column".to_owned(),
            reason: error.to_string(),
        })?;
    // `new_key` alone needs no rows. On an empty table its keys start at 1,
    // so the pools of earlier runs are cleared.
    if sample.values.is_empty() && !uses_param(template, |spec| *spec == ParamSpec::Key) {
        store.replace_value_pools(template_id, &[]).await.map_err(OrchestratorError::Store)?;
        return Ok(0);
    }
    if sample.values.is_empty() {
        return Err(OrchestratorError::Target {
            template: template.name.clone(),
            field: "target.table".to_owned(),
            reason: format!("table `{}` has no rows to sample keys from", template.target.table),
        });
    }
    let mut rows: Vec<ValuePoolRow> = sample
        .values
        .iter()
        .zip(0..)
        .map(|(value, seq)| ValuePoolRow {
            pool_id: new_id(),
            template_id: template_id.to_owned(),
            pool_kind: "KEY".to_owned(),
            column_name: Some(key_column.to_owned()),
            seq,
            value: value.clone(),
            created_at: None,
        })
        .collect();
    rows.push(ValuePoolRow {
        pool_id: new_id(),
        template_id: template_id.to_owned(),
        pool_kind: "RANGE".to_owned(),
        column_name: Some(key_column.to_owned()),
        seq: 0,
        value: json!({"min": sample.min, "max": sample.max}),
        created_at: None,
    });
    store.replace_value_pools(template_id, &rows).await.map_err(OrchestratorError::Store)?;
    Ok(sample.values.len())
}
