//! Errors of the orchestrator, each naming what a user must fix.

use unibench_store::StoreError;

use crate::spawner::SpawnError;

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("invalid template: {problems}")]
    InvalidTemplate { problems: String },

    #[error("template \"{template}\": {field}: {reason}")]
    Target { template: String, field: String, reason: String },

    #[error("template `{0}` not found in the store")]
    TemplateNotFound(String),

    #[error("cannot read template file {path}: {reason}")]
    TemplateFile { path: String, reason: String },

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("run `{0}` not found")]
    RunNotFound(String),

    #[error("run `{run_id}` is {status}; {action} needs a {expected} run")]
    InvalidState { run_id: String, status: String, action: &'static str, expected: &'static str },

    #[error(transparent)]
    Spawn(#[from] SpawnError),
}
