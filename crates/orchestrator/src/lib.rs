//! The orchestrator: the control plane. It creates runs from templates,
//! launches workers through a [`spawner::WorkerSpawner`], drives each run
//! through its lifecycle with one control loop per run, and computes live
//! and final rollups. It talks to workers only through the store, so it
//! can move to its own process without changing them.

pub mod error;
pub mod prepare;
pub mod rollup;
pub mod run_loop;
pub mod service;
pub mod spawner;

pub use error::OrchestratorError;
pub use prepare::Overrides;
pub use run_loop::{LiveStatus, RunOutcome, WorkerLive};
pub use service::{OrchestratorService, OrchestratorSettings, RunRequest};
pub use spawner::{LocalSpawner, WorkerSpawner};
