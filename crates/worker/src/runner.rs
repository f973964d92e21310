//! The worker's lifecycle, as a state machine driven by the store:
//!
//! - `STARTING`: connect to the store, read the run and its scenario, check
//!   the version, resolve the target and compile the workload.
//! - `WAITING`: heartbeat until a `START` event arrives or the run is
//!   already `RUNNING` (at most the start timeout).
//! - `RUNNING`: create the child `TEST_RESULTS` row, take the run's phase,
//!   generate load; every second write a heartbeat and a snapshot and poll
//!   control events; every few seconds reconcile phase and target with
//!   `RUN_STATUS`.
//! - `DRAINING`: on `STOP`, SIGTERM, an ended or orphaned run, a fatal
//!   workload error or a lost store, stop starting queries and wait for the
//!   in-flight ones, still heartbeating.
//! - `COMPLETED`: flush every buffered row, finalise the child row, write
//!   the last heartbeat, exit.
//!
//! Store writes never block the load: connection tasks run on their own,
//! and failed writes back off (1 s doubling to 30 s) while the rows stay
//! buffered. Any successful store operation resets the no-store clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use unibench_model::event::StopEvent;
use unibench_model::scenario::{QueryKind, ScenarioConfig, Timings};
use unibench_model::target::{split_evenly, WorkerTarget, WorkerTargets};
use unibench_model::{ControlEventPayload, RunPhase, RunStatus, WorkerStatus, UNIBENCH_VERSION};
use unibench_store::{
    HeartbeatRow, KindLatency, RunStatusRow, SnapshotRow, Store, StoreError, StoreResult, StoreUrl, TestResultRow,
};

use crate::exit::{ExitStatus, WorkerError};
use crate::load::{load_thread_count, LoadGenerator, LoadShared};
use crate::metrics::{Counting, Metrics, Tally};
use crate::sink::{Identity, Level, Sink};
use crate::system::ProcessSampler;
use crate::workload::CompiledWorkload;

/// Key of the per-kind interval histograms in a snapshot's
/// `CUSTOM_METRICS`.
pub const KIND_HISTOGRAMS_KEY: &str = "kind_histograms";
/// Events read per store round trip while catching up on a backlog.
const EVENT_PAGE: u32 = 100;
/// Maximum time one flush of executions may take while the worker runs.
const FLUSH_BUDGET: Duration = Duration::from_millis(250);
/// Execution rows written per statement batch.
const EXECUTION_BATCH: usize = 5_000;
/// How often ramps advance and connection slots are topped up.
const MAINTAIN_INTERVAL: Duration = Duration::from_millis(100);
/// Maximum wait between store retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The worker's identity and store.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub run_id: String,
    pub worker_id: String,
    pub worker_group_id: u32,
    pub worker_group_count: u32,
    pub store: StoreUrl,
    pub connections_file: Option<PathBuf>,
}

/// Runs the worker to the end and returns its exit status.
pub async fn run_worker(args: WorkerArgs) -> ExitStatus {
    match run(args).await {
        Ok(status) => status,
        Err(error) => {
            tracing::error!(%error, "worker stopped");
            eprintln!("error: {error}");
            error.exit_status()
        }
    }
}

async fn run(args: WorkerArgs) -> Result<ExitStatus, WorkerError> {
    if args.worker_id.trim().is_empty() {
        return Err(WorkerError::InvalidArguments("--worker-id is empty".to_owned()));
    }
    if args.worker_group_count == 0 || args.worker_group_id >= args.worker_group_count {
        return Err(WorkerError::InvalidArguments(format!(
            "--worker-group-id {} must be below --worker-group-count {}",
            args.worker_group_id, args.worker_group_count
        )));
    }
    let store = connect_store(&args.store).await?;
    let (run, scenario) = load_run(&store, &args.run_id).await?;
    if run.status.is_terminal() {
        return Err(WorkerError::RunAlreadyEnded { run_id: run.run_id, status: run.status.to_string() });
    }
    let mut worker = Worker::new(args, store, scenario, &run);
    worker.log(Level::Info, "worker starting", None);
    worker.write_heartbeat(WorkerStatus::Starting, 0, 0).await;

    let shared = worker.prepare_load(&run).await?;
    match worker.wait_for_start().await? {
        StartGate::Stopped => {
            worker.log(Level::Info, "run stopped before it started", None);
            worker.finish_idle().await;
            Ok(ExitStatus::Clean)
        }
        StartGate::Started(run) => worker.run_load(shared, &run).await,
    }
}

