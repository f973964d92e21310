//! Aggregation of worker results into run results.
//!
//! Live (every tick): the latest snapshot of each worker that is in
//! measurement and not dead. Counts and QPS are sums; percentiles come from
//! merging the workers' interval histograms, so they are exact to histogram
//! precision rather than averages of percentiles. The worst worker's P95
//! and P99 are carried too, as a conservative saturation signal.
//!
//! Final: totals are the sums of the child `TEST_RESULTS` rows; percentiles
//! come from the sum of every interval histogram that workers wrote after
//! the warmup, dead workers included.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use unibench_model::scenario::QueryKind;
use unibench_model::status::HealthThresholds;
use unibench_model::{LatencyHistogram, RunPhase, WorkerHealth, WorkerStatus};
use unibench_store::{HeartbeatRow, KindLatency, SnapshotRow, TestResultRow};

/// Key of the per-kind interval histograms in a snapshot's
/// `CUSTOM_METRICS`.
pub const KIND_HISTOGRAMS_KEY: &str = "kind_histograms";

/// One worker's heartbeat, health and latest snapshot at a tick.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub heartbeat: HeartbeatRow,
    pub health: WorkerHealth,
    pub heartbeat_age: Duration,
    pub latest: Option<SnapshotRow>,
}

impl WorkerView {
    pub fn new(
        heartbeat: HeartbeatRow,
        latest: Option<SnapshotRow>,
        now: chrono::DateTime<chrono::Utc>,
        thresholds: HealthThresholds,
    ) -> Self {
        let age = heartbeat.last_heartbeat.map(|at| (now - at).to_std().unwrap_or_default()).unwrap_or(Duration::MAX);
        // A worker that finished on purpose is not dead, however old its
        // last heartbeat.
        let health = if heartbeat.status == WorkerStatus::Completed {
            WorkerHealth::Healthy
        } else {
            WorkerHealth::from_heartbeat_age(age, thresholds)
        };
        WorkerView { heartbeat, health, heartbeat_age: age, latest }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub avg: Option<f64>,
}

impl Latency {
    pub fn of(histogram: &LatencyHistogram) -> Self {
        Latency {
            p50: histogram.percentile_ms(50.0),
            p95: histogram.percentile_ms(95.0),
            p99: histogram.percentile_ms(99.0),
            avg: histogram.mean_ms(),
        }
    }
}

/// The run-wide figures of one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveAggregate {
    /// Whether any worker has reached measurement.
    pub measuring: bool,
    pub total_ops: i64,
    pub qps: f64,
    pub reads: i64,
    pub writes: i64,
    pub errors: i64,
    pub latency: Latency,
    pub worst_p95: Option<f64>,
    pub worst_p99: Option<f64>,
    pub active_connections: i64,
    pub target_connections: i64,
    pub workers_healthy: usize,
    pub workers_stale: usize,
    pub workers_dead: usize,
}

fn counts(phase: &str) -> bool {
    !matches!(phase, "PREPARING" | "WARMUP")
}

/// Aggregates the latest snapshots of live workers.
pub fn live_aggregate(workers: &[WorkerView]) -> LiveAggregate {
    let mut aggregate = LiveAggregate::default();
    let mut merged = LatencyHistogram::new();
    for worker in workers {
        match worker.health {
            WorkerHealth::Healthy => aggregate.workers_healthy += 1,
            WorkerHealth::Stale => aggregate.workers_stale += 1,
            WorkerHealth::Dead => {
                aggregate.workers_dead += 1;
                continue;
            }
        }
        aggregate.active_connections += worker.heartbeat.active_connections;
        aggregate.target_connections += worker.heartbeat.target_connections;
        let Some(snapshot) = worker.latest.as_ref().filter(|snapshot| counts(&snapshot.phase)) else { continue };
        aggregate.measuring = true;
        aggregate.total_ops += snapshot.total_queries;
        aggregate.reads += snapshot.read_count;
        aggregate.writes += snapshot.write_count;
        aggregate.errors += snapshot.error_count;
        aggregate.qps += snapshot.qps;
        aggregate.worst_p95 = max_option(aggregate.worst_p95, snapshot.p95_latency_ms);
        aggregate.worst_p99 = max_option(aggregate.worst_p99, snapshot.p99_latency_ms);
        if let Some(histogram) = decode(snapshot.latency_histogram.as_deref(), &snapshot.worker_id) {
            merged.merge(&histogram);
        }
    }
    aggregate.latency = Latency::of(&merged);
    aggregate
}

