//! The orchestrator: the control plane that creates runs, launches workers
//! and drives a run through its lifecycle, talking to workers only through
//! the store.
