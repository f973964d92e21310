//! `OrchestratorService`: create, start, stop and watch runs. One service
//! per process; each started run gets its own control loop task. On
//! start-up the service marks runs that a stopped orchestrator left active
//! as failed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Duration as ChronoDuration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use unibench_model::event::{StopEvent, StopInitiator};
use unibench_model::scenario::{ScenarioConfig, Template, Timings};
use unibench_model::template_check::MAX_WORKERS;
use unibench_model::{ControlEventPayload, EventScope, RunPhase, RunStatus};
use unibench_store::{NewControlEvent, RunStatusUpdate, Store, TemplateRow, TestResultRow};

use crate::error::OrchestratorError;
use crate::prepare::{self, Overrides};
use crate::rollup::LiveAggregate;
use crate::run_loop::{self, LiveStatus, RunCommand, RunContext, RunOutcome};
use crate::spawner::WorkerSpawner;

/// Settings of the service: the worker spawner and the timings new runs
/// get.
pub struct OrchestratorSettings {
    pub spawner: Arc<dyn WorkerSpawner>,
    /// The store URL handed to workers. It may contain a password, so it is
    /// never logged or shown.
    pub worker_store_url: String,
    pub connections_file: Option<PathBuf>,
    pub timings: Timings,
}

impl std::fmt::Debug for OrchestratorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorSettings")
            .field("worker_store_url", &unibench_store::url::redact_url(&self.worker_store_url))
            .field("connections_file", &self.connections_file)
            .field("timings", &self.timings)
            .finish()
    }
}

struct ActiveRun {
    commands: mpsc::Sender<RunCommand>,
    updates: watch::Receiver<LiveStatus>,
    task: Option<JoinHandle<RunOutcome>>,
}

/// The control plane.
pub struct OrchestratorService {
    store: Arc<Store>,
    settings: OrchestratorSettings,
    runs: Mutex<HashMap<String, ActiveRun>>,
}

/// A template and what to change in it for one run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub template: Template,
    pub template_id: Option<String>,
    pub overrides: Overrides,
}