fn max_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn decode(text: Option<&str>, worker_id: &str) -> Option<LatencyHistogram> {
    match LatencyHistogram::from_base64(text?) {
        Ok(histogram) => Some(histogram),
        Err(error) => {
            tracing::warn!(%error, worker_id, "skipped a snapshot histogram that does not decode");
            None
        }
    }
}

/// The merged measurement histograms of a run: overall and per kind.
#[derive(Debug, Clone, Default)]
pub struct MergedHistograms {
    pub overall: LatencyHistogram,
    pub per_kind: BTreeMap<QueryKind, LatencyHistogram>,
}

/// Merges every interval histogram written after the warmup.
pub fn merge_measurement(snapshots: &[SnapshotRow]) -> MergedHistograms {
    let mut merged = MergedHistograms::default();
    for snapshot in snapshots.iter().filter(|snapshot| counts(&snapshot.phase)) {
        if let Some(histogram) = decode(snapshot.latency_histogram.as_deref(), &snapshot.worker_id) {
            merged.overall.merge(&histogram);
        }
        let Some(kinds) = snapshot.custom_metrics.as_ref().and_then(|custom| custom.get(KIND_HISTOGRAMS_KEY)) else {
            continue;
        };
        let Some(kinds) = kinds.as_object() else { continue };
        for (name, text) in kinds {
            let (Ok(kind), Some(text)) = (name.parse::<QueryKind>(), text.as_str()) else { continue };
            if let Some(histogram) = decode(Some(text), &snapshot.worker_id) {
                merged.per_kind.entry(kind).or_default().merge(&histogram);
            }
        }
    }
    merged
}

/// Returns the seconds from the first worker's start of counting to the last
/// worker's end, from the child rows. A finished worker's `END_TIME` is when
/// its last counted query ended and its `DURATION_SECONDS` is how long it
/// counted. Returns `None` when a worker that counted queries lacks either,
/// for example one that was killed. Workers on other hosts read other
/// clocks, so clock skew between hosts lengthens or shortens the span.
pub fn measured_span(children: &[TestResultRow]) -> Option<f64> {
    let mut first_start: Option<DateTime<Utc>> = None;
    let mut last_end: Option<DateTime<Utc>> = None;
    for child in children.iter().filter(|child| child.total_operations > 0) {
        let end = child.end_time?;
        let seconds = child.duration_seconds.filter(|seconds| seconds.is_finite() && *seconds >= 0.0)?;
        let counted = chrono::TimeDelta::microseconds((seconds * 1e6).round() as i64);
        let start = end.checked_sub_signed(counted)?;
        first_start = Some(first_start.map_or(start, |first| first.min(start)));
        last_end = Some(last_end.map_or(end, |last| last.max(end)));
    }
    let span = (last_end? - first_start?).num_microseconds()? as f64 / 1e6;
    (span > 0.0).then_some(span)
}

/// Fills the parent row's totals and latencies from the child rows and
/// the merged histograms. `measured_seconds` is how long the run counted
/// queries, used for the parent's QPS.
pub fn final_rollup(
    parent: &mut TestResultRow,
    children: &[TestResultRow],
    merged: &MergedHistograms,
    measured_seconds: Option<f64>,
) {
    parent.total_operations = children.iter().map(|child| child.total_operations).sum();
    parent.read_operations = children.iter().map(|child| child.read_operations).sum();
    parent.write_operations = children.iter().map(|child| child.write_operations).sum();
    parent.failed_operations = children.iter().map(|child| child.failed_operations).sum();
    parent.concurrent_connections = Some(children.iter().filter_map(|child| child.concurrent_connections).sum());
    let total = parent.total_operations as f64;
    parent.qps = match measured_seconds.filter(|seconds| *seconds > 0.0) {
        Some(seconds) => Some(total / seconds),
        None => Some(children.iter().filter_map(|child| child.qps).sum()),
    };
    parent.error_rate = (parent.total_operations > 0).then(|| parent.failed_operations as f64 / total);

    let histogram = &merged.overall;
    parent.avg_latency_ms = histogram.mean_ms();
    parent.min_latency_ms = histogram.min_ms();
    parent.max_latency_ms = histogram.max_ms();
    parent.p50_latency_ms = histogram.percentile_ms(50.0);
    parent.p90_latency_ms = histogram.percentile_ms(90.0);
    parent.p95_latency_ms = histogram.percentile_ms(95.0);
    parent.p99_latency_ms = histogram.percentile_ms(99.0);
    parent.p999_latency_ms = histogram.percentile_ms(99.9);
    parent.kind_latencies = merged
        .per_kind
        .iter()
        .map(|(kind, histogram)| {
            let latency = KindLatency {
                p50_ms: histogram.percentile_ms(50.0),
                p95_ms: histogram.percentile_ms(95.0),
                p99_ms: histogram.percentile_ms(99.0),
            };
            (*kind, latency)
        })
        .collect();
}

