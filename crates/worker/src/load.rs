//! Load generation: one tokio task per logical target connection, each with
//! its own target session, running the workload back to back (closed loop)
//! or paced to a share of the target QPS (open loop).
//!
//! The connection tasks run on load threads, one per available core, each
//! with a single-threaded runtime of its own, and connections are dealt to
//! them in turn. A query then never wakes another thread: the thread that
//! sent it waits for the response in its own event loop, as pgbench's threads
//! do. The worker's control loop stays on the main runtime.
//!
//! In open loop each query has an intended start time on a fixed schedule,
//! and its latency is measured from that time, not from when it actually
//! started: a target that falls behind shows its queueing in the latency
//! instead of hiding it (no coordinated omission).

use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::FutureExt;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use unibench_model::scenario::QueryKind;
use unibench_store::{new_id, ExecutionRow};
use unibench_target::{TargetConfig, TargetConnection, TargetError};

use crate::metrics::Metrics;
use crate::sink::{lock, KeepDecision, Level, Sink};
use crate::workload::CompiledWorkload;

/// How long a connection waits before it tries to reconnect.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// State shared by the connection tasks and the worker.
pub struct LoadShared {
    pub workload: Arc<CompiledWorkload>,
    /// The SQL of each operation, with `{table}` expanded.
    pub statements: Vec<String>,
    pub target: TargetConfig,
    pub metrics: Arc<Metrics>,
    pub sink: Arc<Sink>,
    /// Connections the worker should hold now.
    desired: AtomicU32,
    /// Target QPS for the whole worker as `f64` bits; 0 means closed loop.
    qps_bits: AtomicU64,
    /// Set when the worker drains: no connection starts another query.
    stopping: AtomicBool,
    /// Connections open and running the workload.
    open: AtomicU32,
    /// The first fatal workload error (for example SQL the target rejects).
    fatal: Mutex<Option<String>>,
    query_errors: Mutex<QueryErrors>,
}

/// Maximum number of distinct query error messages a worker logs. The others
/// are only counted. With `query_log` set to `all` or `errors`, their rows in
/// `QUERY_EXECUTIONS` still hold them, unless the rows were dropped.
const LOGGED_QUERY_ERRORS: usize = 10;

/// The failed queries' messages: the last one, and the distinct ones logged.
#[derive(Debug, Default)]
struct QueryErrors {
    last: Option<String>,
    logged: Vec<String>,
    more_not_logged: bool,
}

impl LoadShared {
    pub fn new(
        workload: Arc<CompiledWorkload>,
        statements: Vec<String>,
        target: TargetConfig,
        metrics: Arc<Metrics>,
        sink: Arc<Sink>,
    ) -> Self {
        LoadShared {
            workload,
            statements,
            target,
            metrics,
            sink,
            desired: AtomicU32::new(0),
            qps_bits: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            open: AtomicU32::new(0),
            fatal: Mutex::new(None),
            query_errors: Mutex::default(),
        }
    }

    pub fn open_connections(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn desired_connections(&self) -> u32 {
        self.desired.load(Ordering::Relaxed)
    }

    fn qps(&self) -> Option<f64> {
        let qps = f64::from_bits(self.qps_bits.load(Ordering::Relaxed));
        (qps > 0.0).then_some(qps)
    }

    pub fn fatal_error(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|fatal| fatal.clone())
    }

    fn set_fatal(&self, message: String) {
        if let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert(message);
        }
    }

    /// Returns the message of the last failed query, if any.
    pub fn last_query_error(&self) -> Option<String> {
        lock(&self.query_errors).last.clone()
    }

    /// Keeps a failed query's message as the last error and logs the first
    /// occurrence of each distinct message, up to [`LOGGED_QUERY_ERRORS`].
    fn note_query_error(&self, kind: QueryKind, error: &TargetError) {
        // The store cuts LAST_ERROR to its maximum length when it writes it.
        let message = format!("{} query failed: {error}", kind.as_str());
        let mut errors = lock(&self.query_errors);
        if !errors.logged.contains(&message) {
            if errors.logged.len() < LOGGED_QUERY_ERRORS {
                self.sink.log(Level::Warn, message.clone(), Some(json!({"query_kind": kind.as_str()})));
                errors.logged.push(message.clone());
            } else if !errors.more_not_logged {
                errors.more_not_logged = true;
                let note = format!(
                    "more than {LOGGED_QUERY_ERRORS} distinct query errors, so the others are not logged. \
                     With query_log all or errors, QUERY_EXECUTIONS holds every failed query"
                );
                self.sink.log(Level::Warn, note, None);
            }
        }
        errors.last = Some(message);
    }

    fn keeps_running(&self, slot: u32) -> bool {
        !self.stopping.load(Ordering::Relaxed) && slot < self.desired.load(Ordering::Relaxed)
    }
}

