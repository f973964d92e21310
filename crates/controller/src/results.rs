//! Test endpoints: one test's results, time series, logs and warehouse
//! polls, and a side-by-side comparison of runs.
//!
//! A test is a run's parent (`TEST_ID == RUN_ID`) or one worker's child.
//! A parent's response comes from `RUN_STATUS` and the parent
//! `TEST_RESULTS` row only, never from child rows, so its numbers are the
//! run's final rollup. A child's response contains its own worker's rows.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use unibench_store::{LogFilter, SnapshotFilter, TestResultRow};

use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::runs;
use crate::state::AppState;
use crate::views;

/// Most runs one comparison may hold.
pub const MAX_COMPARED_RUNS: usize = 5;
const SNAPSHOTS_DEFAULT_LIMIT: u32 = 1000;
const SNAPSHOTS_MAX_LIMIT: u32 = 10_000;
const LOGS_DEFAULT_LIMIT: u32 = 200;
const LOGS_MAX_LIMIT: u32 = 5000;
const POLLS_DEFAULT_LIMIT: u32 = 1000;
const POLLS_MAX_LIMIT: u32 = 10_000;

/// Test named by a request: the run's parent, or one worker's child.
enum TestRef {
    Parent { run_id: String, result: Option<TestResultRow> },
    Child(TestResultRow),
}

impl TestRef {
    fn run_id(&self) -> &str {
        match self {
            TestRef::Parent { run_id, .. } => run_id,
            TestRef::Child(row) => &row.run_id,
        }
    }
}

/// Resolves a test id: a `TEST_RESULTS` row, or a run whose parent row is
/// missing.
async fn resolve(state: &AppState, test_id: &str) -> Result<TestRef, ApiError> {
    match state.store().get_test_result(test_id).await? {
        Some(row) if row.is_parent() => Ok(TestRef::Parent { run_id: row.run_id.clone(), result: Some(row) }),
        Some(row) => Ok(TestRef::Child(row)),
        None => match state.store().get_run(test_id).await? {
            Some(run) => Ok(TestRef::Parent { run_id: run.run_id, result: None }),
            None => Err(ApiError::not_found("test_id", format!("test `{test_id}` not found"))),
        },
    }
}

/// `GET /api/tests/{test_id}`
pub async fn get(State(state): State<AppState>, Path(test_id): Path<String>) -> Result<Json<Value>, ApiError> {
    match resolve(&state, &test_id).await? {
        TestRef::Parent { run_id, result } => {
            let run = runs::load(&state, &run_id).await?;
            Ok(Json(json!({
                "test_id": test_id,
                "run_id": run_id,
                "kind": "parent",
                "run": views::run(&run, false),
                "result": result.as_ref().map(views::result),
            })))
        }
        TestRef::Child(result) => {
            let heartbeat = match &result.worker_id {
                Some(worker_id) => {
                    let heartbeats = state.store().list_heartbeats(&result.run_id).await?;
                    heartbeats.into_iter().find(|beat| &beat.worker_id == worker_id)
                }
                None => None,
            };
            Ok(Json(json!({
                "test_id": test_id,
                "run_id": result.run_id,
                "kind": "child",
                "worker_id": result.worker_id,
                "result": views::result(&result),
                "heartbeat": heartbeat.as_ref().map(views::heartbeat),
            })))
        }
    }
}

/// `GET /api/tests/{test_id}/timeseries`: metric snapshots, oldest first;
/// every worker's for a parent (filter with `worker_id`), the worker's own
/// for a child. `phase` keeps one phase.
pub async fn timeseries(
    State(state): State<AppState>,
    Path(test_id): Path<String>,
    query: QueryParams,
) -> Result<Json<Value>, ApiError> {
    query.only(&["worker_id", "phase", "limit", "offset"])?;
    let page = query.page(SNAPSHOTS_DEFAULT_LIMIT, SNAPSHOTS_MAX_LIMIT)?;
    let phase = query.parse("phase", "one of PREPARING, WARMUP, MEASUREMENT, COOLDOWN, PROCESSING")?;
    let test = resolve(&state, &test_id).await?;
    let filter = SnapshotFilter {
        test_id: match &test {
            TestRef::Child(row) => Some(row.test_id.clone()),
            TestRef::Parent { .. } => None,
        },
        worker_id: query.text("worker_id").map(str::to_owned),
        phase,
        page,
    };
    let snapshots = state.store().list_snapshots(test.run_id(), &filter).await?;
    let rows: Vec<Value> = snapshots.iter().map(views::snapshot).collect();
    Ok(Json(paged("snapshots", &test_id, test.run_id(), rows, page)))
}

