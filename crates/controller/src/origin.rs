//! Cross-site request protection. Without these checks, any web page open
//! in the user's browser could use a loopback controller that has no
//! token. The page could send CORS simple requests (such as a `text/plain`
//! POST) and open the live stream. A DNS-rebinding page could also read
//! the responses. Two checks, applied to every route, stop this:
//!
//! - A request with an `Origin` header must be same-origin: the origin's
//!   host and port must equal those of the `Host` header. `Origin: null`
//!   is rejected. Requests without `Origin` (curl, the CLI) pass, because
//!   browsers send it on every cross-origin request and WebSocket upgrade.
//! - On a loopback listener, the `Host` header must name loopback
//!   (`127.0.0.1`, any other 127.0.0.0/8 address, `localhost` or `[::1]`),
//!   with no port or the listening port. A rebinding page sends its own
//!   host name there. On other addresses the API token protects the API,
//!   and the host names that clients use are not known, so `Host` is not
//!   checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Settings of the origin check, taken from the listener's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginPolicy {
    /// The listening port when the listener is on a loopback address, so
    /// that the `Host` header must name loopback. `None` for any other
    /// address.
    loopback_port: Option<u16>,
}

impl OriginPolicy {
    /// Builds the policy for a controller listening on `listen_addr`.
    pub fn for_listener(listen_addr: SocketAddr) -> Self {
        OriginPolicy { loopback_port: listen_addr.ip().is_loopback().then_some(listen_addr.port()) }
    }

    /// Checks the `Host` and `Origin` values of one request. `host` is the
    /// `Host` header, or the URI's authority in HTTP/2.
    fn check(&self, host: Option<&HeaderValue>, origin: Option<&HeaderValue>) -> Result<(), ApiError> {
        if let (Some(port), Some(host)) = (self.loopback_port, host) {
            check_loopback_host(&parse_host(host)?, port)?;
        }
        let Some(origin) = origin else { return Ok(()) };
        let origin = parse_origin(origin)?;
        let Some(host) = host else {
            return Err(ApiError::forbidden(
                "Host",
                format!("missing Host header: a request with `Origin: {}` must name this server in Host", origin.text),
            ));
        };
        check_same_origin(&origin, &parse_host(host)?)
    }
}

/// Rejects requests that fail the checks of [`OriginPolicy`] with 403.
pub async fn require_same_origin(State(policy): State<OriginPolicy>, request: Request, next: Next) -> Response {
    let uri_authority = request.uri().authority().and_then(|authority| HeaderValue::from_str(authority.as_str()).ok());
    let host = request.headers().get(header::HOST).or(uri_authority.as_ref());
    match policy.check(host, request.headers().get(header::ORIGIN)) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// The parsed `Host` header.
struct HostHeader {
    text: String,
    /// The host name or IP address, with brackets around an IPv6 address.
    name: String,
    port: Option<u16>,
}

/// The parsed `Origin` header: `scheme://host[:port]`.
struct Origin {
    text: String,
    name: String,
    /// The explicit port, or the scheme's default port.
    port: u16,
    scheme_default_port: u16,
}

fn parse_host(value: &HeaderValue) -> Result<HostHeader, ApiError> {
    let invalid = || ApiError::forbidden("Host", format!("invalid Host header {value:?}: expected HOST[:PORT]"));
    let text = value.to_str().map_err(|_| invalid())?;
    let authority = parse_authority(text).ok_or_else(invalid)?;
    Ok(HostHeader { text: text.to_owned(), name: authority.host().to_ascii_lowercase(), port: authority.port_u16() })
}

fn parse_origin(value: &HeaderValue) -> Result<Origin, ApiError> {
    let text = value.to_str().unwrap_or_default();
    if text == "null" {
        return Err(ApiError::forbidden(
            "Origin",
            "cross-origin request rejected: `Origin: null` is the opaque origin of a sandboxed page, a local \
             file or a cross-origin redirect. The API accepts browser requests only from the web UI that \
             this server serves",
        ));
    }
    let invalid =
        || ApiError::forbidden("Origin", format!("invalid Origin header {value:?}: expected SCHEME://HOST[:PORT]"));
    let (scheme, rest) = text.split_once("://").ok_or_else(invalid)?;
    let scheme_default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(invalid()),
    };
    let authority = parse_authority(rest).ok_or_else(invalid)?;
    Ok(Origin {
        text: text.to_owned(),
        name: authority.host().to_ascii_lowercase(),
        port: authority.port_u16().unwrap_or(scheme_default_port),
        scheme_default_port,
    })
}

/// Parses `host[:port]`. User information, a path or an empty host is
/// invalid in both `Host` and `Origin`.
fn parse_authority(text: &str) -> Option<Authority> {
    if text.contains(['@', '/', '?', '#']) {
        return None;
    }
    let authority = Authority::from_str(text).ok()?;
    (!authority.host().is_empty()).then_some(authority)
}

