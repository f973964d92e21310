//! `unibench run` end to end: the real binary as orchestrator, its real
//! worker processes, a PostgreSQL store and a PostgreSQL target loaded by
//! `pgbench -i`. Timings are shrunk through `UNIBENCH_TIMINGS`.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::worker::eventually;
use support::{create_database, database_url};
use unibench_model::RunStatus;
use unibench_store::{ExecutionFilter, Page, RunFilter, SnapshotFilter, Store};

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn timings(extra: serde_json::Value) -> String {
    let mut timings = json!({
        "stale_after_seconds": 2.0,
        "dead_after_seconds": 3.0,
        "no_store_exit_seconds": 5.0,
        "start_wait_seconds": 20.0,
        "registration_seconds": 30.0,
        "drain_seconds": 10.0,
        "sigterm_after_drain_seconds": 2.0,
        "orphan_after_seconds": 120.0,
        "orchestrator_silence_seconds": 4.0,
        "reconcile_seconds": 1.0
    });
    if let (Some(base), Some(extra)) = (timings.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    timings.to_string()
}

/// Timings for a worker that is frozen with SIGSTOP: a short drain and
/// escalation, and health thresholds too long to declare it dead during
/// the test.
fn frozen_worker_timings() -> String {
    timings(
        json!({"drain_seconds": 1.0, "sigterm_after_drain_seconds": 1.0, "dead_after_seconds": 60.0, "stale_after_seconds": 30.0}),
    )
}

/// A store, a pgbench target, a connections file and a template file.
struct Setup {
    store: Store,
    store_url: String,
    target_url: String,
    dir: tempfile::TempDir,
    connections_file: PathBuf,
}

impl Setup {
    async fn new() -> Setup {
        let store_url = database_url(&create_database().await);
        let store = Store::connect(&store_url.parse().unwrap()).await.unwrap();
        store.apply_schema().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (target_url, connections_file) = support::pgbench_target(dir.path()).await;
        Setup { store, store_url, target_url, dir, connections_file }
    }

    fn template(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, body).unwrap();
        path
    }

    fn lookup_template(&self, query_log: &str) -> PathBuf {
        self.template(
            "lookup",
            &format!(
                "name: accounts lookup\ntarget:\n  kind: postgres\n  connection: local-pg\n  table: pgbench_accounts\n  key_column: aid\n\
                 workload:\n  concurrent_connections: 4\n  warmup_seconds: 2\n  duration_seconds: 60\n  operations:\n\
                 \x20   - kind: POINT_LOOKUP\n      weight_pct: 100\n      sql: SELECT abalance, pg_sleep(0.002) FROM {{table}} WHERE aid = $1\n      params: [key]\n\
                 \x20 query_log: {query_log}\n"
            ),
        )
    }

    /// Starts `unibench run` in the background.
    fn start_run(&self, template: &Path, args: &[&str], timings: &str) -> RunProcess {
        let stderr_path = self.dir.path().join(format!("run-{}.log", uuid::Uuid::new_v4().simple()));
        let stdout_path = stderr_path.with_extension("out");
        let child = Command::new(env!("CARGO_BIN_EXE_unibench"))
            .arg("run")
            .arg("--template")
            .arg(template)
            .args(["--store", &self.store_url])
            .arg("--connections-file")
            .arg(&self.connections_file)
            .args(args)
            .env("UNIBENCH_HOME", self.dir.path())
            .env("UNIBENCH_TIMINGS", timings)
            .env("UNIBENCH_LOG", "info")
            .env_remove("UNIBENCH_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&stdout_path).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()))
            .spawn()
            .expect("start unibench run");
        RunProcess { child: Some(child), stderr_path, stdout_path, run_id: None }
    }

    /// Starts a two-worker run of the `off` lookup template without warmup,
    /// with `extra` arguments, and waits until both workers measure.
    async fn start_measuring_pair(&self, extra: &[&str], timings: &str) -> (RunProcess, String) {
        let template = self.lookup_template("off");
        let mut args = vec!["--workers", "2", "--warmup", "0"];
        args.extend_from_slice(extra);
        let mut process = self.start_run(&template, &args, timings);
        let run_id = process.run_id().await;
        self.wait_for_both_workers_measuring(&run_id).await;
        (process, run_id)
    }

    /// Waits until both workers of the run report a QPS above zero.
    async fn wait_for_both_workers_measuring(&self, run_id: &str) {
        eventually(Duration::from_secs(30), "both workers measuring", || async {
            let latest = self.store.latest_snapshots(run_id).await.unwrap();
            (latest.iter().filter(|s| s.qps > 0.0).count() == 2).then_some(())
        })
        .await;
    }

    async fn run(&self, run_id: &str) -> unibench_store::RunStatusRow {
        self.store.get_run(run_id).await.unwrap().expect("the run exists")
    }
}

/// A `unibench run` process; it and its workers are killed when dropped.
struct RunProcess {
    child: Option<Child>,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    run_id: Option<String>,
}

impl RunProcess {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Returns the run id, read from the "run ... created" line.
    async fn run_id(&mut self) -> String {
        if let Some(run_id) = &self.run_id {
            return run_id.clone();
        }
        let run_id = eventually(Duration::from_secs(30), "the run created line", || async {
            self.stderr().lines().find_map(|line| {
                let rest = line.strip_prefix("run ")?;
                let (run_id, tail) = rest.split_once(" created: ")?;
                tail.starts_with("PREPARED").then(|| run_id.to_owned())
            })
        })
        .await;
        self.run_id = Some(run_id.clone());
        run_id
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.pid().to_string()]).status().unwrap();
        assert!(status.success());
    }

    async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("already reaped");
        let stderr = self.stderr_path.clone();
        support::wait_for_exit(&mut child, timeout, "unibench run", || {
            std::fs::read_to_string(&stderr).unwrap_or_default()
        })
        .await
    }
}

