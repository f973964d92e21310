//! The store contract: one suite, run unchanged against every backend.
//! SQLite tests use a fresh file each; PostgreSQL tests a fresh database
//! each on the server named by `UNIBENCH_TEST_PG_URL` (set by
//! `scripts/test.sh`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::json;
use unibench_model::event::{EventType, SetWorkerTargetEvent};
use unibench_model::scenario::QueryKind;
use unibench_model::{ControlEventPayload, EventScope, RunPhase, RunStatus, WorkerStatus};
use unibench_store::*;

mod common;
use common::TestStore;

/// A timestamp both backends keep exactly (microsecond precision).
fn at(seconds: i64) -> DateTime<Utc> {
    let base = DateTime::parse_from_rfc3339("2026-12-04T10:00:00.123456Z").unwrap().with_timezone(&Utc);
    base + Duration::seconds(seconds)
}

fn now_micros() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::microseconds(1)).unwrap()
}

async fn create_run(store: &Store, run_id: &str) -> RunStatusRow {
    let run = RunStatusRow::prepared(run_id, &format!("test {run_id}"), json!({"template": {"name": run_id}}));
    let parent = TestResultRow {
        test_id: run_id.to_owned(),
        run_id: run_id.to_owned(),
        test_name: run.test_name.clone(),
        status: "PREPARED".to_owned(),
        ..Default::default()
    };
    store.create_run(&run, &parent).await.unwrap();
    run
}

fn full_run(run_id: &str) -> RunStatusRow {
    RunStatusRow {
        run_id: run_id.to_owned(),
        test_id: run_id.to_owned(),
        template_id: Some("tpl-1".to_owned()),
        test_name: "orders point lookups".to_owned(),
        scenario_config: json!({"unibench_version": "0.1.0", "workload": {"operations": [{"kind": "POINT_LOOKUP", "weight_pct": 80.5}]}, "nested": {"a": [1, 2, null], "b": true}}),
        status: RunStatus::Running,
        phase: RunPhase::Measurement,
        status_reason: Some("ünïcode reason ✓".to_owned()),
        start_time: Some(at(0)),
        warmup_end_time: Some(at(10)),
        end_time: Some(at(70)),
        total_workers_expected: 3,
        workers_registered: 3,
        workers_active: 2,
        workers_completed: 1,
        total_ops: 9_000_000_001,
        error_count: 17,
        current_qps: Some(1234.5678),
        worker_targets: json!({"worker-0": {"target_connections": 4}, "worker-1": {"target_connections": 3, "target_qps": 100.5}}),
        next_sequence_id: 1,
        find_max_state: Some(json!({"current_step": 3, "status": "STEPPING"})),
        created_at: None,
        updated_at: None,
    }
}

fn without_stamps(mut run: RunStatusRow) -> RunStatusRow {
    run.created_at = None;
    run.updated_at = None;
    run
}

async fn run_status_round_trips(t: TestStore) {
    let run = full_run("run-rt");
    let parent = TestResultRow {
        test_id: "run-rt".to_owned(),
        run_id: "run-rt".to_owned(),
        test_name: "orders".to_owned(),
        status: "RUNNING".to_owned(),
        ..Default::default()
    };
    t.store.create_run(&run, &parent).await.unwrap();
    let read = t.store.get_run("run-rt").await.unwrap().expect("run exists");
    assert!(read.created_at.is_some());
    assert!(read.updated_at.is_some());
    assert_eq!(without_stamps(read), run);
    assert_eq!(t.store.get_run("no-such-run").await.unwrap(), None);
}

