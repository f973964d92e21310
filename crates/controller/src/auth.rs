//! Access control. The controller listens on loopback by default, and
//! listening on any other address requires an API token. Once a token is
//! configured, every `/api` and `/ws` request must carry it
//! (`Authorization: Bearer TOKEN`, or `?token=TOKEN` on WebSocket
//! upgrades, because browsers cannot set headers there). `GET /health` and
//! the UI page stay open so that probes and browsers can reach them. They
//! show no run data and no secret.

use std::net::SocketAddr;

use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Environment variable holding the API token.
pub const TOKEN_ENV: &str = "UNIBENCH_API_TOKEN";

/// Error raised when the controller must not listen on an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error(
        "refusing to listen on {addr}: it is not a loopback address, and {TOKEN_ENV} is not set. \
         Set {TOKEN_ENV} to a secret token that clients send as `Authorization: Bearer TOKEN`, \
         or bind to 127.0.0.1"
    )]
    TokenRequired { addr: SocketAddr },
}

/// Checks that the controller may listen on `addr`: loopback always, any
/// other address (including the unspecified 0.0.0.0 and ::) only with a
/// token.
pub fn check_bind(addr: SocketAddr, token: Option<&str>) -> Result<(), BindError> {
    if addr.ip().is_loopback() || token.is_some_and(|token| !token.trim().is_empty()) {
        Ok(())
    } else {
        Err(BindError::TokenRequired { addr })
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Rejects `/api` and `/ws` requests without the configured token with
/// 401. Without a configured token every request passes.
pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.api_token.as_deref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if !(path.starts_with("/api") || path.starts_with("/ws")) {
        return next.run(request).await;
    }
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    let from_query = if path.starts_with("/ws") {
        Query::<TokenQuery>::try_from_uri(request.uri()).ok().and_then(|Query(query)| query.token)
    } else {
        None
    };
    let accepted = [from_header, from_query].iter().flatten().any(|given| tokens_match(given, expected));
    if accepted {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Returns the token of an `Authorization: Bearer TOKEN` header. The
/// scheme is case-insensitive.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares in time that depends only on the lengths, so that response
/// times do not reveal how much of a guess was right.
fn tokens_match(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    if given.len() != expected.len() {
        return false;
    }
    given.iter().zip(expected).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token() {
        assert!(check_bind("127.0.0.1:8080".parse().unwrap(), None).is_ok());
        assert!(check_bind("[::1]:8080".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn other_addresses_need_a_token() {
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let error = check_bind(any, None).unwrap_err();
        assert!(error.to_string().contains(TOKEN_ENV), "{error}");
        assert!(check_bind(any, Some("  ")).is_err(), "a blank token counts as none");
        assert!(check_bind(any, Some("s3cret")).is_ok());
        assert!(check_bind("[::]:80".parse().unwrap(), None).is_err());
    }

    #[test]
    fn bearer_header_parses() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc"));
        assert!(!tokens_match("ab", "abc"));
    }
}
