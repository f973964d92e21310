//! Why a worker stops, and the one table that maps each reason to the
//! worker's exit code.

/// The worker's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Duration reached, STOP received, or the run ended.
    Clean = 0,
    /// Bad arguments, or an invalid or missing scenario.
    Config = 1,
    /// The store was unreachable for the no-store timeout.
    StoreLost = 2,
    /// No START within the start timeout, or the run had already ended.
    NotStarted = 3,
    /// The workload cannot run (for example the target rejects its SQL).
    Fatal = 4,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An error that ends the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("run `{run_id}` not found in the store")]
    RunNotFound { run_id: String },

    #[error("invalid scenario of run `{run_id}`: {field}: {reason}")]
    InvalidScenario { run_id: String, field: String, reason: String },

    #[error(
        "this worker is unibench {worker_version}, but run `{run_id}` was created by unibench {run_version}; \
         start workers built from unibench {run_version}"
    )]
    VersionMismatch { run_id: String, worker_version: String, run_version: String },

    #[error("invalid worker identity: {0}")]
    InvalidArguments(String),

    #[error("cannot use the target of run `{run_id}`: {reason}")]
    TargetConfig { run_id: String, reason: String },

    #[error("cannot use the store: {0}")]
    StoreConfig(unibench_store::StoreError),

    #[error("run `{run_id}` already ended with status {status}")]
    RunAlreadyEnded { run_id: String, status: String },

    #[error("no START for run `{run_id}` within {seconds} s")]
    StartTimeout { run_id: String, seconds: f64 },

    #[error("the store was unreachable for {seconds} s: {last_error}")]
    StoreLost { seconds: f64, last_error: String },

    #[error("fatal workload error: {0}")]
    Fatal(String),
}

impl WorkerError {
    /// The exit code for each reason.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            WorkerError::RunNotFound { .. }
            | WorkerError::InvalidScenario { .. }
            | WorkerError::VersionMismatch { .. }
            | WorkerError::InvalidArguments(_)
            | WorkerError::TargetConfig { .. }
            | WorkerError::StoreConfig(_) => ExitStatus::Config,
            WorkerError::StoreLost { .. } => ExitStatus::StoreLost,
            WorkerError::RunAlreadyEnded { .. } | WorkerError::StartTimeout { .. } => ExitStatus::NotStarted,
            WorkerError::Fatal(_) => ExitStatus::Fatal,
        }
    }
}