async fn run_update_is_partial_and_guarded(t: TestStore) {
    create_run(&t.store, "run-up").await;
    let update = RunStatusUpdate {
        status: Some(RunStatus::Running),
        phase: Some(RunPhase::Warmup),
        start_time: Some(Some(at(1))),
        workers_registered: Some(2),
        current_qps: Some(Some(10.5)),
        ..Default::default()
    };
    assert!(t.store.update_run("run-up", &update).await.unwrap());
    let read = t.store.get_run("run-up").await.unwrap().unwrap();
    assert_eq!(read.status, RunStatus::Running);
    assert_eq!(read.phase, RunPhase::Warmup);
    assert_eq!(read.start_time, Some(at(1)));
    assert_eq!(read.workers_registered, 2);
    assert_eq!(read.current_qps, Some(10.5));
    assert_eq!(read.test_name, "test run-up", "untouched columns keep their values");

    let guarded = RunStatusUpdate {
        only_if_status: vec![RunStatus::Prepared, RunStatus::Cancelling],
        status: Some(RunStatus::Failed),
        ..Default::default()
    };
    assert!(!t.store.update_run("run-up", &guarded).await.unwrap(), "guard must reject a RUNNING run");
    assert_eq!(t.store.get_run("run-up").await.unwrap().unwrap().status, RunStatus::Running);

    let clear =
        RunStatusUpdate { current_qps: Some(None), only_if_status: vec![RunStatus::Running], ..Default::default() };
    assert!(t.store.update_run("run-up", &clear).await.unwrap());
    assert_eq!(t.store.get_run("run-up").await.unwrap().unwrap().current_qps, None);
    assert!(!t.store.update_run("missing", &RunStatusUpdate::default()).await.unwrap());
}

async fn runs_list_newest_first_with_filters(t: TestStore) {
    for run_id in ["list-a", "list-b", "list-c"] {
        create_run(&t.store, run_id).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let update = RunStatusUpdate { status: Some(RunStatus::Completed), ..Default::default() };
    t.store.update_run("list-b", &update).await.unwrap();

    let all = t.store.list_runs(&RunFilter::default()).await.unwrap();
    let ids: Vec<_> = all.iter().map(|run| run.run_id.as_str()).collect();
    assert_eq!(ids, ["list-c", "list-b", "list-a"]);

    let completed =
        t.store.list_runs(&RunFilter { status: Some(RunStatus::Completed), ..Default::default() }).await.unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].run_id, "list-b");

    let by_name = RunFilter { name_contains: Some("T LIST-A".to_owned()), ..Default::default() };
    let named = t.store.list_runs(&by_name).await.unwrap();
    assert_eq!(named.len(), 1, "name filter is a case-insensitive substring");

    let paged =
        t.store.list_runs(&RunFilter { page: Page { limit: 1, offset: 1 }, ..Default::default() }).await.unwrap();
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].run_id, "list-b");

    let stale = t.store.list_stale_runs(RunStatus::Prepared, Utc::now() + Duration::seconds(5)).await.unwrap();
    assert_eq!(stale.len(), 2);
    let fresh = t.store.list_stale_runs(RunStatus::Prepared, Utc::now() - Duration::seconds(60)).await.unwrap();
    assert!(fresh.is_empty());
}

fn target_event(connections: u32) -> ControlEventPayload {
    ControlEventPayload::SetWorkerTarget(SetWorkerTargetEvent {
        scope: EventScope::Worker,
        worker_id: Some("worker-1".to_owned()),
        worker_group_id: Some(1),
        target_connections: connections,
        target_qps: Some(50.5),
        step_id: None,
        step_number: None,
        effective_at: Some(at(3)),
        ramp_seconds: Some(2.0),
        reason: Some("test".to_owned()),
    })
}

