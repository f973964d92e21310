//! Rows of every store table, one struct per table, with the column names
//! of the product contract in snake case.
//!
//! Timestamps that the store assigns (`CREATED_AT`, `UPDATED_AT`,
//! `LAST_HEARTBEAT`) are `Option`s. Writers leave them `None` and the store
//! sets them from its own clock, so readers always get `Some`. Counters are
//! `i64` because every backend stores them as signed 64-bit integers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use unibench_model::event::EventType;
use unibench_model::scenario::QueryKind;
use unibench_model::{RunPhase, RunStatus, WorkerStatus};

/// Longest `WORKER_HEARTBEATS.LAST_ERROR` kept, in characters.
pub const LAST_ERROR_MAX_CHARS: usize = 1000;

/// `RUN_STATUS`: one row per parent run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStatusRow {
    pub run_id: String,
    /// Always equal to `run_id`.
    pub test_id: String,
    pub template_id: Option<String>,
    pub test_name: String,
    pub scenario_config: Value,
    pub status: RunStatus,
    pub phase: RunPhase,
    pub status_reason: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub warmup_end_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub total_workers_expected: i64,
    pub workers_registered: i64,
    pub workers_active: i64,
    pub workers_completed: i64,
    pub total_ops: i64,
    pub error_count: i64,
    pub current_qps: Option<f64>,
    /// Worker id to `{"target_connections": n, "target_qps": q}`.
    pub worker_targets: Value,
    /// Next control-event sequence id; only event appends change it.
    pub next_sequence_id: i64,
    pub find_max_state: Option<Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl RunStatusRow {
    /// Creates a `PREPARED`/`PREPARING` run with empty counters.
    pub fn prepared(run_id: &str, test_name: &str, scenario_config: Value) -> Self {
        RunStatusRow {
            run_id: run_id.to_owned(),
            test_id: run_id.to_owned(),
            template_id: None,
            test_name: test_name.to_owned(),
            scenario_config,
            status: RunStatus::Prepared,
            phase: RunPhase::Preparing,
            status_reason: None,
            start_time: None,
            warmup_end_time: None,
            end_time: None,
            total_workers_expected: 0,
            workers_registered: 0,
            workers_active: 0,
            workers_completed: 0,
            total_ops: 0,
            error_count: 0,
            current_qps: None,
            worker_targets: Value::Object(Default::default()),
            next_sequence_id: 1,
            find_max_state: None,
            created_at: None,
            updated_at: None,
        }
    }
}

/// A partial update of a `RUN_STATUS` row: only the fields that are `Some`
/// are written. `UPDATED_AT` is always set to the store's clock, so an empty
/// update is the orchestrator's liveness touch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStatusUpdate {
    /// Apply the update only while the run has one of these statuses
    /// (empty: always). Lets status transitions be compare-and-set.
    pub only_if_status: Vec<RunStatus>,
    pub status: Option<RunStatus>,
    pub phase: Option<RunPhase>,
    pub status_reason: Option<Option<String>>,
    pub start_time: Option<Option<DateTime<Utc>>>,
    pub warmup_end_time: Option<Option<DateTime<Utc>>>,
    pub end_time: Option<Option<DateTime<Utc>>>,
    pub total_workers_expected: Option<i64>,
    pub workers_registered: Option<i64>,
    pub workers_active: Option<i64>,
    pub workers_completed: Option<i64>,
    pub total_ops: Option<i64>,
    pub error_count: Option<i64>,
    pub current_qps: Option<Option<f64>>,
    pub worker_targets: Option<Value>,
    pub find_max_state: Option<Option<Value>>,
}

/// Filter and page of a run listing, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub template_id: Option<String>,
    /// Case-insensitive substring of `TEST_NAME`.
    pub name_contains: Option<String>,
    pub page: Page,
}

/// A window over a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

impl Default for Page {
    fn default() -> Self {
        Page { limit: 100, offset: 0 }
    }
}

/// `RUN_CONTROL_EVENTS`: one command on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlEventRow {
    pub event_id: String,
    pub run_id: String,
    pub event_type: EventType,
    pub event_data: Value,
    pub sequence_id: i64,
    pub created_at: Option<DateTime<Utc>>,
}

