//! `GET /`: a placeholder page that lists the API until the web UI
//! replaces it.

use axum::response::Html;

const INDEX: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>unibench</title>
<style>body { font-family: sans-serif; max-width: 48rem; margin: 2rem auto; } code { background: #f3f3f3; }</style>
</head>
<body>
<h1>unibench controller</h1>
<p>The web UI is not part of this build. The HTTP API and the live stream are available:</p>
<ul>
<li><code>GET /health</code></li>
<li><code>GET, POST /api/templates</code>; <code>GET, PUT, DELETE /api/templates/{id}</code>;
    <code>POST /api/templates/import</code> (YAML); <code>GET /api/templates/{id}/export</code></li>
<li><code>GET, POST /api/runs</code>; <code>GET /api/runs/{id}</code>;
    <code>POST /api/runs/{id}/start</code>; <code>POST /api/runs/{id}/stop</code></li>
<li><code>GET /api/tests/{test_id}</code>, <code>/timeseries</code>, <code>/logs</code>, <code>/warehouse</code>;
    <code>GET /api/compare?runs=a,b</code></li>
<li><code>WS /ws/test/{run_id}</code>: one <code>RUN_UPDATE</code> message per second</li>
</ul>
</body>
</html>
"#;

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}