async fn events_come_back_in_order_and_page(t: TestStore) {
    create_run(&t.store, "run-ev").await;
    let mut appended = Vec::new();
    for batch in 0..5u32 {
        let events: Vec<NewControlEvent> =
            (0..50).map(|i| NewControlEvent::from(&target_event(batch * 50 + i))).collect();
        appended.extend(t.store.append_events("run-ev", &events, None).await.unwrap());
    }
    let sequence: Vec<i64> = appended.iter().map(|event| event.sequence_id).collect();
    assert_eq!(sequence, (1..=250).collect::<Vec<_>>());

    let mut seen = Vec::new();
    let mut last = 0;
    let mut pages = 0;
    loop {
        let page = t.store.read_events("run-ev", last, 100).await.unwrap();
        if page.is_empty() {
            break;
        }
        pages += 1;
        assert!(page.len() <= 100);
        last = page.last().unwrap().sequence_id;
        seen.extend(page);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    for (index, event) in seen.iter().enumerate() {
        assert_eq!(event.sequence_id, index as i64 + 1);
        assert_eq!(event.event_type, EventType::SetWorkerTarget);
        assert!(event.created_at.is_some());
        let payload = ControlEventPayload::from_json(event.event_type, &event.event_data).unwrap();
        assert_eq!(payload, target_event(index as u32));
        assert_eq!(event.event_id, appended[index].event_id);
    }
    assert!(t.store.read_events("run-ev", 250, 100).await.unwrap().is_empty());
    assert_eq!(t.store.read_events("run-ev", 249, 100).await.unwrap().len(), 1);
    assert_eq!(t.store.get_run("run-ev").await.unwrap().unwrap().next_sequence_id, 251);
}

async fn events_mirror_into_run_status(t: TestStore) {
    create_run(&t.store, "run-mirror").await;
    let mirror = RunStatusUpdate {
        worker_targets: Some(json!({"worker-1": {"target_connections": 16}})),
        phase: Some(RunPhase::Measurement),
        ..Default::default()
    };
    let events = [NewControlEvent::from(&target_event(16))];
    t.store.append_events("run-mirror", &events, Some(&mirror)).await.unwrap();
    let run = t.store.get_run("run-mirror").await.unwrap().unwrap();
    assert_eq!(run.worker_targets, json!({"worker-1": {"target_connections": 16}}));
    assert_eq!(run.phase, RunPhase::Measurement);
    assert_eq!(run.next_sequence_id, 2);

    let error = t.store.append_events("no-such-run", &events, None).await.unwrap_err();
    assert!(matches!(error, StoreError::RunNotFound { .. }), "{error}");
    assert!(t.store.read_events("no-such-run", 0, 100).await.unwrap().is_empty());
}

/// Eight emitters, each with its own store connection, append 500 events
/// each to one run at the same time.
async fn concurrent_emitters_get_gapless_sequence(t: TestStore) {
    create_run(&t.store, "run-conc").await;
    let mut tasks = Vec::new();
    for emitter in 0..8u32 {
        let store = Arc::new(t.connect_again().await);
        tasks.push(tokio::spawn(async move {
            let mut sequences = Vec::new();
            for i in 0..500u32 {
                let event = NewControlEvent::from(&target_event(emitter * 1000 + i));
                let written = store.append_events("run-conc", &[event], None).await.unwrap();
                sequences.push(written[0].sequence_id);
            }
            sequences
        }));
    }
    let mut returned = Vec::new();
    for task in tasks {
        let sequences = task.await.unwrap();
        assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]), "one emitter's ids increase");
        returned.extend(sequences);
    }
    returned.sort_unstable();
    assert_eq!(returned, (1..=4000).collect::<Vec<_>>());

    let mut stored = Vec::new();
    let mut last = 0;
    loop {
        let page = t.store.read_events("run-conc", last, 100).await.unwrap();
        let Some(tail) = page.last() else { break };
        last = tail.sequence_id;
        stored.extend(page.iter().map(|event| event.sequence_id));
    }
    assert_eq!(stored, (1..=4000).collect::<Vec<_>>(), "no gap and no duplicate");
}

fn heartbeat(count: i64) -> HeartbeatRow {
    HeartbeatRow {
        run_id: "run-hb".to_owned(),
        worker_id: "worker-0".to_owned(),
        worker_group_id: 0,
        status: WorkerStatus::Running,
        phase: Some(RunPhase::Warmup),
        last_heartbeat: None,
        heartbeat_count: count,
        active_connections: 4,
        target_connections: 8,
        last_error: Some("e".repeat(1500)),
        error_count: 2,
        created_at: None,
        updated_at: None,
    }
}