/// A linear change of the connection target over time.
#[derive(Debug, Clone, Copy)]
struct Ramp {
    from: u32,
    to: u32,
    started: Instant,
    duration: Duration,
}

impl Ramp {
    fn current(&self, now: Instant) -> u32 {
        let progress = now.duration_since(self.started).as_secs_f64() / self.duration.as_secs_f64().max(1e-9);
        if progress >= 1.0 {
            return self.to;
        }
        let value = f64::from(self.from) + (f64::from(self.to) - f64::from(self.from)) * progress;
        value.round() as u32
    }
}

/// Returns the number of load threads: the cores this process may use.
pub fn load_thread_count() -> usize {
    std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1)
}

/// Threads with a single-threaded runtime each. A thread ends when its
/// stop sender is dropped, which drops the tasks still on its runtime.
struct LoadThreads {
    runtimes: Vec<Handle>,
    _stops: Vec<oneshot::Sender<()>>,
}

impl LoadThreads {
    fn start(count: usize) -> std::io::Result<Self> {
        let mut runtimes = Vec::with_capacity(count);
        let mut stops = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let (stop, stopped) = oneshot::channel::<()>();
            let (started, handle) = std::sync::mpsc::channel();
            // The runtime is built and dropped on its own thread: a runtime
            // must not be dropped inside another runtime's task.
            std::thread::Builder::new().name(format!("load-{index}")).spawn(move || {
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => {
                        _ = started.send(Ok(runtime.handle().clone()));
                        runtime.block_on(async move { _ = stopped.await });
                    }
                    Err(error) => _ = started.send(Err(error)),
                }
            })?;
            let handle = handle.recv().map_err(|_| std::io::Error::other("a load thread ended while starting"))??;
            runtimes.push(handle);
            stops.push(stop);
        }
        Ok(LoadThreads { runtimes, _stops: stops })
    }

    /// Spawns the task that `make_task` builds for thread `slot % threads`,
    /// given that thread's index.
    fn spawn<F>(&self, slot: u32, make_task: impl FnOnce(usize) -> F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let thread = slot as usize % self.runtimes.len();
        self.runtimes[thread].spawn(make_task(thread))
    }
}

/// Owns the connection tasks and keeps their number at the target.
pub struct LoadGenerator {
    shared: Arc<LoadShared>,
    threads: LoadThreads,
    slots: Vec<Option<JoinHandle<()>>>,
    ramp: Option<Ramp>,
    target: u32,
}

impl LoadGenerator {
    /// Starts one load thread per metrics shard. Connection slot `n` runs
    /// on thread `n % threads` and records into that thread's shard.
    pub fn new(shared: Arc<LoadShared>) -> std::io::Result<Self> {
        let threads = LoadThreads::start(shared.metrics.shard_count())?;
        Ok(LoadGenerator { shared, threads, slots: Vec::new(), ramp: None, target: 0 })
    }

    /// Sets an absolute target. With `ramp` the number of connections moves
    /// linearly from the current number to the target over that time;
    /// without it the change applies at once.
    pub fn set_target(&mut self, connections: u32, qps: Option<f64>, ramp: Option<Duration>) {
        self.shared.qps_bits.store(qps.unwrap_or(0.0).max(0.0).to_bits(), Ordering::Relaxed);
        if connections == self.target && self.ramp.is_none() {
            return;
        }
        let current = self.shared.desired_connections();
        self.target = connections;
        self.ramp = ramp.filter(|ramp| !ramp.is_zero() && current != connections).map(|duration| Ramp {
            from: current,
            to: connections,
            started: Instant::now(),
            duration,
        });
        self.maintain();
    }

    /// Advances a ramp and starts tasks for connection slots below the
    /// current target. Slots above it end on their own after their query.
    pub fn maintain(&mut self) {
        let desired = match self.ramp {
            Some(ramp) => {
                let value = ramp.current(Instant::now());
                if value == ramp.to {
                    self.ramp = None;
                }
                value
            }
            None => self.target,
        };
        self.shared.desired.store(desired, Ordering::Relaxed);
        if self.shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let desired = desired as usize;
        if self.slots.len() < desired {
            self.slots.resize_with(desired, || None);
        }
        for slot in 0..desired {
            let running = self.slots[slot].as_ref().is_some_and(|task| !task.is_finished());
            if !running {
                let shared = Arc::clone(&self.shared);
                let slot = slot as u32;
                let task = self.threads.spawn(slot, |shard| run_connection_guarded(shared, slot, shard));
                self.slots[slot as usize] = Some(task);
            }
        }
    }

