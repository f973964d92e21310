//! The web UI: the static files under `crates/controller/ui/`, compiled
//! into the binary so that `unibench serve` needs no files and no Node.js
//! at run time. `/` serves the single page, and `/ui/...` serves its
//! scripts, styles and the vendored uPlot. The page routes by URL fragment
//! (`#/runs/ID`), so no other path is needed.
//!
//! Responses carry `Cache-Control: no-cache` and an `ETag` of the file's
//! content: asset names carry no version, so a browser must revalidate
//! after an upgrade, and an unchanged file costs a 304.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
struct Asset {
    /// Path under `ui/`, as requested after `/ui/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset { path: $path, content_type: $content_type, body: include_bytes!(concat!("../ui/", $path)) }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const MARKDOWN: &str = "text/markdown; charset=utf-8";

/// Every file of the UI. A file added under `ui/` must be listed here.
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("js/api.js", JS),
    asset!("js/charts.js", JS),
    asset!("js/compare.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/history.js", JS),
    asset!("js/live.js", JS),
    asset!("js/main.js", JS),
    asset!("js/results.js", JS),
    asset!("js/template_rules.js", JS),
    asset!("js/templates.js", JS),
    asset!("vendor/uplot/LICENSE", TEXT),
    asset!("vendor/uplot/README.md", MARKDOWN),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
];

/// The page may load scripts, styles and data only from this origin.
/// uPlot sizes its elements through inline styles, hence
/// `'unsafe-inline'` for styles (never for scripts).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Quoted ETag of each asset, in `ASSETS` order.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|asset| format!("\"{:016x}\"", fnv1a(asset.body))).collect());

/// Routes `/` and `/ui/{*path}`. Generic over the state so that it merges
/// into the API router whatever its state type.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/ui/{*path}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// Returns the asset at `path`, a 304 when the client's `If-None-Match`
/// names the current ETag, or a 404.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.path == path) else {
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, TEXT)], format!("no UI file named `{path}`\n"))
            .into_response();
    };
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];

    let mut response = if matches_etag(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };

    let response_headers = response.headers_mut();
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response_headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        response_headers.insert(header::ETAG, value);
    }
    if asset.content_type == HTML {
        response_headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        response_headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}

/// Checks whether `If-None-Match` lists `etag` or is `*`. Weak validators
/// (`W/"..."`) match too, as RFC 9110 requires for this header.
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|value| value.to_str().ok()).any(|value| {
        value.split(',').map(str::trim).any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
    })
}

/// 64-bit FNV-1a: a fast content hash, good enough to tell file versions
/// apart (it is not used for anything security-related).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_header(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
    }

    #[test]
    fn index_is_html_with_policy() {
        let response = serve("index.html", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(get_header(&response, header::CONTENT_TYPE), HTML);
        assert_eq!(get_header(&response, header::CACHE_CONTROL), "no-cache");
        assert!(get_header(&response, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    }

    #[test]
    fn assets_have_their_types() {
        let cases = [
            ("js/main.js", JS),
            ("app.css", CSS),
            ("vendor/uplot/uPlot.iife.min.js", JS),
            ("vendor/uplot/uPlot.min.css", CSS),
        ];
        for (path, content_type) in cases {
            let response = serve(path, &HeaderMap::new());
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(get_header(&response, header::CONTENT_TYPE), content_type, "{path}");
            assert_eq!(get_header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{path}");
        }
    }

    #[test]
    fn unknown_path_is_not_found() {
        assert_eq!(serve("js/missing.js", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn matching_etag_is_not_modified() {
        let etag = get_header(&serve("app.css", &HeaderMap::new()), header::ETAG).to_owned();
        assert!(etag.starts_with('"'), "{etag}");
        assert_eq!(etag.len(), 18, "{etag}");

        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"other\", W/{etag}")).unwrap());
        let response = serve("app.css", &headers);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get_header(&response, header::ETAG), etag);

        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        assert_eq!(serve("app.css", &headers).status(), StatusCode::OK);
    }

    #[test]
    fn every_file_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
                assert!(ASSETS.iter().any(|asset| asset.path == relative), "ui/{relative} is not listed in ASSETS");
            }
        }
    }

    #[test]
    fn every_asset_is_served() {
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            assert_eq!(serve(asset.path, &HeaderMap::new()).status(), StatusCode::OK, "{}", asset.path);
        }
    }
}