async fn heartbeat_upsert_is_idempotent(t: TestStore) {
    let before = t.store.now().await.unwrap() - Duration::seconds(2);
    t.store.upsert_heartbeats(&[heartbeat(1)]).await.unwrap();
    let first = t.store.list_heartbeats("run-hb").await.unwrap();
    t.store.upsert_heartbeats(&[heartbeat(1)]).await.unwrap();
    let second = t.store.list_heartbeats("run-hb").await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    let (a, b) = (&first[0], &second[0]);
    assert_eq!(a.heartbeat_count, b.heartbeat_count);
    assert_eq!(a.created_at, b.created_at, "an upsert keeps CREATED_AT");
    assert_eq!(b.status, WorkerStatus::Running);
    assert_eq!(b.phase, Some(RunPhase::Warmup));
    assert_eq!(b.active_connections, 4);
    assert_eq!(b.last_error.as_ref().unwrap().chars().count(), LAST_ERROR_MAX_CHARS);
    assert!(b.last_heartbeat.unwrap() >= before);
    assert!(b.last_heartbeat.unwrap() >= a.last_heartbeat.unwrap());

    let mut next = heartbeat(2);
    next.status = WorkerStatus::Draining;
    next.phase = None;
    next.last_error = None;
    let mut other = heartbeat(1);
    other.worker_id = "worker-1".to_owned();
    other.worker_group_id = 1;
    t.store.upsert_heartbeats(&[next, other]).await.unwrap();
    let rows = t.store.list_heartbeats("run-hb").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].worker_id, "worker-0");
    assert_eq!(rows[0].status, WorkerStatus::Draining);
    assert_eq!(rows[0].heartbeat_count, 2);
    assert_eq!(rows[0].phase, None);
    assert_eq!(rows[0].last_error, None);
    assert_eq!(rows[1].worker_id, "worker-1");
}

fn full_result(test_id: &str, run_id: &str) -> TestResultRow {
    let mut kinds = BTreeMap::new();
    kinds.insert(QueryKind::PointLookup, KindLatency { p50_ms: Some(1.25), p95_ms: Some(4.5), p99_ms: Some(9.75) });
    kinds.insert(QueryKind::Update, KindLatency { p50_ms: Some(2.0), p95_ms: None, p99_ms: Some(20.0) });
    TestResultRow {
        test_id: test_id.to_owned(),
        run_id: run_id.to_owned(),
        worker_id: (test_id != run_id).then(|| "worker-0".to_owned()),
        worker_group_id: (test_id != run_id).then_some(0),
        template_id: Some("tpl".to_owned()),
        test_name: "orders".to_owned(),
        table_name: Some("public.orders".to_owned()),
        table_type: Some("POSTGRES".to_owned()),
        warehouse: Some("BENCH_WH".to_owned()),
        status: "COMPLETED".to_owned(),
        start_time: Some(at(0)),
        end_time: Some(at(60)),
        duration_seconds: Some(60.0),
        concurrent_connections: Some(64),
        test_config: Some(json!({"query_log": "all", "weights": [80, 20]})),
        total_operations: 120_000,
        read_operations: 96_000,
        write_operations: 24_000,
        failed_operations: 12,
        qps: Some(2000.0),
        error_rate: Some(0.0001),
        avg_latency_ms: Some(3.5),
        min_latency_ms: Some(0.2),
        max_latency_ms: Some(250.0),
        p50_latency_ms: Some(2.5),
        p90_latency_ms: Some(5.0),
        p95_latency_ms: Some(7.5),
        p99_latency_ms: Some(15.0),
        p999_latency_ms: Some(90.0),
        kind_latencies: kinds,
        find_max_result: Some(json!({"best_connections": 35})),
        failure_reason: None,
        enrichment_status: Some("SKIPPED".to_owned()),
        created_at: None,
        updated_at: None,
    }
}

