//! Template endpoints: list, create, read, replace and delete templates,
//! and import or export them as YAML. Every write checks the template
//! first (types, then the same checks a run makes) and writes nothing when
//! a check fails. Template names are unique: creating a second template
//! with a taken name is a conflict, unless an import passes
//! `?replace=true`.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use unibench_model::scenario::Template;
use unibench_model::template_check::check_template;
use unibench_model::RunStatus;
use unibench_store::{Page, RunFilter, RunStatusRow, TemplateRow};

use crate::error::ApiError;
use crate::extract::{self, ApiJson, QueryParams};
use crate::state::AppState;
use crate::views;

/// `CREATED_BY` of templates saved through the API.
const CREATED_BY: &str = "api";

/// `GET /api/templates`
pub async fn list(State(state): State<AppState>, query: QueryParams) -> Result<Json<Value>, ApiError> {
    query.only(&[])?;
    let rows = state.store().list_templates().await?;
    let templates: Vec<Value> = rows.iter().map(views::template).collect();
    Ok(Json(json!({ "templates": templates })))
}

/// `POST /api/templates`: the body is the template.
pub async fn create(State(state): State<AppState>, ApiJson(template): ApiJson<Template>) -> Result<Response, ApiError> {
    check(&template)?;
    let (row, _) = insert(&state, &template, false).await?;
    Ok(saved_response(&row, false))
}

/// `GET /api/templates/{id}`: by id, or by name.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let row = find(&state, &id).await?;
    Ok(Json(views::template(&row)))
}

/// `PUT /api/templates/{id}`: replaces the template, keeping its id, usage
/// and creation time. Renaming to a name another template has is a
/// conflict.
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(template): ApiJson<Template>,
) -> Result<Json<Value>, ApiError> {
    let existing = find(&state, &id).await?;
    check(&template)?;
    if let Some(other) = state.store().get_template(&template.name).await? {
        if other.template_id != existing.template_id && other.template_name == template.name {
            return Err(name_taken(&other));
        }
    }
    let row = TemplateRow {
        template_name: template.name.clone(),
        description: template.description.clone(),
        config: to_config(&template)?,
        updated_at: None,
        ..existing
    };
    let saved = state.store().save_template(&row).await?;
    tracing::info!(template_id = %saved.template_id, name = %saved.template_name, "template replaced");
    Ok(Json(views::template(&saved)))
}

/// `DELETE /api/templates/{id}`: deletes the template and its value
/// pools. Finished runs keep their own copy of the template, but workers
/// of a run that has not ended may still read the pools, so a template in
/// use by such a run is a conflict.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let existing = find(&state, &id).await?;
    if let Some(run) = unfinished_run_of(&state, &existing.template_id).await? {
        return Err(ApiError::conflict(
            "template_id",
            format!(
                "template `{id}` is used by run `{}`, which is {}; stop the run or wait for it to end, then delete the template",
                run.run_id, run.status
            ),
        ));
    }
    if !state.store().delete_template(&existing.template_id).await? {
        return Err(not_found(&id));
    }
    tracing::info!(template_id = %existing.template_id, name = %existing.template_name, "template deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/templates/import`: the body is a YAML template, the format
/// `unibench run --template FILE` reads. With `?replace=true` a template
/// of the same name is replaced instead of being a conflict.
pub async fn import(State(state): State<AppState>, query: QueryParams, request: Request) -> Result<Response, ApiError> {
    let replace = query.only(&["replace"])?.flag("replace")?;
    let bytes = extract::read_body(request, &()).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|error| ApiError::bad_request("body", format!("the request body is not UTF-8: {error}")))?;
    let template: Template = extract::parse_yaml(text)?;
    check(&template)?;
    let (row, replaced) = insert(&state, &template, replace).await?;
    Ok(saved_response(&row, replaced))
}

/// `GET /api/templates/{id}/export`: the template as YAML.
pub async fn export(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let row = find(&state, &id).await?;
    let template: Template = serde_json::from_value(row.config.clone()).map_err(|error| {
        ApiError::internal(format!("stored template `{}` does not parse: {error}", row.template_id))
    })?;
    let yaml = serde_norway::to_string(&template)
        .map_err(|error| ApiError::internal(format!("cannot write template `{}` as YAML: {error}", row.template_id)))?;
    let mut response = yaml.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}.yaml\"", file_stem(&row.template_name)))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Finds a run of the template that has not ended.
async fn unfinished_run_of(state: &AppState, template_id: &str) -> Result<Option<RunStatusRow>, ApiError> {
    for status in [RunStatus::Prepared, RunStatus::Running, RunStatus::Cancelling] {
        let filter = RunFilter {
            status: Some(status),
            template_id: Some(template_id.to_owned()),
            name_contains: None,
            page: Page { limit: 1, offset: 0 },
        };
        if let Some(run) = state.store().list_runs(&filter).await?.into_iter().next() {
            return Ok(Some(run));
        }
    }
    Ok(None)
}

/// Finds a template by id, or else by name.
async fn find(state: &AppState, id: &str) -> Result<TemplateRow, ApiError> {
    state.store().get_template(id).await?.ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("template_id", format!("template `{id}` not found"))
}

fn name_taken(other: &TemplateRow) -> ApiError {
    ApiError::conflict(
        "name",
        format!(
            "a template named \"{}\" already exists (template_id {}); change it with PUT /api/templates/{}",
            other.template_name, other.template_id, other.template_id
        ),
    )
}

fn check(template: &Template) -> Result<(), ApiError> {
    check_template(template).map_err(|invalid| ApiError::from_template_problems(&invalid, ""))
}

fn to_config(template: &Template) -> Result<Value, ApiError> {
    serde_json::to_value(template)
        .map_err(|error| ApiError::internal(format!("cannot store the template as JSON: {error}")))
}

/// Saves a new template, or replaces the one with the same name when
/// `replace` is set. Returns the stored row and whether it replaced one.
// NOTE: the name check and the save are two statements, so two requests
// racing with the same new name can both pass the check. The store then
// keeps one template under that name, with the later request's content.
async fn insert(state: &AppState, template: &Template, replace: bool) -> Result<(TemplateRow, bool), ApiError> {
    let existing = state.store().get_template(&template.name).await?.filter(|row| row.template_name == template.name);
    if let (Some(existing), false) = (&existing, replace) {
        return Err(name_taken(existing));
    }
    let row = TemplateRow {
        template_id: unibench_store::new_id(),
        template_name: template.name.clone(),
        description: template.description.clone(),
        config: to_config(template)?,
        tags: None,
        created_by: Some(CREATED_BY.to_owned()),
        usage_count: 0,
        last_used_at: None,
        created_at: None,
        updated_at: None,
    };
    // The store saves by name, so a replaced template keeps its id.
    let saved = state.store().save_template(&row).await?;
    tracing::info!(template_id = %saved.template_id, name = %saved.template_name, replaced = existing.is_some(), "template saved");
    Ok((saved, existing.is_some()))
}

/// 201 with the new template's location, or 200 when it replaced one.
fn saved_response(row: &TemplateRow, replaced: bool) -> Response {
    let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
    let mut response = (status, Json(views::template(row))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/templates/{}", row.template_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Builds a file name for the template from letters, digits, `-` and `_`,
/// with any other character replaced by `-`.
fn file_stem(name: &str) -> String {
    let stem: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    if stem.trim_matches('-').is_empty() {
        "template".to_owned()
    } else {
        stem
    }
}
