//! Request extractors whose rejections are [`ApiError`]s: JSON bodies that
//! name the failing field, YAML bodies for template import, and query
//! parameters checked one by one. axum's own extractors reject with plain
//! text, which a client cannot match to a field.
//!
//! Statuses: a body that is not JSON at all is 400, a JSON body whose
//! values do not fit the expected type is 422 with the field path, a wrong
//! `Content-Type` is 415, and an oversized body is 413.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use unibench_store::Page;

use crate::error::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_json_content_type(request.headers())?;
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads the whole body, mapping axum's rejections (too large, broken
/// stream) to [`ApiError`].
pub async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), Some("body"), rejection.body_text()))
}

fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    let found = if content_type.is_empty() { "none".to_owned() } else { format!("`{content_type}`") };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Some("Content-Type"),
        format!("expected `Content-Type: application/json`, got {found}"),
    ))
}

/// Parses a JSON body. Type errors name the field path, and syntax errors
/// give the line and column.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("body", "the request body is empty: expected a JSON object"));
    }
    // Parsing into a value first separates syntax errors (400) from type
    // errors (422), because serde_json reports some type errors, such as a
    // number where an enum name belongs, with the code of a syntax error.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::bad_request("body", format!("the request body is not valid JSON: {error}")))?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let field = field_of(&path, &message);
        ApiError::invalid(&field, message)
    })
}

/// Parses a YAML document. Problems name the field path, and the message
/// keeps the line and column, which a YAML author needs.
pub fn parse_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("body", "the request body is empty: expected a YAML template"));
    }
    if let Err(problem) = unibench_model::template_check::check_yaml_nesting(text) {
        return Err(ApiError::bad_request("body", format!("the request body is not a valid YAML template: {problem}")));
    }
    serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text)).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let field = field_of(&path, &message);
        if field == "body" {
            ApiError::bad_request("body", format!("the request body is not a valid YAML template: {message}"))
        } else {
            ApiError::invalid(&field, message)
        }
    })
}

/// Returns the field of a deserialisation error: its path, extended by the
/// name of a missing field, whose path is the enclosing object, or `body`
/// for the document itself.
fn field_of(path: &str, message: &str) -> String {
    let parent = if path == "." || path == "?" { "" } else { path };
    let named =
        |prefix: &str| message.split_once(prefix).and_then(|(_, rest)| rest.split_once('`')).map(|(name, _)| name);
    // An unknown field's path already ends with its name.
    let missing = named("missing field `").or_else(|| named("unknown field `").filter(|name| !parent.ends_with(name)));
    match (parent, missing) {
        ("", Some(name)) => name.to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        ("", None) => "body".to_owned(),
        (parent, None) => parent.to_owned(),
    }
}

/// The query parameters of a request. Handlers list the names they accept.
/// Any other name, a repeated name or a value that does not parse is a 400
/// naming the parameter.
#[derive(Debug, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|rejection| ApiError::bad_request("query", rejection.body_text()))?;
        Ok(QueryParams { pairs })
    }
}

