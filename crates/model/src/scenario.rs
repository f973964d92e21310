//! Templates and the scenario a run executes.
//!
//! A template names a target table and a workload; it is what users write
//! (as YAML) and what `TEST_TEMPLATES.CONFIG` stores (as JSON). A scenario
//! is a template resolved for one run, plus the run's timings and the
//! version of the orchestrator that created it; it is stored in
//! `RUN_STATUS.SCENARIO_CONFIG`. Neither ever holds a secret: targets refer
//! to named connections.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::status::text_enum;

text_enum! {
    /// Database product a target is.
    TargetKind, "target kind" {
        Postgres => "postgres",
        Snowflake => "snowflake",
        Sqlite => "sqlite",
    }
}

text_enum! {
    /// Kind of the target table (`TEST_RESULTS.TABLE_TYPE`).
    TableType, "table type" {
        Standard => "STANDARD",
        Hybrid => "HYBRID",
        Interactive => "INTERACTIVE",
        Postgres => "POSTGRES",
        Sqlite => "SQLITE",
    }
}

text_enum! {
    /// Kind of query an operation runs (`QUERY_EXECUTIONS.QUERY_KIND`).
    QueryKind, "query kind" {
        PointLookup => "POINT_LOOKUP",
        RangeScan => "RANGE_SCAN",
        Insert => "INSERT",
        Update => "UPDATE",
        Delete => "DELETE",
        Custom => "CUSTOM",
    }
}

impl QueryKind {
    /// Returns whether the query changes data. Reads and writes are counted
    /// apart.
    pub fn is_write(self) -> bool {
        matches!(self, QueryKind::Insert | QueryKind::Update | QueryKind::Delete)
    }
}

text_enum! {
    /// How the run decides how much load to generate.
    LoadMode, "load mode" {
        Concurrency => "CONCURRENCY",
        Qps => "QPS",
        FindMaxConcurrency => "FIND_MAX_CONCURRENCY",
    }
}

text_enum! {
    /// Distribution of the values `key` parameters pick from the key pool.
    KeyDistribution, "key distribution" {
        Uniform => "uniform",
        Zipfian => "zipfian",
        Hotspot => "hotspot",
    }
}

/// Policy for which executed queries are written to `QUERY_EXECUTIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum QueryLogPolicy {
    /// Every query.
    #[default]
    All,
    /// Each query independently with this probability (0 to 1).
    Sample(f64),
    /// Failed queries only.
    Errors,
    /// None.
    Off,
}

impl fmt::Display for QueryLogPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryLogPolicy::All => f.write_str("all"),
            QueryLogPolicy::Sample(fraction) => write!(f, "sample:{fraction}"),
            QueryLogPolicy::Errors => f.write_str("errors"),
            QueryLogPolicy::Off => f.write_str("off"),
        }
    }
}

impl FromStr for QueryLogPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("invalid query_log `{text}`: expected all, errors, off or sample:<fraction between 0 and 1>");
        match text {
            "all" => Ok(QueryLogPolicy::All),
            "errors" => Ok(QueryLogPolicy::Errors),
            "off" => Ok(QueryLogPolicy::Off),
            _ => {
                let fraction: f64 = text.strip_prefix("sample:").ok_or_else(invalid)?.parse().map_err(|_| invalid())?;
                if (0.0..=1.0).contains(&fraction) {
                    Ok(QueryLogPolicy::Sample(fraction))
                } else {
                    Err(invalid())
                }
            }
        }
    }
}

impl Serialize for QueryLogPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QueryLogPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Target table of a template and the connection that reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub kind: TargetKind,
    /// Name of a connection in `connections.toml`; without one, the
    /// connection comes from the environment alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_type: Option<TableType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_column: Option<String>,
}

/// One kind of query in the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub kind: QueryKind,
    pub weight_pct: f64,
    /// SQL with `{table}` for the quoted target table and `$1`, `$2`, ...
    /// for parameters.
    pub sql: String,
    /// One generator per placeholder, in placeholder order.
    #[serde(default)]
    pub params: Vec<String>,
}

/// Load to generate and its duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    #[serde(default = "default_load_mode")]
    pub load_mode: LoadMode,
    #[serde(default = "default_connections")]
    pub concurrent_connections: u32,
    #[serde(default)]
    pub warmup_seconds: f64,
    #[serde(default = "default_duration")]
    pub duration_seconds: f64,
    pub operations: Vec<Operation>,
    #[serde(default = "default_distribution")]
    pub key_distribution: KeyDistribution,
    #[serde(default)]
    pub query_log: QueryLogPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_qps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_connections: Option<u32>,
}

fn default_load_mode() -> LoadMode {
    LoadMode::Concurrency
}

fn default_connections() -> u32 {
    8
}

fn default_duration() -> f64 {
    60.0
}

fn default_distribution() -> KeyDistribution {
    KeyDistribution::Uniform
}

/// A value that is either a number or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum AutoOr {
    #[default]
    Auto,
    Fixed(u32),
}

impl Serialize for AutoOr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AutoOr::Auto => serializer.serialize_str("auto"),
            AutoOr::Fixed(value) => serializer.serialize_u32(*value),
        }
    }
}

impl<'de> Deserialize<'de> for AutoOr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(value) => Ok(AutoOr::Fixed(value)),
            Raw::Text(text) if text == "auto" => Ok(AutoOr::Auto),
            Raw::Text(text) => {
                Err(serde::de::Error::custom(format!("invalid value `{text}`: expected a whole number or `auto`")))
            }
        }
    }
}

/// Spread of connections over workers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    #[serde(default)]
    pub per_worker_connections: AutoOr,
    #[serde(default)]
    pub worker_count: AutoOr,
}

