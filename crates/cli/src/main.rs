//! The `unibench` command: parses arguments, sets up logging and the async
//! runtime, dispatches to a role, and maps the outcome to an exit code.

mod demo_cmd;
mod run_cmd;
mod runs_cmd;
mod schema_cmd;
mod serve_cmd;
mod store_arg;
mod summary;
mod worker_cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Multi-node load benchmarks for databases.
#[derive(Debug, Parser)]
#[command(name = "unibench", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or check the results and config schema of a store.
    Schema {
        #[command(subcommand)]
        action: schema_cmd::SchemaAction,
    },
    /// Run a template: create the run, start its workers, show live
    /// progress and a final summary.
    Run(run_cmd::RunCommand),
    /// Run a short two-worker benchmark on an embedded SQLite database,
    /// with no services and no configuration.
    Demo(demo_cmd::DemoCommand),
    /// Show run history from the store.
    Runs {
        #[command(subcommand)]
        action: runs_cmd::RunsAction,
    },
    /// Run one worker of a run (started by the orchestrator, or by hand on
    /// another host that reaches the same store).
    Worker(worker_cmd::WorkerCommand),
    /// Serve the HTTP API and live stream, with the orchestrator embedded.
    Serve(serve_cmd::ServeCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Runs { .. }) {
        restore_default_sigpipe();
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Schema { action } => schema_cmd::run(action).await,
            Command::Worker(command) => worker_cmd::run(command).await,
            Command::Run(command) => run_cmd::run(command).await,
            Command::Demo(command) => demo_cmd::run(command).await,
            Command::Runs { action } => runs_cmd::run(action).await,
            Command::Serve(command) => serve_cmd::run(command).await,
        }
    })
}

/// Lets a closed standard output end the process quietly, as it ends `ls`
/// or `cat` (`unibench runs list | head`), where `println!` would panic.
/// Only for commands that print and leave nothing to shut down.
fn restore_default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: this runs before any other thread starts, and the default
    // disposition runs no code in the process.
    if let Err(error) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("warning: cannot restore the default SIGPIPE action: {error}");
    }
}

/// Structured logs go to stderr; `UNIBENCH_LOG` (or `RUST_LOG`) sets the
/// filter, `warn` by default so that command output stays clean.
fn init_logging() {
    let filter =
        std::env::var("UNIBENCH_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "warn".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