impl QueryParams {
    /// Rejects parameters other than `allowed`, and repeated ones.
    pub fn only(&self, allowed: &[&str]) -> Result<&Self, ApiError> {
        for (index, (name, _)) in self.pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let expected = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
                return Err(ApiError::bad_request(
                    name,
                    format!("unknown query parameter `{name}`: expected {expected}"),
                ));
            }
            if self.pairs[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::bad_request(name, format!("query parameter `{name}` is given more than once")));
            }
        }
        Ok(self)
    }

    /// Returns the value of a parameter. An empty value counts as absent.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// Parses a parameter. `expected` describes a valid value for the error
    /// message.
    pub fn parse<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>, ApiError> {
        let Some(text) = self.text(name) else { return Ok(None) };
        text.parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(name, format!("invalid value `{text}`: expected {expected}")))
    }

    /// Parses a flag: `true` for `true` or `1`, `false` for `false`, `0`
    /// or absence.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.text(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(name, format!("invalid value `{other}`: expected true or false"))),
        }
    }

    /// Parses `limit` (1 to `max_limit`, default `default_limit`) and
    /// `offset` (0 to `i64::MAX`, default 0). SQLite and PostgreSQL take
    /// `OFFSET` as a signed 64-bit integer, so a larger offset is a 400 here
    /// rather than a failed store query (500).
    pub fn page(&self, default_limit: u32, max_limit: u32) -> Result<Page, ApiError> {
        let expected = format!("a whole number from 1 to {max_limit}");
        let limit = self.parse::<u32>("limit", &expected)?.unwrap_or(default_limit);
        if limit == 0 || limit > max_limit {
            return Err(ApiError::bad_request("limit", format!("invalid value `{limit}`: expected {expected}")));
        }
        let expected = format!("a whole number from 0 to {}", i64::MAX);
        let offset = self.parse::<u64>("offset", &expected)?.unwrap_or(0);
        if offset > i64::MAX as u64 {
            return Err(ApiError::bad_request("offset", format!("invalid value `{offset}`: expected {expected}")));
        }
        Ok(Page { limit, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
        items: Vec<u32>,
        #[serde(default)]
        kind: Option<Kind>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    enum Kind {
        Alpha,
    }

    fn field(result: Result<Outer, ApiError>) -> (StatusCode, Option<String>) {
        let error = result.unwrap_err();
        (error.status, error.problem.field)
    }

    #[test]
    fn json_type_error_names_path() {
        let (status, path) = field(parse_json(br#"{"inner": {"count": "x", "items": []}}"#));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(path.as_deref(), Some("inner.count"));
        let (status, path) = field(parse_json(br#"{"inner": {"count": 1, "items": [], "kind": 5}}"#));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a number where an enum name belongs");
        assert_eq!(path.as_deref(), Some("inner.kind"));
        let (_, path) = field(parse_json(br#"{"inner": {"count": 1, "items": [1, "y"]}}"#));
        assert_eq!(path.as_deref(), Some("inner.items[1]"));
    }

    #[test]
    fn json_missing_and_unknown_fields_are_named() {
        let (status, path) = field(parse_json(br#"{"inner": {"items": []}}"#));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(path.as_deref(), Some("inner.count"));
        let (_, path) = field(parse_json(br#"{"inner": {"count": 1, "items": []}, "extra": 1}"#));
        assert_eq!(path.as_deref(), Some("extra"));
        let (_, path) = field(parse_json(br#"{}"#));
        assert_eq!(path.as_deref(), Some("inner"));
    }

    #[test]
    fn json_syntax_error_is_bad_request() {
        let (status, path) = field(parse_json(br#"{"inner": "#));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(path.as_deref(), Some("body"));
        let (status, _) = field(parse_json(b"  "));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = field(parse_json(br#"{"inner": {"count": 1, "items": []}} trailing"#));
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn yaml_error_names_path() {
        let (status, path) = field(parse_yaml("inner:\n  count: 1\n  items: [1, two]\n"));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(path.as_deref(), Some("inner.items[1]"));
        let (status, _) = field(parse_yaml("inner: [unclosed\n"));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a type mismatch at `inner`");
        let (status, path) = field(parse_yaml(": : :\n  - ]\n"));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path:?}");
    }

    #[test]
    fn query_page_checks_bounds() {
        let params = QueryParams { pairs: vec![("limit".into(), "0".into())] };
        assert_eq!(params.page(100, 1000).unwrap_err().problem.field.as_deref(), Some("limit"));
        let params = QueryParams { pairs: vec![("limit".into(), "50".into()), ("offset".into(), "10".into())] };
        assert_eq!(params.page(100, 1000).unwrap(), Page { limit: 50, offset: 10 });
        let params = QueryParams { pairs: vec![("offset".into(), i64::MAX.to_string())] };
        assert_eq!(params.page(100, 1000).unwrap().offset, i64::MAX as u64);
        for huge in ["9223372036854775808", "18446744073709551615", "18446744073709551616"] {
            let params = QueryParams { pairs: vec![("offset".into(), huge.into())] };
            let error = params.page(100, 1000).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{huge}");
            assert_eq!(error.problem.field.as_deref(), Some("offset"), "{huge}");
        }
        let params = QueryParams { pairs: vec![("limit".into(), "9223372036854775808".into())] };
        assert_eq!(params.page(100, 1000).unwrap_err().problem.field.as_deref(), Some("limit"));
        let params = QueryParams { pairs: vec![("limti".into(), "5".into())] };
        assert_eq!(params.only(&["limit"]).unwrap_err().problem.field.as_deref(), Some("limti"));
    }
}