/// Step settings of a find-max-concurrency run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FindMaxSettings {
    pub start_connections: u32,
    pub connections_increment: u32,
    pub step_duration_seconds: f64,
    pub qps_stability_pct: f64,
    pub latency_stability_pct: f64,
    pub max_error_rate_pct: f64,
}

impl Default for FindMaxSettings {
    fn default() -> Self {
        FindMaxSettings {
            start_connections: 5,
            connections_increment: 10,
            step_duration_seconds: 30.0,
            qps_stability_pct: 5.0,
            latency_stability_pct: 20.0,
            max_error_rate_pct: 1.0,
        }
    }
}

/// Host limits respected when adding workers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guardrails {
    pub max_cpu_percent: f64,
    pub max_memory_percent: f64,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails { max_cpu_percent: 85.0, max_memory_percent: 90.0 }
    }
}

/// A workload description as users write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub target: TargetSpec,
    pub workload: Workload,
    #[serde(default)]
    pub scaling: Scaling,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find_max: Option<FindMaxSettings>,
    #[serde(default)]
    pub guardrails: Guardrails,
}

/// Timings of the run's control plane, in seconds. The defaults are the
/// product's; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    pub heartbeat_seconds: f64,
    pub event_poll_seconds: f64,
    pub reconcile_seconds: f64,
    pub log_flush_seconds: f64,
    pub stale_after_seconds: f64,
    pub dead_after_seconds: f64,
    pub no_store_exit_seconds: f64,
    pub start_wait_seconds: f64,
    pub registration_seconds: f64,
    pub drain_seconds: f64,
    pub sigterm_after_drain_seconds: f64,
    pub orphan_after_seconds: f64,
    /// Latencies above this are recorded as this value and counted as
    /// clamped. At most one hour, the histograms' upper bound.
    pub latency_clamp_seconds: f64,
    /// A worker drains and exits when its active run's `UPDATED_AT` is
    /// older than this: the orchestrator stopped touching it.
    pub orchestrator_silence_seconds: f64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            heartbeat_seconds: 1.0,
            event_poll_seconds: 1.0,
            reconcile_seconds: 5.0,
            log_flush_seconds: 5.0,
            stale_after_seconds: 30.0,
            dead_after_seconds: 60.0,
            no_store_exit_seconds: 60.0,
            start_wait_seconds: 120.0,
            registration_seconds: 60.0,
            drain_seconds: 120.0,
            sigterm_after_drain_seconds: 10.0,
            orphan_after_seconds: 120.0,
            latency_clamp_seconds: 3600.0,
            orchestrator_silence_seconds: 60.0,
        }
    }
}

impl Timings {
    /// Converts a timing in seconds to a duration, treating negative or
    /// non-finite values as zero.
    pub fn duration(seconds: f64) -> Duration {
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
    }
}

/// The complete, resolved configuration of one run
/// (`RUN_STATUS.SCENARIO_CONFIG`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioConfig {
    /// Version of the orchestrator that created the run.
    pub unibench_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    pub template: Template,
    #[serde(default)]
    pub timings: Timings,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_json() -> serde_json::Value {
        serde_json::json!({
            "name": "orders point lookups",
            "target": {"kind": "postgres", "connection": "local-pg", "table": "public.orders",
                       "table_type": "POSTGRES", "key_column": "order_id"},
            "workload": {
                "concurrent_connections": 64,
                "warmup_seconds": 10,
                "duration_seconds": 60,
                "operations": [
                    {"kind": "POINT_LOOKUP", "weight_pct": 80,
                     "sql": "SELECT * FROM {table} WHERE order_id = $1", "params": ["key"]},
                    {"kind": "UPDATE", "weight_pct": 20,
                     "sql": "UPDATE {table} SET note = $1 WHERE order_id = $2",
                     "params": ["random_string(24)", "key"]}
                ],
                "key_distribution": "zipfian",
                "query_log": "sample:0.1"
            },
            "scaling": {"per_worker_connections": "auto", "worker_count": 4}
        })
    }

    #[test]
    fn template_reads_spec_example() {
        let template: Template = serde_json::from_value(template_json()).unwrap();
        assert_eq!(template.workload.load_mode, LoadMode::Concurrency);
        assert_eq!(template.workload.query_log, QueryLogPolicy::Sample(0.1));
        assert_eq!(template.workload.key_distribution, KeyDistribution::Zipfian);
        assert_eq!(template.scaling.worker_count, AutoOr::Fixed(4));
        assert_eq!(template.scaling.per_worker_connections, AutoOr::Auto);
        let again: Template = serde_json::from_value(serde_json::to_value(&template).unwrap()).unwrap();
        assert_eq!(again, template);
    }

    #[test]
    fn unknown_template_field_is_rejected() {
        let mut json = template_json();
        json["workload"]["durration_seconds"] = serde_json::json!(5);
        let error = serde_json::from_value::<Template>(json).unwrap_err();
        assert!(error.to_string().contains("durration_seconds"), "{error}");
    }

    #[test]
    fn query_log_policies_parse() {
        assert_eq!("all".parse(), Ok(QueryLogPolicy::All));
        assert_eq!("off".parse(), Ok(QueryLogPolicy::Off));
        assert_eq!("errors".parse(), Ok(QueryLogPolicy::Errors));
        assert_eq!("sample:0.01".parse(), Ok(QueryLogPolicy::Sample(0.01)));
        assert!("sample:2".parse::<QueryLogPolicy>().is_err());
        assert!("some".parse::<QueryLogPolicy>().is_err());
    }
}
