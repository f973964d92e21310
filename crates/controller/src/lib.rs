//! The controller: the HTTP API, the live WebSocket stream and the web
//! UI's page, with the orchestrator embedded. It reads results from the
//! store and sends commands through the orchestrator. It never sits in the
//! path of benchmark data and never calls a worker.
//!
//! Routes:
//!
//! - `GET /health`: controller, orchestrator and store status.
//! - `/api/templates`: list, create, read, replace, delete, and YAML
//!   import (`POST /api/templates/import`) and export
//!   (`GET /api/templates/{id}/export`).
//! - `/api/runs`: create (`PREPARED`), start, stop, read, history.
//! - `/api/tests/{test_id}` with `/timeseries`, `/logs` and `/warehouse`,
//!   and `GET /api/compare?runs=a,b` (at most five runs).
//! - `WS /ws/test/{run_id}`: one `RUN_UPDATE` per second.
//! - `GET /` and `/ui/*`: the web UI, embedded in the binary.
//!
//! Every route rejects cross-origin browser requests, and a loopback
//! controller also rejects a `Host` that does not name loopback (see the
//! `origin` module).
//!
//! Errors are JSON: `{"error": {"field": "...", "message": "..."}}`.

mod auth;
mod error;
mod extract;
mod health;
mod live_feed;
mod live_message;
mod origin;
mod results;
mod runs;
mod state;
mod templates;
mod ui;
mod views;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use unibench_model::event::StopInitiator;
use unibench_orchestrator::OrchestratorService;

pub use auth::{check_bind, BindError, TOKEN_ENV};
pub use error::{ApiError, FieldProblem};
pub use live_message::{RunUpdate, RUN_UPDATE};
pub use state::AppState;

/// Largest request body accepted. Templates are a few kilobytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How often shutdown reports the runs it is still waiting for.
const SHUTDOWN_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// How long shutdown waits for the final update of each stopped run: the
/// producer publishes it on its next tick after the run ends.
const FINAL_UPDATE_WAIT: Duration = Duration::from_secs(3);
/// How long shutdown waits for live clients to receive their close frame.
const CLIENT_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A controller over one embedded orchestrator.
pub struct Controller {
    state: AppState,
}

impl Controller {
    /// Creates a controller. With `api_token`, every `/api` and `/ws`
    /// request must carry it.
    pub fn new(service: Arc<OrchestratorService>, api_token: Option<String>) -> Self {
        Controller { state: AppState::new(service, api_token) }
    }

    /// Builds the router with every route, the origin and token checks
    /// and the body limit. `listen_addr` is the listener's address, which
    /// decides whether the `Host` header must name loopback.
    pub fn router(&self, listen_addr: SocketAddr) -> Router {
        let state = self.state.clone();
        let origin_policy = origin::OriginPolicy::for_listener(listen_addr);
        Router::new()
            .merge(ui::router())
            .route("/health", get(health::health))
            .route("/api/templates", get(templates::list).post(templates::create))
            .route("/api/templates/import", post(templates::import))
            .route("/api/templates/{id}", get(templates::get).put(templates::replace).delete(templates::delete))
            .route("/api/templates/{id}/export", get(templates::export))
            .route("/api/runs", get(runs::list).post(runs::create))
            .route("/api/runs/{id}", get(runs::get))
            .route("/api/runs/{id}/start", post(runs::start))
            .route("/api/runs/{id}/stop", post(runs::stop))
            .route("/api/tests/{test_id}", get(results::get))
            .route("/api/tests/{test_id}/timeseries", get(results::timeseries))
            .route("/api/tests/{test_id}/logs", get(results::logs))
            .route("/api/tests/{test_id}/warehouse", get(results::warehouse))
            .route("/api/compare", get(results::compare))
            .route("/ws/test/{run_id}", get(ws::live_stream))
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
            .layer(middleware::from_fn_with_state(origin_policy, origin::require_same_origin))
            .layer(middleware::from_fn(log_request))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(state)
    }

    /// Serves requests on `listener` until `shutdown` resolves. The bind
    /// policy is checked again here, so that no caller can skip it.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let addr = listener.local_addr().map_err(ServeError::Io)?;
        check_bind(addr, self.state.api_token.as_deref())?;
        tracing::info!(%addr, auth = self.state.api_token.is_some(), "controller listening");
        axum::serve(listener, self.router(addr)).with_graceful_shutdown(shutdown).await.map_err(ServeError::Io)
    }

    /// Runs started by this controller that have not ended.
    pub fn active_runs(&self) -> Vec<String> {
        self.state.active_runs()
    }

    /// Stops every run this controller started and waits until their
    /// control loops end, which includes reaping their worker processes.
    /// When `force` resolves first, the workers are killed.
    pub async fn stop_runs(&self, force: impl Future<Output = ()>) {
        let active = self.active_runs();
        for run_id in &active {
            if let Err(error) = self.state.service.stop(run_id, StopInitiator::Orchestrator).await {
                tracing::warn!(run_id, %error, "could not stop a run at shutdown");
            }
        }

        // Every loop started here is awaited, also those whose run has
        // just ended, because a loop reaps its workers after the run's
        // terminal status is published.
        let started = self.state.started_runs();
        let service = &self.state.service;
        let loops_ended = futures_util::future::join_all(started.iter().map(|run_id| service.wait(run_id)));
        tokio::pin!(loops_ended);
        tokio::pin!(force);
        let mut forced = false;
        loop {
            tokio::select! {
                _ = &mut loops_ended => return,
                _ = tokio::time::sleep(SHUTDOWN_REPORT_INTERVAL) => {
                    tracing::info!(runs = ?self.active_runs(), "waiting for runs to stop");
                }
                _ = &mut force, if !forced => {
                    forced = true;
                    for run_id in self.active_runs() {
                        service.force_stop(&run_id, StopInitiator::Orchestrator).await;
                    }
                }
            }
        }
    }

    /// Lets the runs stopped at shutdown publish their final update, then
    /// ends every live stream with a close frame.
    pub async fn close_live_streams(&self, stopped_runs: &[String]) {
        self.state.feeds.wait_for_final_updates(stopped_runs, FINAL_UPDATE_WAIT).await;
        self.state.feeds.close(CLIENT_CLOSE_GRACE).await;
    }
}

/// Error raised when the controller cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("the HTTP server failed: {0}")]
    Io(std::io::Error),
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        Some("path"),
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Some("method"),
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}

/// Logs every request at debug level. The query string is left out,
/// because WebSocket clients may pass the API token there.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await.into_response();
    tracing::debug!(%method, path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}
