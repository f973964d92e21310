//! A harness for worker tests: the test plays the orchestrator. It makes a
//! fresh PostgreSQL store and target database, writes `RUN_STATUS` and
//! control events itself, and starts the real `unibench worker` binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use unibench_model::event::{SetPhaseEvent, SetWorkerTargetEvent, StartEvent, StopEvent, StopInitiator};
use unibench_model::{ControlEventPayload, EventScope, RunPhase, RunStatus};
use unibench_store::*;

use super::{create_database, database_url, pg_execute};

/// Hard limit for any worker process a test starts.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(120);

/// Shrunk control-plane timings so that tests run in seconds.
pub fn fast_timings() -> Value {
    json!({
        "heartbeat_seconds": 0.5,
        "event_poll_seconds": 0.25,
        "reconcile_seconds": 1.0,
        "log_flush_seconds": 1.0,
        "no_store_exit_seconds": 4.0,
        "start_wait_seconds": 3.0,
        "drain_seconds": 10.0,
        "orchestrator_silence_seconds": 600.0
    })
}

/// A test's store, target and run.
pub struct Harness {
    pub store: Store,
    pub store_url: String,
    pub target_database: String,
    pub target_url: String,
    pub run_id: String,
    pub dir: tempfile::TempDir,
    pub connections_file: PathBuf,
}

impl Harness {
    /// A store and a target database with `bench_items(id, counter, note)`
    /// holding `rows` rows.
    pub async fn new(rows: u32) -> Harness {
        let store_database = create_database().await;
        let store_url = database_url(&store_database);
        let store = Store::connect(&store_url.parse().unwrap()).await.expect("connect to the test store");
        store.apply_schema().await.expect("apply the store schema");

        let target_database = create_database().await;
        pg_execute(
            Some(&target_database),
            &format!(
                "CREATE TABLE bench_items (id BIGINT PRIMARY KEY, counter BIGINT NOT NULL DEFAULT 0, note TEXT);\
                 INSERT INTO bench_items (id, note) SELECT g, 'row ' || g FROM generate_series(1, {rows}) AS g;"
            ),
        )
        .await;
        let target_url = database_url(&target_database);

        let dir = tempfile::tempdir().expect("create a temporary directory");
        let connections_file = dir.path().join("connections.toml");
        std::fs::write(
            &connections_file,
            format!("[connections.bench]\nkind = \"postgres\"\nurl = \"{target_url}\"\n"),
        )
        .expect("write connections.toml");
        let run_id = format!("run-{}", uuid::Uuid::new_v4().simple());
        Harness { store, store_url, target_database, target_url, run_id, dir, connections_file }
    }

    /// A template with one operation.
    pub fn template(sql: &str, params: &[&str], connections: u32, query_log: &str) -> Value {
        json!({
            "name": "worker test",
            "target": {"kind": "postgres", "connection": "bench", "table": "bench_items", "table_type": "POSTGRES", "key_column": "id"},
            "workload": {
                "concurrent_connections": connections,
                "warmup_seconds": 0,
                "duration_seconds": 60,
                "operations": [{"kind": "CUSTOM", "weight_pct": 100, "sql": sql, "params": params}],
                "query_log": query_log
            }
        })
    }

    pub fn scenario(template: Value, timings: Value) -> Value {
        json!({"unibench_version": env!("CARGO_PKG_VERSION"), "template": template, "timings": timings})
    }

    /// Creates the run with the given scenario, status and phase.
    pub async fn create_run(&self, scenario: Value, status: RunStatus, phase: RunPhase) {
        let mut run = RunStatusRow::prepared(&self.run_id, "worker test", scenario);
        run.status = status;
        run.phase = phase;
        run.total_workers_expected = 1;
        let parent = TestResultRow {
            test_id: self.run_id.clone(),
            run_id: self.run_id.clone(),
            test_name: "worker test".to_owned(),
            status: status.as_str().to_owned(),
            ..Default::default()
        };
        self.store.create_run(&run, &parent).await.expect("create the run");
    }

    pub async fn update_run(&self, update: RunStatusUpdate) {
        self.store.update_run(&self.run_id, &update).await.expect("update the run");
    }

    pub async fn emit(&self, payload: ControlEventPayload, mirror: Option<RunStatusUpdate>) {
        let event = NewControlEvent::from(&payload);
        self.store.append_events(&self.run_id, &[event], mirror.as_ref()).await.expect("append an event");
    }