/// Accepts a `Host` that names loopback, with no port or `listen_port`.
fn check_loopback_host(host: &HostHeader, listen_port: u16) -> Result<(), ApiError> {
    let loopback_name = host.name == "localhost"
        || Ipv4Addr::from_str(&host.name).is_ok_and(|ip| ip.is_loopback())
        || host
            .name
            .strip_prefix('[')
            .and_then(|name| name.strip_suffix(']'))
            .and_then(|name| Ipv6Addr::from_str(name).ok())
            .is_some_and(|ip| IpAddr::V6(ip).is_loopback());
    let port_matches = host.port.is_none_or(|port| port == listen_port);
    if loopback_name && port_matches {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "Host",
        format!(
            "Host `{}` is not this server: a controller listening on loopback port {listen_port} accepts \
             only Host 127.0.0.1, localhost or [::1], with no port or port {listen_port}. Open the UI \
             through one of these names",
            host.text
        ),
    ))
}

/// Accepts an `Origin` whose host and port equal those of `Host`. A `Host`
/// without a port means the default port of the origin's scheme. The
/// scheme itself is not compared, because a TLS proxy in front of the
/// controller turns `https` into plain HTTP.
fn check_same_origin(origin: &Origin, host: &HostHeader) -> Result<(), ApiError> {
    let host_port = host.port.unwrap_or(origin.scheme_default_port);
    if origin.name == host.name && origin.port == host_port {
        return Ok(());
    }
    // NOTE: a reverse proxy that rewrites Host (for example to
    // 127.0.0.1:8080) fails this check for browser requests unless it
    // passes the client's Host through.
    Err(ApiError::forbidden(
        "Origin",
        format!(
            "cross-origin request rejected: Origin `{}` does not match Host `{}`. The API accepts browser \
             requests only from the web UI that this server serves",
            origin.text, host.text
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: &str = "127.0.0.1:8080";

    fn check(listen: &str, host: Option<&str>, origin: Option<&str>) -> Result<(), Option<String>> {
        let policy = OriginPolicy::for_listener(listen.parse().unwrap());
        let host = host.map(|host| HeaderValue::from_str(host).unwrap());
        let origin = origin.map(|origin| HeaderValue::from_str(origin).unwrap());
        policy.check(host.as_ref(), origin.as_ref()).map_err(|error| {
            assert_eq!(error.status, axum::http::StatusCode::FORBIDDEN);
            error.problem.field
        })
    }

    #[test]
    fn loopback_host_names_pass() {
        for host in ["127.0.0.1:8080", "127.0.0.1", "localhost:8080", "LocalHost", "[::1]:8080", "[::1]", "127.0.0.2"] {
            assert_eq!(check(LOOPBACK, Some(host), None), Ok(()), "{host}");
        }
        assert_eq!(check("[::1]:8080", Some("localhost:8080"), None), Ok(()));
        assert_eq!(check(LOOPBACK, None, None), Ok(()), "HTTP/1.0 without Host");
    }

    #[test]
    fn foreign_host_on_loopback_is_rejected() {
        for host in
            ["evil.example:8080", "evil.example", "localhost:8081", "127.0.0.1:80", "10.0.0.1:8080", "[::2]:8080"]
        {
            assert_eq!(check(LOOPBACK, Some(host), None), Err(Some("Host".into())), "{host}");
        }
        for host in ["user@localhost:8080", "localhost:8080/x", "[127.0.0.1]:8080", ""] {
            assert_eq!(check(LOOPBACK, Some(host), None), Err(Some("Host".into())), "{host:?}");
        }
    }

    #[test]
    fn any_host_passes_off_loopback() {
        assert_eq!(check("0.0.0.0:8080", Some("bench.example:8080"), None), Ok(()));
        assert_eq!(check("10.1.2.3:8080", Some("10.1.2.3:8080"), None), Ok(()));
        assert_eq!(check("0.0.0.0:8080", Some(""), None), Ok(()), "Host is not parsed off loopback");
    }

    #[test]
    fn same_origin_passes() {
        assert_eq!(check(LOOPBACK, Some("127.0.0.1:8080"), Some("http://127.0.0.1:8080")), Ok(()));
        assert_eq!(check(LOOPBACK, Some("localhost:8080"), Some("http://LOCALHOST:8080")), Ok(()));
        assert_eq!(check(LOOPBACK, Some("[::1]:8080"), Some("http://[::1]:8080")), Ok(()));
        assert_eq!(check("0.0.0.0:80", Some("bench.example"), Some("http://bench.example")), Ok(()));
        assert_eq!(check("0.0.0.0:80", Some("bench.example"), Some("https://bench.example")), Ok(()));
        assert_eq!(check("0.0.0.0:80", Some("bench.example:443"), Some("https://bench.example")), Ok(()));
    }

    #[test]
    fn cross_origin_is_rejected() {
        let origin = Err(Some("Origin".to_owned()));
        for foreign in [
            "http://evil.example",
            "http://evil.example:8080",
            "http://localhost:8080",
            "http://127.0.0.1:8081",
            "http://127.0.0.1",
            "null",
            "file://",
            "ftp://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/path",
            "http://user@127.0.0.1:8080",
        ] {
            assert_eq!(check(LOOPBACK, Some("127.0.0.1:8080"), Some(foreign)), origin, "{foreign}");
        }
        assert_eq!(check("0.0.0.0:8080", Some("bench.example:8080"), Some("http://evil.example:8080")), origin);
        assert_eq!(check("0.0.0.0:80", Some("bench.example"), Some("http://bench.example:8080")), origin);
        assert_eq!(check(LOOPBACK, None, Some("http://127.0.0.1:8080")), Err(Some("Host".into())));
    }
}
