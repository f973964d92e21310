//! Run endpoints: create a `PREPARED` run from a stored or inline template
//! with overrides, start and stop it, read one run, and list the history.
//! The controller never calls workers: start and stop go through the
//! embedded orchestrator, which reaches workers with control events.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use unibench_model::event::StopInitiator;
use unibench_model::scenario::Template;
use unibench_model::template_check::check_template;
use unibench_model::RunStatus;
use unibench_orchestrator::{Overrides, RunRequest};
use unibench_store::{RunFilter, RunStatusRow};

use crate::error::ApiError;
use crate::extract::{self, ApiJson, QueryParams};
use crate::state::AppState;
use crate::views;

use unibench_model::template_check::MAX_WORKERS;
const RUNS_DEFAULT_LIMIT: u32 = 100;
const RUNS_MAX_LIMIT: u32 = 1000;

/// Body of `POST /api/runs`: a stored template (`template_id`, its id or
/// name) or an inline one (`template`), and what to change for this run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub template: Option<Template>,
    #[serde(default)]
    pub overrides: OverridesBody,
}

/// Settings that replace the template's for one run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverridesBody {
    pub workers: Option<u32>,
    /// Total concurrent connections across all workers.
    pub connections: Option<u32>,
    pub warmup_seconds: Option<f64>,
    pub duration_seconds: Option<f64>,
}

/// Optional body of `POST /api/runs/{id}/stop`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRun {
    /// Kill the workers at once instead of letting them drain. Only for
    /// runs this controller started, because only it has their process
    /// handles.
    #[serde(default)]
    pub force: bool,
}

impl OverridesBody {
    fn check(&self) -> Result<Overrides, ApiError> {
        if let Some(workers) = self.workers {
            if workers == 0 || workers > MAX_WORKERS {
                return Err(ApiError::invalid(
                    "overrides.workers",
                    format!("must be from 1 to {MAX_WORKERS}, got {workers}"),
                ));
            }
        }
        if self.connections == Some(0) {
            return Err(ApiError::invalid("overrides.connections", "must be at least 1, got 0"));
        }
        if let Some(warmup) = self.warmup_seconds {
            if !(warmup.is_finite() && warmup >= 0.0) {
                return Err(ApiError::invalid("overrides.warmup_seconds", format!("must be at least 0, got {warmup}")));
            }
        }
        if let Some(duration) = self.duration_seconds {
            if !(duration.is_finite() && duration > 0.0) {
                return Err(ApiError::invalid(
                    "overrides.duration_seconds",
                    format!("must be greater than 0, got {duration}"),
                ));
            }
        }
        Ok(Overrides {
            workers: self.workers,
            connections: self.connections,
            warmup_seconds: self.warmup_seconds,
            duration_seconds: self.duration_seconds,
        })
    }
}