/// Fills the counts of a worker's result row from the worker's last
/// measured snapshot, for a worker that ended without writing its final
/// results. Snapshot counters are cumulative since the move to
/// MEASUREMENT, so the last one contains everything the worker reported.
/// Returns whether such a snapshot was found.
pub fn counts_from_last_snapshot(child: &mut TestResultRow, snapshots: &[SnapshotRow]) -> bool {
    let Some(worker_id) = child.worker_id.as_deref() else { return false };
    let last = snapshots
        .iter()
        .filter(|snapshot| snapshot.worker_id == worker_id && counts(&snapshot.phase))
        .max_by(|a, b| a.timestamp.cmp(&b.timestamp).then(a.total_queries.cmp(&b.total_queries)));
    let Some(last) = last else { return false };
    child.total_operations = last.total_queries;
    child.read_operations = last.read_count;
    child.write_operations = last.write_count;
    child.failed_operations = last.error_count;
    true
}

/// Returns the nearest rank (from 1) of `percentile` among `count`
/// values, or `None` when there are none. The exact percentile is the
/// value at that rank in ascending order; it cross-checks the merged
/// histograms against `QUERY_EXECUTIONS`.
pub fn nearest_rank(count: u64, percentile: f64) -> Option<u64> {
    if count == 0 {
        return None;
    }
    let rank = ((percentile / 100.0) * count as f64).ceil() as u64;
    Some(rank.clamp(1, count))
}

/// Returns whether two latencies agree within histogram precision (three
/// significant digits, plus one microsecond for rounding of small values).
pub fn agrees(histogram_ms: f64, exact_ms: f64) -> bool {
    (histogram_ms - exact_ms).abs() <= exact_ms.abs() * 0.002 + 0.001
}

