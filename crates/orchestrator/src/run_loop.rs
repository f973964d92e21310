//! The per-run control loop. One task per run owns the run's worker
//! handles and ticks once a second:
//!
//! - `Registering`: workers are spawned; wait until every one has written
//!   a heartbeat (the registration timeout fails the run and names the
//!   missing workers).
//! - `Active`: the run is `RUNNING`; each tick reads heartbeats and the
//!   latest snapshots, judges health on the store's clock, aggregates,
//!   moves warmup to measurement, ends the measurement after the duration,
//!   fails the run on a dead worker or a fatal worker exit, and handles
//!   stop requests.
//! - `Stopping`: `STOP` was emitted; wait for every worker to exit. Workers
//!   still alive 10 s after the drain deadline get SIGTERM, and SIGKILL
//!   after that. The reason is written to `STATUS_REASON` and `TEST_LOGS`.
//! - `Finishing`: `PROCESSING`, final rollups, terminal status.
//!
//! Rollups are written only when something changed, and `UPDATED_AT` is
//! touched at least every 10 s as the orchestrator's own heartbeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use unibench_model::event::{SetPhaseEvent, StartEvent, StopEvent, StopInitiator};
use unibench_model::scenario::{ScenarioConfig, Timings};
use unibench_model::status::HealthThresholds;
use unibench_model::target::{split_evenly, worker_id, WorkerTarget, WorkerTargets};
use unibench_model::{ControlEventPayload, EventScope, RunPhase, RunStatus, WorkerHealth};
use unibench_store::{
    ExecutionFilter, LogRow, NewControlEvent, Page, RunStatusRow, RunStatusUpdate, SnapshotFilter, Store, TestResultRow,
};

use crate::rollup::{self, LiveAggregate, WorkerView};
use crate::spawner::{WorkerHandle, WorkerLaunch, WorkerSpawner};

/// How often the loop ticks.
pub const TICK: Duration = Duration::from_secs(1);
/// Maximum time between two writes of `RUN_STATUS`. Workers read its
/// `UPDATED_AT` as the orchestrator's heartbeat; shrunk timings shrink it
/// to a third of the workers' silence timeout.
const TOUCH_INTERVAL: Duration = Duration::from_secs(10);
/// Time between SIGTERM and SIGKILL for workers that ignore a stop.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often the loop reads the store's clock; between reads it advances
/// the last reading on the local monotonic clock.
const CLOCK_RESYNC: Duration = Duration::from_secs(30);
/// Rows read per page when loading snapshots or executions for rollups.
const ROLLUP_PAGE: u32 = 10_000;
/// Pause before a phase change that failed is tried again.
const PHASE_RETRY: Duration = Duration::from_millis(100);

/// A request sent to a run's loop.
#[derive(Debug, Clone, Copy)]
pub enum RunCommand {
    Stop(StopInitiator),
    /// Ends every worker at once (a second Ctrl-C).
    ForceStop(StopInitiator),
}

/// One worker as shown live.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerLive {
    pub worker_id: String,
    pub worker_group_id: i64,
    pub status: String,
    pub phase: Option<String>,
    pub health: WorkerHealth,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub last_heartbeat_ago_s: f64,
    pub qps: f64,
    pub p95_latency_ms: Option<f64>,
    pub error_count: i64,
    pub active_connections: i64,
    pub target_connections: i64,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// Whether the worker's latest snapshot counts toward the live
    /// aggregate: the worker is not dead and the snapshot is past warmup.
    pub counted: bool,
}

impl WorkerLive {
    /// Builds the live view of one worker from its heartbeat and latest
    /// snapshot.
    pub fn from_view(view: &WorkerView) -> Self {
        let snapshot = view.latest.as_ref();
        let counted = view.health != WorkerHealth::Dead
            && snapshot.and_then(|s| s.phase.parse::<RunPhase>().ok()).is_some_and(rollup::is_measured_phase);
        WorkerLive {
            worker_id: view.heartbeat.worker_id.clone(),
            worker_group_id: view.heartbeat.worker_group_id,
            status: view.heartbeat.status.as_str().to_owned(),
            phase: view.heartbeat.phase.map(|phase| phase.as_str().to_owned()),
            health: view.health,
            last_heartbeat: view.heartbeat.last_heartbeat,
            last_heartbeat_ago_s: view.heartbeat_age.as_secs_f64().min(1e9),
            qps: snapshot.map_or(0.0, |s| s.qps),
            p95_latency_ms: snapshot.and_then(|s| s.p95_latency_ms),
            error_count: view.heartbeat.error_count,
            active_connections: view.heartbeat.active_connections,
            target_connections: view.heartbeat.target_connections,
            cpu_percent: snapshot.and_then(|s| s.cpu_percent),
            memory_percent: snapshot.and_then(|s| s.memory_percent),
            counted,
        }
    }
}

