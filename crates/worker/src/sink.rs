//! Buffers for what the worker writes in batches: query executions and log
//! lines. Connection tasks push into them; the worker's writer drains them
//! into the store, and puts rows back when the store is unreachable, so
//! that a clean stop flushes everything that ran.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::Notify;
use unibench_model::scenario::QueryLogPolicy;
use unibench_store::{new_id, ExecutionRow, LogRow};

/// Most execution rows held while the store is unreachable. Past this,
/// new rows are dropped and counted, so that a long store outage cannot
/// exhaust the worker's memory.
pub const MAX_BUFFERED_EXECUTIONS: usize = 500_000;

/// Log levels as stored in `TEST_LOGS.LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// Whether a query's execution row is written, decided before it runs so
/// that skipped queries cost nothing extra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepDecision {
    Keep,
    IfFailed,
    Skip,
}

impl KeepDecision {
    pub fn keeps(self, success: bool) -> bool {
        match self {
            KeepDecision::Keep => true,
            KeepDecision::IfFailed => !success,
            KeepDecision::Skip => false,
        }
    }
}

/// The run, test and worker ids a worker's rows carry.
#[derive(Debug, Clone)]
pub struct Identity {
    pub run_id: String,
    pub test_id: String,
    pub worker_id: String,
}

#[derive(Debug)]
pub struct Sink {
    pub identity: Identity,
    policy: QueryLogPolicy,
    /// Oldest first. A deque, because batches are taken from the front.
    executions: Mutex<VecDeque<ExecutionRow>>,
    logs: Mutex<Vec<LogRow>>,
    dropped_executions: AtomicU64,
    /// Woken when a warning or error is logged, which is written at once.
    pub urgent: Notify,
}

/// Locks a mutex, recovering it when poisoned. The worker's locks guard
/// plain buffers and counters, which stay valid to read even if a holder
/// panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sink {
    pub fn new(identity: Identity, policy: QueryLogPolicy) -> Self {
        Sink {
            identity,
            policy,
            executions: Mutex::default(),
            logs: Mutex::default(),
            dropped_executions: AtomicU64::new(0),
            urgent: Notify::new(),
        }
    }

    /// Decides, before a query runs, whether its execution row is kept.
    /// `draw` is a uniform number in [0, 1) used for sampling; it is only
    /// read under the `sample` policy.
    pub fn decide(&self, draw: impl FnOnce() -> f64) -> KeepDecision {
        match self.policy {
            QueryLogPolicy::All => KeepDecision::Keep,
            QueryLogPolicy::Sample(fraction) if draw() < fraction => KeepDecision::Keep,
            QueryLogPolicy::Sample(_) | QueryLogPolicy::Off => KeepDecision::Skip,
            QueryLogPolicy::Errors => KeepDecision::IfFailed,
        }
    }

    pub fn push_execution(&self, row: ExecutionRow) {
        let mut executions = lock(&self.executions);
        if executions.len() >= MAX_BUFFERED_EXECUTIONS {
            self.dropped_executions.fetch_add(1, Ordering::Relaxed);
            return;
        }
        executions.push_back(row);
    }

    /// Takes up to `max` buffered executions, oldest first.
    pub fn take_executions(&self, max: usize) -> Vec<ExecutionRow> {
        let mut executions = lock(&self.executions);
        let count = executions.len().min(max);
        executions.drain(..count).collect()
    }

    /// Puts executions that could not be written back in front of the
    /// buffer.
    pub fn return_executions(&self, rows: Vec<ExecutionRow>) {
        let mut executions = lock(&self.executions);
        for row in rows.into_iter().rev() {
            executions.push_front(row);
        }
    }

    pub fn buffered_executions(&self) -> usize {
        lock(&self.executions).len()
    }

    /// Executions dropped because the buffer was full.
    pub fn dropped_executions(&self) -> u64 {
        self.dropped_executions.load(Ordering::Relaxed)
    }

    /// Buffers a log line for `TEST_LOGS`; warnings and errors wake the
    /// writer at once.
    pub fn log(&self, level: Level, message: impl Into<String>, details: Option<Value>) {
        let row = LogRow {
            log_id: new_id(),
            run_id: self.identity.run_id.clone(),
            test_id: self.identity.test_id.clone(),
            worker_id: Some(self.identity.worker_id.clone()),
            level: level.as_str().to_owned(),
            message: message.into(),
            details,
            timestamp: Utc::now(),
            created_at: None,
        };
        lock(&self.logs).push(row);
        if level >= Level::Warn {
            self.urgent.notify_one();
        }
    }

    pub fn take_logs(&self) -> Vec<LogRow> {
        std::mem::take(&mut *lock(&self.logs))
    }

    pub fn return_logs(&self, mut rows: Vec<LogRow>) {
        let mut logs = lock(&self.logs);
        rows.append(&mut logs);
        *logs = rows;
    }
}