/// `GET /api/tests/{test_id}/logs`: log lines, oldest first; the whole
/// run's for a parent (orchestrator and workers), the worker's own for a
/// child. Filters: `level`, `worker_id`.
pub async fn logs(
    State(state): State<AppState>,
    Path(test_id): Path<String>,
    query: QueryParams,
) -> Result<Json<Value>, ApiError> {
    query.only(&["level", "worker_id", "limit", "offset"])?;
    let page = query.page(LOGS_DEFAULT_LIMIT, LOGS_MAX_LIMIT)?;
    let level = query.text("level").map(str::to_ascii_uppercase);
    if let Some(level) = &level {
        if !["INFO", "WARN", "ERROR"].contains(&level.as_str()) {
            return Err(ApiError::bad_request(
                "level",
                format!("invalid value `{level}`: expected INFO, WARN or ERROR"),
            ));
        }
    }
    let test = resolve(&state, &test_id).await?;
    let filter = LogFilter {
        test_id: match &test {
            TestRef::Child(row) => Some(row.test_id.clone()),
            TestRef::Parent { .. } => None,
        },
        worker_id: query.text("worker_id").map(str::to_owned),
        level,
        page,
    };
    let logs = state.store().list_logs(test.run_id(), &filter).await?;
    let rows: Vec<Value> = logs.iter().map(views::log).collect();
    Ok(Json(paged("logs", &test_id, test.run_id(), rows, page)))
}

/// `GET /api/tests/{test_id}/warehouse`: the run's warehouse polls
/// (Snowflake targets; empty for others), oldest first.
pub async fn warehouse(
    State(state): State<AppState>,
    Path(test_id): Path<String>,
    query: QueryParams,
) -> Result<Json<Value>, ApiError> {
    query.only(&["limit", "offset"])?;
    let page = query.page(POLLS_DEFAULT_LIMIT, POLLS_MAX_LIMIT)?;
    let test = resolve(&state, &test_id).await?;
    let polls = state.store().list_warehouse_polls(test.run_id(), page).await?;
    let rows: Vec<Value> = polls.iter().map(views::warehouse_poll).collect();
    Ok(Json(paged("polls", &test_id, test.run_id(), rows, page)))
}

fn paged(key: &str, test_id: &str, run_id: &str, rows: Vec<Value>, page: unibench_store::Page) -> Value {
    let next_offset = (rows.len() == page.limit as usize).then(|| page.offset + rows.len() as u64);
    let mut body = json!({
        "test_id": test_id,
        "run_id": run_id,
        "limit": page.limit,
        "offset": page.offset,
        "next_offset": next_offset,
    });
    if let Some(object) = body.as_object_mut() {
        object.insert(key.to_owned(), Value::Array(rows));
    }
    body
}

/// `GET /api/compare?runs=a,b,c`: up to five runs side by side, each with
/// its `RUN_STATUS` and parent result, in the order given.
pub async fn compare(State(state): State<AppState>, query: QueryParams) -> Result<Json<Value>, ApiError> {
    query.only(&["runs"])?;
    let run_ids = compared_run_ids(query.text("runs"))?;
    let mut entries = Vec::with_capacity(run_ids.len());
    for run_id in &run_ids {
        let Some(run) = state.store().get_run(run_id).await? else {
            return Err(ApiError::not_found("runs", format!("run `{run_id}` not found")));
        };
        let result = state.store().get_test_result(run_id).await?;
        entries.push(json!({
            "run": views::run(&run, false),
            "template": run.scenario_config.get("template"),
            "result": result.as_ref().map(views::result),
        }));
    }
    Ok(Json(json!({ "runs": entries })))
}

/// Splits `a,b,c` into run ids: at least one, at most five, no repeats.
fn compared_run_ids(text: Option<&str>) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> =
        text.unwrap_or("").split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect();
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "runs",
            "missing: give one to five run ids separated by commas, as ?runs=a,b",
        ));
    }
    if ids.len() > MAX_COMPARED_RUNS {
        return Err(ApiError::bad_request(
            "runs",
            format!("{} runs given: a comparison holds at most {MAX_COMPARED_RUNS}", ids.len()),
        ));
    }
    if let Some(repeated) = ids.iter().enumerate().find_map(|(index, id)| ids[..index].contains(id).then_some(id)) {
        return Err(ApiError::bad_request("runs", format!("run `{repeated}` is given more than once")));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_accepts_one_to_five_distinct_runs() {
        assert_eq!(compared_run_ids(Some("a, b,c")).unwrap(), vec!["a", "b", "c"]);
        assert!(compared_run_ids(None).is_err());
        assert!(compared_run_ids(Some(" , ")).is_err());
        assert!(compared_run_ids(Some("a,b,c,d,e")).is_ok());
        let error = compared_run_ids(Some("a,b,c,d,e,f")).unwrap_err();
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(error.problem.field.as_deref(), Some("runs"));
        assert!(compared_run_ids(Some("a,b,a")).is_err());
    }
}
