//! The worker: the data plane. One OS process that owns a set of target
//! connections, runs a run's workload, and writes its own heartbeats,
//! snapshots, executions and logs to the store. It knows only the store's
//! address and its own identity; everything else it reads from the store.

pub mod exit;
mod load;
pub mod metrics;
mod runner;
mod sink;
mod system;
pub mod workload;

pub use exit::{ExitStatus, WorkerError};
pub use runner::{run_worker, WorkerArgs};