/// `POST /api/runs`: resolves the template and overrides, runs the
/// fail-fast checks (template, target reachable, table present, SQL
/// accepted) and records a `PREPARED` run. Nothing is written when a
/// check fails.
pub async fn create(State(state): State<AppState>, ApiJson(body): ApiJson<CreateRun>) -> Result<Response, ApiError> {
    let overrides = body.overrides.check()?;
    let (template, template_id, prefix) = match (body.template_id, body.template) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("template", "give either template_id or template, not both"));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "template_id",
                "missing: give template_id (the id or name of a stored template) or template (an inline template)",
            ));
        }
        (Some(id), None) => {
            let (template, template_id) = stored_template(&state, &id).await?;
            (template, Some(template_id), "")
        }
        (None, Some(template)) => (template, None, "template."),
    };
    check_template(&overrides.apply(&template))
        .map_err(|invalid| ApiError::from_template_problems(&invalid, prefix))?;

    let run_id = state
        .service
        .create(RunRequest { template, template_id, overrides })
        .await
        .map_err(|error| field_in_stored_template(ApiError::from(error), prefix))?;
    let run = load(&state, &run_id).await?;
    let mut response = (StatusCode::CREATED, Json(views::run(&run, false))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/runs/{run_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn stored_template(state: &AppState, id: &str) -> Result<(Template, String), ApiError> {
    let row = state
        .store()
        .get_template(id)
        .await?
        .ok_or_else(|| ApiError::invalid("template_id", format!("template `{id}` not found")))?;
    let template = serde_json::from_value(row.config.clone()).map_err(|error| {
        ApiError::invalid(
            "template_id",
            format!(
                "stored template `{}` does not parse ({error}); replace it with PUT /api/templates/{}",
                row.template_id, row.template_id
            ),
        )
    })?;
    Ok((template, row.template_id))
}

/// Drops the `template.` prefix that orchestrator errors get when the
/// template is a stored one, which the request body does not contain.
fn field_in_stored_template(mut error: ApiError, prefix: &str) -> ApiError {
    if prefix.is_empty() {
        if let Some(path) = error.problem.field.as_deref().and_then(|field| field.strip_prefix("template.")) {
            error.problem.field = Some(path.to_owned());
        }
    }
    error
}

/// `POST /api/runs/{id}/start`: spawns the workers of a `PREPARED` run and
/// starts its control loop in this process. Returns at once (202); the run
/// turns `RUNNING` when every worker has registered.
pub async fn start(State(state): State<AppState>, Path(run_id): Path<String>) -> Result<Response, ApiError> {
    let _starting = state.start_lock.lock().await;
    if state.service.watch(&run_id).is_some() {
        let run = load(&state, &run_id).await?;
        return Err(ApiError::conflict(
            "status",
            format!("run `{run_id}` was already started (it is {}); start needs a PREPARED run", run.status),
        ));
    }
    state.service.start(&run_id).await?;
    state.record_start(&run_id);
    tracing::info!(run_id, "run started through the API");
    let run = load(&state, &run_id).await?;
    Ok((StatusCode::ACCEPTED, Json(views::run(&run, false))).into_response())
}

/// `POST /api/runs/{id}/stop`: requests a stop (workers drain, then the
/// run ends `CANCELLED`). Returns at once (202).
pub async fn stop(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = stop_body(request).await?;
    let run = load(&state, &run_id).await?;
    if run.status.is_terminal() {
        return Err(ApiError::conflict(
            "status",
            format!("run `{run_id}` has already ended ({}); stop needs a PREPARED or RUNNING run", run.status),
        ));
    }
    if body.force && state.service.watch(&run_id).is_none() {
        return Err(ApiError::conflict(
            "force",
            format!("run `{run_id}` was not started by this controller, so it cannot kill its workers; stop it without force"),
        ));
    }
    state.service.stop(&run_id, StopInitiator::Api).await?;
    if body.force {
        state.service.force_stop(&run_id, StopInitiator::Api).await;
    }
    tracing::info!(run_id, force = body.force, "stop requested through the API");
    let run = load(&state, &run_id).await?;
    Ok((StatusCode::ACCEPTED, Json(views::run(&run, false))).into_response())
}

/// The stop body is optional; when present it must be JSON.
async fn stop_body(request: Request) -> Result<StopRun, ApiError> {
    let has_json_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    let bytes = extract::read_body(request, &()).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(StopRun::default());
    }
    if !has_json_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("Content-Type"),
            "a stop request body must be JSON: send `Content-Type: application/json`",
        ));
    }
    extract::parse_json(&bytes)
}

/// `GET /api/runs/{id}`: the run's `RUN_STATUS`, its scenario included.
pub async fn get(State(state): State<AppState>, Path(run_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let run = load(&state, &run_id).await?;
    let mut view = views::run(&run, true);
    if let Some(object) = view.as_object_mut() {
        object.insert("started_here".to_owned(), json!(state.service.watch(&run_id).is_some()));
    }
    Ok(Json(view))
}

/// `GET /api/runs`: history, newest first, filtered by `status`,
/// `template_id` and `name` (a case-insensitive part of the run's name),
/// paged by `limit` and `offset`.
pub async fn list(State(state): State<AppState>, query: QueryParams) -> Result<Json<Value>, ApiError> {
    query.only(&["status", "template_id", "name", "limit", "offset"])?;
    let status =
        query.parse::<RunStatus>("status", "one of PREPARED, RUNNING, CANCELLING, COMPLETED, FAILED, CANCELLED")?;
    let page = query.page(RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT)?;
    let filter = RunFilter {
        status,
        template_id: query.text("template_id").map(str::to_owned),
        name_contains: query.text("name").map(str::to_owned),
        page,
    };
    let runs = state.store().list_runs(&filter).await?;
    let views: Vec<Value> = runs.iter().map(|run| views::run(run, false)).collect();
    Ok(Json(json!({"runs": views, "limit": page.limit, "offset": page.offset})))
}

/// Reads a run, or 404.
pub async fn load(state: &AppState, run_id: &str) -> Result<RunStatusRow, ApiError> {
    state
        .store()
        .get_run(run_id)
        .await?
        .ok_or_else(|| ApiError::not_found("run_id", format!("run `{run_id}` not found")))
}
