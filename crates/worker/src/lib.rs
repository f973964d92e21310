//! The worker: the data plane. One OS process that owns a set of target
//! connections, runs a run's workload, and writes its own heartbeats,
//! snapshots, executions and logs to the store.