impl OrchestratorService {
    /// Creates a service over `store`, after marking orphaned runs failed.
    pub async fn new(store: Arc<Store>, settings: OrchestratorSettings) -> Result<Self, OrchestratorError> {
        let service = OrchestratorService { store, settings, runs: Mutex::default() };
        service.recover_orphans().await?;
        Ok(service)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Marks `RUNNING` and `CANCELLING` runs whose `UPDATED_AT` is older
    /// than the orphan timeout as `FAILED`: their orchestrator stopped.
    pub async fn recover_orphans(&self) -> Result<Vec<String>, OrchestratorError> {
        let now = self.store.now().await?;
        let cutoff = now - ChronoDuration::milliseconds((self.settings.timings.orphan_after_seconds * 1000.0) as i64);
        let mut recovered = Vec::new();
        for status in [RunStatus::Running, RunStatus::Cancelling] {
            for run in self.store.list_stale_runs(status, cutoff).await? {
                let update = RunStatusUpdate {
                    only_if_status: vec![status],
                    status: Some(RunStatus::Failed),
                    status_reason: Some(Some("orchestrator stopped while the run was active".to_owned())),
                    end_time: Some(Some(now)),
                    ..Default::default()
                };
                if self.store.update_run(&run.run_id, &update).await? {
                    tracing::warn!(run_id = %run.run_id, "marked an orphaned run FAILED");
                    recovered.push(run.run_id);
                }
            }
        }
        Ok(recovered)
    }

    /// Saves a template by name and returns the stored row.
    async fn save_template(&self, template: &Template) -> Result<TemplateRow, OrchestratorError> {
        let row = TemplateRow {
            template_id: unibench_store::new_id(),
            template_name: template.name.clone(),
            description: template.description.clone(),
            config: serde_json::to_value(template).unwrap_or_default(),
            tags: None,
            created_by: Some("cli".to_owned()),
            usage_count: 0,
            last_used_at: None,
            created_at: None,
            updated_at: None,
        };
        Ok(self.store.save_template(&row).await?)
    }

    /// Resolves, checks and records a new run (`PREPARED`). Nothing is
    /// written when a check fails.
    pub async fn create(&self, request: RunRequest) -> Result<String, OrchestratorError> {
        let template = request.overrides.apply(&request.template);
        let config =
            prepare::check_before_run(&self.store, &template, self.settings.connections_file.as_deref()).await?;
        let worker_count = prepare::worker_count(&template);
        if worker_count > MAX_WORKERS {
            return Err(OrchestratorError::InvalidTemplate {
                problems: format!(
                    "template \"{}\": scaling.worker_count: the run needs {worker_count} workers, more than \
                     {MAX_WORKERS}; raise scaling.per_worker_connections",
                    template.name
                ),
            });
        }
        // Every run is template-based: an inline template is saved by name
        // once it has passed the checks, and its value pools hang off it.
        let template_id = match request.template_id {
            Some(template_id) => template_id,
            None => self.save_template(&request.template).await?.template_id,
        };
        let request = RunRequest { template_id: Some(template_id.clone()), ..request };
        if prepare::uses_key_pool(&template) {
            prepare::sample_key_pool(&self.store, &template, &template_id, &config).await?;
        }
        let scenario = prepare::scenario(template, request.template_id.clone(), self.settings.timings);
        let run_id = new_run_id();
        let run = run_loop::new_run_row(&run_id, &scenario, worker_count);
        let parent = TestResultRow {
            test_id: run_id.clone(),
            run_id: run_id.clone(),
            template_id: request.template_id.clone(),
            test_name: scenario.template.name.clone(),
            table_name: Some(scenario.template.target.table.clone()),
            table_type: scenario.template.target.table_type.map(|t| t.as_str().to_owned()),
            warehouse: scenario.template.target.warehouse.clone(),
            status: RunStatus::Prepared.as_str().to_owned(),
            concurrent_connections: Some(i64::from(scenario.template.workload.concurrent_connections)),
            test_config: Some(serde_json::to_value(&scenario).unwrap_or_default()),
            ..Default::default()
        };
        self.store.create_run(&run, &parent).await?;
        if let Some(template_id) = &request.template_id {
            self.store.record_template_use(template_id).await?;
        }
        tracing::info!(run_id = %run_id, workers = worker_count, "run created");
        Ok(run_id)
    }

    /// Starts a `PREPARED` run: spawns its workers and its control loop.
    pub async fn start(&self, run_id: &str) -> Result<watch::Receiver<LiveStatus>, OrchestratorError> {
        let run = self.store.get_run(run_id).await?.ok_or_else(|| OrchestratorError::RunNotFound(run_id.to_owned()))?;
        if run.status != RunStatus::Prepared {
            return Err(OrchestratorError::InvalidState {
                run_id: run_id.to_owned(),
                status: run.status.to_string(),
                action: "start",
                expected: "PREPARED",
            });
        }
        let scenario: ScenarioConfig = serde_json::from_value(run.scenario_config.clone()).map_err(|error| {
            OrchestratorError::InvalidTemplate { problems: format!("stored scenario of run `{run_id}`: {error}") }
        })?;
        let worker_count = u32::try_from(run.total_workers_expected.max(1)).unwrap_or(1);
        let (commands_tx, commands_rx) = mpsc::channel(8);
        let (updates_tx, updates_rx) = watch::channel(initial_status(run_id, worker_count));
        let context = RunContext {
            store: Arc::clone(&self.store),
            spawner: Arc::clone(&self.settings.spawner),
            run_id: run_id.to_owned(),
            scenario,
            worker_count,
            worker_store_url: self.settings.worker_store_url.clone(),
            connections_file: self.settings.connections_file.clone(),
            commands: commands_rx,
            updates: updates_tx,
        };
        let task = tokio::spawn(run_loop::drive(context));
        let active = ActiveRun { commands: commands_tx, updates: updates_rx.clone(), task: Some(task) };
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(run_id.to_owned(), active);
        }
        Ok(updates_rx)
    }

