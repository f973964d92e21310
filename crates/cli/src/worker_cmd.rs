//! `unibench worker`: the worker process. Its exit code is the worker's
//! exit status (0 clean, 1 configuration, 2 store lost, 3 not started,
//! 4 fatal workload error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use unibench_store::StoreUrl;
use unibench_worker::{run_worker, ExitStatus, WorkerArgs};

#[derive(Debug, Args)]
pub struct WorkerCommand {
    /// Id of the run to join.
    #[arg(long)]
    run_id: String,
    /// This worker's id, such as worker-0.
    #[arg(long)]
    worker_id: String,
    /// Zero-based index of this worker, used for key sharding.
    #[arg(long)]
    worker_group_id: u32,
    /// Number of workers in the run.
    #[arg(long)]
    worker_group_count: u32,
    /// Store URL (default: $UNIBENCH_STORE, else the embedded SQLite file).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The connections file (default: $UNIBENCH_HOME/connections.toml).
    #[arg(long, value_name = "PATH")]
    connections: Option<PathBuf>,
}

pub async fn run(command: WorkerCommand) -> ExitCode {
    let store = match StoreUrl::resolve(command.store.as_deref()) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(ExitStatus::Config.code());
        }
    };
    raise_open_file_limit();
    let args = WorkerArgs {
        run_id: command.run_id,
        worker_id: command.worker_id,
        worker_group_id: command.worker_group_id,
        worker_group_count: command.worker_group_count,
        store,
        connections_file: command.connections,
    };
    ExitCode::from(run_worker(args).await.code())
}

/// Raises the soft limit on open files to the hard limit. Each target
/// connection uses a socket and, when paced, a timer, so a worker with
/// hundreds of connections would pass a soft limit of 1,024.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};

    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft < hard {
        if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(%error, soft, hard, "could not raise the open file limit");
        }
    }
}