/// An event to append; the store assigns its id and sequence id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewControlEvent {
    pub event_type: EventType,
    pub event_data: Value,
}

impl From<&unibench_model::ControlEventPayload> for NewControlEvent {
    fn from(payload: &unibench_model::ControlEventPayload) -> Self {
        NewControlEvent { event_type: payload.event_type(), event_data: payload.to_json() }
    }
}

/// `WORKER_HEARTBEATS`: one row per worker, upserted every second.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatRow {
    pub run_id: String,
    pub worker_id: String,
    pub worker_group_id: i64,
    pub status: WorkerStatus,
    pub phase: Option<RunPhase>,
    /// Set from the store's clock on every upsert.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Counted by the worker, so that replaying an upsert changes nothing.
    pub heartbeat_count: i64,
    pub active_connections: i64,
    pub target_connections: i64,
    /// Cut to [`LAST_ERROR_MAX_CHARS`] characters on write.
    pub last_error: Option<String>,
    pub error_count: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Latency percentiles of one query kind, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KindLatency {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// `TEST_RESULTS`: the parent row of a run (`test_id == run_id`) or the
/// child row of one worker.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestResultRow {
    pub test_id: String,
    pub run_id: String,
    pub worker_id: Option<String>,
    pub worker_group_id: Option<i64>,
    pub template_id: Option<String>,
    pub test_name: String,
    pub table_name: Option<String>,
    pub table_type: Option<String>,
    pub warehouse: Option<String>,
    pub status: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub concurrent_connections: Option<i64>,
    pub test_config: Option<Value>,
    pub total_operations: i64,
    pub read_operations: i64,
    pub write_operations: i64,
    pub failed_operations: i64,
    pub qps: Option<f64>,
    pub error_rate: Option<f64>,
    pub avg_latency_ms: Option<f64>,
    pub min_latency_ms: Option<f64>,
    pub max_latency_ms: Option<f64>,
    pub p50_latency_ms: Option<f64>,
    pub p90_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
    pub p999_latency_ms: Option<f64>,
    /// `<KIND>_P50/P95/P99_LATENCY_MS`; kinds without entries are null.
    pub kind_latencies: BTreeMap<QueryKind, KindLatency>,
    pub find_max_result: Option<Value>,
    pub failure_reason: Option<String>,
    pub enrichment_status: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl TestResultRow {
    /// Returns whether this is a run's parent row rather than a worker's
    /// child row.
    pub fn is_parent(&self) -> bool {
        self.test_id == self.run_id
    }
}

/// `WORKER_METRICS_SNAPSHOTS`: one worker's metrics for one interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SnapshotRow {
    pub snapshot_id: String,
    pub run_id: String,
    pub test_id: String,
    pub worker_id: String,
    pub worker_group_id: i64,
    pub worker_group_count: i64,
    pub timestamp: DateTime<Utc>,
    pub elapsed_seconds: f64,
    pub phase: String,
    pub total_queries: i64,
    pub read_count: i64,
    pub write_count: i64,
    pub error_count: i64,
    pub qps: f64,
    pub p50_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
    pub avg_latency_ms: Option<f64>,
    pub min_latency_ms: Option<f64>,
    pub max_latency_ms: Option<f64>,
    pub active_connections: i64,
    pub target_connections: i64,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// The interval's latency histogram as base64 text
    /// ([`unibench_model::LatencyHistogram::to_base64`]).
    pub latency_histogram: Option<String>,
    pub custom_metrics: Option<Value>,
    pub created_at: Option<DateTime<Utc>>,
}

/// Filter and page of a snapshot listing, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotFilter {
    pub test_id: Option<String>,
    pub worker_id: Option<String>,
    pub phase: Option<RunPhase>,
    pub page: Page,
}

