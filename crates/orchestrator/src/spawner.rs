//! Launching workers. A [`WorkerSpawner`] starts one worker given its
//! identity; the orchestrator keeps the returned handle so that it can
//! escalate a stop (SIGTERM, then SIGKILL) and learn how the worker
//! exited. The local spawner runs workers as child processes of this
//! binary.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// A worker's identity and the store it reports to.
#[derive(Debug, Clone)]
pub struct WorkerLaunch {
    pub run_id: String,
    pub worker_id: String,
    pub worker_group_id: u32,
    pub worker_group_count: u32,
    /// The store URL, passed to the worker. It may hold a password, so it
    /// is given through the environment, never on the command line.
    pub store_url: String,
    pub connections_file: Option<PathBuf>,
}

/// Error raised when a worker cannot be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start worker `{worker_id}`: {reason}")]
pub struct SpawnError {
    pub worker_id: String,
    pub reason: String,
}

/// A started worker.
pub trait WorkerHandle: Send + Sync {
    /// Returns the exit code once the worker has exited (`Some(None)` when
    /// a signal killed it), or `None` while it runs.
    fn exit_status(&mut self) -> Option<Option<i32>>;
    /// Asks the worker to drain and exit (SIGTERM for a local process).
    fn terminate(&mut self);
    /// Ends the worker at once (SIGKILL for a local process).
    fn kill(&mut self);
    /// Returns the operating-system process id of a local worker.
    fn pid(&self) -> Option<u32>;
}

/// Starts workers somewhere: a child process, a Kubernetes Job, a
/// container service.
pub trait WorkerSpawner: Send + Sync {
    fn spawn(&self, launch: &WorkerLaunch) -> Result<Box<dyn WorkerHandle>, SpawnError>;
}

/// Runs each worker as a child process of the given binary
/// (`unibench worker ...`).
#[derive(Debug, Clone)]
pub struct LocalSpawner {
    pub program: PathBuf,
    /// Directory for each worker's stderr (`RUN_ID-WORKER_ID.log`), or
    /// `None` to discard it. Workers also log to the store.
    pub log_dir: Option<PathBuf>,
}

impl LocalSpawner {
    /// Creates a spawner that runs the current executable.
    pub fn current_exe(log_dir: Option<PathBuf>) -> std::io::Result<Self> {
        Ok(LocalSpawner { program: std::env::current_exe()?, log_dir })
    }
}

impl WorkerSpawner for LocalSpawner {
    fn spawn(&self, launch: &WorkerLaunch) -> Result<Box<dyn WorkerHandle>, SpawnError> {
        let error = |reason: String| SpawnError { worker_id: launch.worker_id.clone(), reason };
        let (stderr, log) = match &self.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| error(format!("cannot create {}: {e}", dir.display())))?;
                let path = dir.join(format!("{}-{}.log", launch.run_id, launch.worker_id));
                let file = std::fs::File::create(&path)
                    .map_err(|e| error(format!("cannot create {}: {e}", path.display())))?;
                (Stdio::from(file), Some(path))
            }
            None => (Stdio::null(), None),
        };
        let mut command = Command::new(&self.program);
        command
            .arg("worker")
            .args(["--run-id", &launch.run_id, "--worker-id", &launch.worker_id])
            .args(["--worker-group-id", &launch.worker_group_id.to_string()])
            .args(["--worker-group-count", &launch.worker_group_count.to_string()])
            .env("UNIBENCH_STORE", &launch.store_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(path) = &launch.connections_file {
            command.arg("--connections").arg(path);
        }
        let child = command.spawn().map_err(|e| error(format!("{}: {e}", self.program.display())))?;
        Ok(Box::new(LocalWorker { child, exited: None, log }))
    }
}

struct LocalWorker {
    child: Child,
    exited: Option<Option<i32>>,
    /// The file that receives the worker's stderr.
    log: Option<PathBuf>,
}

impl LocalWorker {
    /// Keeps the exit code, and deletes the stderr log when the worker
    /// wrote nothing to it.
    fn record_exit(&mut self, code: Option<i32>) {
        self.exited = Some(code);
        if let Some(path) = &self.log {
            if std::fs::metadata(path).is_ok_and(|metadata| metadata.len() == 0) {
                std::fs::remove_file(path).ok();
            }
        }
    }

    fn send(&mut self, signal: Signal) {
        if self.exit_status().is_some() {
            return;
        }
        // The child is reaped only when `exit_status` observes its exit, so
        // its pid cannot have been reused by an unrelated process.
        let Ok(pid) = i32::try_from(self.child.id()) else { return };
        if let Err(error) = nix::sys::signal::kill(Pid::from_raw(pid), signal) {
            tracing::warn!(%error, pid, ?signal, "could not signal worker");
        }
    }
}

impl WorkerHandle for LocalWorker {
    fn exit_status(&mut self) -> Option<Option<i32>> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.record_exit(status.code());
            }
        }
        self.exited
    }

    fn terminate(&mut self) {
        self.send(Signal::SIGTERM);
    }

    fn kill(&mut self) {
        if self.exit_status().is_none() {
            self.child.kill().ok();
            if let Ok(status) = self.child.wait() {
                self.record_exit(status.code());
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        // Reap the child so that it does not linger as a zombie; a worker
        // still running is left to finish on its own.
        if self.exited.is_none() {
            let _ = self.child.try_wait();
        }
    }
}
