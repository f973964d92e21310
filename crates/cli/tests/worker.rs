//! The real `unibench worker` binary against a real PostgreSQL store and
//! target, with the test playing the orchestrator.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::worker::{eventually, fast_timings, Harness, WORKER_TIMEOUT};
use unibench_model::{RunPhase, RunStatus, WorkerStatus};
use unibench_store::{ExecutionFilter, RunStatusUpdate};

/// A point lookup that holds each connection for 10 ms, so that the
/// tests' workers do not saturate the cores they share with PostgreSQL
/// and the test itself.
const POINT_LOOKUP: &str = "SELECT note, pg_sleep(0.01) FROM {table} WHERE id = $1";

fn lookup_scenario(connections: u32) -> serde_json::Value {
    Harness::scenario(Harness::template(POINT_LOOKUP, &["random_int(1,1000)"], connections, "all"), fast_timings())
}

async fn wait_for_running(harness: &Harness) {
    eventually(Duration::from_secs(20), "a RUNNING heartbeat", || async {
        harness.heartbeat().await.filter(|beat| beat.status == WorkerStatus::Running)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_before_first_poll_still_starts() {
    let harness = Harness::new(1000).await;
    harness.create_run(lookup_scenario(2), RunStatus::Prepared, RunPhase::Preparing).await;
    harness.start(RunPhase::Measurement).await;
    let mut worker = harness.spawn_worker();

    wait_for_running(&harness).await;
    eventually(Duration::from_secs(10), "a snapshot with queries", || async {
        harness.snapshots().await.into_iter().find(|snapshot| snapshot.total_queries > 0)
    })
    .await;
    harness.stop().await;
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(0), "log:\n{}", worker.log_text());
    let beat = harness.heartbeat().await.unwrap();
    assert_eq!(beat.status, WorkerStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_running_run_in_measurement() {
    let harness = Harness::new(1000).await;
    harness.create_run(lookup_scenario(2), RunStatus::Running, RunPhase::Measurement).await;
    let mut worker = harness.spawn_worker();

    let first = eventually(Duration::from_secs(20), "a first snapshot", || async {
        harness.snapshots().await.into_iter().next()
    })
    .await;
    assert_eq!(first.phase, "MEASUREMENT", "the first snapshot is a measurement snapshot");
    harness.stop().await;
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(0), "log:\n{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_phase_resets_counters_once() {
    let harness = Harness::new(1000).await;
    harness.create_run(lookup_scenario(2), RunStatus::Prepared, RunPhase::Preparing).await;
    harness.start(RunPhase::Warmup).await;
    let mut worker = harness.spawn_worker();
    wait_for_running(&harness).await;

    let warmup = eventually(Duration::from_secs(10), "two warmup snapshots", || async {
        let snapshots = harness.snapshots().await;
        (snapshots.len() >= 2).then_some(snapshots)
    })
    .await;
    for snapshot in &warmup {
        assert_eq!(snapshot.phase, "WARMUP");
        assert_eq!(snapshot.total_queries, 0, "warmup queries are never counted");
    }

    harness.set_phase(RunPhase::Measurement).await;
    eventually(Duration::from_secs(10), "three measurement snapshots", || async {
        let count = harness.snapshots().await.iter().filter(|s| s.phase == "MEASUREMENT").count();
        (count >= 3).then_some(())
    })
    .await;
    // A second SET_PHASE to the same phase must not reset anything.
    harness.set_phase(RunPhase::Measurement).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    harness.stop().await;
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(0), "log:\n{}", worker.log_text());

    let measured: Vec<_> = harness.snapshots().await.into_iter().filter(|s| s.phase != "WARMUP").collect();
    assert!(measured.len() >= 5, "{} measurement snapshots", measured.len());
    let first = &measured[0];
    let interval_limit = (first.qps * 2.0).max(1.0) as i64 + 50;
    assert!(first.total_queries <= interval_limit, "counting restarted from zero: first total {}", first.total_queries);
    for pair in measured.windows(2) {
        assert!(
            pair[1].total_queries >= pair[0].total_queries,
            "TOTAL_QUERIES decreased: {} -> {}",
            pair[0].total_queries,
            pair[1].total_queries
        );
    }
    assert!(measured.last().unwrap().total_queries > first.total_queries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_targets_follow_events() {
    let harness = Harness::new(1000).await;
    harness.create_run(lookup_scenario(4), RunStatus::Prepared, RunPhase::Preparing).await;
    harness.start(RunPhase::Measurement).await;
    let mut worker = harness.spawn_worker();
    wait_for_running(&harness).await;

    for target in [4i64, 16, 2] {
        if target != 4 {
            harness.set_target(target as u32).await;
        }
        let changed = Instant::now();
        let mut last = None;
        while changed.elapsed() < Duration::from_secs(2) {
            last = harness.heartbeat().await;
            if last.as_ref().is_some_and(|beat| beat.active_connections == target && beat.target_connections == target)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let beat = last.expect("a heartbeat");
        assert_eq!(
            (beat.active_connections, beat.target_connections),
            (target, target),
            "heartbeat {:?} after {:?}; log:\n{}",
            beat.heartbeat_count,
            changed.elapsed(),
            worker.log_text()
        );
        eprintln!("target {target}: heartbeat followed in {:?}", changed.elapsed());
        eventually(Duration::from_secs(3), &format!("{target} sessions on the target server"), || async {
            (harness.target_sessions().await == target).then_some(())
        })
        .await;
    }
    harness.stop().await;
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(0), "log:\n{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_from_run_status_alone() {
    let harness = Harness::new(1000).await;
    harness.create_run(lookup_scenario(2), RunStatus::Prepared, RunPhase::Preparing).await;
    harness.start(RunPhase::Measurement).await;
    let mut worker = harness.spawn_worker();
    wait_for_running(&harness).await;

    let targets = json!({"worker-0": {"target_connections": 6}});
    harness.update_run(RunStatusUpdate { worker_targets: Some(targets), ..Default::default() }).await;
    let changed = Instant::now();
    eventually(Duration::from_secs(6), "the target from RUN_STATUS", || async {
        harness.heartbeat().await.filter(|beat| beat.active_connections == 6)
    })
    .await;
    eprintln!("target from RUN_STATUS picked up in {:?}", changed.elapsed());
    harness.stop().await;
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(0), "log:\n{}", worker.log_text());
}

/// Runs a `pg_sleep(0.5)` workload on 10 connections, stops it with `stop`,
/// and checks that every executed query is accounted for.
async fn drain_accounts_for_every_query(stop: impl AsyncFnOnce(&Harness, &support::worker::WorkerProcess)) {
    let harness = Harness::new(10).await;
    let template =
        Harness::template("SELECT pg_sleep(0.5) FROM {table} WHERE id = $1", &["random_int(1,10)"], 10, "all");
    let mut run_template = template.clone();
    run_template["workload"]["warmup_seconds"] = json!(1);
    harness.create_run(Harness::scenario(run_template, fast_timings()), RunStatus::Prepared, RunPhase::Preparing).await;
    harness.start(RunPhase::Warmup).await;
    let mut worker = harness.spawn_worker();
    wait_for_running(&harness).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    harness.set_phase(RunPhase::Measurement).await;
    tokio::time::sleep(Duration::from_millis(2300)).await;

    let stopped = Instant::now();
    stop(&harness, &worker).await;
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(0), "log:\n{}", worker.log_text());
    eprintln!("worker exited {:?} after the stop", stopped.elapsed());

    let child = harness.store.get_test_result(&harness.child_test_id()).await.unwrap().expect("the child row exists");
    assert_eq!(child.status, "COMPLETED");
    let total = harness.store.count_executions(&harness.run_id, &ExecutionFilter::default()).await.unwrap();
    let warmup_filter = ExecutionFilter { warmup: Some(true), ..Default::default() };
    let warmup = harness.store.count_executions(&harness.run_id, &warmup_filter).await.unwrap();
    assert!(child.total_operations > 0);
    assert!(warmup > 0, "the warmup ran queries");
    assert_eq!(
        total,
        child.total_operations + warmup,
        "executions = TOTAL_OPERATIONS {} + warmup {warmup}",
        child.total_operations
    );
    let beat = harness.heartbeat().await.unwrap();
    assert_eq!(beat.status, WorkerStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_and_flushes_everything() {
    drain_accounts_for_every_query(async |harness, _| harness.stop().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_behaves_like_stop() {
    drain_accounts_for_every_query(async |_, worker| worker.signal("TERM")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_above_clamp_is_counted() {
    let harness = Harness::new(10).await;
    let mut timings = fast_timings();
    timings["latency_clamp_seconds"] = json!(0.1);
    let template =
        Harness::template("SELECT pg_sleep(0.3) FROM {table} WHERE id = $1", &["random_int(1,10)"], 2, "all");
    harness.create_run(Harness::scenario(template, timings), RunStatus::Running, RunPhase::Measurement).await;
    let mut worker = harness.spawn_worker();

    let clamped = eventually(Duration::from_secs(15), "a snapshot reporting clamped latencies", || async {
        harness.snapshots().await.into_iter().rev().find(|snapshot| {
            snapshot.custom_metrics.as_ref().and_then(|custom| custom["latency_values_clamped"].as_i64()).unwrap_or(0)
                >= 4
        })
    })
    .await;
    assert!(clamped.total_queries >= 4, "clamped queries are counted");
    let max = clamped.max_latency_ms.unwrap_or(0.0);
    assert!(max <= 100.1, "latencies are clamped to 100 ms, max was {max}");
    let beat = harness.heartbeat().await.unwrap();
    assert_eq!(beat.status, WorkerStatus::Running, "the worker keeps running");
    harness.stop().await;
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(0), "log:\n{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_start_exits_3() {
    let harness = Harness::new(10).await;
    harness.create_run(lookup_scenario(1), RunStatus::Prepared, RunPhase::Preparing).await;
    let started = Instant::now();
    let mut worker = harness.spawn_worker();
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(3), "log:\n{}", worker.log_text());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3), "exited after {waited:?}, before the 3 s start timeout");
    assert!(worker.log_text().contains("no START"), "log:\n{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_run_exits_3() {
    let harness = Harness::new(10).await;
    harness.create_run(lookup_scenario(1), RunStatus::Completed, RunPhase::Processing).await;
    let mut worker = harness.spawn_worker();
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(3), "log:\n{}", worker.log_text());
    assert!(worker.log_text().contains("already ended with status COMPLETED"), "log:\n{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_run_exits_1() {
    let harness = Harness::new(10).await;
    let mut worker = harness.spawn_worker();
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(1), "log:\n{}", worker.log_text());
    assert!(worker.log_text().contains(&format!("run `{}` not found", harness.run_id)), "log:\n{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_scenario_names_field() {
    let harness = Harness::new(10).await;
    let mut scenario = lookup_scenario(1);
    scenario["template"]["workload"]["concurrent_connections"] = json!("lots");
    harness.create_run(scenario, RunStatus::Running, RunPhase::Measurement).await;
    let mut worker = harness.spawn_worker();
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(1), "log:\n{}", worker.log_text());
    assert!(worker.log_text().contains("template.workload.concurrent_connections"), "log:\n{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_version_is_refused() {
    let harness = Harness::new(10).await;
    let mut scenario = lookup_scenario(1);
    scenario["unibench_version"] = json!("0.0.0-elsewhere");
    harness.create_run(scenario, RunStatus::Running, RunPhase::Measurement).await;
    let mut worker = harness.spawn_worker();
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(1), "log:\n{}", worker.log_text());
    let log = worker.log_text();
    assert!(log.contains("0.0.0-elsewhere") && log.contains(env!("CARGO_PKG_VERSION")), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_loss_keeps_load_then_exits_2() {
    let harness = Harness::new(10).await;
    let template =
        Harness::template("UPDATE {table} SET counter = counter + 1 WHERE id = $1", &["random_int(1,10)"], 2, "all");
    harness.create_run(Harness::scenario(template, fast_timings()), RunStatus::Running, RunPhase::Measurement).await;

    let proxy = support::proxy::TcpProxy::start(&harness.store_url).await;
    let mut worker = harness.spawn_worker_with_store(&proxy.url());
    wait_for_running(&harness).await;

    proxy.shut_down();
    let cut = Instant::now();
    let before = target_counter_sum(&harness).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = target_counter_sum(&harness).await;
    assert!(during > before, "the worker keeps loading the target while the store is gone ({before} -> {during})");

    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(2), "log:\n{}", worker.log_text());
    let waited = cut.elapsed();
    assert!(waited >= Duration::from_secs(3), "exited {waited:?} after the cut, before the 4 s no-store timeout");
    assert!(waited < Duration::from_secs(40), "exited {waited:?} after the cut");
}

async fn target_counter_sum(harness: &Harness) -> i64 {
    let (client, connection) = tokio_postgres::connect(&harness.target_url, tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(connection);
    let row = client.query_one("SELECT COALESCE(sum(counter), 0)::BIGINT FROM bench_items", &[]).await.unwrap();
    drop(client);
    task.await.ok();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_qps_paces_open_loop() {
    let harness = Harness::new(1000).await;
    let mut scenario = lookup_scenario(4);
    scenario["template"]["workload"]["target_qps"] = json!(40.0);
    scenario["template"]["workload"]["load_mode"] = json!("QPS");
    harness.create_run(scenario, RunStatus::Running, RunPhase::Measurement).await;
    let mut worker = harness.spawn_worker();
    wait_for_running(&harness).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    harness.stop().await;
    assert_eq!(worker.wait(WORKER_TIMEOUT).await, Some(0), "log:\n{}", worker.log_text());

    let child = harness.store.get_test_result(&harness.child_test_id()).await.unwrap().unwrap();
    let qps = child.qps.unwrap();
    println!("paced to 40 QPS, measured {qps:.1} QPS over {:?} s", child.duration_seconds);
    assert!((32.0..=48.0).contains(&qps), "QPS {qps} is not within 20 % of the 40 QPS target");
}
