//! The state every handler shares: the embedded orchestrator, the live
//! feeds, the API token and the runs this process started.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use unibench_orchestrator::OrchestratorService;
use unibench_store::Store;

use crate::live_feed::LiveFeeds;

/// Shared state of the controller; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<OrchestratorService>,
    /// The token every `/api` and `/ws` request must carry, if any.
    pub api_token: Option<Arc<str>>,
    pub feeds: Arc<LiveFeeds>,
    /// Runs started by this process, whose control loops run here.
    pub started_here: Arc<Mutex<BTreeSet<String>>>,
    /// Serialises run starts, so that two requests cannot both start the
    /// same `PREPARED` run.
    pub start_lock: Arc<tokio::sync::Mutex<()>>,
    pub started_at: Instant,
}

impl AppState {
    pub fn new(service: Arc<OrchestratorService>, api_token: Option<String>) -> Self {
        AppState {
            service,
            api_token: api_token.filter(|token| !token.trim().is_empty()).map(Arc::from),
            feeds: Arc::new(LiveFeeds::default()),
            started_here: Arc::default(),
            start_lock: Arc::default(),
            started_at: Instant::now(),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        self.service.store()
    }

    /// Runs started here, ended or not.
    pub fn started_runs(&self) -> Vec<String> {
        self.started_here.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// Runs started here that have not reached a terminal status.
    pub fn active_runs(&self) -> Vec<String> {
        self.started_runs()
            .into_iter()
            .filter(|run_id| self.service.watch(run_id).is_some_and(|live| !live.borrow().status.is_terminal()))
            .collect()
    }

    pub fn record_start(&self, run_id: &str) {
        self.started_here.lock().unwrap_or_else(PoisonError::into_inner).insert(run_id.to_owned());
    }
}
