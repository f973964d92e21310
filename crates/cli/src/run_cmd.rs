//! `unibench run`: a whole run in one process. It saves the template,
//! creates the run, starts its workers, prints a live line every second,
//! and ends with a summary (or one JSON document with `--json`). Ctrl-C
//! requests a stop, and a second Ctrl-C kills the workers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{signal, Signal, SignalKind};
use unibench_model::event::StopInitiator;
use unibench_model::scenario::{Template, Timings};
use unibench_model::template_check::check_yaml_nesting;
use unibench_model::RunStatus;
use unibench_orchestrator::{
    LiveStatus, LocalSpawner, OrchestratorService, OrchestratorSettings, Overrides, RunRequest,
};
use unibench_store::Store;

use crate::{store_arg, summary};

/// Environment variable with timing overrides as JSON, for example
/// `{"drain_seconds": 5}`; the keys are those of the scenario's timings.
pub const TIMINGS_ENV: &str = "UNIBENCH_TIMINGS";

#[derive(Debug, Args)]
pub struct RunCommand {
    /// A template YAML file, or the id or name of a stored template.
    #[arg(long, value_name = "FILE|ID|NAME")]
    template: String,
    /// Store URL (default: $UNIBENCH_STORE, else the embedded SQLite file).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Number of workers (default: from the template's scaling).
    #[arg(long)]
    workers: Option<u32>,
    /// Total concurrent connections across all workers.
    #[arg(long)]
    connections: Option<u32>,
    /// Warmup in seconds.
    #[arg(long, value_name = "SECONDS")]
    warmup: Option<f64>,
    /// Measurement duration in seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// The named-connections file (default: $UNIBENCH_HOME/connections.toml).
    #[arg(long, value_name = "PATH")]
    connections_file: Option<PathBuf>,
    /// Print the final summary as one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: RunCommand) -> ExitCode {
    match execute(command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: RunCommand) -> anyhow::Result<ExitCode> {
    let store_choice = store_arg::resolve(command.store.as_deref())?;
    let store = Arc::new(Store::connect(&store_choice.url).await?);
    store.require_schema().await?;
    let service = service(Arc::clone(&store), &store_choice.raw, command.connections_file.clone()).await?;

    let (template, template_id) = load_template(&service, &command.template).await?;
    let overrides = Overrides {
        workers: command.workers,
        connections: command.connections,
        warmup_seconds: command.warmup,
        duration_seconds: command.duration,
    };
    let outcome = run_template(&service, template, template_id, overrides, command.json).await?;
    if command.json {
        let document = summary::json(&store, &outcome.0).await?;
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        summary::print(&store, &outcome.0, &store_choice.url).await?;
    }
    Ok(if outcome.1 == RunStatus::Completed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Creates a service that spawns workers as child processes of this
/// binary.
pub async fn service(
    store: Arc<Store>,
    raw_store_url: &str,
    connections_file: Option<PathBuf>,
) -> anyhow::Result<OrchestratorService> {
    let log_dir = unibench_store::url::unibench_home().ok().map(|home| home.join("logs"));
    let spawner = LocalSpawner::current_exe(log_dir)?;
    let settings = OrchestratorSettings {
        spawner: Arc::new(spawner),
        worker_store_url: raw_store_url.to_owned(),
        connections_file,
        timings: timings_from_env()?,
    };
    // Orphan recovery runs here, before the new run exists.
    Ok(OrchestratorService::new(store, settings).await?)
}

fn timings_from_env() -> anyhow::Result<Timings> {
    match std::env::var(TIMINGS_ENV) {
        Ok(text) if !text.trim().is_empty() => {
            serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("invalid {TIMINGS_ENV}: {error}"))
        }
        _ => Ok(Timings::default()),
    }
}

/// Reads a template file, or finds a stored template by id or name. A file
/// has no template id yet: the run saves it by name once it passes the
/// checks, so an invalid file never replaces a stored template.
pub async fn load_template(
    service: &OrchestratorService,
    reference: &str,
) -> anyhow::Result<(Template, Option<String>)> {
    let path = Path::new(reference);
    if path.is_file() {
        return Ok((read_template_file(path)?, None));
    }
    let row = service
        .store()
        .get_template(reference)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no template file or stored template named `{reference}`"))?;
    let template: Template = serde_json::from_value(row.config.clone())
        .map_err(|error| anyhow::anyhow!("stored template `{}` is invalid: {error}", row.template_name))?;
    Ok((template, Some(row.template_id)))
}

/// Parses a YAML template file; errors name the file, line and field.
pub fn read_template_file(path: &Path) -> anyhow::Result<Template> {
    let text =
        std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    check_yaml_nesting(&text).map_err(|problem| anyhow::anyhow!("invalid template {}: {problem}", path.display()))?;
    serde_norway::from_str(&text).map_err(|error| anyhow::anyhow!("invalid template {}: {error}", path.display()))
}

/// Creates and starts a run, prints its progress, and waits for its end.
/// Returns the run id and its final status.
pub async fn run_template(
    service: &OrchestratorService,
    template: Template,
    template_id: Option<String>,
    overrides: Overrides,
    quiet: bool,
) -> anyhow::Result<(String, RunStatus)> {
    let run_id = service.create(RunRequest { template, template_id, overrides }).await?;
    let run = service.store().get_run(&run_id).await?.ok_or_else(|| anyhow::anyhow!("run `{run_id}` vanished"))?;
    let workers = run.total_workers_expected;
    eprintln!("run {run_id} created: {}, {workers} worker{}", run.status, if workers == 1 { "" } else { "s" });

    let mut updates = service.start(&run_id).await?;
    let mut printer = LivePrinter::default();
    let mut interrupts = 0;
    // SIGTERM (from `kill`, systemd or a container runtime) stops the run
    // like Ctrl-C, rather than ending this process and orphaning the run.
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => Some(terminate),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the run");
            None
        }
    };
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    break;
                }
                let status = updates.borrow_and_update().clone();
                if !quiet {
                    printer.print(&status);
                } else {
                    printer.print_transitions(&status);
                }
                if status.status.is_terminal() {
                    break;
                }
            }
            _ = interrupted(&mut terminate) => {
                interrupts += 1;
                if interrupts == 1 {
                    eprintln!("stopping the run (press Ctrl-C again to kill the workers)");
                    service.stop(&run_id, StopInitiator::Cli).await?;
                } else {
                    eprintln!("killing the workers");
                    service.force_stop(&run_id, StopInitiator::Cli).await;
                }
            }
        }
    }
    let outcome = service.wait(&run_id).await;
    let status = outcome.as_ref().map_or(RunStatus::Failed, |outcome| outcome.status);
    match outcome.and_then(|outcome| outcome.reason) {
        Some(reason) => eprintln!("run ended {status}: {reason}"),
        None => eprintln!("run ended {status}"),
    }
    Ok((run_id, status))
}