async fn test_results_round_trip(t: TestStore) {
    create_run(&t.store, "run-tr").await;
    let parent = full_result("run-tr", "run-tr");
    let child = full_result("run-tr-worker-0", "run-tr");
    t.store.upsert_test_results(&[parent.clone(), child.clone()]).await.unwrap();

    let mut read = t.store.get_test_result("run-tr-worker-0").await.unwrap().unwrap();
    assert!(read.created_at.is_some() && read.updated_at.is_some());
    read.created_at = None;
    read.updated_at = None;
    assert_eq!(read, child);

    let all = t.store.list_test_results("run-tr").await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].is_parent(), "the parent row comes first");
    assert_eq!(all[1].test_id, "run-tr-worker-0");

    let mut finished = child.clone();
    finished.status = "FAILED".to_owned();
    finished.failure_reason = Some("worker died".to_owned());
    finished.kind_latencies.clear();
    t.store.upsert_test_results(&[finished]).await.unwrap();
    let read = t.store.get_test_result("run-tr-worker-0").await.unwrap().unwrap();
    assert_eq!(read.status, "FAILED");
    assert_eq!(read.failure_reason.as_deref(), Some("worker died"));
    assert!(read.kind_latencies.is_empty());
    assert_eq!(t.store.list_test_results("run-tr").await.unwrap().len(), 2);
}

fn snapshot(worker: i64, second: i64, phase: RunPhase) -> SnapshotRow {
    SnapshotRow {
        snapshot_id: new_id(),
        run_id: "run-snap".to_owned(),
        test_id: format!("run-snap-worker-{worker}"),
        worker_id: format!("worker-{worker}"),
        worker_group_id: worker,
        worker_group_count: 2,
        timestamp: at(second),
        elapsed_seconds: second as f64 + 0.25,
        phase: phase.as_str().to_owned(),
        total_queries: second * 100,
        read_count: second * 80,
        write_count: second * 20,
        error_count: 1,
        qps: 99.75,
        p50_latency_ms: Some(1.5),
        p95_latency_ms: Some(3.0),
        p99_latency_ms: Some(7.25),
        avg_latency_ms: Some(1.75),
        min_latency_ms: Some(0.1),
        max_latency_ms: Some(12.0),
        active_connections: 4,
        target_connections: 4,
        cpu_percent: Some(31.5),
        memory_percent: Some(2.5),
        latency_histogram: Some("HISTFAAAACR4nJNpmSzMwMDAxQABTFCaEUoDAAmhANs=".to_owned()),
        custom_metrics: Some(json!({"clamped": 0})),
        created_at: None,
    }
}

async fn snapshots_round_trip(t: TestStore) {
    let mut written = Vec::new();
    for second in 0..4 {
        for worker in 0..2 {
            let phase = if second < 2 { RunPhase::Warmup } else { RunPhase::Measurement };
            written.push(snapshot(worker, second, phase));
        }
    }
    t.store.insert_snapshots(&written).await.unwrap();

    let mut idle = snapshot(0, 5, RunPhase::Measurement);
    idle.qps = 0.0;
    idle.p50_latency_ms = None;
    idle.p95_latency_ms = None;
    idle.p99_latency_ms = None;
    idle.avg_latency_ms = None;
    idle.min_latency_ms = None;
    idle.max_latency_ms = None;
    idle.latency_histogram = None;
    idle.custom_metrics = None;
    let mut beat = heartbeat(5);
    beat.run_id = "run-snap".to_owned();
    t.store.record_worker_tick(&beat, std::slice::from_ref(&idle)).await.unwrap();
    let mut beat1 = heartbeat(5);
    beat1.run_id = "run-snap".to_owned();
    beat1.worker_id = "worker-1".to_owned();
    beat1.worker_group_id = 1;
    t.store.record_worker_tick(&beat1, &[]).await.unwrap();
    written.push(idle.clone());

    let all = t.store.list_snapshots("run-snap", &SnapshotFilter::default()).await.unwrap();
    assert_eq!(all.len(), 9);
    for (read, expected) in all.iter().zip(&written) {
        assert!(read.created_at.is_some());
        let mut read = read.clone();
        read.created_at = None;
        assert_eq!(&read, expected);
    }

    let measurement = SnapshotFilter {
        phase: Some(RunPhase::Measurement),
        worker_id: Some("worker-1".to_owned()),
        ..Default::default()
    };
    assert_eq!(t.store.list_snapshots("run-snap", &measurement).await.unwrap().len(), 2);

    let latest = t.store.latest_snapshots("run-snap").await.unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0].worker_id, "worker-0");
    assert_eq!(latest[0].timestamp, at(5));
    assert_eq!(latest[0].p95_latency_ms, None, "an idle interval keeps null latencies");
    assert_eq!(latest[1].timestamp, at(3));
    assert_eq!(t.store.list_heartbeats("run-snap").await.unwrap().len(), 2);
}