    /// Emits START and marks the run RUNNING in `phase`.
    pub async fn start(&self, phase: RunPhase) {
        let mirror = RunStatusUpdate { status: Some(RunStatus::Running), phase: Some(phase), ..Default::default() };
        self.emit(ControlEventPayload::Start(StartEvent { scope: EventScope::Run, expected_workers: 1 }), Some(mirror))
            .await;
    }

    pub async fn set_phase(&self, phase: RunPhase) {
        let mirror = RunStatusUpdate { phase: Some(phase), ..Default::default() };
        self.emit(
            ControlEventPayload::SetPhase(SetPhaseEvent { scope: EventScope::Run, phase, effective_at: None }),
            Some(mirror),
        )
        .await;
    }

    pub async fn set_target(&self, connections: u32) {
        let targets = json!({"worker-0": {"target_connections": connections}});
        let mirror = RunStatusUpdate { worker_targets: Some(targets), ..Default::default() };
        let event = SetWorkerTargetEvent {
            scope: EventScope::Worker,
            worker_id: Some("worker-0".to_owned()),
            worker_group_id: Some(0),
            target_connections: connections,
            target_qps: None,
            step_id: None,
            step_number: None,
            effective_at: None,
            ramp_seconds: None,
            reason: Some("test".to_owned()),
        };
        self.emit(ControlEventPayload::SetWorkerTarget(event), Some(mirror)).await;
    }

    pub async fn stop(&self) {
        let mirror = RunStatusUpdate { status: Some(RunStatus::Cancelling), ..Default::default() };
        let stop = StopEvent {
            scope: EventScope::Run,
            reason: "test".to_owned(),
            initiated_by: StopInitiator::Orchestrator,
            drain_timeout_seconds: 30,
        };
        self.emit(ControlEventPayload::Stop(stop), Some(mirror)).await;
    }

    /// Starts `unibench worker` as worker-0 of one, against `store_url`.
    pub fn spawn_worker_with_store(&self, store_url: &str) -> WorkerProcess {
        let log = self.dir.path().join(format!("worker-{}.log", uuid::Uuid::new_v4().simple()));
        let log_file = std::fs::File::create(&log).expect("create the worker log");
        let child = Command::new(env!("CARGO_BIN_EXE_unibench"))
            .args(["worker", "--run-id", &self.run_id, "--worker-id", "worker-0"])
            .args(["--worker-group-id", "0", "--worker-group-count", "1"])
            .args(["--store", store_url])
            .arg("--connections")
            .arg(&self.connections_file)
            .env("UNIBENCH_LOG", "info")
            .env_remove("UNIBENCH_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start unibench worker");
        WorkerProcess { child: Some(child), log, started: Instant::now() }
    }

    pub fn spawn_worker(&self) -> WorkerProcess {
        self.spawn_worker_with_store(&self.store_url.clone())
    }

    pub async fn heartbeat(&self) -> Option<HeartbeatRow> {
        self.store.list_heartbeats(&self.run_id).await.expect("read heartbeats").into_iter().next()
    }

    pub async fn snapshots(&self) -> Vec<SnapshotRow> {
        let filter = SnapshotFilter { page: Page { limit: 10_000, offset: 0 }, ..Default::default() };
        self.store.list_snapshots(&self.run_id, &filter).await.expect("read snapshots")
    }

    pub fn child_test_id(&self) -> String {
        format!("{}-worker-0", self.run_id)
    }

    /// Sessions the worker holds on the target database.
    pub async fn target_sessions(&self) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.target_url, tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'unibench-worker'",
                &[],
            )
            .await
            .unwrap();
        drop(client);
        task.await.ok();
        row.get(0)
    }
}

/// A running worker, killed when dropped.
pub struct WorkerProcess {
    child: Option<Child>,
    pub log: PathBuf,
    started: Instant,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit code, killing the worker after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("worker already reaped");
        let log = self.log.clone();
        super::wait_for_exit(&mut child, timeout, "worker", || std::fs::read_to_string(&log).unwrap_or_default()).await
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        if self.started.elapsed() > WORKER_TIMEOUT {
            eprintln!("worker ran longer than {WORKER_TIMEOUT:?}");
        }
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