/// The state of a run at one tick, for terminals and dashboards.
#[derive(Debug, Clone, Serialize)]
pub struct LiveStatus {
    pub run_id: String,
    pub status: RunStatus,
    pub phase: RunPhase,
    pub elapsed_seconds: f64,
    pub workers_expected: u32,
    pub workers_registered: u32,
    pub aggregate: LiveAggregate,
    pub workers: Vec<WorkerLive>,
    pub reason: Option<String>,
}

/// The final status of a run and its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub reason: Option<String>,
}

/// Inputs of one run's control loop.
pub struct RunContext {
    pub store: Arc<Store>,
    pub spawner: Arc<dyn WorkerSpawner>,
    pub run_id: String,
    pub scenario: ScenarioConfig,
    pub worker_count: u32,
    pub worker_store_url: String,
    pub connections_file: Option<std::path::PathBuf>,
    pub commands: mpsc::Receiver<RunCommand>,
    pub updates: watch::Sender<LiveStatus>,
}

/// A requested stop: its reason and the status the run will end with.
#[derive(Debug, Clone)]
struct Stopping {
    final_status: RunStatus,
    reason: String,
    requested_at: Instant,
    drain: Duration,
    terminated: bool,
    killed_at: Option<Instant>,
}

struct Worker {
    id: String,
    handle: Box<dyn WorkerHandle>,
}

struct RunLoop {
    ctx: RunContext,
    timings: Timings,
    workers: Vec<Worker>,
    started: Option<(Instant, DateTime<Utc>)>,
    measurement_started: Option<(Instant, DateTime<Utc>)>,
    measurement_ended: Option<Instant>,
    phase: RunPhase,
    status: RunStatus,
    stopping: Option<Stopping>,
    last_written: Option<(i64, i64, i64, i64)>,
    last_touch: Instant,
    registered: u32,
    /// The store's time at a local instant, for [`RunLoop::store_now`].
    store_clock: Option<(DateTime<Utc>, Instant)>,
    /// When the loop last woke for a phase deadline.
    phase_woken_at: Option<Instant>,
}

/// Drives a run from spawning its workers to its terminal status.
pub async fn drive(ctx: RunContext) -> RunOutcome {
    let timings = ctx.scenario.timings;
    let mut run = RunLoop {
        ctx,
        timings,
        workers: Vec::new(),
        started: None,
        measurement_started: None,
        measurement_ended: None,
        phase: RunPhase::Preparing,
        status: RunStatus::Prepared,
        stopping: None,
        last_written: None,
        last_touch: Instant::now(),
        registered: 0,
        store_clock: None,
        phase_woken_at: None,
    };
    let outcome = run.run().await;
    // Whatever happened, no worker process outlives the loop for long.
    run.reap_workers().await;
    outcome
}

impl RunLoop {
    fn duration(&self, seconds: f64) -> Duration {
        Timings::duration(seconds)
    }

    async fn log(&self, level: &str, message: &str, details: Option<serde_json::Value>) {
        match level {
            "ERROR" => tracing::error!(run_id = %self.ctx.run_id, "{message}"),
            "WARN" => tracing::warn!(run_id = %self.ctx.run_id, "{message}"),
            _ => tracing::info!(run_id = %self.ctx.run_id, "{message}"),
        }
        let row = LogRow {
            log_id: unibench_store::new_id(),
            run_id: self.ctx.run_id.clone(),
            test_id: self.ctx.run_id.clone(),
            worker_id: None,
            level: level.to_owned(),
            message: message.to_owned(),
            details,
            timestamp: Utc::now(),
            created_at: None,
        };
        if let Err(error) = self.ctx.store.insert_logs(&[row]).await {
            tracing::warn!(%error, run_id = %self.ctx.run_id, "could not write an orchestrator log line");
        }
    }

    async fn run(&mut self) -> RunOutcome {
        if let Err(reason) = self.spawn_workers().await {
            return self.finish_without_start(reason).await;
        }
        if let Err(reason) = self.wait_for_registration().await {
            return self.finish_without_start(reason).await;
        }
        if let Err(error) = self.start().await {
            return self.finish_without_start(format!("could not start the run: {error}")).await;
        }
        self.active_loop().await;
        self.finish().await
    }

    async fn spawn_workers(&mut self) -> Result<(), String> {
        let count = self.ctx.worker_count;
        for group in 0..count {
            let launch = WorkerLaunch {
                run_id: self.ctx.run_id.clone(),
                worker_id: worker_id(group),
                worker_group_id: group,
                worker_group_count: count,
                store_url: self.ctx.worker_store_url.clone(),
                connections_file: self.ctx.connections_file.clone(),
            };
            let handle = self.ctx.spawner.spawn(&launch).map_err(|error| error.to_string())?;
            self.workers.push(Worker { id: launch.worker_id, handle });
        }
        let noun = if count == 1 { "worker" } else { "workers" };
        self.log("INFO", &format!("spawned {count} {noun}"), Some(json!({"workers": count}))).await;
        Ok(())
    }