fn execution(index: i64, warmup: bool) -> ExecutionRow {
    ExecutionRow {
        execution_id: new_id(),
        run_id: "run-ex".to_owned(),
        test_id: "run-ex-worker-0".to_owned(),
        worker_id: "worker-0".to_owned(),
        query_kind: if index % 2 == 0 { "POINT_LOOKUP" } else { "UPDATE" }.to_owned(),
        query_id: (index % 3 == 0).then(|| format!("q-{index}")),
        start_time: at(index),
        end_time: at(index) + Duration::microseconds(1500),
        app_elapsed_ms: 1.5,
        success: index % 10 != 0,
        error: (index % 10 == 0).then(|| "deadlock detected".to_owned()),
        rows_affected: Some(1),
        connection_id: Some(index % 4),
        warmup,
        sf_total_elapsed_ms: Some(1.25),
        sf_execution_ms: Some(1.0),
        sf_compilation_ms: Some(0.125),
        sf_queued_overload_ms: Some(0.0),
        sf_queued_provisioning_ms: None,
        sf_tx_blocked_ms: None,
        app_overhead_ms: Some(0.25),
        created_at: None,
    }
}

async fn executions_round_trip_in_batches(t: TestStore) {
    let rows: Vec<ExecutionRow> = (0..3000).map(|index| execution(index, index < 1000)).collect();
    t.store.insert_executions(&rows).await.unwrap();

    let all = ExecutionFilter { page: Page { limit: 10, offset: 0 }, ..Default::default() };
    let first = t.store.list_executions("run-ex", &all).await.unwrap();
    assert_eq!(first.len(), 10);
    for (read, expected) in first.iter().zip(&rows) {
        let mut read = read.clone();
        assert!(read.created_at.is_some());
        read.created_at = None;
        assert_eq!(&read, expected);
    }
    assert_eq!(t.store.count_executions("run-ex", &ExecutionFilter::default()).await.unwrap(), 3000);
    let measured = ExecutionFilter { warmup: Some(false), ..Default::default() };
    assert_eq!(t.store.count_executions("run-ex", &measured).await.unwrap(), 2000);
    let other_test = ExecutionFilter { test_id: Some("other".to_owned()), ..Default::default() };
    assert_eq!(t.store.count_executions("run-ex", &other_test).await.unwrap(), 0);
    let later = ExecutionFilter { page: Page { limit: 5, offset: 2995 }, ..Default::default() };
    let tail = t.store.list_executions("run-ex", &later).await.unwrap();
    assert_eq!(tail.len(), 5);
    assert_eq!(tail[4].start_time, at(2999));
}