/// Waits for Ctrl-C or, when it could be set up, SIGTERM.
async fn interrupted(terminate: &mut Option<Signal>) {
    let sigterm = async {
        match terminate {
            Some(terminate) => {
                terminate.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm => {}
    }
}

/// Prints one live line per second and a line for every lifecycle change.
#[derive(Default)]
struct LivePrinter {
    last_line: Option<std::time::Instant>,
    registered: u32,
    status: Option<RunStatus>,
    phase: Option<unibench_model::RunPhase>,
}

impl LivePrinter {
    fn print_transitions(&mut self, status: &LiveStatus) {
        if status.workers_registered != self.registered {
            self.registered = status.workers_registered;
            eprintln!("{}/{} workers registered", status.workers_registered, status.workers_expected);
        }
        if self.status != Some(status.status) || self.phase != Some(status.phase) {
            self.status = Some(status.status);
            self.phase = Some(status.phase);
            eprintln!("status {} phase {}", status.status, status.phase);
        }
    }

    fn print(&mut self, status: &LiveStatus) {
        self.print_transitions(status);
        if !status.status.is_active() {
            return;
        }
        if self.last_line.is_some_and(|at| at.elapsed() < Duration::from_millis(900)) {
            return;
        }
        self.last_line = Some(std::time::Instant::now());
        eprintln!("{}", live_line(status));
    }
}

/// `RUNNING MEASUREMENT 12s | 1234.5 qps | p50 1.20 p95 3.40 p99 8.10 ms | 0 errors | 2/2 healthy`
pub fn live_line(status: &LiveStatus) -> String {
    let aggregate = &status.aggregate;
    let head = format!("{} {} {:>4.0}s", status.status, status.phase, status.elapsed_seconds);
    let workers = format!("{}/{} healthy", aggregate.workers_healthy, status.workers_expected);
    if !aggregate.measuring {
        return format!("{head} | warming up | {workers}");
    }
    let ms = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.2}"));
    format!(
        "{head} | {:.1} qps | p50 {} p95 {} p99 {} ms | {} errors | {workers}",
        aggregate.qps,
        ms(aggregate.latency.p50),
        ms(aggregate.latency.p95),
        ms(aggregate.latency.p99),
        aggregate.errors
    )
}