    /// Waits until every worker has written a heartbeat.
    async fn wait_for_registration(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.duration(self.timings.registration_seconds);
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticker.tick().await;
            let heartbeats = self.ctx.store.list_heartbeats(&self.ctx.run_id).await.unwrap_or_default();
            let registered: Vec<&str> = heartbeats.iter().map(|beat| beat.worker_id.as_str()).collect();
            let missing: Vec<String> = self
                .workers
                .iter()
                .filter(|worker| !registered.contains(&worker.id.as_str()))
                .map(|worker| worker.id.clone())
                .collect();
            let count = (self.workers.len() - missing.len()) as u32;
            if count != self.registered {
                self.registered = count;
                let update = RunStatusUpdate { workers_registered: Some(i64::from(count)), ..Default::default() };
                self.ctx.store.update_run(&self.ctx.run_id, &update).await.ok();
            }
            self.publish(LiveAggregate::default(), Vec::new(), None);
            if missing.is_empty() {
                self.log("INFO", &format!("{count}/{count} workers registered"), None).await;
                return Ok(());
            }
            for worker in &mut self.workers {
                if let Some(code) = worker.handle.exit_status() {
                    if missing.contains(&worker.id) {
                        return Err(format!(
                            "worker {} exited before registering ({})",
                            worker.id,
                            describe_exit(code)
                        ));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "workers did not register within {} s: {}",
                    self.timings.registration_seconds,
                    missing.join(", ")
                ));
            }
        }
    }

    /// Marks the run `RUNNING`, records its start on the store's clock, and
    /// emits `START` with the initial targets mirrored in `RUN_STATUS`.
    async fn start(&mut self) -> Result<(), unibench_store::StoreError> {
        let now = self.ctx.store.now().await?;
        let warmup = self.timings_warmup();
        self.phase = if warmup.is_zero() { RunPhase::Measurement } else { RunPhase::Warmup };
        self.status = RunStatus::Running;
        let targets = self.initial_targets();
        let update = RunStatusUpdate {
            status: Some(RunStatus::Running),
            phase: Some(self.phase),
            start_time: Some(Some(now)),
            warmup_end_time: warmup.is_zero().then_some(Some(now)),
            total_workers_expected: Some(i64::from(self.ctx.worker_count)),
            workers_registered: Some(i64::from(self.ctx.worker_count)),
            worker_targets: Some(serde_json::to_value(&targets).unwrap_or_default()),
            ..Default::default()
        };
        let start =
            ControlEventPayload::Start(StartEvent { scope: EventScope::Run, expected_workers: self.ctx.worker_count });
        self.ctx.store.append_events(&self.ctx.run_id, &[NewControlEvent::from(&start)], Some(&update)).await?;
        let instant = Instant::now();
        self.started = Some((instant, now));
        if warmup.is_zero() {
            self.measurement_started = Some((instant, now));
        }
        self.last_touch = Instant::now();
        self.log("INFO", &format!("run started in {}", self.phase), None).await;
        Ok(())
    }

    fn timings_warmup(&self) -> Duration {
        self.duration(self.ctx.scenario.template.workload.warmup_seconds)
    }

    fn initial_targets(&self) -> WorkerTargets {
        let workload = &self.ctx.scenario.template.workload;
        let count = self.ctx.worker_count;
        let qps = workload.target_qps.map(|qps| qps / f64::from(count));
        split_evenly(workload.concurrent_connections, count)
            .into_iter()
            .enumerate()
            .map(|(group, connections)| {
                (worker_id(group as u32), WorkerTarget { target_connections: connections, target_qps: qps })
            })
            .collect()
    }

    async fn active_loop(&mut self) {
        let mut ticker = tokio::time::interval(TICK);
        loop {
            // Phase changes happen on time, not on the next tick.
            let next_phase_change = self.next_phase_change();
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tokio::time::sleep_until(next_phase_change.into()) => self.phase_woken_at = Some(Instant::now()),
                command = self.ctx.commands.recv() => match command {
                    Some(RunCommand::Stop(initiated_by)) => self.request_stop(RunStatus::Cancelled, "stop requested", initiated_by).await,
                    Some(RunCommand::ForceStop(initiated_by)) => self.force_stop(initiated_by).await,
                    None => {}
                },
            }
            if self.tick().await {
                return;
            }
        }
    }

    /// When warmup or measurement ends, or a tick from now when neither is
    /// pending.
    fn next_phase_change(&self) -> Instant {
        let later = Instant::now() + TICK * 2;
        if self.stopping.is_some() {
            return later;
        }
        let deadline = match (self.phase, self.started, self.measurement_started) {
            (RunPhase::Warmup, Some((started, _)), _) => started + self.timings_warmup(),
            (RunPhase::Measurement, _, Some((since, _))) => {
                since + self.duration(self.ctx.scenario.template.workload.duration_seconds)
            }
            _ => later,
        };
        phase_wake(deadline, self.phase_woken_at)
    }

    /// Runs one control tick. Returns `true` once every worker has
    /// finished after a stop.
    async fn tick(&mut self) -> bool {
        let views = match self.read_workers().await {
            Ok(views) => views,
            Err(error) => {
                tracing::warn!(%error, run_id = %self.ctx.run_id, "could not read worker state");
                return self.stopping.is_some() && self.all_exited();
            }
        };
        let aggregate = rollup::live_aggregate(&views);

        if self.stopping.is_none() {
            self.check_failures(&views).await;
        }
        if self.stopping.is_none() {
            self.advance_phase().await;
        }
        self.write_rollup(&aggregate).await;
        self.publish(
            aggregate,
            views.iter().map(WorkerLive::from_view).collect(),
            self.stopping.as_ref().map(|s| s.reason.clone()),
        );

        match &self.stopping {
            Some(_) => {
                self.escalate().await;
                self.all_finished(&views)
            }
            None => false,
        }
    }

    /// Returns the store's current time, read from the store every
    /// [`CLOCK_RESYNC`] and advanced on the local monotonic clock in
    /// between, which saves a statement per tick.
    async fn store_now(&mut self) -> Result<DateTime<Utc>, unibench_store::StoreError> {
        if let Some((at, read)) = self.store_clock {
            if read.elapsed() < CLOCK_RESYNC {
                let elapsed = chrono::Duration::from_std(read.elapsed()).unwrap_or_default();
                return Ok(at + elapsed);
            }
        }
        let now = self.ctx.store.now().await?;
        self.store_clock = Some((now, Instant::now()));
        Ok(now)
    }

    async fn read_workers(&mut self) -> Result<Vec<WorkerView>, unibench_store::StoreError> {
        let now = self.store_now().await?;
        let store = &self.ctx.store;
        let heartbeats = store.list_heartbeats(&self.ctx.run_id).await?;
        let latest = store.latest_snapshots(&self.ctx.run_id).await?;
        let thresholds = HealthThresholds {
            stale_after: self.duration(self.timings.stale_after_seconds),
            dead_after: self.duration(self.timings.dead_after_seconds),
        };
        Ok(heartbeats
            .into_iter()
            .map(|heartbeat| {
                let snapshot = latest.iter().find(|snapshot| snapshot.worker_id == heartbeat.worker_id).cloned();
                WorkerView::new(heartbeat, snapshot, now, thresholds)
            })
            .collect())
    }

    /// Fails the run when one worker is dead, or when a worker process
    /// exits with an error while the run is active.
    async fn check_failures(&mut self, views: &[WorkerView]) {
        if let Some(dead) = views.iter().find(|view| view.health == WorkerHealth::Dead) {
            let reason = format!(
                "worker_failure: worker {} is DEAD (no heartbeat for {} s)",
                dead.heartbeat.worker_id,
                dead.heartbeat_age.as_secs()
            );
            self.request_stop(RunStatus::Failed, &reason, StopInitiator::Orchestrator).await;
            return;
        }
        let mut failed = None;
        for worker in &mut self.workers {
            if let Some(Some(code)) = worker.handle.exit_status() {
                if code != 0 {
                    failed = Some(format!(
                        "worker_failure: worker {} exited with code {code} ({})",
                        worker.id,
                        exit_meaning(code)
                    ));
                    break;
                }
            }
        }
        if let Some(reason) = failed {
            self.request_stop(RunStatus::Failed, &reason, StopInitiator::Orchestrator).await;
        }
    }

    /// Moves warmup to measurement, and ends the measurement after the
    /// duration.
    async fn advance_phase(&mut self) {
        let Some((started, _)) = self.started else { return };
        if self.phase == RunPhase::Warmup && started.elapsed() >= self.timings_warmup() {
            let Ok(now) = self.ctx.store.now().await else { return };
            let update = RunStatusUpdate {
                phase: Some(RunPhase::Measurement),
                warmup_end_time: Some(Some(now)),
                ..Default::default()
            };
            let event = ControlEventPayload::SetPhase(SetPhaseEvent {
                scope: EventScope::Run,
                phase: RunPhase::Measurement,
                effective_at: Some(now),
            });
            match self.ctx.store.append_events(&self.ctx.run_id, &[NewControlEvent::from(&event)], Some(&update)).await
            {
                Ok(_) => {
                    self.phase = RunPhase::Measurement;
                    self.measurement_started = Some((Instant::now(), now));
                    self.last_touch = Instant::now();
                    self.log("INFO", "warmup finished, measurement started", None).await;
                }
                Err(error) => tracing::warn!(%error, run_id = %self.ctx.run_id, "could not switch to measurement"),
            }
        }
        let duration = self.duration(self.ctx.scenario.template.workload.duration_seconds);
        if let Some((measuring_since, _)) = self.measurement_started {
            if measuring_since.elapsed() >= duration {
                self.request_stop(RunStatus::Completed, "duration_elapsed", StopInitiator::Orchestrator).await;
            }
        }
    }

    /// Emits `STOP` once. A completed duration keeps the status `RUNNING`
    /// with phase `COOLDOWN`; a user's stop sets `CANCELLING`; a failure
    /// records its reason.
    async fn request_stop(&mut self, final_status: RunStatus, reason: &str, initiated_by: StopInitiator) {
        if self.stopping.is_some() {
            return;
        }
        let drain = self.duration(self.timings.drain_seconds);
        let status = match final_status {
            RunStatus::Completed => RunStatus::Running,
            _ => RunStatus::Cancelling,
        };
        let update = RunStatusUpdate {
            status: Some(status),
            phase: Some(RunPhase::Cooldown),
            status_reason: (final_status != RunStatus::Completed).then(|| Some(reason.to_owned())),
            ..Default::default()
        };
        let stop = ControlEventPayload::Stop(StopEvent {
            scope: EventScope::Run,
            reason: reason.to_owned(),
            initiated_by,
            drain_timeout_seconds: drain.as_secs().max(1),
        });
        if let Err(error) =
            self.ctx.store.append_events(&self.ctx.run_id, &[NewControlEvent::from(&stop)], Some(&update)).await
        {
            tracing::error!(%error, run_id = %self.ctx.run_id, "could not emit STOP; workers will be signalled");
        }
        self.status = status;
        self.phase = RunPhase::Cooldown;
        self.measurement_ended = Some(Instant::now());
        self.stopping = Some(Stopping {
            final_status,
            reason: reason.to_owned(),
            requested_at: Instant::now(),
            drain,
            terminated: false,
            killed_at: None,
        });
        let level = if final_status == RunStatus::Failed { "ERROR" } else { "INFO" };
        self.log(level, &format!("stopping: {reason}"), Some(json!({"initiated_by": initiated_by}))).await;
    }

    /// Kills every worker and adds the kill to the run's status reason.
    async fn force_stop(&mut self, initiated_by: StopInitiator) {
        if self.stopping.is_none() {
            self.request_stop(RunStatus::Cancelled, "stop requested", initiated_by).await;
        }
        let alive = self.alive_workers();
        for worker in &mut self.workers {
            worker.handle.kill();
        }
        if let Some(stopping) = &mut self.stopping {
            stopping.killed_at = Some(Instant::now());
            // Killed workers may not have written their results, so a run
            // that had reached its duration ends CANCELLED, with this reason.
            if stopping.final_status == RunStatus::Completed {
                stopping.final_status = RunStatus::Cancelled;
            }
        }
        let message = if alive.is_empty() {
            "stop forced: every worker had already exited".to_owned()
        } else {
            format!("stop forced: killed the workers still running: {}", alive.join(", "))
        };
        self.note_escalation(&message).await;
    }

    /// SIGTERM to workers still alive after the drain deadline plus the
    /// grace period, SIGKILL a little later.
    async fn escalate(&mut self) {
        let Some(stopping) = self.stopping.clone() else { return };
        let term_at = stopping.drain + self.duration(self.timings.sigterm_after_drain_seconds);
        let elapsed = stopping.requested_at.elapsed();
        if !stopping.terminated && elapsed >= term_at && !self.all_exited() {
            let alive = self.alive_workers();
            for worker in &mut self.workers {
                worker.handle.terminate();
            }
            if let Some(stopping) = &mut self.stopping {
                stopping.terminated = true;
            }
            self.note_escalation(&format!(
                "sent SIGTERM to workers still running after the drain: {}",
                alive.join(", ")
            ))
            .await;
        }
        if stopping.killed_at.is_none() && elapsed >= term_at + KILL_GRACE && !self.all_exited() {
            let alive = self.alive_workers();
            for worker in &mut self.workers {
                worker.handle.kill();
            }
            if let Some(stopping) = &mut self.stopping {
                stopping.killed_at = Some(Instant::now());
            }
            self.note_escalation(&format!("sent SIGKILL to workers that ignored SIGTERM: {}", alive.join(", "))).await;
        }
    }

    async fn note_escalation(&mut self, message: &str) {
        self.log("WARN", message, None).await;
        if let Some(stopping) = &mut self.stopping {
            stopping.reason = format!("{}; {message}", stopping.reason);
        }
        let update = RunStatusUpdate {
            status_reason: self.stopping.as_ref().map(|s| Some(s.reason.clone())),
            ..Default::default()
        };
        self.ctx.store.update_run(&self.ctx.run_id, &update).await.ok();
    }

    fn alive_workers(&mut self) -> Vec<String> {
        self.workers.iter_mut().filter_map(|w| w.handle.exit_status().is_none().then(|| w.id.clone())).collect()
    }

    fn all_exited(&mut self) -> bool {
        self.workers.iter_mut().all(|worker| worker.handle.exit_status().is_some())
    }

    /// Returns whether every local worker process has exited. Without local
    /// processes, every heartbeat must be COMPLETED or its worker dead.
    fn all_finished(&mut self, views: &[WorkerView]) -> bool {
        if !self.workers.is_empty() {
            return self.all_exited();
        }
        views.iter().all(|view| {
            view.heartbeat.status == unibench_model::WorkerStatus::Completed || view.health == WorkerHealth::Dead
        })
    }

    /// Writes the live rollup into `RUN_STATUS` when it changed, and at
    /// least every 10 s.
    async fn write_rollup(&mut self, aggregate: &LiveAggregate) {
        let key =
            (aggregate.total_ops, aggregate.errors, aggregate.qps.to_bits() as i64, aggregate.workers_healthy as i64);
        let changed = self.last_written != Some(key);
        let touch_interval = TOUCH_INTERVAL.min(self.duration(self.timings.orchestrator_silence_seconds) / 3);
        if !changed && self.last_touch.elapsed() < touch_interval {
            return;
        }
        let update = RunStatusUpdate {
            total_ops: Some(aggregate.total_ops),
            error_count: Some(aggregate.errors),
            current_qps: Some(aggregate.measuring.then_some(aggregate.qps)),
            workers_active: Some((aggregate.workers_healthy + aggregate.workers_stale) as i64),
            ..Default::default()
        };
        match self.ctx.store.update_run(&self.ctx.run_id, &update).await {
            Ok(_) => {
                self.last_written = Some(key);
                self.last_touch = Instant::now();
            }
            Err(error) => tracing::warn!(%error, run_id = %self.ctx.run_id, "could not write the live rollup"),
        }
    }

    fn publish(&self, aggregate: LiveAggregate, workers: Vec<WorkerLive>, reason: Option<String>) {
        let status = LiveStatus {
            run_id: self.ctx.run_id.clone(),
            status: self.status,
            phase: self.phase,
            elapsed_seconds: self.started.map(|(since, _)| since.elapsed().as_secs_f64()).unwrap_or(0.0),
            workers_expected: self.ctx.worker_count,
            workers_registered: self.registered,
            aggregate,
            workers,
            reason,
        };
        self.ctx.updates.send_replace(status);
    }

    /// Marks a run that failed before it started FAILED and stops every
    /// worker that was spawned.
    async fn finish_without_start(&mut self, reason: String) -> RunOutcome {
        self.log("ERROR", &reason, None).await;
        for worker in &mut self.workers {
            worker.handle.terminate();
        }
        let end = self.ctx.store.now().await.ok();
        let update = RunStatusUpdate {
            status: Some(RunStatus::Failed),
            status_reason: Some(Some(reason.clone())),
            end_time: Some(end),
            ..Default::default()
        };
        self.ctx.store.update_run(&self.ctx.run_id, &update).await.ok();
        let results = self.test_results().await;
        self.write_parent(RunStatus::Failed, Some(reason.clone()), end, results).await;
        self.status = RunStatus::Failed;
        self.publish(LiveAggregate::default(), Vec::new(), Some(reason.clone()));
        RunOutcome { status: RunStatus::Failed, reason: Some(reason) }
    }

    /// `PROCESSING`: final rollups, then the terminal status.
    async fn finish(&mut self) -> RunOutcome {
        let stopping = self.stopping.clone();
        let (final_status, reason) = match &stopping {
            Some(stopping) => (stopping.final_status, stopping.reason.clone()),
            None => (RunStatus::Failed, "the control loop ended without a stop".to_owned()),
        };
        self.phase = RunPhase::Processing;
        let processing = RunStatusUpdate { phase: Some(RunPhase::Processing), ..Default::default() };
        self.ctx.store.update_run(&self.ctx.run_id, &processing).await.ok();

        // A run whose workers did not all write their final results has
        // incomplete numbers, so it cannot end COMPLETED.
        let results = self.test_results().await;
        let unfinished: Vec<&str> = results
            .iter()
            .filter(|row| is_unfinished_child(row))
            .map(|row| row.worker_id.as_deref().unwrap_or(&row.test_id))
            .collect();
        let (final_status, reason) = if final_status == RunStatus::Completed && !unfinished.is_empty() {
            let workers = unfinished.join(", ");
            (RunStatus::Failed, format!("worker_failure: workers ended without writing their final results: {workers}"))
        } else {
            (final_status, reason)
        };
        let end = self.ctx.store.now().await.ok();
        let reason = (final_status != RunStatus::Completed).then_some(reason);
        let parent = self.write_parent(final_status, reason.clone(), end, results).await;
        let update = RunStatusUpdate {
            status: Some(final_status),
            status_reason: Some(reason.clone()),
            end_time: Some(end),
            total_ops: parent.as_ref().map(|p| p.total_operations),
            error_count: parent.as_ref().map(|p| p.failed_operations),
            workers_active: Some(0),
            workers_completed: Some(self.workers.len() as i64),
            ..Default::default()
        };
        if let Err(error) = self.ctx.store.update_run(&self.ctx.run_id, &update).await {
            tracing::error!(%error, run_id = %self.ctx.run_id, "could not write the final status");
        }
        self.status = final_status;
        self.log("INFO", &format!("run ended {final_status}"), reason.as_ref().map(|r| json!({"reason": r}))).await;
        self.publish(LiveAggregate::default(), Vec::new(), reason.clone());
        RunOutcome { status: final_status, reason }
    }

    /// Returns the run's `TEST_RESULTS` rows, or none when the store
    /// cannot be read.
    async fn test_results(&self) -> Vec<TestResultRow> {
        match self.ctx.store.list_test_results(&self.ctx.run_id).await {
            Ok(results) => results,
            Err(error) => {
                tracing::error!(%error, run_id = %self.ctx.run_id, "could not read the worker results");
                Vec::new()
            }
        }
    }

    /// Computes and writes the parent `TEST_RESULTS` row from `results`,
    /// the run's rows as stored.
    async fn write_parent(
        &self,
        status: RunStatus,
        reason: Option<String>,
        end: Option<DateTime<Utc>>,
        results: Vec<TestResultRow>,
    ) -> Option<TestResultRow> {
        let store = &self.ctx.store;
        let mut parent = results.iter().find(|row| row.is_parent()).cloned()?;
        let mut children: Vec<TestResultRow> = results.into_iter().filter(|row| !row.is_parent()).collect();
        let snapshots = self.all_snapshots().await;
        self.close_unfinished_children(&mut children, &snapshots, end).await;
        let merged = rollup::merge_measurement(&snapshots);
        // The workers' own windows are exact. The orchestrator's window also
        // contains the time a worker takes to start and to see a phase change.
        let window = match (self.measurement_started, self.measurement_ended) {
            (Some((since, _)), Some(ended)) => Some(ended.duration_since(since).as_secs_f64()),
            _ => None,
        };
        let measured_seconds = rollup::measured_span(&children).or(window);
        rollup::final_rollup(&mut parent, &children, &merged, measured_seconds);
        parent.status = status.as_str().to_owned();
        parent.failure_reason = reason;
        parent.start_time = self.started.map(|(_, at)| at);
        parent.end_time = end;
        parent.duration_seconds = measured_seconds;
        if let Err(error) = store.upsert_test_results(std::slice::from_ref(&parent)).await {
            tracing::error!(%error, run_id = %self.ctx.run_id, "could not write the final results");
        }
        self.cross_check(&parent).await;
        Some(parent)
    }

    /// Marks the result rows of workers that never finalised them (killed,
    /// or cut off from the store) as FAILED, so that no child row of an
    /// ended run still reads RUNNING. Their counts are taken from their
    /// last measured snapshot, which may miss up to a second of queries.
    async fn close_unfinished_children(
        &self,
        children: &mut [TestResultRow],
        snapshots: &[unibench_store::SnapshotRow],
        end: Option<DateTime<Utc>>,
    ) {
        let mut closed = Vec::new();
        for child in children.iter_mut().filter(|child| is_unfinished_child(child)) {
            child.status = RunStatus::Failed.as_str().to_owned();
            child.end_time = end;
            // The worker never wrote when it stopped counting.
            child.duration_seconds = None;
            let reason = if rollup::counts_from_last_snapshot(child, snapshots) {
                "the worker ended without writing its final results; counts are from its last snapshot"
            } else {
                "the worker ended without writing its final results"
            };
            child.failure_reason = Some(reason.to_owned());
            closed.push(child.clone());
        }
        if closed.is_empty() {
            return;
        }
        let workers: Vec<String> = closed.iter().filter_map(|child| child.worker_id.clone()).collect();
        self.log("WARN", &format!("workers ended without final results: {}", workers.join(", ")), None).await;
        if let Err(error) = self.ctx.store.upsert_test_results(&closed).await {
            tracing::warn!(%error, run_id = %self.ctx.run_id, "could not close unfinished worker results");
        }
    }

    async fn all_snapshots(&self) -> Vec<unibench_store::SnapshotRow> {
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let filter = SnapshotFilter { page: Page { limit: ROLLUP_PAGE, offset }, ..Default::default() };
            let Ok(page) = self.ctx.store.list_snapshots(&self.ctx.run_id, &filter).await else { break };
            let full = page.len() == ROLLUP_PAGE as usize;
            offset += page.len() as u64;
            all.extend(page);
            if !full {
                break;
            }
        }
        all
    }

    /// When every execution was logged, recomputes P95 from
    /// `QUERY_EXECUTIONS` and logs an error if it disagrees with the merged
    /// histograms beyond their precision.
    async fn cross_check(&self, parent: &TestResultRow) {
        if self.ctx.scenario.template.workload.query_log != unibench_model::scenario::QueryLogPolicy::All {
            return;
        }
        let Some(histogram_p95) = parent.p95_latency_ms else { return };
        let filter = ExecutionFilter { warmup: Some(false), ..Default::default() };
        let store = &self.ctx.store;
        let Ok(count) = store.count_executions(&self.ctx.run_id, &filter).await else { return };
        if count != parent.total_operations {
            // Rows a worker dropped when its buffer was full are missing,
            // so QUERY_EXECUTIONS is a sample and cannot check the histograms.
            let details = json!({"executions": count, "operations": parent.total_operations});
            let message = "P95 not checked against QUERY_EXECUTIONS: it holds a different number of rows than the \
                           operations counted";
            self.log("WARN", message, Some(details)).await;
            return;
        }
        let Some(rank) = rollup::nearest_rank(u64::try_from(count).unwrap_or(0), 95.0) else { return };
        let Ok(Some(exact_p95)) = store.execution_latency_at_rank(&self.ctx.run_id, &filter, rank).await else {
            return;
        };
        let details = json!({"histogram_p95_ms": histogram_p95, "executions_p95_ms": exact_p95, "executions": count});
        if rollup::agrees(histogram_p95, exact_p95) {
            self.log("INFO", "P95 from the histograms agrees with QUERY_EXECUTIONS", Some(details)).await;
        } else {
            self.log("ERROR", "P95 from the histograms disagrees with QUERY_EXECUTIONS", Some(details)).await;
        }
    }

    /// Gives every worker process still running a last chance, then kills
    /// it, so that none is left behind.
    async fn reap_workers(&mut self) {
        let deadline =
            Instant::now() + self.duration(self.timings.sigterm_after_drain_seconds).min(Duration::from_secs(10));
        while !self.all_exited() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for worker in &mut self.workers {
            if worker.handle.exit_status().is_none() {
                worker.handle.terminate();
            }
        }
        let deadline = Instant::now() + KILL_GRACE;
        while !self.all_exited() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for worker in &mut self.workers {
            worker.handle.kill();
        }
    }
}