async fn logs_round_trip_and_filter(t: TestStore) {
    let logs: Vec<LogRow> = (0..30)
        .map(|index| LogRow {
            log_id: new_id(),
            run_id: "run-log".to_owned(),
            test_id: if index < 20 { "run-log-worker-0" } else { "run-log" }.to_owned(),
            worker_id: (index < 20).then(|| "worker-0".to_owned()),
            level: if index % 5 == 0 { "ERROR" } else { "INFO" }.to_owned(),
            message: format!("message {index} with 'quotes' and \"double\""),
            details: (index % 2 == 0).then(|| json!({"index": index})),
            timestamp: at(index),
            created_at: None,
        })
        .collect();
    t.store.insert_logs(&logs).await.unwrap();
    let all = t.store.list_logs("run-log", &LogFilter::default()).await.unwrap();
    assert_eq!(all.len(), 30);
    for (read, expected) in all.iter().zip(&logs) {
        let mut read = read.clone();
        read.created_at = None;
        assert_eq!(&read, expected);
    }
    let errors = LogFilter { level: Some("ERROR".to_owned()), ..Default::default() };
    assert_eq!(t.store.list_logs("run-log", &errors).await.unwrap().len(), 6);
    let orchestrator = LogFilter { test_id: Some("run-log".to_owned()), ..Default::default() };
    let rows = t.store.list_logs("run-log", &orchestrator).await.unwrap();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|row| row.worker_id.is_none()));
    let page = LogFilter { page: Page { limit: 7, offset: 28 }, ..Default::default() };
    assert_eq!(t.store.list_logs("run-log", &page).await.unwrap().len(), 2);
}

async fn warehouse_and_find_max_round_trip(t: TestStore) {
    let poll = WarehousePollRow {
        snapshot_id: new_id(),
        run_id: "run-wh".to_owned(),
        timestamp: at(5),
        elapsed_seconds: 5.0,
        warehouse_name: "BENCH_WH".to_owned(),
        started_clusters: Some(2),
        running: Some(45),
        queued: Some(0),
        min_cluster_count: Some(1),
        max_cluster_count: Some(4),
        scaling_policy: Some("STANDARD".to_owned()),
        raw_result: Some(json!({"name": "BENCH_WH", "size": "X-Small"})),
        created_at: None,
    };
    t.store.insert_warehouse_polls(std::slice::from_ref(&poll)).await.unwrap();
    let mut read = t.store.list_warehouse_polls("run-wh", Page::default()).await.unwrap();
    assert_eq!(read.len(), 1);
    read[0].created_at = None;
    assert_eq!(read[0], poll);

    let steps: Vec<FindMaxStepRow> = (1..=3)
        .map(|number| FindMaxStepRow {
            step_id: new_id(),
            run_id: "run-wh".to_owned(),
            step_number: number,
            total_target_connections: 5 + 10 * (number - 1),
            step_start_time: Some(at(number * 30)),
            step_end_time: Some(at(number * 30 + 30)),
            step_duration_seconds: Some(30.0),
            total_queries: 1000 * number,
            qps: Some(33.25 * number as f64),
            p50_latency_ms: Some(1.0),
            p95_latency_ms: Some(2.0),
            p99_latency_ms: Some(3.0),
            error_count: 0,
            error_rate: Some(0.0),
            qps_vs_prior_pct: (number > 1).then_some(12.5),
            p95_vs_baseline_pct: (number > 1).then_some(3.0),
            queue_detected: number == 3,
            outcome: if number == 3 { "QUEUE_DETECTED" } else { "STABLE" }.to_owned(),
            stop_reason: (number == 3).then(|| "warehouse queued queries".to_owned()),
            created_at: None,
        })
        .collect();
    t.store.insert_find_max_steps(&steps).await.unwrap();
    let read = t.store.list_find_max_steps("run-wh").await.unwrap();
    assert_eq!(read.len(), 3);
    for (read, expected) in read.iter().zip(&steps) {
        let mut read = read.clone();
        read.created_at = None;
        assert_eq!(&read, expected);
    }
}

fn template(id: &str, name: &str, connections: u32) -> TemplateRow {
    TemplateRow {
        template_id: id.to_owned(),
        template_name: name.to_owned(),
        description: Some("point lookups".to_owned()),
        config: json!({"name": name, "workload": {"concurrent_connections": connections}}),
        tags: Some(json!(["oltp", "postgres"])),
        created_by: Some("cli".to_owned()),
        usage_count: 0,
        last_used_at: None,
        created_at: None,
        updated_at: None,
    }
}