/// `QUERY_EXECUTIONS`: one executed (or sampled) query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionRow {
    pub execution_id: String,
    pub run_id: String,
    pub test_id: String,
    pub worker_id: String,
    pub query_kind: String,
    pub query_id: Option<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub app_elapsed_ms: f64,
    pub success: bool,
    pub error: Option<String>,
    pub rows_affected: Option<i64>,
    pub connection_id: Option<i64>,
    pub warmup: bool,
    pub sf_total_elapsed_ms: Option<f64>,
    pub sf_execution_ms: Option<f64>,
    pub sf_compilation_ms: Option<f64>,
    pub sf_queued_overload_ms: Option<f64>,
    pub sf_queued_provisioning_ms: Option<f64>,
    pub sf_tx_blocked_ms: Option<f64>,
    pub app_overhead_ms: Option<f64>,
    pub created_at: Option<DateTime<Utc>>,
}

/// Filter and page of an execution listing or count, in start-time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    pub test_id: Option<String>,
    pub warmup: Option<bool>,
    pub page: Page,
}

/// `TEST_LOGS`: one log line of a worker or the orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub log_id: String,
    pub run_id: String,
    pub test_id: String,
    /// `None` for the orchestrator.
    pub worker_id: Option<String>,
    pub level: String,
    pub message: String,
    pub details: Option<Value>,
    pub timestamp: DateTime<Utc>,
    pub created_at: Option<DateTime<Utc>>,
}

/// Filter and page of a log listing, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    pub test_id: Option<String>,
    pub worker_id: Option<String>,
    pub level: Option<String>,
    pub page: Page,
}

/// `WAREHOUSE_POLL_SNAPSHOTS`: what the controller saw of the target's
/// compute at one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct WarehousePollRow {
    pub snapshot_id: String,
    pub run_id: String,
    pub timestamp: DateTime<Utc>,
    pub elapsed_seconds: f64,
    pub warehouse_name: String,
    pub started_clusters: Option<i64>,
    pub running: Option<i64>,
    pub queued: Option<i64>,
    pub min_cluster_count: Option<i64>,
    pub max_cluster_count: Option<i64>,
    pub scaling_policy: Option<String>,
    pub raw_result: Option<Value>,
    pub created_at: Option<DateTime<Utc>>,
}

/// `FIND_MAX_STEP_HISTORY`: one step of a find-max run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FindMaxStepRow {
    pub step_id: String,
    pub run_id: String,
    pub step_number: i64,
    pub total_target_connections: i64,
    pub step_start_time: Option<DateTime<Utc>>,
    pub step_end_time: Option<DateTime<Utc>>,
    pub step_duration_seconds: Option<f64>,
    pub total_queries: i64,
    pub qps: Option<f64>,
    pub p50_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
    pub error_count: i64,
    pub error_rate: Option<f64>,
    pub qps_vs_prior_pct: Option<f64>,
    pub p95_vs_baseline_pct: Option<f64>,
    pub queue_detected: bool,
    pub outcome: String,
    pub stop_reason: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

/// `TEST_TEMPLATES`: a saved template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRow {
    pub template_id: String,
    pub template_name: String,
    pub description: Option<String>,
    pub config: Value,
    pub tags: Option<Value>,
    pub created_by: Option<String>,
    pub usage_count: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// `TEMPLATE_VALUE_POOLS`: one sampled value of a template's pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuePoolRow {
    pub pool_id: String,
    pub template_id: String,
    /// `KEY`, `RANGE`, `ROW` or `COLUMN`.
    pub pool_kind: String,
    pub column_name: Option<String>,
    pub seq: i64,
    pub value: Value,
    pub created_at: Option<DateTime<Utc>>,
}

/// Builds the rows of events that were given sequence ids from `first`
/// on. `created_at` stays `None`: the store sets it when it writes them.
pub fn number_events(run_id: &str, events: &[NewControlEvent], first: i64) -> Vec<ControlEventRow> {
    events
        .iter()
        .zip(first..)
        .map(|(event, sequence_id)| ControlEventRow {
            event_id: new_id(),
            run_id: run_id.to_owned(),
            event_type: event.event_type,
            event_data: event.event_data.clone(),
            sequence_id,
            created_at: None,
        })
        .collect()
}

/// Creates a unique id for a row: a UUIDv7, whose leading timestamp makes
/// ids of rows written together sort together, so that inserts append to
/// primary key indexes instead of landing at random pages.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Cuts `text` to at most `max_chars` characters on a character boundary.
pub fn truncate_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}
