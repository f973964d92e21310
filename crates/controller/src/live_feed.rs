//! Live feeds: one producer task per watched run computes the run's
//! `RUN_UPDATE` once per tick, serialises it once, and publishes it on a
//! `watch` channel that every WebSocket client of that run reads.
//!
//! A `watch` channel keeps only the newest message, so a client that falls
//! behind skips to the newest update instead of queueing old ones, and a
//! client that stops reading holds back neither the producer nor the other
//! clients. A producer starts with the first client of a run, stops when
//! its last client leaves, and after publishing the final update of a
//! terminal run. Both transitions happen under the feed map's lock, so a
//! client never subscribes to a producer that is about to stop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;
use unibench_model::scenario::{LoadMode, ScenarioConfig, TargetKind, Timings};
use unibench_model::status::HealthThresholds;
use unibench_orchestrator::run_loop::TICK;
use unibench_orchestrator::OrchestratorService;
use unibench_store::{Page, StoreError};

use crate::live_message::{self, Extras, RunUpdate, StoreSnapshot, WarehouseBlock};

/// Warehouse polls read per query while catching up with a run's polls.
const WAREHOUSE_PAGE: u32 = 500;
/// While a run's update cannot be computed, one warning is logged per
/// this many failed ticks.
const WARN_EVERY_FAILURES: u32 = 60;
/// How often shutdown checks whether feeds and clients have finished.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// One serialised update.
#[derive(Debug, Clone)]
pub struct Published {
    /// The JSON text; cloning it does not copy the bytes.
    pub text: Utf8Bytes,
    /// Whether this is the run's final update.
    pub terminal: bool,
}

/// The receiving end that a client reads.
pub type Subscription = watch::Receiver<Option<Published>>;
type Feed = Arc<watch::Sender<Option<Published>>>;

/// The producers of every watched run.
#[derive(Debug, Default)]
pub struct LiveFeeds {
    feeds: Mutex<HashMap<String, Feed>>,
    /// Set at shutdown: no new feed starts, and producers stop.
    closed: AtomicBool,
    close_signal: Notify,
    /// Connected WebSocket clients.
    clients: AtomicUsize,
}

/// Counts one connected client while it lives.
pub struct ClientGuard(Arc<LiveFeeds>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LiveFeeds {
    /// Subscribes to a run's updates, starting its producer when the run
    /// has none. The subscription receives only updates published after
    /// this call, so that every client receives messages on the tick.
    pub fn subscribe(self: &Arc<Self>, run_id: &str, service: &Arc<OrchestratorService>) -> Subscription {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if self.closed.load(Ordering::SeqCst) {
            // A receiver whose sender is gone: the client is closed at once.
            return watch::channel(None).1;
        }
        if let Some(feed) = feeds.get(run_id) {
            return feed.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let feed = Arc::new(sender);
        feeds.insert(run_id.to_owned(), Arc::clone(&feed));
        tracing::debug!(run_id, "live feed started");
        tokio::spawn(produce(Arc::clone(self), run_id.to_owned(), Arc::clone(service), feed));
        receiver
    }

    /// Registers a connected client until the guard is dropped.
    pub fn client_guard(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Ordering::SeqCst);
        ClientGuard(Arc::clone(self))
    }

    /// Waits, at most `timeout`, until the feeds of `run_ids` have
    /// published their final update.
    pub async fn wait_for_final_updates(&self, run_ids: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let pending = {
                let feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
                run_ids.iter().any(|run_id| feeds.contains_key(run_id))
            };
            if !pending {
                return;
            }
            tokio::time::sleep(SHUTDOWN_POLL).await;
        }
    }

    /// Stops every producer, which ends every client's stream with a close
    /// frame, and waits, at most `grace`, for the clients to be closed.
    pub async fn close(&self, grace: Duration) {
        {
            let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
            self.closed.store(true, Ordering::SeqCst);
            feeds.clear();
        }
        self.close_signal.notify_waiters();
        let deadline = Instant::now() + grace;
        while self.clients.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(SHUTDOWN_POLL).await;
        }
    }

    /// Number of runs with a producer.
    pub fn len(&self) -> usize {
        self.feeds.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes the feed when no client reads it. Returns whether it was
    /// removed.
    fn retire_if_unwatched(&self, run_id: &str, feed: &Feed) -> bool {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if feed.receiver_count() > 0 {
            return false;
        }
        remove_if_same(&mut feeds, run_id, feed);
        true
    }

    /// Publishes the final update and removes the feed, in one step under
    /// the lock.
    fn finish(&self, run_id: &str, feed: &Feed, last: Option<Published>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = last {
            feed.send_replace(Some(last));
        }
        remove_if_same(&mut feeds, run_id, feed);
    }
}

fn remove_if_same(feeds: &mut HashMap<String, Feed>, run_id: &str, feed: &Feed) {
    if feeds.get(run_id).is_some_and(|current| Arc::ptr_eq(current, feed)) {
        feeds.remove(run_id);
    }
}

