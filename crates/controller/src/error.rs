//! The API's error response, `{"error": {"field": ..., "message": ...}}`,
//! and how errors of the store, the orchestrator and template checks map
//! to HTTP statuses. Every handler returns [`ApiError`] so that a client
//! always gets the same JSON shape, whatever failed.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use unibench_model::template_check::InvalidTemplate;
use unibench_orchestrator::OrchestratorError;
use unibench_store::StoreError;

/// One problem with a request: the field it concerns and what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldProblem {
    /// Path of the field (`workload.operations[0].sql`, `overrides.workers`,
    /// `limit`), or `None` when the problem is not about one field.
    pub field: Option<String>,
    pub message: String,
}

/// An error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub problem: FieldProblem,
    /// Every problem found, when there is more than one (template checks
    /// report them all at once). The first is also `problem`.
    pub problems: Vec<FieldProblem>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    field: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    problems: &'a [FieldProblem],
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            problem: FieldProblem { field: field.map(str::to_owned), message: message.into() },
            problems: Vec::new(),
        }
    }

    /// 400: the request is malformed (bad query parameter, invalid JSON).
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    /// 403: the request is well-formed but not allowed from where it
    /// comes (a cross-origin browser request, a foreign `Host`).
    pub fn forbidden(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, Some(field), message)
    }

    /// 404: the resource named in the path does not exist.
    pub fn not_found(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, Some(field), message)
    }

    /// 409: the request conflicts with the resource's current state.
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, Some(field), message)
    }

    /// 422: the body is well-formed but a value in it is invalid.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some(field), message)
    }

    /// 500: the controller failed. The message names the failed step.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, message)
    }

    /// 401: the API token is missing or wrong.
    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("Authorization"),
            "missing or invalid API token: send the header `Authorization: Bearer TOKEN` \
             (WebSocket clients may pass `?token=TOKEN` instead)",
        )
    }

    /// Builds the JSON body of the response.
    pub fn body(&self) -> serde_json::Value {
        let body = ErrorBody {
            error: ErrorDetail {
                field: self.problem.field.as_deref(),
                message: &self.problem.message,
                problems: &self.problems,
            },
        };
        serde_json::to_value(body).unwrap_or_default()
    }

    /// 422 listing every problem of a template. `prefix` is put before each
    /// problem's path (`template.` when the template is nested in the body).
    pub fn from_template_problems(invalid: &InvalidTemplate, prefix: &str) -> Self {
        let problems: Vec<FieldProblem> = invalid
            .iter()
            .map(|problem| FieldProblem {
                field: Some(format!("{prefix}{}", problem.path)),
                message: format!("template \"{}\": {}", problem.template, problem.message),
            })
            .collect();
        let first = problems.first().cloned().unwrap_or(FieldProblem { field: None, message: invalid.to_string() });
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            problem: first,
            problems: if problems.len() > 1 { problems } else { Vec::new() },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), field = ?self.problem.field, message = %self.problem.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), field = ?self.problem.field, message = %self.problem.message, "request rejected");
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    /// Store errors carry no password or connection string, so their text
    /// is safe to send.
    fn from(error: StoreError) -> Self {
        let status = match &error {
            StoreError::SchemaIncomplete { .. } => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::RunNotFound { .. } => StatusCode::NOT_FOUND,
            _ if error.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Authentication { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = matches!(error, StoreError::RunNotFound { .. }).then_some("run_id");
        ApiError::new(status, field, format!("store: {error}"))
    }
}

impl From<OrchestratorError> for ApiError {
    fn from(error: OrchestratorError) -> Self {
        match error {
            OrchestratorError::Store(error) => error.into(),
            OrchestratorError::RunNotFound(run_id) => {
                ApiError::not_found("run_id", format!("run `{run_id}` not found"))
            }
            OrchestratorError::TemplateNotFound(name) => {
                ApiError::invalid("template_id", format!("template `{name}` not found"))
            }
            OrchestratorError::InvalidState { .. } => ApiError::conflict("status", error.to_string()),
            OrchestratorError::Target { ref field, .. } => {
                let field = format!("template.{field}");
                ApiError::invalid(&field, error.to_string())
            }
            OrchestratorError::InvalidTemplate { ref problems } => {
                let field = problem_path(problems).map(|path| format!("template.{path}"));
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(field.as_deref().unwrap_or("template")),
                    error.to_string(),
                )
            }
            OrchestratorError::TemplateFile { .. } | OrchestratorError::Spawn(_) => {
                ApiError::internal(error.to_string())
            }
        }
    }
}

/// Finds the field path in a problem text of the form
/// `template "NAME": PATH: MESSAGE`, the form that template checks and the
/// target's SQL check both use.
fn problem_path(problems: &str) -> Option<&str> {
    let after_name = problems.strip_prefix("template \"")?;
    let (_, rest) = after_name.split_once("\": ")?;
    let (path, _) = rest.split_once(": ")?;
    let looks_like_path =
        !path.is_empty() && path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '*'));
    looks_like_path.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_path_finds_the_field() {
        let text = "template \"bad\": workload.operations[0].sql: the target rejected it: syntax error";
        assert_eq!(problem_path(text), Some("workload.operations[0].sql"));
        assert_eq!(problem_path("something else"), None);
        assert_eq!(problem_path("template \"x\": not a path at all: y"), None);
    }

    #[test]
    fn error_body_names_field_and_message() {
        let body = ApiError::invalid("overrides.workers", "must be at least 1").body();
        assert_eq!(body, serde_json::json!({"error": {"field": "overrides.workers", "message": "must be at least 1"}}));
    }
}