impl Drop for RunProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        if let Some(run_id) = &self.run_id {
            kill_workers(run_id);
        }
    }
}

/// Returns the process id of one worker of the run, once it is running.
async fn worker_process(run_id: &str, worker_id: &str) -> u32 {
    eventually(Duration::from_secs(5), &format!("{worker_id}'s process"), || async {
        let pattern = format!("worker --run-id {run_id} --worker-id {worker_id} ");
        let output = Command::new("pgrep").args(["-f", &pattern]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).lines().next().and_then(|pid| pid.trim().parse::<u32>().ok())
    })
    .await
}

/// Process ids of the run's worker processes.
fn worker_pids(run_id: &str) -> Vec<u32> {
    let output = Command::new("pgrep").args(["-f", &format!("worker --run-id {run_id} ")]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().filter_map(|line| line.trim().parse().ok()).collect()
}

fn kill_workers(run_id: &str) {
    for pid in worker_pids(run_id) {
        Command::new("kill").args(["-s", "KILL", &pid.to_string()]).status().ok();
    }
}

/// Returns the QPS of each worker's last three measurement snapshots.
async fn recent_qps_per_worker(store: &Store, run_id: &str) -> Vec<Vec<f64>> {
    let filter = SnapshotFilter {
        phase: Some(unibench_model::RunPhase::Measurement),
        page: Page { limit: 10_000, offset: 0 },
        ..Default::default()
    };
    let snapshots = store.list_snapshots(run_id, &filter).await.unwrap();
    let mut by_worker: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for snapshot in snapshots {
        by_worker.entry(snapshot.worker_id).or_default().push(snapshot.qps);
    }
    by_worker.into_values().map(|qps| qps.iter().rev().take(3).copied().collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_two_workers_on_pgbench_accounts() {
    let setup = Setup::new().await;
    let template = setup.lookup_template("sample:0.1");
    let mut process = setup.start_run(&template, &["--workers", "2"], &timings(json!({})));
    let run_id = process.run_id().await;
    println!("run created PREPARED: {run_id}");

    eventually(Duration::from_secs(30), "2/2 workers registered", || async {
        let run = setup.run(&run_id).await;
        (run.workers_registered == 2).then_some(run)
    })
    .await;
    assert_eq!(setup.store.list_heartbeats(&run_id).await.unwrap().len(), 2);
    println!("2/2 workers registered");

    let run = eventually(Duration::from_secs(30), "RUNNING", || async {
        let run = setup.run(&run_id).await;
        (run.status == RunStatus::Running).then_some(run)
    })
    .await;
    let created = run.created_at.unwrap();
    let started = run.start_time.expect("START_TIME is set");
    let to_running = (started - created).to_std().unwrap();
    println!("RUNNING {to_running:?} after the run was created");
    assert!(to_running <= Duration::from_secs(2), "RUNNING took {to_running:?}");

    eventually(Duration::from_secs(20), "snapshots from both workers", || async {
        let latest = setup.store.latest_snapshots(&run_id).await.unwrap();
        (latest.iter().filter(|s| s.phase == "MEASUREMENT" && s.qps > 0.0).count() == 2).then_some(())
    })
    .await;
    println!("snapshots from both workers");

    // The orchestrator sums the snapshots that were latest when it ticked,
    // and a worker may write a newer one before the test reads, so the live
    // value must equal the sum of one of each worker's last three snapshots.
    let matched = eventually(Duration::from_secs(10), "live QPS equal to a sum of the workers' QPS", || async {
        let current = setup.run(&run_id).await.current_qps.filter(|qps| *qps > 0.0)?;
        let recent = recent_qps_per_worker(&setup.store, &run_id).await;
        (recent.len() == 2 && recent[0].iter().any(|a| recent[1].iter().any(|b| (a + b - current).abs() < 1e-6)))
            .then_some(current)
    })
    .await;
    println!("live aggregate QPS {matched:.1} equals the sum of the workers' snapshot QPS");

    let run = setup.run(&run_id).await;
    let warmup_end = run.warmup_end_time.expect("WARMUP_END_TIME is set");
    let warmup = (warmup_end - started).to_std().unwrap();
    println!("WARMUP to MEASUREMENT after {warmup:?} (warmup_seconds 2)");
    assert!(warmup >= Duration::from_secs(2), "measurement started early: {warmup:?}");
    assert!(warmup <= Duration::from_secs(3), "measurement started late: {warmup:?}");

    let pids = worker_pids(&run_id);
    assert_eq!(pids.len(), 2, "two worker processes run");
    let stop = Instant::now();
    process.signal("INT");
    eventually(Duration::from_secs(10), "every worker process to exit", || async {
        worker_pids(&run_id).is_empty().then_some(())
    })
    .await;
    let stop_latency = stop.elapsed();
    println!("STOP reached every worker; all worker processes exited {stop_latency:?} after Ctrl-C");
    let code = process.wait(RUN_TIMEOUT).await;
    let run = setup.run(&run_id).await;
    assert_eq!(run.status, RunStatus::Cancelled, "stderr:\n{}", process.stderr());
    assert_eq!(code, Some(1), "a cancelled run exits non-zero");
    println!("final status CANCELLED");
    let events = setup.store.read_events(&run_id, 0, 100).await.unwrap();
    assert!(events.iter().any(|event| event.event_type.as_str() == "STOP"));
    for beat in setup.store.list_heartbeats(&run_id).await.unwrap() {
        assert_eq!(beat.status.as_str(), "COMPLETED", "{} saw the STOP and finished", beat.worker_id);
    }
    assert!(worker_pids(&run_id).is_empty(), "no worker process left");
    println!("no worker process left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_run_completes_with_consistent_rollups() {
    let setup = Setup::new().await;
    let template = setup.lookup_template("all");
    let mut process = setup.start_run(
        &template,
        &["--workers", "2", "--warmup", "1", "--duration", "3", "--json"],
        &timings(json!({})),
    );
    let code = process.wait(RUN_TIMEOUT).await;
    assert_eq!(code, Some(0), "stderr:\n{}", process.stderr());
    let summary: serde_json::Value = serde_json::from_str(&process.stdout()).expect("--json prints one JSON document");
    let run_id = summary["run_id"].as_str().unwrap().to_owned();
    process.run_id = Some(run_id.clone());
    assert_eq!(summary["status"], "COMPLETED");

    let results = setup.store.list_test_results(&run_id).await.unwrap();
    let parent = results.iter().find(|row| row.is_parent()).unwrap();
    let children: Vec<_> = results.iter().filter(|row| !row.is_parent()).collect();
    assert_eq!(children.len(), 2);
    assert_eq!(parent.total_operations, children.iter().map(|c| c.total_operations).sum::<i64>());
    assert_eq!(parent.read_operations, children.iter().map(|c| c.read_operations).sum::<i64>());
    assert_eq!(parent.failed_operations, children.iter().map(|c| c.failed_operations).sum::<i64>());
    assert!(parent.total_operations > 100, "{} operations", parent.total_operations);
    assert_eq!(summary["totals"]["operations"], json!(parent.total_operations));

    // The run counted queries from the first worker's start of counting to
    // the last worker's last query: END_TIME minus DURATION_SECONDS of each.
    let start = children
        .iter()
        .map(|c| c.end_time.unwrap() - chrono::Duration::microseconds((c.duration_seconds.unwrap() * 1e6) as i64))
        .min()
        .unwrap();
    let end = children.iter().map(|c| c.end_time.unwrap()).max().unwrap();
    let span = (end - start).num_microseconds().unwrap() as f64 / 1e6;
    let measured = parent.duration_seconds.unwrap();
    assert!((measured - span).abs() < 0.001, "parent measured {measured} s, workers counted over {span} s");
    let qps = parent.qps.unwrap();
    assert!((qps - parent.total_operations as f64 / span).abs() < 1.0, "parent QPS {qps} over {span} s");

    let filter =
        ExecutionFilter { warmup: Some(false), page: Page { limit: 1_000_000, offset: 0 }, ..Default::default() };
    let executions = setup.store.list_executions(&run_id, &filter).await.unwrap();
    assert_eq!(executions.len() as i64, parent.total_operations, "query_log all keeps every measured query");
    let mut latencies: Vec<f64> = executions.iter().map(|e| e.app_elapsed_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let exact = latencies[((latencies.len() as f64 * 0.95).ceil() as usize).max(1) - 1];
    let p95 = parent.p95_latency_ms.unwrap();
    println!("parent P95 {p95:.3} ms, P95 from QUERY_EXECUTIONS {exact:.3} ms");
    assert!((p95 - exact).abs() <= exact * 0.01, "parent P95 {p95} vs executions {exact}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_queries_show_their_error() {
    let setup = Setup::new().await;
    let template = setup.template(
        "failing",
        "name: failing lookup\ntarget:\n  kind: postgres\n  connection: local-pg\n  table: pgbench_accounts\n  key_column: aid\n\
         workload:\n  concurrent_connections: 2\n  warmup_seconds: 0\n  duration_seconds: 3\n  operations:\n\
         \x20   - kind: POINT_LOOKUP\n      weight_pct: 100\n      sql: SELECT abalance / (aid - aid) FROM {table} WHERE aid = $1\n      params: [key]\n\
         \x20 query_log: \"off\"\n",
    );
    let mut process = setup.start_run(&template, &["--workers", "2"], &timings(json!({})));
    let code = process.wait(RUN_TIMEOUT).await;
    assert_eq!(code, Some(0), "a run of failing queries still ends; stderr:\n{}", process.stderr());
    let run_id = process.run_id().await;
    let stdout = process.stdout();
    assert!(stdout.contains("last error of each worker"), "{stdout}");
    assert!(stdout.contains("POINT_LOOKUP query failed"), "{stdout}");
    assert!(stdout.contains("division by zero"), "{stdout}");

    let heartbeats = setup.store.list_heartbeats(&run_id).await.unwrap();
    assert_eq!(heartbeats.len(), 2);
    for beat in &heartbeats {
        let error = beat.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("division by zero"), "{}: {error:?}", beat.worker_id);
    }
    let filter = unibench_store::LogFilter { page: Page { limit: 10_000, offset: 0 }, ..Default::default() };
    let logs = setup.store.list_logs(&run_id, &filter).await.unwrap();
    let logged: Vec<_> = logs.iter().filter(|log| log.message.contains("division by zero")).collect();
    assert_eq!(logged.len(), 2, "each worker logs a distinct error once: {logged:?}");
    assert!(logged.iter().all(|log| log.level.as_str() == "WARN"), "{logged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_fill_an_empty_table() {
    let setup = Setup::new().await;
    let (client, connection) = tokio_postgres::connect(&setup.target_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("CREATE TABLE empty_items (id BIGINT PRIMARY KEY, note TEXT)").await.unwrap();
    let template = |name: &str, kind: &str, sql: &str, param: &str| {
        setup.template(
            name,
            &format!(
                "name: {name}\ntarget:\n  kind: postgres\n  connection: local-pg\n  table: empty_items\n  key_column: id\n\
                 workload:\n  concurrent_connections: 2\n  warmup_seconds: 0\n  duration_seconds: 2\n  operations:\n\
                 \x20   - kind: {kind}\n      weight_pct: 100\n      sql: \"{sql}\"\n      params: [{param}]\n\
                 \x20 query_log: \"off\"\n"
            ),
        )
    };

    let existing = template("existing keys", "UPDATE", "UPDATE {table} SET note = 'seen' WHERE id = $1", "key");
    let mut process = setup.start_run(&existing, &[], &timings(json!({})));
    let code = process.wait(RUN_TIMEOUT).await;
    let stderr = process.stderr();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("table `empty_items` has no rows to sample keys from"), "{stderr}");

    let fresh = template("fresh keys", "INSERT", "INSERT INTO {table} (id, note) VALUES ($1, 'new')", "new_key");
    let mut process = setup.start_run(&fresh, &["--workers", "2"], &timings(json!({})));
    let code = process.wait(RUN_TIMEOUT).await;
    assert_eq!(code, Some(0), "{}", process.stderr());
    let rows: i64 = client.query_one("SELECT count(*) FROM empty_items", &[]).await.unwrap().get(0);
    assert!(rows > 0, "the run inserted rows");

    // A second run samples the rows, so its new keys start above them. Once
    // the table is emptied, new keys start at 1 again.
    for truncate_first in [false, true] {
        if truncate_first {
            client.batch_execute("TRUNCATE empty_items").await.unwrap();
        }
        let mut process = setup.start_run(&fresh, &[], &timings(json!({})));
        assert_eq!(process.wait(RUN_TIMEOUT).await, Some(0), "{}", process.stderr());
    }
    let lowest: i64 = client.query_one("SELECT min(id) FROM empty_items", &[]).await.unwrap().get(0);
    assert_eq!(lowest, 1, "new keys on an emptied table start at 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_fails_the_run() {
    let setup = Setup::new().await;
    let (mut process, run_id) = setup.start_measuring_pair(&[], &timings(json!({}))).await;

    let victim = worker_process(&run_id, "worker-1").await;
    Command::new("kill").args(["-s", "KILL", &victim.to_string()]).status().unwrap();
    let killed = Instant::now();

    let code = process.wait(RUN_TIMEOUT).await;
    assert_eq!(code, Some(1), "stderr:\n{}", process.stderr());
    let run = setup.run(&run_id).await;
    println!("run ended {} {:?} after the kill: {:?}", run.status, killed.elapsed(), run.status_reason);
    assert_eq!(run.status, RunStatus::Failed);
    let reason = run.status_reason.unwrap_or_default();
    assert!(reason.contains("worker-1"), "the reason names the worker: {reason}");
    assert!(reason.contains("DEAD"), "the reason says the worker is dead: {reason}");
    assert!(worker_pids(&run_id).is_empty(), "the other worker exited");
    let filter = SnapshotFilter { worker_id: Some("worker-1".to_owned()), ..Default::default() };
    assert!(
        !setup.store.list_snapshots(&run_id, &filter).await.unwrap().is_empty(),
        "the killed worker's snapshots remain"
    );
    let killed_child =
        setup.store.get_test_result(&format!("{run_id}-worker-1")).await.unwrap().expect("worker-1's row");
    assert_eq!(killed_child.status, "FAILED", "an unfinished worker row is closed");
    let last = setup.store.list_snapshots(&run_id, &filter).await.unwrap().into_iter().max_by_key(|s| s.timestamp);
    let last_total = last.map(|snapshot| snapshot.total_queries).unwrap_or_default();
    assert!(last_total > 0, "worker-1 reported queries before the kill");
    assert_eq!(killed_child.total_operations, last_total, "its counts come from its last snapshot");
    let parent = setup.store.get_test_result(&run_id).await.unwrap().expect("the parent row");
    assert!(parent.total_operations > last_total, "the parent counts both workers: {}", parent.total_operations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_orchestrator_leaves_an_orphan() {
    let setup = Setup::new().await;
    let template = setup.lookup_template("off");
    let mut process = setup.start_run(&template, &["--workers", "2", "--warmup", "0"], &timings(json!({})));
    let run_id = process.run_id().await;
    eventually(Duration::from_secs(30), "RUNNING", || async {
        (setup.run(&run_id).await.status == RunStatus::Running).then_some(())
    })
    .await;
    assert_eq!(worker_pids(&run_id).len(), 2);

    process.signal("KILL");
    process.wait(Duration::from_secs(10)).await;
    let killed = Instant::now();
    eventually(Duration::from_secs(30), "the workers to exit on their own", || async {
        worker_pids(&run_id).is_empty().then_some(())
    })
    .await;
    println!("workers exited {:?} after the orchestrator was killed", killed.elapsed());

    // A new orchestrator with a short orphan timeout marks the run failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut second = setup.start_run(
        &template,
        &["--workers", "1", "--warmup", "0", "--duration", "1"],
        &timings(json!({"orphan_after_seconds": 2.0})),
    );
    assert_eq!(second.wait(RUN_TIMEOUT).await, Some(0), "stderr:\n{}", second.stderr());
    let run = setup.run(&run_id).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.status_reason.as_deref(), Some("orchestrator stopped while the run was active"));
    assert!(run.end_time.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_templates_fail_before_any_worker() {
    let setup = Setup::new().await;
    let cases = [
        ("syntax", "SELECT abalance FROM {table} WHER aid = $1", "100", "workload.operations[0].sql"),
        ("unknown table", "SELECT abalance FROM {table} WHERE aid = $1", "100", "target.table"),
        ("weights", "SELECT abalance FROM {table} WHERE aid = $1", "90", "weight_pct"),
    ];
    for (name, sql, weight, field) in cases {
        let table = if name == "unknown table" { "no_such_table" } else { "pgbench_accounts" };
        let template = setup.template(
            &name.replace(' ', "-"),
            &format!(
                "name: bad {name}\ntarget:\n  kind: postgres\n  connection: local-pg\n  table: {table}\n  key_column: aid\n\
                 workload:\n  operations:\n    - kind: POINT_LOOKUP\n      weight_pct: {weight}\n      sql: \"{sql}\"\n      params: [\"random_int(1, 100)\"]\n"
            ),
        );
        let mut process = setup.start_run(&template, &[], &timings(json!({})));
        let code = process.wait(Duration::from_secs(60)).await;
        let stderr = process.stderr();
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains(&format!("bad {name}")), "{name}: the message names the template: {stderr}");
        assert!(stderr.contains(field), "{name}: the message names {field}: {stderr}");
        assert!(!stderr.contains(" created: "), "{name}: no run was created: {stderr}");
    }
    let runs = setup.store.list_runs(&RunFilter::default()).await.unwrap();
    assert!(runs.is_empty(), "no run was written: {runs:?}");
    let templates = setup.store.list_templates().await.unwrap();
    let names: Vec<&str> = templates.iter().map(|row| row.template_name.as_str()).collect();
    assert!(names.is_empty(), "no invalid template was stored: {names:?}");
    assert!(setup.target_url.starts_with("postgres"));
}

#[test]
fn demo_completes_without_postgres() {
    let home = tempfile::tempdir().unwrap();
    let mut command = support::unibench();
    command.args(["demo", "--duration", "2"]).env("UNIBENCH_HOME", home.path());
    let output = support::run(command, Duration::from_secs(120));
    assert!(output.success(), "{output:?}");
    assert!(output.stdout.contains("status     COMPLETED"), "{}", output.stdout);
    assert!(output.stdout.contains("worker-1"), "{}", output.stdout);
    assert!(home.path().join("unibench.db").exists());

    let mut list = support::unibench();
    list.args(["runs", "list", "--json"]).env("UNIBENCH_HOME", home.path());
    let listed = support::run(list, Duration::from_secs(30));
    assert!(listed.success(), "{listed:?}");
    let runs: serde_json::Value = serde_json::from_str(&listed.stdout).expect("runs list --json prints JSON");
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(runs[0]["status"], "COMPLETED");

    // Workers that wrote nothing to stderr leave no log file behind.
    let logs: Vec<_> = std::fs::read_dir(home.path().join("logs"))
        .expect("the worker log directory exists")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    let empty: Vec<_> = logs.iter().filter(|path| std::fs::metadata(path).is_ok_and(|m| m.len() == 0)).collect();
    assert!(empty.is_empty(), "empty worker logs: {empty:?}");

    let mut lowercase = support::unibench();
    lowercase.args(["runs", "list", "--status", "completed", "--json"]).env("UNIBENCH_HOME", home.path());
    let lowercase = support::run(lowercase, Duration::from_secs(30));
    assert!(lowercase.success(), "{lowercase:?}");
    assert!(lowercase.stdout.contains(&run_id), "a status matches in any case: {}", lowercase.stdout);
    let mut zero = support::unibench();
    zero.args(["runs", "list", "--limit", "0"]).env("UNIBENCH_HOME", home.path());
    let zero = support::run(zero, Duration::from_secs(30));
    assert_eq!(zero.code, Some(2), "{zero:?}");
    assert!(zero.stderr.contains("--limit"), "{zero:?}");

    let mut show = support::unibench();
    show.args(["runs", "show", &run_id, "--json"]).env("UNIBENCH_HOME", home.path());
    let shown = support::run(show, Duration::from_secs(30));
    assert!(shown.success(), "{shown:?}");
    let summary: serde_json::Value = serde_json::from_str(&shown.stdout).expect("runs show --json prints JSON");
    assert_eq!(summary["run_id"], json!(run_id));
    assert_eq!(summary["workers"].as_array().map(Vec::len), Some(2));
    for kind in ["POINT_LOOKUP", "RANGE_SCAN", "UPDATE", "INSERT"] {
        assert!(summary["latency_by_kind"][kind]["p95_ms"].is_number(), "{kind} has a P95: {summary}");
    }

    let mut text = support::unibench();
    text.args(["runs", "show", &run_id]).env("UNIBENCH_HOME", home.path());
    let shown = support::run(text, Duration::from_secs(30));
    assert!(shown.stdout.contains(&format!("run        {run_id}")), "{}", shown.stdout);

    // A reader that goes away (`| head`) ends the command without a panic.
    let mut closed = support::unibench();
    closed
        .args(["runs", "show", &run_id])
        .env("UNIBENCH_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = closed.spawn().expect("start unibench runs show");
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    let closed_output = child.wait_with_output().unwrap();
    let closed_stderr = String::from_utf8_lossy(&closed_output.stderr);
    assert!(!closed_stderr.contains("panicked"), "{closed_stderr}");
    assert!(closed_output.status.code() == Some(0) || closed_output.status.signal() == Some(13), "{closed_output:?}");

    let mut compare = support::unibench();
    compare.args(["runs", "compare", &run_id]).env("UNIBENCH_HOME", home.path());
    let compared = support::run(compare, Duration::from_secs(30));
    assert!(compared.success(), "{compared:?}");
    let qps_row = compared.stdout.lines().find(|line| line.starts_with("qps")).expect("a qps row");
    assert_eq!(qps_row.split_whitespace().count(), 2, "one qps column per run: {qps_row}");

    let mut repeated = support::unibench();
    repeated.args(["runs", "compare", &run_id, &run_id]).env("UNIBENCH_HOME", home.path());
    let repeated = support::run(repeated, Duration::from_secs(30));
    assert_eq!(repeated.code, Some(1));
    assert!(repeated.stderr.contains(&format!("run `{run_id}` is given more than once")), "{repeated:?}");

    let mut too_many = support::unibench();
    too_many.args(["runs", "compare", "a", "b", "c", "d", "e", "f"]).env("UNIBENCH_HOME", home.path());
    let rejected = support::run(too_many, Duration::from_secs(30));
    assert_eq!(rejected.code, Some(1));
    assert!(rejected.stderr.contains("at most 5 run ids"), "{rejected:?}");

    let mistyped = home.path().join("no-such-dir").join("unibench.db");
    let mut missing = support::unibench();
    missing.args(["runs", "list", "--store", &format!("sqlite://{}", mistyped.display())]);
    let missing = support::run(missing, Duration::from_secs(30));
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("no SQLite store at"), "{missing:?}");
    assert!(!home.path().join("no-such-dir").exists(), "a missing store is not created");
}

#[test]
fn shipped_templates_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let template: unibench_model::scenario::Template =
                serde_norway::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            unibench_model::template_check::check_template(&template)
                .unwrap_or_else(|problems| panic!("{}: {problems}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked} templates checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_gets_sigterm_then_sigkill() {
    let setup = Setup::new().await;
    let (mut process, run_id) = setup.start_measuring_pair(&[], &frozen_worker_timings()).await;

    let frozen = worker_process(&run_id, "worker-1").await;
    // A stopped process cannot drain or handle SIGTERM; only SIGKILL ends it.
    Command::new("kill").args(["-s", "STOP", &frozen.to_string()]).status().unwrap();
    let stopped = Instant::now();
    process.signal("INT");
    let code = process.wait(RUN_TIMEOUT).await;
    println!("run ended {:?} after the stop request", stopped.elapsed());
    assert_eq!(code, Some(1), "stderr:\n{}", process.stderr());
    let run = setup.run(&run_id).await;
    assert_eq!(run.status, RunStatus::Cancelled, "a stop always ends CANCELLED");
    let reason = run.status_reason.unwrap_or_default();
    assert!(reason.contains("SIGTERM"), "{reason}");
    assert!(reason.contains("SIGKILL"), "{reason}");
    assert!(reason.contains("worker-1"), "{reason}");
    assert!(worker_pids(&run_id).is_empty(), "no worker process left");
    let filter = unibench_store::LogFilter { level: Some("WARN".to_owned()), ..Default::default() };
    let warnings = setup.store.list_logs(&run_id, &filter).await.unwrap();
    assert!(warnings.iter().any(|log| log.message.contains("SIGKILL")), "the escalation is in TEST_LOGS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_final_results_fail_a_finished_run() {
    let setup = Setup::new().await;
    let (mut process, run_id) = setup.start_measuring_pair(&["--duration", "6"], &frozen_worker_timings()).await;
    let frozen = worker_process(&run_id, "worker-1").await;
    // Frozen until the duration ends, worker-1 never writes its final
    // results and is killed after the drain.
    Command::new("kill").args(["-s", "STOP", &frozen.to_string()]).status().unwrap();

    let code = process.wait(RUN_TIMEOUT).await;
    assert_eq!(code, Some(1), "stderr:\n{}", process.stderr());
    let run = setup.run(&run_id).await;
    assert_eq!(run.status, RunStatus::Failed, "incomplete results do not end COMPLETED");
    let reason = run.status_reason.unwrap_or_default();
    assert!(reason.contains("without writing their final results"), "{reason}");
    assert!(reason.contains("worker-1"), "{reason}");
    assert!(!reason.contains("worker-0"), "worker-0 finished normally: {reason}");
    assert!(worker_pids(&run_id).is_empty(), "no worker process left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_run_like_ctrl_c() {
    let setup = Setup::new().await;
    let (mut process, run_id) = setup.start_measuring_pair(&[], &timings(json!({}))).await;

    process.signal("TERM");
    let code = process.wait(RUN_TIMEOUT).await;
    assert_eq!(code, Some(1), "stderr:\n{}", process.stderr());
    let run = setup.run(&run_id).await;
    assert_eq!(run.status, RunStatus::Cancelled, "{:?}", run.status_reason);
    assert!(worker_pids(&run_id).is_empty(), "no worker process left");
}
