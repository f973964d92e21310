//! The `RUN_UPDATE` message of the live stream: a full snapshot of one run
//! at one tick. It is built from the orchestrator's live status for runs
//! this process drives, and from the store for any other run and for
//! every run once it has ended.
//!
//! Run-wide numbers appear only once a worker measures: during warmup the
//! `ops`, `operations`, `latency`, `latency_worst_worker` and `errors`
//! blocks are null and `warming_up` is true. A worker's `metrics.qps` is
//! what it adds to the run's current rate (0 while it warms up or is
//! dead), and `run.ops.current_per_sec` is the sum of those values, so the
//! two always agree within one message.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use unibench_model::status::HealthThresholds;
use unibench_model::{RunPhase, RunStatus, WorkerHealth};
use unibench_orchestrator::rollup::{self, Latency, LiveAggregate, WorkerView};
use unibench_orchestrator::{LiveStatus, WorkerLive};
use unibench_store::{HeartbeatRow, RunStatusRow, SnapshotRow, WarehousePollRow};

/// Event name of every message on the stream.
pub const RUN_UPDATE: &str = "RUN_UPDATE";

/// Method of the live percentiles, named in every message.
const AGGREGATION_METHOD: &str = "merged_histogram";

#[derive(Debug, Clone, Serialize)]
pub struct RunUpdate {
    pub event: &'static str,
    pub data: RunUpdateData,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunUpdateData {
    pub run: RunBlock,
    pub workers: Vec<WorkerBlock>,
    /// The latest warehouse poll, for Snowflake targets that have one.
    pub warehouse: Option<WarehouseBlock>,
    /// `RUN_STATUS.FIND_MAX_STATE` as the find-max controller wrote it.
    pub find_max: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunBlock {
    pub run_id: String,
    pub test_id: String,
    pub status: RunStatus,
    pub phase: RunPhase,
    pub status_reason: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub elapsed_seconds: f64,
    pub worker_count: i64,
    pub workers_healthy: usize,
    pub warming_up: bool,
    pub ops: Option<Ops>,
    pub operations: Option<Operations>,
    pub latency: Option<Latency>,
    pub latency_worst_worker: Option<WorstLatency>,
    pub latency_aggregation_method: &'static str,
    pub errors: Option<Errors>,
    pub connections: Connections,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ops {
    pub total: i64,
    pub current_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Operations {
    pub reads: i64,
    pub writes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorstLatency {
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    pub count: i64,
    /// Errors per operation, from 0 to 1.
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub active: i64,
    pub target: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerBlock {
    pub worker_id: String,
    pub worker_group_id: i64,
    pub status: String,
    pub phase: Option<String>,
    pub health: WorkerHealth,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Whole seconds since the last heartbeat, on the store's clock.
    pub last_heartbeat_ago_s: Option<u64>,
    pub metrics: WorkerMetrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerMetrics {
    pub qps: f64,
    pub p95_latency_ms: Option<f64>,
    pub error_count: i64,
    pub active_connections: i64,
    pub target_connections: i64,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WarehouseBlock {
    pub name: String,
    pub started_clusters: Option<i64>,
    pub running: Option<i64>,
    pub queued: Option<i64>,
}

impl From<&WarehousePollRow> for WarehouseBlock {
    fn from(poll: &WarehousePollRow) -> Self {
        WarehouseBlock {
            name: poll.warehouse_name.clone(),
            started_clusters: poll.started_clusters,
            running: poll.running,
            queued: poll.queued,
        }
    }
}

/// Run-level facts that do not come from the aggregate.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub run_id: String,
    pub status: RunStatus,
    pub phase: RunPhase,
    pub status_reason: Option<String>,
    pub elapsed_seconds: f64,
    pub worker_count: i64,
}

/// One worker as the message shows it, and whether its latest snapshot
/// counts toward the run's live numbers.
#[derive(Debug, Clone)]
pub struct WorkerSample {
    pub live: WorkerLive,
    pub counted: bool,
}

/// The extra blocks of a message.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub warehouse: Option<WarehouseBlock>,
    pub find_max: Option<Value>,
}

/// Builds the message from its parts.
pub fn build(
    facts: RunFacts,
    aggregate: &LiveAggregate,
    workers: &[WorkerSample],
    extras: Extras,
    now: DateTime<Utc>,
) -> RunUpdate {
    let measuring = aggregate.measuring;
    let warming_up = !measuring
        && facts.status == RunStatus::Running
        && matches!(facts.phase, RunPhase::Warmup | RunPhase::Measurement);
    let workers: Vec<WorkerBlock> = workers.iter().map(worker_block).collect();
    // Summed in message order, so that a client adding up the workers'
    // values gets exactly this number.
    let current_per_sec = workers.iter().map(|worker| worker.metrics.qps).sum();
    let rate = if aggregate.total_ops > 0 { aggregate.errors as f64 / aggregate.total_ops as f64 } else { 0.0 };

    let run = RunBlock {
        test_id: facts.run_id.clone(),
        run_id: facts.run_id,
        status: facts.status,
        phase: facts.phase,
        status_reason: facts.status_reason,
        timestamp: now,
        elapsed_seconds: round_to(facts.elapsed_seconds, 3),
        worker_count: facts.worker_count,
        workers_healthy: aggregate.workers_healthy,
        warming_up,
        ops: measuring.then_some(Ops { total: aggregate.total_ops, current_per_sec }),
        operations: measuring.then_some(Operations { reads: aggregate.reads, writes: aggregate.writes }),
        latency: measuring.then_some(aggregate.latency),
        latency_worst_worker: measuring.then_some(WorstLatency { p95: aggregate.worst_p95, p99: aggregate.worst_p99 }),
        latency_aggregation_method: AGGREGATION_METHOD,
        errors: measuring.then_some(Errors { count: aggregate.errors, rate }),
        connections: Connections { active: aggregate.active_connections, target: aggregate.target_connections },
    };
    RunUpdate {
        event: RUN_UPDATE,
        data: RunUpdateData { run, workers, warehouse: extras.warehouse, find_max: extras.find_max },
    }
}

fn worker_block(sample: &WorkerSample) -> WorkerBlock {
    let live = &sample.live;
    WorkerBlock {
        worker_id: live.worker_id.clone(),
        worker_group_id: live.worker_group_id,
        status: live.status.clone(),
        phase: live.phase.clone(),
        health: live.health,
        last_heartbeat: live.last_heartbeat,
        last_heartbeat_ago_s: live.last_heartbeat.map(|_| live.last_heartbeat_ago_s.max(0.0) as u64),
        metrics: WorkerMetrics {
            qps: if sample.counted { live.qps } else { 0.0 },
            p95_latency_ms: if sample.counted { live.p95_latency_ms } else { None },
            error_count: live.error_count,
            active_connections: live.active_connections,
            target_connections: live.target_connections,
            cpu_percent: live.cpu_percent,
            memory_percent: live.memory_percent,
        },
    }
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// Builds the parts of a message from the orchestrator's live status of a
/// run this process drives.
pub fn from_live_status(status: &LiveStatus, status_reason: Option<String>) -> (RunFacts, Vec<WorkerSample>) {
    let facts = RunFacts {
        run_id: status.run_id.clone(),
        status: status.status,
        phase: status.phase,
        status_reason: status_reason.or_else(|| status.reason.clone()),
        elapsed_seconds: status.elapsed_seconds,
        worker_count: i64::from(status.workers_expected),
    };
    let workers =
        status.workers.iter().map(|live| WorkerSample { live: live.clone(), counted: live.counted }).collect();
    (facts, workers)
}

/// Store rows of one run at one moment.
#[derive(Debug, Clone)]
pub struct StoreSnapshot {
    pub run: RunStatusRow,
    pub now: DateTime<Utc>,
    pub heartbeats: Vec<HeartbeatRow>,
    pub latest: Vec<SnapshotRow>,
    pub thresholds: HealthThresholds,
}

/// Computes the parts of a message from the store, the way the
/// orchestrator's loop does: health on the store's clock, the latest
/// snapshot per worker, and the live aggregate over them.
pub fn from_store(snapshot: StoreSnapshot) -> (RunFacts, LiveAggregate, Vec<WorkerSample>) {
    let StoreSnapshot { run, now, heartbeats, latest, thresholds } = snapshot;
    let mut latest: HashMap<String, SnapshotRow> =
        latest.into_iter().map(|snapshot| (snapshot.worker_id.clone(), snapshot)).collect();
    let views: Vec<WorkerView> = heartbeats
        .into_iter()
        .map(|heartbeat| {
            let snapshot = latest.remove(&heartbeat.worker_id);
            WorkerView::new(heartbeat, snapshot, now, thresholds)
        })
        .collect();
    let aggregate = rollup::live_aggregate(&views);
    let workers = views.iter().map(worker_sample).collect();

    let end = if run.status.is_terminal() { run.end_time.unwrap_or(now) } else { now };
    let elapsed_seconds = run.start_time.map_or(0.0, |start| (end - start).num_milliseconds().max(0) as f64 / 1000.0);
    let facts = RunFacts {
        run_id: run.run_id.clone(),
        status: run.status,
        phase: run.phase,
        status_reason: run.status_reason.clone(),
        elapsed_seconds,
        worker_count: run.total_workers_expected,
    };
    (facts, aggregate, workers)
}

/// Builds the view of a worker that the orchestrator publishes, and
/// whether its latest snapshot counts.
fn worker_sample(view: &WorkerView) -> WorkerSample {
    let live = WorkerLive::from_view(view);
    WorkerSample { counted: live.counted, live }
}

#[cfg(test)]
mod tests {
    use super::*;
    use unibench_model::{LatencyHistogram, WorkerStatus};

    fn heartbeat(worker: &str, group: i64, seconds_ago: i64, now: DateTime<Utc>) -> HeartbeatRow {
        HeartbeatRow {
            run_id: "run-1".into(),
            worker_id: worker.into(),
            worker_group_id: group,
            status: WorkerStatus::Running,
            phase: Some(RunPhase::Measurement),
            last_heartbeat: Some(now - chrono::Duration::seconds(seconds_ago)),
            heartbeat_count: 10,
            active_connections: 2,
            target_connections: 2,
            last_error: None,
            error_count: 1,
            created_at: None,
            updated_at: None,
        }
    }

    fn snapshot(worker: &str, phase: &str, qps: f64) -> SnapshotRow {
        let mut histogram = LatencyHistogram::new();
        histogram.record_micros(2000);
        SnapshotRow {
            worker_id: worker.into(),
            phase: phase.into(),
            qps,
            total_queries: 100,
            read_count: 90,
            write_count: 10,
            error_count: 1,
            p95_latency_ms: Some(2.0),
            latency_histogram: Some(histogram.to_base64()),
            ..Default::default()
        }
    }

    fn store_snapshot(latest: Vec<SnapshotRow>, ages: &[i64]) -> StoreSnapshot {
        let now = Utc::now();
        let mut run = RunStatusRow::prepared("run-1", "t", Value::Null);
        run.status = RunStatus::Running;
        run.phase = RunPhase::Measurement;
        run.start_time = Some(now - chrono::Duration::seconds(10));
        run.total_workers_expected = ages.len() as i64;
        let heartbeats =
            ages.iter().enumerate().map(|(i, age)| heartbeat(&format!("worker-{i}"), i as i64, *age, now)).collect();
        StoreSnapshot { run, now, heartbeats, latest, thresholds: HealthThresholds::default() }
    }

    #[test]
    fn current_rate_is_the_workers_sum() {
        let snapshot = store_snapshot(
            vec![
                snapshot("worker-0", "MEASUREMENT", 10.25),
                snapshot("worker-1", "MEASUREMENT", 20.5),
                snapshot("worker-2", "MEASUREMENT", 99.0),
            ],
            &[1, 1, 120],
        );
        let (facts, aggregate, workers) = from_store(snapshot);
        let message = build(facts, &aggregate, &workers, Extras::default(), Utc::now());
        let run = &message.data.run;
        let ops = run.ops.as_ref().expect("measuring");
        let sum: f64 = message.data.workers.iter().map(|worker| worker.metrics.qps).sum();
        assert_eq!(ops.current_per_sec, sum);
        assert_eq!(ops.current_per_sec, 30.75, "the dead worker adds nothing");
        assert_eq!(message.data.workers[2].health, WorkerHealth::Dead);
        assert_eq!(run.workers_healthy, 2);
        assert_eq!(ops.total, 200);
        assert!(!run.warming_up);
        assert_eq!(run.elapsed_seconds, 10.0);
        let p50 = run.latency.and_then(|latency| latency.p50).expect("merged P50");
        assert!((p50 - 2.0).abs() < 0.01, "{p50}");
    }

    #[test]
    fn warmup_shows_no_numbers() {
        let mut snapshot = store_snapshot(vec![snapshot("worker-0", "WARMUP", 50.0)], &[0]);
        snapshot.run.phase = RunPhase::Warmup;
        let (facts, aggregate, workers) = from_store(snapshot);
        let message = build(facts, &aggregate, &workers, Extras::default(), Utc::now());
        let json = serde_json::to_value(&message).unwrap();
        let run = &json["data"]["run"];
        assert_eq!(run["warming_up"], true);
        assert!(run["latency"].is_null());
        assert!(run["ops"].is_null());
        assert!(run["errors"].is_null());
        assert_eq!(json["data"]["workers"][0]["metrics"]["qps"], 0.0);
        assert_eq!(json["event"], "RUN_UPDATE");
        assert_eq!(run["latency_aggregation_method"], "merged_histogram");
    }
}
