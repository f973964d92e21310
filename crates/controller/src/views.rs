//! JSON views of store rows as the API returns them: the column names of
//! the product contract in snake case. Latency histograms (base64 blobs
//! for merging) are left out; clients get the percentiles instead.

use serde_json::{json, Map, Value};
use unibench_orchestrator::rollup::KIND_HISTOGRAMS_KEY;
use unibench_store::{HeartbeatRow, LogRow, RunStatusRow, SnapshotRow, TemplateRow, TestResultRow, WarehousePollRow};

/// Renders a run's `RUN_STATUS` row. The scenario, which contains the
/// whole template, is included only when `with_scenario` is set. It never
/// contains a secret, because templates only name their connections.
pub fn run(row: &RunStatusRow, with_scenario: bool) -> Value {
    let mut view = json!({
        "run_id": row.run_id,
        "test_id": row.test_id,
        "template_id": row.template_id,
        "test_name": row.test_name,
        "status": row.status,
        "phase": row.phase,
        "status_reason": row.status_reason,
        "start_time": row.start_time,
        "warmup_end_time": row.warmup_end_time,
        "end_time": row.end_time,
        "total_workers_expected": row.total_workers_expected,
        "workers_registered": row.workers_registered,
        "workers_active": row.workers_active,
        "workers_completed": row.workers_completed,
        "total_ops": row.total_ops,
        "error_count": row.error_count,
        "current_qps": row.current_qps,
        "worker_targets": row.worker_targets,
        "find_max_state": row.find_max_state,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    });
    if with_scenario {
        if let Some(object) = view.as_object_mut() {
            object.insert("scenario_config".to_owned(), row.scenario_config.clone());
        }
    }
    view
}

/// Renders a `TEST_RESULTS` row, parent or child.
pub fn result(row: &TestResultRow) -> Value {
    let by_kind: Map<String, Value> = row
        .kind_latencies
        .iter()
        .map(|(kind, latency)| {
            let value = json!({"p50_ms": latency.p50_ms, "p95_ms": latency.p95_ms, "p99_ms": latency.p99_ms});
            (kind.as_str().to_owned(), value)
        })
        .collect();
    json!({
        "test_id": row.test_id,
        "run_id": row.run_id,
        "is_parent": row.is_parent(),
        "worker_id": row.worker_id,
        "worker_group_id": row.worker_group_id,
        "template_id": row.template_id,
        "test_name": row.test_name,
        "table_name": row.table_name,
        "table_type": row.table_type,
        "warehouse": row.warehouse,
        "status": row.status,
        "start_time": row.start_time,
        "end_time": row.end_time,
        "duration_seconds": row.duration_seconds,
        "concurrent_connections": row.concurrent_connections,
        "test_config": row.test_config,
        "total_operations": row.total_operations,
        "read_operations": row.read_operations,
        "write_operations": row.write_operations,
        "failed_operations": row.failed_operations,
        "qps": row.qps,
        "error_rate": row.error_rate,
        "latency": {
            "avg_ms": row.avg_latency_ms,
            "min_ms": row.min_latency_ms,
            "max_ms": row.max_latency_ms,
            "p50_ms": row.p50_latency_ms,
            "p90_ms": row.p90_latency_ms,
            "p95_ms": row.p95_latency_ms,
            "p99_ms": row.p99_latency_ms,
            "p999_ms": row.p999_latency_ms,
        },
        "latency_by_kind": by_kind,
        "find_max_result": row.find_max_result,
        "failure_reason": row.failure_reason,
        "enrichment_status": row.enrichment_status,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// Renders a `WORKER_HEARTBEATS` row.
pub fn heartbeat(row: &HeartbeatRow) -> Value {
    json!({
        "run_id": row.run_id,
        "worker_id": row.worker_id,
        "worker_group_id": row.worker_group_id,
        "status": row.status,
        "phase": row.phase,
        "last_heartbeat": row.last_heartbeat,
        "heartbeat_count": row.heartbeat_count,
        "active_connections": row.active_connections,
        "target_connections": row.target_connections,
        "last_error": row.last_error,
        "error_count": row.error_count,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// Renders a `WORKER_METRICS_SNAPSHOTS` row, without its histograms.
pub fn snapshot(row: &SnapshotRow) -> Value {
    let custom = row.custom_metrics.as_ref().map(|custom| match custom {
        Value::Object(object) => {
            let mut object = object.clone();
            object.remove(KIND_HISTOGRAMS_KEY);
            Value::Object(object)
        }
        other => other.clone(),
    });
    json!({
        "snapshot_id": row.snapshot_id,
        "run_id": row.run_id,
        "test_id": row.test_id,
        "worker_id": row.worker_id,
        "worker_group_id": row.worker_group_id,
        "worker_group_count": row.worker_group_count,
        "timestamp": row.timestamp,
        "elapsed_seconds": row.elapsed_seconds,
        "phase": row.phase,
        "total_queries": row.total_queries,
        "read_count": row.read_count,
        "write_count": row.write_count,
        "error_count": row.error_count,
        "qps": row.qps,
        "p50_latency_ms": row.p50_latency_ms,
        "p95_latency_ms": row.p95_latency_ms,
        "p99_latency_ms": row.p99_latency_ms,
        "avg_latency_ms": row.avg_latency_ms,
        "min_latency_ms": row.min_latency_ms,
        "max_latency_ms": row.max_latency_ms,
        "active_connections": row.active_connections,
        "target_connections": row.target_connections,
        "cpu_percent": row.cpu_percent,
        "memory_percent": row.memory_percent,
        "custom_metrics": custom,
    })
}

/// Renders a `TEST_LOGS` row.
pub fn log(row: &LogRow) -> Value {
    json!({
        "log_id": row.log_id,
        "run_id": row.run_id,
        "test_id": row.test_id,
        "worker_id": row.worker_id,
        "level": row.level,
        "message": row.message,
        "details": row.details,
        "timestamp": row.timestamp,
    })
}

/// Renders a `WAREHOUSE_POLL_SNAPSHOTS` row.
pub fn warehouse_poll(row: &WarehousePollRow) -> Value {
    json!({
        "snapshot_id": row.snapshot_id,
        "run_id": row.run_id,
        "timestamp": row.timestamp,
        "elapsed_seconds": row.elapsed_seconds,
        "warehouse_name": row.warehouse_name,
        "started_clusters": row.started_clusters,
        "running": row.running,
        "queued": row.queued,
        "min_cluster_count": row.min_cluster_count,
        "max_cluster_count": row.max_cluster_count,
        "scaling_policy": row.scaling_policy,
        "raw_result": row.raw_result,
    })
}

/// Renders a `TEST_TEMPLATES` row. Its `config` is the template itself.
pub fn template(row: &TemplateRow) -> Value {
    json!({
        "template_id": row.template_id,
        "name": row.template_name,
        "description": row.description,
        "tags": row.tags,
        "created_by": row.created_by,
        "usage_count": row.usage_count,
        "last_used_at": row.last_used_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "config": row.config,
    })
}
