//! The run model that every unibench role shares: run and worker statuses,
//! phases, control events and their scopes, per-worker targets and how a
//! total is split across workers, the scenario a run executes, and latency
//! histograms that merge losslessly across workers.
//!
//! This crate holds plain data and pure functions only. It depends on
//! neither tokio nor axum, so the store, worker, orchestrator and
//! controller can all use it without pulling in each other's runtime.

pub mod event;
pub mod histogram;
pub mod scenario;
pub mod status;
pub mod target;
pub mod template_check;

pub use event::{ControlEventPayload, EventScope, EventType};
pub use histogram::LatencyHistogram;
pub use status::{RunPhase, RunStatus, WorkerHealth, WorkerStatus};
pub use target::WorkerTarget;

/// The unibench version a binary was built from. Runs record it so that a
/// worker built from another version can refuse to join.
pub const UNIBENCH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Error raised when a text value does not name a known variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`: expected one of {expected}")]
pub struct ParseEnumError {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}