/// Connects to the store, retrying unreachable stores for the default
/// no-store time. A bad URL or bad credentials fail at once.
async fn connect_store(url: &StoreUrl) -> Result<Store, WorkerError> {
    let limit = Timings::duration(Timings::default().no_store_exit_seconds);
    let started = Instant::now();
    let mut backoff = Duration::from_secs(1);
    loop {
        match Store::connect(url).await {
            Ok(store) => return Ok(store),
            Err(error @ (StoreError::InvalidUrl { .. } | StoreError::Authentication { .. })) => {
                return Err(WorkerError::StoreConfig(error));
            }
            Err(error) if started.elapsed() >= limit => {
                return Err(WorkerError::StoreLost { seconds: limit.as_secs_f64(), last_error: error.to_string() });
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_s = backoff.as_secs(), "store unreachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Reads the run and decodes its scenario, checking the version first so
/// that a scenario from another version is reported as such rather than as
/// a confusing field error.
async fn load_run(store: &Store, run_id: &str) -> Result<(RunStatusRow, ScenarioConfig), WorkerError> {
    let run = store
        .get_run(run_id)
        .await
        .map_err(WorkerError::StoreConfig)?
        .ok_or_else(|| WorkerError::RunNotFound { run_id: run_id.to_owned() })?;
    let invalid = |field: &str, reason: String| WorkerError::InvalidScenario {
        run_id: run_id.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let run_version = match run.scenario_config.get("unibench_version") {
        Some(serde_json::Value::String(version)) => version.clone(),
        Some(_) => return Err(invalid("unibench_version", "expected a version string".to_owned())),
        None => return Err(invalid("unibench_version", "missing".to_owned())),
    };
    if run_version != UNIBENCH_VERSION {
        return Err(WorkerError::VersionMismatch {
            run_id: run_id.to_owned(),
            worker_version: UNIBENCH_VERSION.to_owned(),
            run_version,
        });
    }
    let scenario: ScenarioConfig = serde_path_to_error::deserialize(&run.scenario_config).map_err(|error| {
        let field = error.path().to_string();
        invalid(&field, error.into_inner().to_string())
    })?;
    if let Err(problems) = unibench_model::template_check::check_template(&scenario.template) {
        return Err(invalid("template", problems.to_string()));
    }
    Ok((run, scenario))
}

enum StartGate {
    Started(Box<RunStatusRow>),
    Stopped,
}

/// Tracks store failures: backoff between attempts and the no-store clock.
struct StoreHealth {
    last_ok: Instant,
    next_attempt: Instant,
    backoff: Duration,
    last_error: Option<String>,
}

impl StoreHealth {
    fn new() -> Self {
        let now = Instant::now();
        StoreHealth { last_ok: now, next_attempt: now, backoff: Duration::ZERO, last_error: None }
    }

    fn ready(&self) -> bool {
        Instant::now() >= self.next_attempt
    }

    fn observe<T>(&mut self, operation: &str, result: StoreResult<T>) -> Option<T> {
        match result {
            Ok(value) => {
                self.last_ok = Instant::now();
                self.next_attempt = self.last_ok;
                self.backoff = Duration::ZERO;
                self.last_error = None;
                Some(value)
            }
            Err(error) => {
                self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                self.next_attempt = Instant::now() + self.backoff;
                tracing::warn!(%error, operation, retry_in_s = self.backoff.as_secs(), "store operation failed");
                self.last_error = Some(error.to_string());
                None
            }
        }
    }

    fn lost_for(&self, limit: Duration) -> bool {
        self.last_ok.elapsed() >= limit
    }
}

/// The cause of a drain.
#[derive(Debug, Clone)]
enum StopCause {
    Requested { reason: String, drain: Duration },
    RunEnded(RunStatus),
    Orphaned,
    Fatal(String),
    StoreLost,
}

struct Worker {
    args: WorkerArgs,
    store: Store,
    scenario: ScenarioConfig,
    timings: Timings,
    identity: Identity,
    template_id: Option<String>,
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    health: StoreHealth,
    sampler: ProcessSampler,

    phase: RunPhase,
    last_sequence: i64,
    heartbeat_count: i64,
    start_seen: bool,
    stop: Option<StopCause>,
    target_updates: Vec<(WorkerTarget, Option<Duration>)>,

    running_since: Option<(Instant, DateTime<Utc>)>,
    measurement_since: Option<(Instant, DateTime<Utc>)>,
    /// When the last counted query finished: the end of the measurement window.
    load_ended: Option<(Instant, DateTime<Utc>)>,
    cumulative: Tally,
    pending_snapshots: Vec<SnapshotRow>,
    /// The last failed query's message, written with each heartbeat.
    last_error: Option<String>,
    /// The last `RUN_STATUS.UPDATED_AT` seen, and when it was first seen.
    last_run_update: Option<(DateTime<Utc>, Instant)>,
}

impl Worker {
    fn new(args: WorkerArgs, store: Store, scenario: ScenarioConfig, run: &RunStatusRow) -> Self {
        let identity = Identity {
            run_id: args.run_id.clone(),
            test_id: format!("{}-{}", args.run_id, args.worker_id),
            worker_id: args.worker_id.clone(),
        };
        let sink = Arc::new(Sink::new(identity.clone(), scenario.template.workload.query_log));
        let clamp = Timings::duration(scenario.timings.latency_clamp_seconds);
        Worker {
            timings: scenario.timings,
            template_id: run.template_id.clone().or_else(|| scenario.template_id.clone()),
            args,
            store,
            scenario,
            identity,
            sink,
            metrics: Arc::new(Metrics::new(Counting::Warmup, clamp, load_thread_count())),
            health: StoreHealth::new(),
            sampler: ProcessSampler::new(),
            phase: run.phase,
            last_sequence: 0,
            heartbeat_count: 0,
            start_seen: false,
            stop: None,
            target_updates: Vec::new(),
            running_since: None,
            measurement_since: None,
            load_ended: None,
            cumulative: Tally::default(),
            pending_snapshots: Vec::new(),
            last_error: None,
            last_run_update: None,
        }
    }

    fn log(&self, level: Level, message: &str, details: Option<serde_json::Value>) {
        match level {
            Level::Info => {
                tracing::info!(run_id = %self.identity.run_id, worker_id = %self.identity.worker_id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(run_id = %self.identity.run_id, worker_id = %self.identity.worker_id, "{message}")
            }
            Level::Error => {
                tracing::error!(run_id = %self.identity.run_id, worker_id = %self.identity.worker_id, "{message}")
            }
        }
        self.sink.log(level, message, details);
    }

    fn duration(&self, seconds: f64) -> Duration {
        Timings::duration(seconds)
    }

    // STARTING

    /// Resolves the target, loads value pools and compiles the workload.
    async fn prepare_load(&mut self, run: &RunStatusRow) -> Result<Arc<LoadShared>, WorkerError> {
        let template = &self.scenario.template;
        let target_error = |reason: String| WorkerError::TargetConfig { run_id: run.run_id.clone(), reason };
        let target = unibench_target::TargetConfig::resolve(&template.target, self.args.connections_file.as_deref())
            .map_err(|error| target_error(error.to_string()))?;
        let pools = match &self.template_id {
            Some(template_id) => self.store.list_value_pools(template_id).await.map_err(WorkerError::StoreConfig)?,
            None => Vec::new(),
        };
        let workload =
            CompiledWorkload::compile(template, &pools, self.args.worker_group_id, self.args.worker_group_count)
                .map_err(|error| WorkerError::InvalidScenario {
                    run_id: run.run_id.clone(),
                    field: "template".to_owned(),
                    reason: error.to_string(),
                })?;
        let quoted = unibench_target::quote_table(template.target.kind, &template.target.table)
            .map_err(|error| target_error(error.to_string()))?;
        let statements = workload
            .operations()
            .iter()
            .map(|operation| unibench_target::expand_table(&operation.sql, &quoted))
            .collect();
        Ok(Arc::new(LoadShared::new(
            Arc::new(workload),
            statements,
            target,
            Arc::clone(&self.metrics),
            Arc::clone(&self.sink),
        )))
    }

    // WAITING

    /// Heartbeats until the run starts, is stopped, or the start timeout
    /// passes. A START event may have been written before this worker first
    /// polls: it is found in the backlog, read from sequence 0.
    async fn wait_for_start(&mut self) -> Result<StartGate, WorkerError> {
        let deadline = Instant::now() + self.duration(self.timings.start_wait_seconds);
        let mut poll =
            tokio::time::interval(self.duration(self.timings.event_poll_seconds.min(self.timings.heartbeat_seconds)));
        loop {
            poll.tick().await;
            self.write_heartbeat(WorkerStatus::Waiting, 0, 0).await;
            self.poll_events().await;
            if matches!(self.stop, Some(StopCause::Requested { .. })) {
                return Ok(StartGate::Stopped);
            }
            if let Some(run) = self.read_run().await {
                if run.status.is_terminal() {
                    return Err(WorkerError::RunAlreadyEnded { run_id: run.run_id, status: run.status.to_string() });
                }
                if self.start_seen || run.status.is_active() {
                    if run.status == RunStatus::Cancelling {
                        return Ok(StartGate::Stopped);
                    }
                    return Ok(StartGate::Started(Box::new(run)));
                }
            }
            if self.health.lost_for(self.duration(self.timings.no_store_exit_seconds)) {
                return Err(self.store_lost_error());
            }
            if Instant::now() >= deadline {
                return Err(WorkerError::StartTimeout {
                    run_id: self.identity.run_id.clone(),
                    seconds: self.timings.start_wait_seconds,
                });
            }
        }
    }

    fn store_lost_error(&self) -> WorkerError {
        WorkerError::StoreLost {
            seconds: self.timings.no_store_exit_seconds,
            last_error: self.health.last_error.clone().unwrap_or_else(|| "no successful store operation".to_owned()),
        }
    }

    async fn read_run(&mut self) -> Option<RunStatusRow> {
        if !self.health.ready() {
            return None;
        }
        let result = self.store.get_run(&self.identity.run_id).await;
        self.health.observe("read run status", result).flatten()
    }

    /// Marks an idle worker completed.
    async fn finish_idle(&mut self) {
        self.flush_logs().await;
        self.write_heartbeat(WorkerStatus::Completed, 0, 0).await;
    }

    // Control events and reconciliation.

    /// Reads every new control event, page by page, and applies those
    /// addressed to this worker in sequence order.
    async fn poll_events(&mut self) {
        loop {
            if !self.health.ready() {
                return;
            }
            let result = self.store.read_events(&self.identity.run_id, self.last_sequence, EVENT_PAGE).await;
            let Some(events) = self.health.observe("read control events", result) else { return };
            let full_page = self.apply_events(events);
            if !full_page {
                return;
            }
        }
    }

    /// Applies new events in sequence order, skipping any at or below the
    /// last sequence seen. Returns whether the page was full, so that the
    /// caller reads on.
    fn apply_events(&mut self, events: Vec<unibench_store::ControlEventRow>) -> bool {
        let full_page = events.len() as u32 == EVENT_PAGE;
        for event in events {
            if event.sequence_id <= self.last_sequence {
                continue;
            }
            self.last_sequence = event.sequence_id;
            match ControlEventPayload::from_json(event.event_type, &event.event_data) {
                Ok(payload) => self.apply_event(payload),
                Err(error) => {
                    self.log(Level::Warn, &format!("ignored control event {}: {error}", event.sequence_id), None)
                }
            }
        }
        full_page
    }

    fn apply_event(&mut self, payload: ControlEventPayload) {
        if !payload.addresses(&self.args.worker_id, self.args.worker_group_id) {
            return;
        }
        match payload {
            ControlEventPayload::Start(_) => self.start_seen = true,
            ControlEventPayload::Stop(StopEvent { reason, drain_timeout_seconds, .. }) => {
                if self.stop.is_none() {
                    let drain = Duration::from_secs(drain_timeout_seconds);
                    self.stop = Some(StopCause::Requested { reason, drain });
                }
            }
            ControlEventPayload::SetPhase(event) => self.phase = event.phase,
            ControlEventPayload::SetWorkerTarget(event) => {
                let target =
                    WorkerTarget { target_connections: event.target_connections, target_qps: event.target_qps };
                let ramp = event.ramp_seconds.map(Timings::duration);
                self.target_updates.push((target, ramp));
            }
        }
    }

    /// Converges with `RUN_STATUS` in case an event was missed: the phase,
    /// this worker's target, an ended run, or an orchestrator that stopped
    /// touching the run.
    async fn reconcile(&mut self, current: WorkerTarget) {
        let Some(run) = self.read_run().await else { return };
        if run.status.is_terminal() && self.stop.is_none() {
            self.stop = Some(StopCause::RunEnded(run.status));
        }
        if run.phase != self.phase && phase_rank(run.phase) > phase_rank(self.phase) {
            self.phase = run.phase;
        }
        if let Some(target) = my_target(&run.worker_targets, &self.args.worker_id) {
            if target != current && self.target_updates.is_empty() {
                self.target_updates.push((target, None));
            }
        }
        if run.status.is_active() && self.stop.is_none() {
            self.check_orchestrator_alive(run.updated_at);
        }
    }

    /// Drains when the run's `UPDATED_AT` has not changed for the silence
    /// timeout. The orchestrator touches it at least every 10 s, so the age
    /// is measured on this worker's monotonic clock from the moment a value
    /// was first seen, and clock skew between hosts cannot matter.
    fn check_orchestrator_alive(&mut self, updated_at: Option<DateTime<Utc>>) {
        let now = Instant::now();
        match self.last_run_update {
            Some((seen, since)) if Some(seen) == updated_at => {
                let silence = now.duration_since(since);
                if silence >= self.duration(self.timings.orchestrator_silence_seconds) {
                    self.log(
                        Level::Warn,
                        &format!("run not updated for {} s: the orchestrator is gone, draining", silence.as_secs()),
                        None,
                    );
                    self.stop = Some(StopCause::Orphaned);
                }
            }
            _ => self.last_run_update = updated_at.map(|value| (value, now)),
        }
    }

    fn initial_target(&self, run: &RunStatusRow) -> WorkerTarget {
        if let Some(target) = my_target(&run.worker_targets, &self.args.worker_id) {
            return target;
        }
        let workload = &self.scenario.template.workload;
        let count = self.args.worker_group_count;
        let connections = split_evenly(workload.concurrent_connections, count)
            .get(self.args.worker_group_id as usize)
            .copied()
            .unwrap_or(0);
        WorkerTarget {
            target_connections: connections,
            target_qps: workload.target_qps.map(|qps| qps / f64::from(count)),
        }
    }

    // RUNNING

    async fn run_load(&mut self, shared: Arc<LoadShared>, run: &RunStatusRow) -> Result<ExitStatus, WorkerError> {
        let started = (Instant::now(), Utc::now());
        self.running_since = Some(started);
        if phase_rank(run.phase) > phase_rank(self.phase) {
            self.phase = run.phase;
        }
        self.enter_phase();
        let initial = self.initial_target(run);
        self.write_child_result("RUNNING", initial.target_connections, None).await;
        self.log(
            Level::Info,
            &format!("worker running with {} connections in {}", initial.target_connections, self.phase),
            Some(json!({"target_connections": initial.target_connections, "target_qps": initial.target_qps})),
        );

        let mut load = LoadGenerator::new(Arc::clone(&shared))
            .map_err(|error| WorkerError::Fatal(format!("cannot start the load threads: {error}")))?;
        load.set_target(initial.target_connections, initial.target_qps, None);
        let mut current = initial;

        let mut tick = tokio::time::interval(self.duration(self.timings.heartbeat_seconds));
        // Each tick also reads new control events; a separate poll runs only
        // when events must be read more often than heartbeats are written.
        let poll_separately = self.timings.event_poll_seconds < self.timings.heartbeat_seconds;
        let mut poll = tokio::time::interval(self.duration(self.timings.event_poll_seconds));
        let mut reconcile = tokio::time::interval(self.duration(self.timings.reconcile_seconds));
        let mut log_flush = tokio::time::interval(self.duration(self.timings.log_flush_seconds));
        let mut maintain = tokio::time::interval(MAINTAIN_INTERVAL);
        reconcile.tick().await;
        let mut sigterm = signal(SignalKind::terminate()).map_err(|error| WorkerError::Fatal(error.to_string()))?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(|error| WorkerError::Fatal(error.to_string()))?;
        let sink = Arc::clone(&self.sink);

        while self.stop.is_none() {
            tokio::select! {
                _ = tick.tick() => {
                    self.tick(&shared, WorkerStatus::Running).await;
                    self.flush_executions(false).await;
                }
                _ = poll.tick(), if poll_separately => self.poll_events().await,
                _ = reconcile.tick() => self.reconcile(current).await,
                _ = log_flush.tick() => self.flush_logs().await,
                _ = sink.urgent.notified() => self.flush_logs().await,
                _ = maintain.tick() => {}
                _ = sigterm.recv() => self.request_local_stop("SIGTERM"),
                _ = sigint.recv() => self.request_local_stop("SIGINT"),
            }
            self.enter_phase();
            for (target, ramp) in std::mem::take(&mut self.target_updates) {
                if target != current {
                    self.log(
                        Level::Info,
                        &format!("target changed to {} connections", target.target_connections),
                        Some(json!({"target_connections": target.target_connections, "target_qps": target.target_qps})),
                    );
                }
                load.set_target(target.target_connections, target.target_qps, ramp);
                current = target;
            }
            load.maintain();
            if let Some(message) = shared.fatal_error() {
                self.stop = Some(StopCause::Fatal(message));
            } else if self.health.lost_for(self.duration(self.timings.no_store_exit_seconds)) {
                self.stop = Some(StopCause::StoreLost);
            }
        }
        self.drain(load, shared, &mut tick).await
    }

    fn request_local_stop(&mut self, signal_name: &str) {
        let drain = self.duration(self.timings.drain_seconds);
        self.stop = Some(StopCause::Requested { reason: format!("{signal_name} received"), drain });
    }

    /// Starts counting when the run reaches measurement; happens once.
    fn enter_phase(&mut self) {
        if phase_rank(self.phase) >= phase_rank(RunPhase::Measurement) && self.metrics.start_measurement() {
            // Warmup queries still in the interval were never counted, so
            // only the timestamps need resetting.
            self.measurement_since = Some((Instant::now(), Utc::now()));
            self.log(Level::Info, "measurement started", None);
        }
    }

    /// Writes a heartbeat and this interval's snapshot.
    async fn tick(&mut self, shared: &LoadShared, status: WorkerStatus) {
        let interval = self.metrics.take_interval();
        if interval.counting == Counting::Measurement {
            self.cumulative.merge(&interval.tally);
        }
        let snapshot = self.snapshot(&interval, shared);
        self.pending_snapshots.push(snapshot);
        self.last_error = shared.last_query_error();
        let heartbeat = self.heartbeat_row(status, shared.open_connections(), shared.desired_connections());
        if !self.health.ready() {
            return;
        }
        let result = self.store.worker_tick(&heartbeat, &self.pending_snapshots, self.last_sequence, EVENT_PAGE).await;
        if let Some(events) = self.health.observe("write heartbeat and snapshot", result) {
            self.heartbeat_count += 1;
            self.pending_snapshots.clear();
            if self.apply_events(events) {
                self.poll_events().await;
            }
        }
    }

    fn snapshot(&mut self, interval: &crate::metrics::Interval, shared: &LoadShared) -> SnapshotRow {
        let histogram = &interval.tally.overall;
        let seconds = interval.elapsed.as_secs_f64();
        let qps = if seconds > 0.0 { interval.tally.queries as f64 / seconds } else { 0.0 };
        let elapsed = self.running_since.map(|(since, _)| since.elapsed().as_secs_f64()).unwrap_or(0.0);
        let mut custom = serde_json::Map::new();
        if self.cumulative.clamped > 0 {
            custom.insert("latency_values_clamped".to_owned(), json!(self.cumulative.clamped));
        }
        // Per-kind interval histograms let the final rollup compute exact
        // per-kind percentiles across workers.
        let kinds: serde_json::Map<String, serde_json::Value> = QueryKind::ALL
            .iter()
            .filter_map(|kind| interval.tally.kind(*kind).map(|h| (kind.as_str().to_owned(), json!(h.to_base64()))))
            .collect();
        if !kinds.is_empty() {
            custom.insert(KIND_HISTOGRAMS_KEY.to_owned(), serde_json::Value::Object(kinds));
        }
        let dropped = self.sink.dropped_executions();
        if dropped > 0 {
            custom.insert("executions_dropped".to_owned(), json!(dropped));
        }
        SnapshotRow {
            snapshot_id: unibench_store::new_id(),
            run_id: self.identity.run_id.clone(),
            test_id: self.identity.test_id.clone(),
            worker_id: self.identity.worker_id.clone(),
            worker_group_id: i64::from(self.args.worker_group_id),
            worker_group_count: i64::from(self.args.worker_group_count),
            timestamp: Utc::now(),
            elapsed_seconds: elapsed,
            phase: self.phase.as_str().to_owned(),
            total_queries: to_i64(self.cumulative.queries),
            read_count: to_i64(self.cumulative.reads),
            write_count: to_i64(self.cumulative.writes),
            error_count: to_i64(self.cumulative.errors),
            qps,
            p50_latency_ms: histogram.percentile_ms(50.0),
            p95_latency_ms: histogram.percentile_ms(95.0),
            p99_latency_ms: histogram.percentile_ms(99.0),
            avg_latency_ms: histogram.mean_ms(),
            min_latency_ms: histogram.min_ms(),
            max_latency_ms: histogram.max_ms(),
            active_connections: i64::from(shared.open_connections()),
            target_connections: i64::from(shared.desired_connections()),
            cpu_percent: self.sampler.cpu_percent(),
            memory_percent: self.sampler.memory_percent(),
            latency_histogram: (!histogram.is_empty()).then(|| histogram.to_base64()),
            custom_metrics: (!custom.is_empty()).then_some(serde_json::Value::Object(custom)),
            created_at: None,
        }
    }

    fn heartbeat_row(&self, status: WorkerStatus, active: u32, target: u32) -> HeartbeatRow {
        HeartbeatRow {
            run_id: self.identity.run_id.clone(),
            worker_id: self.identity.worker_id.clone(),
            worker_group_id: i64::from(self.args.worker_group_id),
            status,
            phase: Some(self.phase),
            last_heartbeat: None,
            heartbeat_count: self.heartbeat_count + 1,
            active_connections: i64::from(active),
            target_connections: i64::from(target),
            last_error: self.last_error.clone().or_else(|| self.health.last_error.clone()),
            error_count: to_i64(self.cumulative.errors),
            created_at: None,
            updated_at: None,
        }
    }

    async fn write_heartbeat(&mut self, status: WorkerStatus, active: u32, target: u32) {
        let heartbeat = self.heartbeat_row(status, active, target);
        if !self.health.ready() {
            return;
        }
        let result = self.store.upsert_heartbeats(std::slice::from_ref(&heartbeat)).await;
        if self.health.observe("write heartbeat", result).is_some() {
            self.heartbeat_count += 1;
        }
    }

    /// Writes buffered executions. While running, it stops after
    /// [`FLUSH_BUDGET`] so that a store slower than the target cannot stall
    /// the control loop. The buffer then grows to its cap and drops, counted,
    /// what does not fit. With `all`, it writes everything.
    async fn flush_executions(&mut self, all: bool) {
        let started = Instant::now();
        loop {
            if !self.health.ready() {
                return;
            }
            let rows = self.sink.take_executions(EXECUTION_BATCH);
            if rows.is_empty() {
                return;
            }
            let full = rows.len() == EXECUTION_BATCH;
            let result = self.store.insert_executions(&rows).await;
            if self.health.observe("write query executions", result).is_none() {
                self.sink.return_executions(rows);
                return;
            }
            if !all && (!full || started.elapsed() >= FLUSH_BUDGET) {
                return;
            }
        }
    }

    async fn flush_logs(&mut self) {
        if !self.health.ready() {
            return;
        }
        let rows = self.sink.take_logs();
        if rows.is_empty() {
            return;
        }
        let result = self.store.insert_logs(&rows).await;
        if self.health.observe("write logs", result).is_none() {
            self.sink.return_logs(rows);
        }
    }

    // DRAINING and COMPLETED

    async fn drain(
        &mut self,
        mut load: LoadGenerator,
        shared: Arc<LoadShared>,
        tick: &mut tokio::time::Interval,
    ) -> Result<ExitStatus, WorkerError> {
        let cause = self.stop.clone().unwrap_or(StopCause::RunEnded(RunStatus::Completed));
        let drain_time = match &cause {
            StopCause::Requested { drain, .. } => *drain,
            _ => self.duration(self.timings.drain_seconds),
        };
        self.log(Level::Info, &format!("draining: {}", describe(&cause)), None);
        self.write_heartbeat(WorkerStatus::Draining, shared.open_connections(), shared.desired_connections()).await;

        // Heartbeats continue while in-flight queries finish, so that a long
        // drain is not mistaken for a dead worker.
        let abandoned = {
            let drained = load.drain(drain_time);
            tokio::pin!(drained);
            loop {
                tokio::select! {
                    abandoned = &mut drained => break abandoned,
                    _ = tick.tick() => self.tick(&shared, WorkerStatus::Draining).await,
                }
            }
        };
        // The window ends when the last counted query finished, which is
        // before the drain timeout when queries were abandoned.
        let now = (Instant::now(), Utc::now());
        let ended = self.metrics.last_counted().unwrap_or(now.0);
        let before = chrono::Duration::from_std(now.0.saturating_duration_since(ended)).unwrap_or_default();
        self.load_ended = Some((ended, now.1 - before));
        if abandoned > 0 {
            self.log(
                Level::Warn,
                &format!("{abandoned} queries still running after the drain timeout were abandoned"),
                None,
            );
        }

        self.tick(&shared, WorkerStatus::Draining).await;
        let flushed = self.flush_everything().await;
        let (status, exit) = match (&cause, flushed) {
            (_, false) | (StopCause::StoreLost, _) => ("FAILED", ExitStatus::StoreLost),
            (StopCause::Fatal(_), _) => ("FAILED", ExitStatus::Fatal),
            _ => ("COMPLETED", ExitStatus::Clean),
        };
        let failure = match &cause {
            StopCause::Fatal(message) => Some(message.clone()),
            StopCause::StoreLost => Some(self.store_lost_error().to_string()),
            _ => None,
        };
        self.write_child_result(status, shared.desired_connections(), failure).await;
        self.write_heartbeat(WorkerStatus::Completed, 0, 0).await;
        match (&cause, exit) {
            (StopCause::Fatal(message), _) => Err(WorkerError::Fatal(message.clone())),
            (_, ExitStatus::StoreLost) => Err(self.store_lost_error()),
            _ => Ok(exit),
        }
    }

    /// Writes every buffered snapshot, execution and log line, retrying
    /// until the no-store timeout. Returns whether everything was written.
    async fn flush_everything(&mut self) -> bool {
        let limit = self.duration(self.timings.no_store_exit_seconds);
        loop {
            self.flush_executions(true).await;
            self.flush_logs().await;
            if !self.pending_snapshots.is_empty() && self.health.ready() {
                let result = self.store.insert_snapshots(&self.pending_snapshots).await;
                if self.health.observe("write snapshots", result).is_some() {
                    self.pending_snapshots.clear();
                }
            }
            let done = self.sink.buffered_executions() == 0 && self.pending_snapshots.is_empty();
            if done {
                return true;
            }
            if self.health.lost_for(limit) {
                return false;
            }
            let wait = self.health.next_attempt.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
        }
    }

    /// Writes the child `TEST_RESULTS` row with the totals so far.
    async fn write_child_result(&mut self, status: &str, connections: u32, failure: Option<String>) {
        let row = self.child_result(status, connections, failure);
        if !self.health.ready() {
            return;
        }
        let result = self.store.upsert_test_results(std::slice::from_ref(&row)).await;
        self.health.observe("write worker result", result);
    }

    fn child_result(&self, status: &str, connections: u32, failure: Option<String>) -> TestResultRow {
        let template = &self.scenario.template;
        let totals = &self.cumulative;
        let now = Utc::now();
        let load_ended = self.load_ended.map_or_else(Instant::now, |(at, _)| at);
        let measured =
            self.measurement_since.map(|(since, _)| load_ended.saturating_duration_since(since).as_secs_f64());
        let finished = status != "RUNNING";
        let histogram = &totals.overall;
        let mut kind_latencies = std::collections::BTreeMap::new();
        for kind in QueryKind::ALL {
            if let Some(histogram) = totals.kind(*kind) {
                kind_latencies.insert(
                    *kind,
                    KindLatency {
                        p50_ms: histogram.percentile_ms(50.0),
                        p95_ms: histogram.percentile_ms(95.0),
                        p99_ms: histogram.percentile_ms(99.0),
                    },
                );
            }
        }
        TestResultRow {
            test_id: self.identity.test_id.clone(),
            run_id: self.identity.run_id.clone(),
            worker_id: Some(self.identity.worker_id.clone()),
            worker_group_id: Some(i64::from(self.args.worker_group_id)),
            template_id: self.template_id.clone(),
            test_name: template.name.clone(),
            table_name: Some(template.target.table.clone()),
            table_type: template.target.table_type.map(|table_type| table_type.as_str().to_owned()),
            warehouse: template.target.warehouse.clone(),
            status: status.to_owned(),
            start_time: self.running_since.map(|(_, at)| at),
            // A finished worker's end is when its last query ended, so that
            // END_TIME minus DURATION_SECONDS is when it started counting.
            end_time: finished.then(|| self.load_ended.map_or(now, |(_, at)| at)),
            duration_seconds: measured,
            concurrent_connections: Some(i64::from(connections)),
            test_config: Some(json!({
                "worker_group_id": self.args.worker_group_id,
                "worker_group_count": self.args.worker_group_count,
                "query_log": template.workload.query_log.to_string(),
                "unibench_version": UNIBENCH_VERSION,
            })),
            total_operations: to_i64(totals.queries),
            read_operations: to_i64(totals.reads),
            write_operations: to_i64(totals.writes),
            failed_operations: to_i64(totals.errors),
            qps: measured.filter(|seconds| *seconds > 0.0).map(|seconds| totals.queries as f64 / seconds),
            error_rate: (totals.queries > 0).then(|| totals.errors as f64 / totals.queries as f64),
            avg_latency_ms: histogram.mean_ms(),
            min_latency_ms: histogram.min_ms(),
            max_latency_ms: histogram.max_ms(),
            p50_latency_ms: histogram.percentile_ms(50.0),
            p90_latency_ms: histogram.percentile_ms(90.0),
            p95_latency_ms: histogram.percentile_ms(95.0),
            p99_latency_ms: histogram.percentile_ms(99.0),
            p999_latency_ms: histogram.percentile_ms(99.9),
            kind_latencies,
            failure_reason: failure,
            ..Default::default()
        }
    }
}

fn describe(cause: &StopCause) -> String {
    match cause {
        StopCause::Requested { reason, .. } => format!("STOP event: {reason}"),
        StopCause::RunEnded(status) => format!("the run ended with status {status}"),
        StopCause::Orphaned => "the orchestrator stopped updating the run".to_owned(),
        StopCause::Fatal(message) => format!("fatal workload error: {message}"),
        StopCause::StoreLost => "the store is unreachable".to_owned(),
    }
}

/// Orders phases so that reconciliation never moves a worker backwards.
fn phase_rank(phase: RunPhase) -> u8 {
    match phase {
        RunPhase::Preparing => 0,
        RunPhase::Warmup => 1,
        RunPhase::Measurement => 2,
        RunPhase::Cooldown => 3,
        RunPhase::Processing => 4,
    }
}

fn my_target(targets: &serde_json::Value, worker_id: &str) -> Option<WorkerTarget> {
    let targets: WorkerTargets = serde_json::from_value(targets.clone()).ok()?;
    targets.get(worker_id).copied()
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