async fn templates_upsert_by_name_with_pools(t: TestStore) {
    let saved = t.store.save_template(&template("tpl-a", "orders", 8)).await.unwrap();
    assert_eq!(saved.template_id, "tpl-a");
    assert!(saved.created_at.is_some());
    t.store.record_template_use("tpl-a").await.unwrap();

    let again = t.store.save_template(&template("tpl-other-id", "orders", 64)).await.unwrap();
    assert_eq!(again.template_id, "tpl-a", "saving by name keeps the id");
    assert_eq!(again.usage_count, 1, "saving keeps the usage count");
    assert!(again.last_used_at.is_some());
    assert_eq!(again.config["workload"]["concurrent_connections"], json!(64));
    assert_eq!(again.tags, Some(json!(["oltp", "postgres"])));
    assert_eq!(t.store.get_template("orders").await.unwrap().unwrap().template_id, "tpl-a");
    assert_eq!(t.store.get_template("tpl-a").await.unwrap().unwrap().template_name, "orders");
    assert!(t.store.get_template("nope").await.unwrap().is_none());

    t.store.save_template(&template("tpl-b", "accounts", 4)).await.unwrap();
    let names: Vec<String> = t.store.list_templates().await.unwrap().into_iter().map(|row| row.template_name).collect();
    assert_eq!(names, ["accounts", "orders"]);

    let pools: Vec<ValuePoolRow> = (0..100)
        .map(|seq| ValuePoolRow {
            pool_id: new_id(),
            template_id: "tpl-a".to_owned(),
            pool_kind: "KEY".to_owned(),
            column_name: Some("order_id".to_owned()),
            seq,
            value: json!(seq * 7),
            created_at: None,
        })
        .collect();
    t.store.replace_value_pools("tpl-a", &pools).await.unwrap();
    t.store.replace_value_pools("tpl-a", &pools[..10]).await.unwrap();
    let read = t.store.list_value_pools("tpl-a").await.unwrap();
    assert_eq!(read.len(), 10, "replacing drops the old pool");
    for (read, expected) in read.iter().zip(&pools) {
        let mut read = read.clone();
        read.created_at = None;
        assert_eq!(&read, expected);
    }

    assert!(t.store.delete_template("tpl-a").await.unwrap());
    assert!(!t.store.delete_template("tpl-a").await.unwrap());
    assert!(t.store.list_value_pools("tpl-a").await.unwrap().is_empty());
    assert_eq!(t.store.list_templates().await.unwrap().len(), 1);
}

async fn schema_apply_is_rerunnable(t: TestStore) {
    assert_eq!(t.store.check_schema().await.unwrap(), vec![]);
    create_run(&t.store, "run-keep").await;
    t.store.apply_schema().await.unwrap();
    t.store.apply_schema().await.unwrap();
    assert_eq!(t.store.check_schema().await.unwrap(), vec![]);
    t.store.require_schema().await.unwrap();
    assert!(t.store.get_run("run-keep").await.unwrap().is_some(), "applying again keeps data");
}

async fn store_clock_is_current(t: TestStore) {
    let before = now_micros() - Duration::seconds(5);
    let now = t.store.now().await.unwrap();
    assert!(now > before && now < Utc::now() + Duration::seconds(5));
}

macro_rules! contract_suite {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::common::sqlite().await).await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::common::postgres().await).await;
                }
            )+
        }
    };
}

contract_suite!(
    run_status_round_trips,
    run_update_is_partial_and_guarded,
    runs_list_newest_first_with_filters,
    events_come_back_in_order_and_page,
    events_mirror_into_run_status,
    concurrent_emitters_get_gapless_sequence,
    heartbeat_upsert_is_idempotent,
    test_results_round_trip,
    snapshots_round_trip,
    executions_round_trip_in_batches,
    logs_round_trip_and_filter,
    warehouse_and_find_max_round_trip,
    templates_upsert_by_name_with_pools,
    schema_apply_is_rerunnable,
    store_clock_is_current,
);