/// Returns whether a phase counts toward results.
pub fn is_measured_phase(phase: RunPhase) -> bool {
    counts(phase.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(operations: i64, end: Option<&str>, seconds: Option<f64>) -> TestResultRow {
        TestResultRow {
            total_operations: operations,
            end_time: end.map(|text| text.parse().expect("an RFC 3339 time")),
            duration_seconds: seconds,
            ..Default::default()
        }
    }

    #[test]
    fn span_runs_from_first_start_to_last_end() {
        let children = [
            child(100, Some("2026-01-01T10:00:10Z"), Some(10.0)),
            child(90, Some("2026-01-01T10:00:10.5Z"), Some(9.0)),
        ];
        assert_eq!(measured_span(&children), Some(10.5));
    }

    #[test]
    fn span_skips_workers_without_queries() {
        let children = [child(100, Some("2026-01-01T10:00:10Z"), Some(4.0)), child(0, None, None)];
        assert_eq!(measured_span(&children), Some(4.0));
    }

    #[test]
    fn span_needs_every_counting_worker() {
        let killed =
            [child(100, Some("2026-01-01T10:00:10Z"), Some(4.0)), child(50, Some("2026-01-01T10:00:10Z"), None)];
        assert_eq!(measured_span(&killed), None);
        assert_eq!(measured_span(&[]), None);
    }

    fn snapshot(worker: &str, phase: &str, qps: f64, latencies: &[u64]) -> SnapshotRow {
        let mut histogram = LatencyHistogram::new();
        for micros in latencies {
            histogram.record_micros(*micros);
        }
        SnapshotRow {
            worker_id: worker.to_owned(),
            phase: phase.to_owned(),
            qps,
            total_queries: latencies.len() as i64,
            p95_latency_ms: histogram.percentile_ms(95.0),
            p99_latency_ms: histogram.percentile_ms(99.0),
            latency_histogram: Some(histogram.to_base64()),
            timestamp: Utc::now(),
            ..Default::default()
        }
    }

    fn view(worker: &str, health: WorkerHealth, latest: SnapshotRow) -> WorkerView {
        WorkerView {
            heartbeat: HeartbeatRow {
                run_id: "r".into(),
                worker_id: worker.into(),
                worker_group_id: 0,
                status: WorkerStatus::Running,
                phase: None,
                last_heartbeat: None,
                heartbeat_count: 1,
                active_connections: 4,
                target_connections: 4,
                last_error: None,
                error_count: 0,
                created_at: None,
                updated_at: None,
            },
            health,
            heartbeat_age: Duration::ZERO,
            latest: Some(latest),
        }
    }

    #[test]
    fn live_sums_and_merges_measuring_workers() {
        let workers = [
            view("worker-0", WorkerHealth::Healthy, snapshot("worker-0", "MEASUREMENT", 100.5, &[1000, 2000, 3000])),
            view("worker-1", WorkerHealth::Stale, snapshot("worker-1", "MEASUREMENT", 50.0, &[10_000])),
            view("worker-2", WorkerHealth::Dead, snapshot("worker-2", "MEASUREMENT", 999.0, &[1])),
            view("worker-3", WorkerHealth::Healthy, snapshot("worker-3", "WARMUP", 77.0, &[5])),
        ];
        let live = live_aggregate(&workers);
        assert!(live.measuring);
        assert_eq!(live.qps, 150.5, "dead and warming-up workers are left out");
        assert_eq!(live.total_ops, 4);
        assert_eq!(live.workers_healthy, 2);
        assert_eq!(live.workers_stale, 1);
        assert_eq!(live.workers_dead, 1);
        assert_eq!(live.active_connections, 12);
        let p99 = live.latency.p99.unwrap();
        assert!((p99 - 10.0).abs() < 0.02, "{p99}");
        assert_eq!(live.worst_p95, workers[1].latest.as_ref().unwrap().p95_latency_ms);
    }

    #[test]
    fn unfinished_worker_counts_from_last_snapshot() {
        let at = |seconds: i64, worker: &str, phase: &str, queries: i64| SnapshotRow {
            worker_id: worker.to_owned(),
            phase: phase.to_owned(),
            total_queries: queries,
            read_count: queries - 2,
            write_count: 2,
            error_count: 1,
            timestamp: chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap(),
            ..Default::default()
        };
        let snapshots = [
            at(1, "worker-0", "WARMUP", 900),
            at(2, "worker-0", "MEASUREMENT", 40),
            at(4, "worker-0", "MEASUREMENT", 120),
            at(3, "worker-0", "MEASUREMENT", 80),
            at(5, "worker-1", "MEASUREMENT", 999),
        ];
        let mut child = TestResultRow { worker_id: Some("worker-0".into()), ..Default::default() };
        assert!(counts_from_last_snapshot(&mut child, &snapshots));
        assert_eq!(child.total_operations, 120);
        assert_eq!(child.read_operations, 118);
        assert_eq!(child.write_operations, 2);
        assert_eq!(child.failed_operations, 1);

        let mut warming = TestResultRow { worker_id: Some("worker-0".into()), ..Default::default() };
        assert!(!counts_from_last_snapshot(&mut warming, &snapshots[..1]), "warmup snapshots do not count");
        assert_eq!(warming.total_operations, 0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(nearest_rank(100, 95.0), Some(95));
        assert_eq!(nearest_rank(100, 100.0), Some(100));
        assert_eq!(nearest_rank(7, 95.0), Some(7));
        assert_eq!(nearest_rank(3, 0.0), Some(1));
        assert_eq!(nearest_rank(0, 50.0), None);
        assert!(agrees(95.05, 95.0));
        assert!(!agrees(96.0, 95.0));
    }
}
