//! `GET /health`: whether the controller, its embedded orchestrator and
//! the store work. 200 when all do, 503 when the store is unreachable or
//! its schema is incomplete. The body names the store's backend but never
//! its URL, which may hold a password.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use unibench_store::{Backend, Store};

use crate::state::AppState;

/// Maximum time the store checks may take before the store counts as
/// unreachable.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Result of the store checks.
struct StoreHealth {
    reachable: bool,
    schema_complete: bool,
    missing: Vec<String>,
    error: Option<String>,
}

pub async fn health(State(state): State<AppState>) -> Response {
    let store = state.store();
    let checked = match tokio::time::timeout(STORE_CHECK_TIMEOUT, check_store(store)).await {
        Ok(checked) => checked,
        Err(_) => StoreHealth {
            reachable: false,
            schema_complete: false,
            missing: Vec::new(),
            error: Some(format!("the store did not answer within {} s", STORE_CHECK_TIMEOUT.as_secs())),
        },
    };
    let healthy = checked.reachable && checked.schema_complete;
    let store_status = match (checked.reachable, checked.schema_complete) {
        (false, _) => "unreachable",
        (true, false) => "schema_incomplete",
        (true, true) => "ok",
    };
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": unibench_model::UNIBENCH_VERSION,
        "controller": {
            "status": "ok",
            "uptime_seconds": state.started_at.elapsed().as_secs(),
            "auth": if state.api_token.is_some() { "token" } else { "none" },
            "live_feeds": state.feeds.len(),
        },
        "orchestrator": {
            "status": "ok",
            "embedded": true,
            "active_runs": state.active_runs().len(),
        },
        "store": {
            "status": store_status,
            "backend": backend_name(store.backend()),
            "reachable": checked.reachable,
            "schema_complete": checked.schema_complete,
            "missing": checked.missing,
            "error": checked.error,
        },
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Store errors name the backend, the statement and the server's message,
/// never a password or connection string, so they are safe to show.
async fn check_store(store: &Store) -> StoreHealth {
    if let Err(error) = store.now().await {
        return StoreHealth {
            reachable: false,
            schema_complete: false,
            missing: Vec::new(),
            error: Some(error.to_string()),
        };
    }
    match store.check_schema().await {
        Ok(missing) => StoreHealth {
            reachable: true,
            schema_complete: missing.is_empty(),
            missing: missing.iter().map(ToString::to_string).collect(),
            error: None,
        },
        Err(error) => {
            StoreHealth { reachable: true, schema_complete: false, missing: Vec::new(), error: Some(error.to_string()) }
        }
    }
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}