/// Returns whether a row is a worker's result row that the worker has not
/// finalised.
/// Returns when the loop wakes for a phase `deadline`: at the deadline, even
/// one just passed, unless the loop already woke for it at `woken_at`. Then
/// the phase change failed (the store was unreachable), and a pause keeps
/// the retries out of a busy loop.
fn phase_wake(deadline: Instant, woken_at: Option<Instant>) -> Instant {
    match woken_at {
        Some(woken_at) if woken_at >= deadline => woken_at + PHASE_RETRY,
        _ => deadline,
    }
}

fn is_unfinished_child(row: &TestResultRow) -> bool {
    !row.is_parent() && (row.status == "RUNNING" || row.status == "PREPARED")
}

fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}: {}", exit_meaning(code)),
        None => "killed by a signal".to_owned(),
    }
}

/// Describes a worker exit code for a user.
fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "clean end",
        1 => "configuration error",
        2 => "store unreachable",
        3 => "no START, or the run had already ended",
        4 => "fatal workload error",
        _ => "unexpected exit",
    }
}

/// Builds the initial `RUN_STATUS` row of a new run.
pub fn new_run_row(run_id: &str, scenario: &ScenarioConfig, worker_count: u32) -> RunStatusRow {
    let mut row =
        RunStatusRow::prepared(run_id, &scenario.template.name, serde_json::to_value(scenario).unwrap_or_default());
    row.template_id = scenario.template_id.clone();
    row.total_workers_expected = i64::from(worker_count);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ahead_is_kept() {
        let now = Instant::now();
        let deadline = now + Duration::from_millis(5);
        assert_eq!(phase_wake(deadline, None), deadline);
        assert_eq!(phase_wake(deadline, Some(now)), deadline, "an earlier wake was for an earlier deadline");
    }

    #[test]
    fn passed_deadline_fires_at_once() {
        // The loop was busy with a tick when the deadline came.
        let now = Instant::now() + Duration::from_secs(1);
        let deadline = now - Duration::from_millis(5);
        assert_eq!(phase_wake(deadline, None), deadline, "no retry pause before the first attempt");
    }

    #[test]
    fn deadline_still_due_after_wake_waits() {
        let deadline = Instant::now();
        let woken_at = deadline + Duration::from_millis(1);
        assert_eq!(phase_wake(deadline, Some(woken_at)), woken_at + PHASE_RETRY);
    }
}