/// Runs the producer loop of one run: tick, compute, serialise, publish.
async fn produce(feeds: Arc<LiveFeeds>, run_id: String, service: Arc<OrchestratorService>, feed: Feed) {
    let mut source = LiveSource::new(run_id.clone(), service);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = feeds.close_signal.notified() => return,
        }
        // The flag covers a shutdown signalled while this task was not
        // waiting on the notification.
        if feeds.closed.load(Ordering::SeqCst) {
            return;
        }
        if feed.receiver_count() == 0 && feeds.retire_if_unwatched(&run_id, &feed) {
            tracing::debug!(run_id, "live feed stopped: no client left");
            return;
        }
        let update = match source.next().await {
            Ok(update) => update,
            Err(StoreError::RunNotFound { .. }) => {
                tracing::info!(run_id, "live feed stopped: the run no longer exists");
                feeds.finish(&run_id, &feed, None);
                return;
            }
            Err(error) => {
                failures += 1;
                if failures % WARN_EVERY_FAILURES == 1 {
                    tracing::warn!(run_id, failures, %error, "could not compute the live update; retrying every tick");
                }
                continue;
            }
        };
        failures = 0;
        let terminal = update.data.run.status.is_terminal();
        let text = match serde_json::to_string(&update) {
            Ok(text) => Utf8Bytes::from(text),
            Err(error) => {
                tracing::error!(run_id, %error, "could not serialise the live update");
                continue;
            }
        };
        let published = Published { text, terminal };
        if terminal {
            feeds.finish(&run_id, &feed, Some(published));
            tracing::debug!(run_id, "live feed stopped: the run ended");
            return;
        }
        feed.send_replace(Some(published));
    }
}

/// Computes one run's updates, from the orchestrator while this process
/// drives the run and from the store otherwise.
struct LiveSource {
    run_id: String,
    service: Arc<OrchestratorService>,
    /// Loaded from `RUN_STATUS` on the first tick.
    scenario: Option<ScenarioConfig>,
    scenario_loaded: bool,
    warehouse_offset: u64,
    warehouse: Option<WarehouseBlock>,
}

impl LiveSource {
    fn new(run_id: String, service: Arc<OrchestratorService>) -> Self {
        LiveSource { run_id, service, scenario: None, scenario_loaded: false, warehouse_offset: 0, warehouse: None }
    }

    async fn next(&mut self) -> Result<RunUpdate, StoreError> {
        // The orchestrator's last status of a run carries no workers, so
        // the final update always comes from the store.
        let driven = self
            .service
            .watch(&self.run_id)
            .map(|updates| updates.borrow().clone())
            .filter(|status| !status.status.is_terminal());
        let store = Arc::clone(self.service.store());

        let (facts, aggregate, workers, find_max) = match driven {
            Some(status) => {
                if !self.scenario_loaded {
                    let run = store.get_run(&self.run_id).await?.ok_or_else(|| self.not_found())?;
                    self.load_scenario(&run.scenario_config);
                }
                let find_max = if self.is_find_max() {
                    store.get_run(&self.run_id).await?.and_then(|run| run.find_max_state)
                } else {
                    None
                };
                let (facts, workers) = live_message::from_live_status(&status, None);
                (facts, status.aggregate, workers, find_max)
            }
            None => {
                let run = store.get_run(&self.run_id).await?.ok_or_else(|| self.not_found())?;
                if !self.scenario_loaded {
                    self.load_scenario(&run.scenario_config);
                }
                let snapshot = StoreSnapshot {
                    now: store.now().await?,
                    heartbeats: store.list_heartbeats(&self.run_id).await?,
                    latest: store.latest_snapshots(&self.run_id).await?,
                    thresholds: self.thresholds(),
                    run,
                };
                let find_max = snapshot.run.find_max_state.clone();
                let (facts, aggregate, workers) = live_message::from_store(snapshot);
                (facts, aggregate, workers, find_max)
            }
        };

        let warehouse = self.latest_warehouse().await?;
        let extras = Extras { warehouse, find_max };
        Ok(live_message::build(facts, &aggregate, &workers, extras, chrono::Utc::now()))
    }

    fn not_found(&self) -> StoreError {
        StoreError::RunNotFound { run_id: self.run_id.clone() }
    }

    fn load_scenario(&mut self, config: &serde_json::Value) {
        self.scenario_loaded = true;
        match serde_json::from_value(config.clone()) {
            Ok(scenario) => self.scenario = Some(scenario),
            Err(error) => {
                tracing::warn!(run_id = %self.run_id, %error, "the run's stored scenario does not parse; live health uses the default timings");
            }
        }
    }

    fn is_find_max(&self) -> bool {
        self.scenario
            .as_ref()
            .is_some_and(|scenario| scenario.template.workload.load_mode == LoadMode::FindMaxConcurrency)
    }

    fn thresholds(&self) -> HealthThresholds {
        match &self.scenario {
            Some(scenario) => HealthThresholds {
                stale_after: Timings::duration(scenario.timings.stale_after_seconds),
                dead_after: Timings::duration(scenario.timings.dead_after_seconds),
            },
            None => HealthThresholds::default(),
        }
    }

    /// Reads the warehouse polls written since the last tick and keeps the
    /// newest. Only Snowflake targets have polls.
    async fn latest_warehouse(&mut self) -> Result<Option<WarehouseBlock>, StoreError> {
        let is_snowflake =
            self.scenario.as_ref().is_some_and(|scenario| scenario.template.target.kind == TargetKind::Snowflake);
        if !is_snowflake {
            return Ok(None);
        }
        loop {
            let page = Page { limit: WAREHOUSE_PAGE, offset: self.warehouse_offset };
            let polls = self.service.store().list_warehouse_polls(&self.run_id, page).await?;
            self.warehouse_offset += polls.len() as u64;
            if let Some(newest) = polls.last() {
                self.warehouse = Some(WarehouseBlock::from(newest));
            }
            if polls.len() < WAREHOUSE_PAGE as usize {
                return Ok(self.warehouse.clone());
            }
        }
    }
}