    /// Asks a run to stop. A run this service drives gets the request
    /// through its loop; any other active run gets a `STOP` event and
    /// `CANCELLING` directly.
    pub async fn stop(&self, run_id: &str, initiated_by: StopInitiator) -> Result<(), OrchestratorError> {
        let sender = self.runs.lock().ok().and_then(|runs| runs.get(run_id).map(|run| run.commands.clone()));
        if let Some(sender) = sender {
            if sender.send(RunCommand::Stop(initiated_by)).await.is_ok() {
                return Ok(());
            }
        }
        let run = self.store.get_run(run_id).await?.ok_or_else(|| OrchestratorError::RunNotFound(run_id.to_owned()))?;
        if run.status.is_terminal() {
            return Err(OrchestratorError::InvalidState {
                run_id: run_id.to_owned(),
                status: run.status.to_string(),
                action: "stop",
                expected: "PREPARED or RUNNING",
            });
        }
        let drain = self.settings.timings.drain_seconds.max(1.0) as u64;
        let stop = ControlEventPayload::Stop(StopEvent {
            scope: EventScope::Run,
            reason: "stop requested".to_owned(),
            initiated_by,
            drain_timeout_seconds: drain,
        });
        let (status, phase) = if run.status == RunStatus::Prepared {
            (RunStatus::Cancelled, run.phase)
        } else {
            (RunStatus::Cancelling, RunPhase::Cooldown)
        };
        let update = RunStatusUpdate {
            status: Some(status),
            phase: Some(phase),
            status_reason: Some(Some("stop requested".to_owned())),
            ..Default::default()
        };
        self.store.append_events(run_id, &[NewControlEvent::from(&stop)], Some(&update)).await?;
        Ok(())
    }

    /// Kills every worker of a run this service drives.
    pub async fn force_stop(&self, run_id: &str, initiated_by: StopInitiator) {
        let sender = self.runs.lock().ok().and_then(|runs| runs.get(run_id).map(|run| run.commands.clone()));
        if let Some(sender) = sender {
            sender.send(RunCommand::ForceStop(initiated_by)).await.ok();
        }
    }

    /// The stored status of any run.
    pub async fn status(&self, run_id: &str) -> Result<unibench_store::RunStatusRow, OrchestratorError> {
        self.store.get_run(run_id).await?.ok_or_else(|| OrchestratorError::RunNotFound(run_id.to_owned()))
    }

    /// Live status of a run this service drives.
    pub fn watch(&self, run_id: &str) -> Option<watch::Receiver<LiveStatus>> {
        self.runs.lock().ok()?.get(run_id).map(|run| run.updates.clone())
    }

    /// Waits for a run this service drives to end.
    pub async fn wait(&self, run_id: &str) -> Option<RunOutcome> {
        let task = self.runs.lock().ok()?.get_mut(run_id)?.task.take()?;
        match task.await {
            Ok(outcome) => Some(outcome),
            Err(error) => {
                Some(RunOutcome { status: RunStatus::Failed, reason: Some(format!("control loop failed: {error}")) })
            }
        }
    }
}

fn initial_status(run_id: &str, workers: u32) -> LiveStatus {
    LiveStatus {
        run_id: run_id.to_owned(),
        status: RunStatus::Prepared,
        phase: RunPhase::Preparing,
        elapsed_seconds: 0.0,
        workers_expected: workers,
        workers_registered: 0,
        aggregate: LiveAggregate::default(),
        workers: Vec::new(),
        reason: None,
    }
}

/// Creates a run id that sorts by time and is unique across hosts.
fn new_run_id() -> String {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("run-{stamp}-{}", &random[..8])
}