    /// Stops starting queries and waits up to `timeout` for in-flight ones;
    /// connections still busy then are abandoned. Returns how many were.
    pub async fn drain(&mut self, timeout: Duration) -> usize {
        self.shared.stopping.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut abandoned = 0;
        for task in self.slots.iter_mut().filter_map(Option::take) {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                abandoned += 1;
            }
        }
        abandoned
    }
}

/// Runs [`run_connection`] and turns a panic in it into a fatal workload
/// error, so that the worker stops and reports it instead of reopening
/// the slot again and again.
async fn run_connection_guarded(shared: Arc<LoadShared>, slot: u32, shard: usize) {
    let run = AssertUnwindSafe(run_connection(Arc::clone(&shared), slot, shard)).catch_unwind();
    if let Err(panic) = run.await {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        let message = format!("connection {slot} stopped on an internal error (a unibench bug): {detail}");
        shared.sink.log(Level::Error, message.clone(), None);
        shared.set_fatal(message);
    }
}

/// Runs one logical connection: connects, prepares the workload's
/// statements, then runs queries until the slot is above the target or the
/// worker drains. Reconnects after a lost connection. Queries are recorded
/// in metrics shard `shard`.
async fn run_connection(shared: Arc<LoadShared>, slot: u32, shard: usize) {
    let mut rng = SmallRng::from_entropy();
    while shared.keeps_running(slot) {
        let mut connection = match open_connection(&shared).await {
            Ok(connection) => connection,
            Err(ConnectionFailure::Fatal) => return,
            Err(ConnectionFailure::Retry) => {
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        shared.open.fetch_add(1, Ordering::Relaxed);
        let lost = run_queries(&shared, slot, shard, &mut connection, &mut rng).await;
        shared.open.fetch_sub(1, Ordering::Relaxed);
        // On PostgreSQL, closing sends a Terminate message, so the server
        // does not have to notice a closed socket.
        connection.close().await;
        if lost {
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }
}

enum ConnectionFailure {
    Retry,
    Fatal,
}

async fn open_connection(shared: &LoadShared) -> Result<TargetConnection, ConnectionFailure> {
    let mut connection = match TargetConnection::open(&shared.target).await {
        Ok(connection) => connection,
        Err(error) => {
            shared.sink.log(Level::Error, format!("cannot connect to the target: {error}"), None);
            return Err(ConnectionFailure::Retry);
        }
    };
    if let Err(error) = connection.prepare(&shared.statements).await {
        if error.is_connection_lost() {
            shared.sink.log(Level::Error, format!("target connection lost while preparing: {error}"), None);
            return Err(ConnectionFailure::Retry);
        }
        let message = format!("the target rejected the workload's SQL: {error}");
        shared.sink.log(Level::Error, message.clone(), None);
        shared.set_fatal(message);
        return Err(ConnectionFailure::Fatal);
    }
    Ok(connection)
}

/// Maximum wait between two paced queries of one connection, whatever the
/// target rate.
const MAX_PACING_INTERVAL: Duration = Duration::from_secs(3600);

/// How often a connection waiting for its next paced query checks for a
/// stop or a lower target.
const PACING_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A one-shot timer with the kernel's resolution. tokio's timers fire on
/// whole milliseconds, up to about a millisecond late, and an open loop
/// would count that lateness as the target's latency.
struct PaceTimer(AsyncFd<RawTimer>);

/// A timerfd with the `AsRawFd` that tokio's `AsyncFd` needs.
struct RawTimer(TimerFd);

impl AsRawFd for RawTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl PaceTimer {
    fn new() -> std::io::Result<Self> {
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)?;
        // SAFETY: `RawTimer` owns the timerfd, so the descriptor stays open
        // and the same until the `AsyncFd` is dropped.
        let registered = unsafe { AsyncFd::register_with_interest(RawTimer(timer), Interest::READABLE) }?;
        Ok(PaceTimer(registered))
    }

    /// Waits for `duration`, which must be above zero, because a zero
    /// duration disarms the timer.
    async fn sleep(&self, duration: Duration) -> std::io::Result<()> {
        let expiration = Expiration::OneShot(TimeSpec::from_duration(duration));
        self.0.get_ref().0.set(expiration, TimerSetTimeFlags::empty())?;
        loop {
            let mut guard = self.0.readable().await?;
            // Reading consumes the expiry. A read that would block clears
            // readiness left over from the previous expiry, and the wait goes on.
            if let Ok(result) = guard.try_io(|timer| timer.get_ref().0.wait().map_err(std::io::Error::from)) {
                return result;
            }
        }
    }
}

/// Waits until a paced query's intended start, with `timer` when there is
/// one. Returns `false` as soon as the connection should stop instead.
async fn wait_until_start(shared: &LoadShared, slot: u32, intended: Instant, timer: Option<&PaceTimer>) -> bool {
    loop {
        let now = Instant::now();
        if now >= intended {
            return true;
        }
        let wake = intended.min(now + PACING_CHECK_INTERVAL);
        let slept = match timer {
            Some(timer) => timer.sleep(wake - now).await.is_ok(),
            None => false,
        };
        if !slept {
            tokio::time::sleep_until(wake.into()).await;
        }
        if !shared.keeps_running(slot) {
            return false;
        }
    }
}

/// Runs queries on one connection. Returns `true` when the connection was
/// lost and should be reopened.
async fn run_queries(
    shared: &LoadShared,
    slot: u32,
    shard: usize,
    connection: &mut TargetConnection,
    rng: &mut SmallRng,
) -> bool {
    let mut next_start = Instant::now();
    // Created at the first paced query. The inner `None` means that creating
    // it failed, and tokio's timer is used instead.
    let mut timer: Option<Option<PaceTimer>> = None;
    let mut params = Vec::new();
    let connection_id = connection.session_id();
    while shared.keeps_running(slot) {
        let intended = match shared.qps() {
            Some(qps) => {
                let seconds = f64::from(shared.desired_connections().max(1)) / qps;
                let interval = Duration::try_from_secs_f64(seconds)
                    .map_or(MAX_PACING_INTERVAL, |interval| interval.min(MAX_PACING_INTERVAL));
                let intended = next_start;
                next_start += interval;
                let timer = timer
                    .get_or_insert_with(|| {
                        PaceTimer::new()
                            .inspect_err(|error| {
                                let message = format!("no timerfd for pacing, so tokio's timer paces queries: {error}");
                                shared.sink.log(Level::Warn, message, None);
                            })
                            .ok()
                    })
                    .as_ref();
                if !wait_until_start(shared, slot, intended, timer).await {
                    break;
                }
                intended
            }
            None => Instant::now(),
        };

        let operation = match shared.workload.try_next_into(rng, &mut params) {
            Ok(operation) => operation,
            Err(error) => {
                let message = format!("cannot generate query parameters: {error}");
                shared.sink.log(Level::Error, message.clone(), None);
                shared.set_fatal(message);
                return false;
            }
        };
        let kind = shared.workload.operations()[operation].kind;
        let decision = shared.sink.decide(|| rng.gen());
        let wall_start = (decision != KeepDecision::Skip).then(Utc::now);
        let result = connection.execute(operation, &params).await;
        let finished = Instant::now();
        let latency = finished.saturating_duration_since(intended);
        let success = result.is_ok();
        let warmup = shared.metrics.record(shard, kind, latency, success, finished);

        if let (true, Some(start_time)) = (decision.keeps(success), wall_start) {
            let identity = &shared.sink.identity;
            let (rows_affected, error) = match &result {
                Ok(outcome) => (i64::try_from(outcome.rows_affected).ok(), None),
                Err(error) => (None, Some(error.to_string())),
            };
            shared.sink.push_execution(ExecutionRow {
                execution_id: new_id(),
                run_id: identity.run_id.clone(),
                test_id: identity.test_id.clone(),
                worker_id: identity.worker_id.clone(),
                query_kind: kind.as_str().to_owned(),
                query_id: None,
                start_time,
                end_time: Utc::now(),
                app_elapsed_ms: latency.as_secs_f64() * 1000.0,
                success,
                error,
                rows_affected,
                connection_id: Some(connection_id),
                warmup,
                ..Default::default()
            });
        }
        if let Err(error) = result {
            if error.is_connection_lost() {
                shared.sink.log(Level::Error, format!("target connection lost: {error}"), None);
                return true;
            }
            shared.note_query_error(kind, &error);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pace_timer_waits_each_time() {
        let timer = PaceTimer::new().expect("a timerfd");
        for wait in [Duration::from_millis(3), Duration::from_micros(1500), Duration::from_millis(3)] {
            let started = Instant::now();
            timer.sleep(wait).await.expect("the timer fires");
            // The expiry of one wait must not end the next one early.
            assert!(started.elapsed() >= wait, "waited {:?} of {wait:?}", started.elapsed());
        }
    }
}
