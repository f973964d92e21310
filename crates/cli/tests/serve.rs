//! `unibench serve` end to end: the real binary on a free loopback port
//! with a fresh SQLite store, driven over HTTP and WebSocket. Tests that
//! create runs use a PostgreSQL target (from `UNIBENCH_TEST_PG_URL`, set
//! by scripts/test.sh) and real worker processes; timings are shrunk
//! through `UNIBENCH_TIMINGS`. Every server is stopped by the test, and
//! killed when it does not stop in time.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use support::worker::eventually;
use support::{create_database, database_url, pg_execute};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Hard limit of each test, servers and workers included.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM (it stops its runs).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
const TOKEN: &str = "serve-test-token-4f7c2a";
const WORKLOAD_SQL: &str = "SELECT note, pg_sleep(0.002) FROM {table} WHERE id = $1";

fn timings() -> String {
    json!({
        "stale_after_seconds": 2.0,
        "dead_after_seconds": 4.0,
        "no_store_exit_seconds": 5.0,
        "start_wait_seconds": 20.0,
        "registration_seconds": 30.0,
        "drain_seconds": 10.0,
        "sigterm_after_drain_seconds": 2.0,
        "orchestrator_silence_seconds": 6.0,
        "reconcile_seconds": 1.0
    })
    .to_string()
}

/// Runs a test body under the hard timeout.
async fn within_timeout(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {TEST_TIMEOUT:?}"));
}

/// A running `unibench serve` process with its own directory and store.
struct Server {
    child: Option<Child>,
    base: String,
    dir: tempfile::TempDir,
    stderr_path: PathBuf,
    token: Option<String>,
    client: Client,
    run_ids: Mutex<Vec<String>>,
}

#[derive(Default)]
struct ServerOptions {
    token: Option<String>,
    /// A PostgreSQL target database reachable as connection `bench`.
    target: Option<String>,
}

impl Server {
    async fn start(options: ServerOptions) -> Server {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store_url = format!("sqlite://{}", dir.path().join("store.db").display());
        let mut apply = support::unibench();
        apply.args(["schema", "apply", "--store", &store_url]);
        let applied = support::run(apply, Duration::from_secs(60));
        assert!(applied.success(), "schema apply failed: {applied:?}");

        let connections_file = dir.path().join("connections.toml");
        let connections = match &options.target {
            Some(database) => {
                format!("[connections.bench]\nkind = \"postgres\"\nurl = \"{}\"\n", database_url(database))
            }
            None => String::new(),
        };
        std::fs::write(&connections_file, connections).expect("write connections.toml");

        let stderr_path = dir.path().join("serve.log");
        let mut command = support::unibench();
        command
            .args(["serve", "--store", &store_url, "--bind", "127.0.0.1:0", "--connections-file"])
            .arg(&connections_file)
            .env("UNIBENCH_HOME", dir.path())
            .env("UNIBENCH_TIMINGS", timings())
            .env("UNIBENCH_LOG", "info")
            .env_remove("UNIBENCH_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&stderr_path).expect("create the server log")));
        if let Some(token) = &options.token {
            command.env("UNIBENCH_API_TOKEN", token);
        }
        let child = command.spawn().expect("start unibench serve");
        let client =
            Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("build the HTTP client");
        let mut server = Server {
            child: Some(child),
            base: String::new(),
            dir,
            stderr_path,
            token: options.token,
            client,
            run_ids: Mutex::default(),
        };
        server.base = server.wait_for_address().await;
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Reads `http://127.0.0.1:PORT` from the "listening on" line.
    async fn wait_for_address(&mut self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = self.stderr();
            if let Some(address) = log.lines().find_map(|line| {
                let rest = line.split_once("listening on ")?.1;
                Some(rest.split_whitespace().next()?.to_owned())
            }) {
                assert!(address.starts_with("http://127.0.0.1:"), "{address}");
                return address;
            }
            if let Some(Some(status)) = self.child.as_mut().map(|child| child.try_wait().expect("poll the server")) {
                panic!("unibench serve exited with {status} before listening:\n{log}");
            }
            assert!(Instant::now() < deadline, "unibench serve did not listen within {START_TIMEOUT:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.base.trim_start_matches("http://"))
    }

    /// Sends a request with the server's token, if any, and returns the
    /// status and the JSON body (null when empty).
    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        self.send_with_headers(method, path, &[], content_type, body).await
    }

    /// Like [`Server::send`], with extra headers such as `Origin` or `Host`.
    async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("send a request to unibench serve");
        let status = response.status();
        let text = response.text().await.expect("read the response body");
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some("application/json"), Some(body.to_string())).await
    }

    async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some("application/json"), Some(body.to_string())).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None, None).await
    }

    /// Creates a run and remembers it, so that its workers are killed if
    /// the test fails.
    async fn create_run(&self, body: &Value) -> String {
        let (status, created) = self.post("/api/runs", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let run_id = created["run_id"].as_str().expect("run_id").to_owned();
        self.run_ids.lock().unwrap().push(run_id.clone());
        run_id
    }

    async fn run_status(&self, run_id: &str) -> String {
        let (status, run) = self.get(&format!("/api/runs/{run_id}")).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        run["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn wait_for_status(&self, run_id: &str, expected: &str, timeout: Duration) {
        eventually(timeout, &format!("run {run_id} to be {expected}"), || async {
            (self.run_status(run_id).await == expected).then_some(())
        })
        .await;
    }
}

impl Drop for Server {
    /// SIGTERM (the server stops its runs and waits for their workers),
    /// then SIGKILL after [`STOP_TIMEOUT`], and any worker left is killed.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status().ok();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            child.kill().ok();
            child.wait().ok();
        }
        for run_id in self.run_ids.lock().map(|ids| ids.clone()).unwrap_or_default() {
            for pid in worker_pids(&run_id) {
                Command::new("kill").args(["-s", "KILL", &pid.to_string()]).status().ok();
            }
        }
    }
}

/// Process ids of a run's worker processes.
fn worker_pids(run_id: &str) -> Vec<u32> {
    let output = Command::new("pgrep").args(["-f", &format!("worker --run-id {run_id} ")]).output().expect("run pgrep");
    String::from_utf8_lossy(&output.stdout).lines().filter_map(|line| line.trim().parse().ok()).collect()
}

/// Creates a target database with `items(id, note)` holding 1000 rows.
async fn pg_target() -> String {
    let database = create_database().await;
    pg_execute(
        Some(&database),
        "CREATE TABLE items (id BIGINT PRIMARY KEY, note TEXT NOT NULL);\
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) AS g;",
    )
    .await;
    database
}

/// Builds a template that loads `items` through connection `bench`.
fn template(name: &str, connections: u32, warmup: f64, duration: f64) -> Value {
    json!({
        "name": name,
        "target": {"kind": "postgres", "connection": "bench", "table": "items", "key_column": "id"},
        "workload": {
            "concurrent_connections": connections,
            "warmup_seconds": warmup,
            "duration_seconds": duration,
            "operations": [{"kind": "POINT_LOOKUP", "weight_pct": 100, "sql": WORKLOAD_SQL, "params": ["key"]}],
            "query_log": "off"
        }
    })
}

/// Builds a template that needs no key pool, so that it can run inline.
fn inline_template(name: &str, connections: u32, warmup: f64, duration: f64) -> Value {
    let mut inline = template(name, connections, warmup, duration);
    inline["workload"]["operations"][0]["params"] = json!(["random_int(1, 1000)"]);
    inline
}

/// Checks an error response: its status, the field it names, and a part
/// of its message.
#[track_caller]
fn assert_error(
    case: &str,
    (status, body): &(StatusCode, Value),
    expected: StatusCode,
    field: &str,
    message_part: &str,
) {
    assert_eq!(*status, expected, "{case}: {body}");
    assert_eq!(body["error"]["field"], json!(field), "{case}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(message_part), "{case}: message {message:?} lacks {message_part:?}");
}

// Health, the placeholder page, and the bind policy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_store_without_url() {
    within_timeout(async {
        let server = Server::start(ServerOptions::default()).await;
        let (status, health) = server.get("/health").await;
        assert_eq!(status, StatusCode::OK, "{health}");
        assert_eq!(health["status"], "ok");
        assert_eq!(health["controller"]["status"], "ok");
        assert_eq!(health["orchestrator"]["status"], "ok");
        assert_eq!(health["orchestrator"]["active_runs"], 0);
        assert_eq!(health["store"]["backend"], "sqlite");
        assert_eq!(health["store"]["reachable"], true);
        assert_eq!(health["store"]["schema_complete"], true);
        let text = health.to_string();
        assert!(!text.contains("store.db"), "no store path in /health: {text}");
        assert!(!text.contains("sqlite://"), "no store URL in /health: {text}");

        let page = server.client.get(server.url("/")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("/ui/js/main.js"), "the web UI is served at /: {html}");

        let unknown = server.get("/api/nothing").await;
        assert_error("unknown route", &unknown, StatusCode::NOT_FOUND, "path", "/api/nothing");
    })
    .await;
}

#[test]
fn non_loopback_bind_without_token_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("never-created.db");
    let mut command = support::unibench();
    command
        .args(["serve", "--bind", "0.0.0.0:0", "--store", &format!("sqlite://{}", store.display())])
        .env_remove("UNIBENCH_API_TOKEN")
        .env("UNIBENCH_HOME", dir.path());
    let output = support::run(command, Duration::from_secs(30));
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("UNIBENCH_API_TOKEN"), "the error names the variable: {}", output.stderr);
    assert!(output.stderr.contains("0.0.0.0:0"), "the error names the address: {}", output.stderr);
    assert!(!store.exists(), "the check runs before the store is opened");

    let mut blank = support::unibench();
    blank
        .args(["serve", "--bind", "[::]:0", "--store", &format!("sqlite://{}", store.display())])
        .env("UNIBENCH_API_TOKEN", "  ");
    let output = support::run(blank, Duration::from_secs(30));
    assert_eq!(output.code, Some(1), "a blank token counts as none: {output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_once_set() {
    within_timeout(async {
        let server = Server::start(ServerOptions { token: Some(TOKEN.to_owned()), ..Default::default() }).await;
        let (status, templates) = server.get("/api/templates").await;
        assert_eq!(status, StatusCode::OK, "with the token: {templates}");

        let bare = server.client.get(server.url("/api/templates")).send().await.unwrap();
        assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(bare.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
        let body: Value = bare.json().await.unwrap();
        assert_eq!(body["error"]["field"], "Authorization", "{body}");

        let wrong = server
            .client
            .post(server.url("/api/runs"))
            .header(AUTHORIZATION, "Bearer wrong")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "a wrong token");
        let in_query = server.client.get(server.url(&format!("/api/templates?token={TOKEN}"))).send().await.unwrap();
        assert_eq!(
            in_query.status(),
            StatusCode::UNAUTHORIZED,
            "only WebSocket requests may pass the token in the query"
        );

        let health = server.client.get(server.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "probes reach /health without the token");

        let error = tokio_tungstenite::connect_async(server.ws_url("/ws/test/no-such-run")).await.unwrap_err();
        match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED.as_u16())
            }
            other => panic!("expected an HTTP 401, got {other}"),
        }
        let error = tokio_tungstenite::connect_async(server.ws_url(&format!("/ws/test/no-such-run?token={TOKEN}")))
            .await
            .unwrap_err();
        match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), StatusCode::NOT_FOUND.as_u16(), "the token passed; the run is unknown")
            }
            other => panic!("expected an HTTP 404, got {other}"),
        }
    })
    .await;
}

// Cross-site protection.

/// Opens the live stream of `run_id` with extra upgrade headers and
/// returns the HTTP status of the rejected upgrade.
async fn failed_upgrade_status(server: &Server, run_id: &str, headers: &[(&'static str, &str)]) -> u16 {
    let mut request = server.ws_url(&format!("/ws/test/{run_id}")).into_client_request().expect("a WebSocket request");
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().expect("a header value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Ok((_, response)) => panic!("the upgrade with {headers:?} succeeded: {}", response.status()),
        Err(other) => panic!("expected an HTTP error for the upgrade with {headers:?}, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_requests_are_rejected() {
    within_timeout(async {
        let server = Server::start(ServerOptions::default()).await;
        let yaml = serde_norway::to_string(&template("cross-site", 2, 0.0, 5.0)).expect("serialise the template");
        // A CORS simple request: a browser sends it without a preflight.
        let import = |origin: String| {
            let yaml = yaml.clone();
            let server = &server;
            async move {
                let headers = [("Origin", origin.as_str())];
                server
                    .send_with_headers(Method::POST, "/api/templates/import", &headers, Some("text/plain"), Some(yaml))
                    .await
            }
        };

        for origin in ["http://evil.example", "http://evil.example:8080", "http://localhost:1", "null"] {
            let case = import(origin.to_owned()).await;
            assert_error(&format!("import from {origin}"), &case, StatusCode::FORBIDDEN, "Origin", "cross-origin");
        }
        let (status, listed) = server.get("/api/templates").await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed["templates"], json!([]), "a rejected import stores nothing: {listed}");

        // The web UI's own requests carry its origin, which is the base URL.
        let (status, imported) = import(server.base.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "same-origin import: {imported}");
        assert_eq!(imported["name"], "cross-site");
        let (_, listed) = server.get("/api/templates").await;
        assert_eq!(listed["templates"].as_array().map(Vec::len), Some(1), "{listed}");
        let health = server.send_with_headers(Method::GET, "/health", &[("Origin", &server.base)], None, None).await;
        assert_eq!(health.0, StatusCode::OK, "same-origin GET: {}", health.1);

        assert_eq!(failed_upgrade_status(&server, "no-such-run", &[("Origin", "http://evil.example")]).await, 403);
        assert_eq!(failed_upgrade_status(&server, "no-such-run", &[("Origin", "null")]).await, 403);
        assert_eq!(
            failed_upgrade_status(&server, "no-such-run", &[("Origin", &server.base)]).await,
            404,
            "a same-origin upgrade passes the check and finds no run"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_is_rejected_on_loopback() {
    within_timeout(async {
        let server = Server::start(ServerOptions::default()).await;
        let port = server.base.rsplit(':').next().expect("the base URL has a port").to_owned();

        // A DNS-rebinding page reaches 127.0.0.1 under its own host name.
        let rebound_host = format!("evil.example:{port}");
        let case =
            server.send_with_headers(Method::GET, "/api/templates", &[("Host", &rebound_host)], None, None).await;
        assert_error("GET with a foreign Host", &case, StatusCode::FORBIDDEN, "Host", "evil.example");
        let rebound_origin = format!("http://{rebound_host}");
        let case = server
            .send_with_headers(
                Method::POST,
                "/api/templates/import",
                &[("Host", &rebound_host), ("Origin", &rebound_origin)],
                Some("text/plain"),
                Some("name: rebound\n".to_owned()),
            )
            .await;
        assert_error("same-origin POST under a foreign Host", &case, StatusCode::FORBIDDEN, "Host", "evil.example");
        let other_port = format!("localhost:{}", port.parse::<u16>().unwrap().wrapping_add(1));
        let case = server.send_with_headers(Method::GET, "/health", &[("Host", &other_port)], None, None).await;
        assert_error("Host with another port", &case, StatusCode::FORBIDDEN, "Host", &other_port);
        assert_eq!(failed_upgrade_status(&server, "no-such-run", &[("Host", &rebound_host)]).await, 403);

        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "localhost".to_owned()] {
            let (status, body) =
                server.send_with_headers(Method::GET, "/api/templates", &[("Host", &host)], None, None).await;
            assert_eq!(status, StatusCode::OK, "Host {host}: {body}");
        }
        let localhost = format!("localhost:{port}");
        let localhost_origin = format!("http://{localhost}");
        let (status, body) = server
            .send_with_headers(
                Method::GET,
                "/api/templates",
                &[("Host", &localhost), ("Origin", &localhost_origin)],
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "the UI opened as localhost: {body}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_beyond_i64_is_rejected() {
    within_timeout(async {
        let server = Server::start(ServerOptions::default()).await;
        let beyond = (i64::MAX as u64 + 1).to_string();
        for path in ["/api/runs", "/api/tests/no-such-test/logs", "/api/tests/no-such-test/timeseries"] {
            let case = server.get(&format!("{path}?offset={beyond}")).await;
            assert_error(&format!("{path} offset {beyond}"), &case, StatusCode::BAD_REQUEST, "offset", &beyond);
            let case = server.get(&format!("{path}?offset={}", u64::MAX)).await;
            assert_error(&format!("{path} offset u64::MAX"), &case, StatusCode::BAD_REQUEST, "offset", "");
            let case = server.get(&format!("{path}?limit={beyond}")).await;
            assert_error(&format!("{path} limit {beyond}"), &case, StatusCode::BAD_REQUEST, "limit", &beyond);
        }
        let (status, runs) = server.get(&format!("/api/runs?offset={}", i64::MAX)).await;
        assert_eq!(status, StatusCode::OK, "the largest offset the store takes: {runs}");
        assert_eq!(runs["runs"], json!([]));
    })
    .await;
}

// Templates.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_round_trip() {
    within_timeout(async {
        let server = Server::start(ServerOptions::default()).await;
        let original = template("orders lookup", 4, 1.0, 10.0);
        let (status, created) = server.post("/api/templates", &original).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["template_id"].as_str().unwrap().to_owned();
        assert_eq!(created["name"], "orders lookup");
        assert_eq!(created["created_by"], "api");
        assert_eq!(created["config"]["target"]["connection"], "bench");

        let (status, listed) = server.get("/api/templates").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["templates"].as_array().map(Vec::len), Some(1), "{listed}");
        let (status, by_id) = server.get(&format!("/api/templates/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(by_id["config"], created["config"]);
        let (status, by_name) = server.get("/api/templates/orders%20lookup").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(by_name["template_id"], json!(id));

        let mut changed = original.clone();
        changed["name"] = json!("orders lookup v2");
        changed["workload"]["concurrent_connections"] = json!(6);
        let (status, replaced) = server.put(&format!("/api/templates/{id}"), &changed).await;
        assert_eq!(status, StatusCode::OK, "{replaced}");
        assert_eq!(replaced["template_id"], json!(id), "PUT keeps the id");
        assert_eq!(replaced["name"], "orders lookup v2");
        assert_eq!(replaced["config"]["workload"]["concurrent_connections"], 6);
        assert_eq!(replaced["created_at"], created["created_at"]);

        let export = server.client.get(server.url(&format!("/api/templates/{id}/export"))).send().await.unwrap();
        assert_eq!(export.status(), StatusCode::OK);
        assert_eq!(export.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("application/yaml"));
        let yaml = export.text().await.unwrap();
        assert!(yaml.contains("name: orders lookup v2"), "{yaml}");
        let exported: unibench_model::scenario::Template =
            serde_norway::from_str(&yaml).expect("the export parses as a template");
        assert_eq!(exported.workload.concurrent_connections, 6);

        let imported_yaml = yaml.replace("name: orders lookup v2", "name: imported copy");
        let imported = server
            .send(Method::POST, "/api/templates/import", Some("application/yaml"), Some(imported_yaml.clone()))
            .await;
        assert_eq!(imported.0, StatusCode::CREATED, "{}", imported.1);
        assert_eq!(imported.1["name"], "imported copy");
        assert_eq!(
            imported.1["config"],
            replaced["config"]
                .as_object()
                .map(|config| {
                    let mut config = config.clone();
                    config.insert("name".into(), json!("imported copy"));
                    Value::Object(config)
                })
                .unwrap()
        );
        let again = server
            .send(Method::POST, "/api/templates/import", Some("application/yaml"), Some(imported_yaml.clone()))
            .await;
        assert_error("import of a taken name", &again, StatusCode::CONFLICT, "name", "already exists");
        let replacing = imported_yaml.replace("concurrent_connections: 6", "concurrent_connections: 9");
        let replaced_import = server
            .send(Method::POST, "/api/templates/import?replace=true", Some("application/yaml"), Some(replacing))
            .await;
        assert_eq!(replaced_import.0, StatusCode::OK, "{}", replaced_import.1);
        assert_eq!(replaced_import.1["template_id"], imported.1["template_id"], "replace keeps the id");
        assert_eq!(replaced_import.1["config"]["workload"]["concurrent_connections"], 9);

        let (status, _) = server.delete(&format!("/api/templates/{id}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let deleted = server.get(&format!("/api/templates/{id}")).await;
        assert_error("deleted template", &deleted, StatusCode::NOT_FOUND, "template_id", "not found");
        let (_, listed) = server.get("/api/templates").await;
        assert_eq!(listed["templates"].as_array().map(Vec::len), Some(1), "{listed}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_writes_reject_bad_input() {
    within_timeout(async {
        let server = Server::start(ServerOptions::default()).await;
        let good = template("kept", 2, 0.0, 5.0);
        let (status, kept) = server.post("/api/templates", &good).await;
        assert_eq!(status, StatusCode::CREATED, "{kept}");
        let id = kept["template_id"].as_str().unwrap().to_owned();
        let (status, other) = server.post("/api/templates", &template("other", 2, 0.0, 5.0)).await;
        assert_eq!(status, StatusCode::CREATED, "{other}");

        // POST /api/templates
        let mut wrong_type = good.clone();
        wrong_type["name"] = json!("wrong type");
        wrong_type["workload"]["operations"][0]["weight_pct"] = json!("most");
        let case = server.post("/api/templates", &wrong_type).await;
        assert_error("POST wrong type", &case, StatusCode::UNPROCESSABLE_ENTITY, "workload.operations[0].weight_pct", "invalid type");
        let mut missing = good.clone();
        missing["name"] = json!("missing target");
        missing.as_object_mut().unwrap().remove("target");
        let case = server.post("/api/templates", &missing).await;
        assert_error("POST missing field", &case, StatusCode::UNPROCESSABLE_ENTITY, "target", "missing field");
        let mut unknown = good.clone();
        unknown["name"] = json!("unknown field");
        unknown["workloads"] = json!({});
        let case = server.post("/api/templates", &unknown).await;
        assert_error("POST unknown field", &case, StatusCode::UNPROCESSABLE_ENTITY, "workloads", "unknown field");
        let mut weights = good.clone();
        weights["name"] = json!("bad weights");
        weights["workload"]["operations"][0]["weight_pct"] = json!(90);
        let case = server.post("/api/templates", &weights).await;
        assert_error("POST weights", &case, StatusCode::UNPROCESSABLE_ENTITY, "workload.operations[*].weight_pct", "sum to 90");
        let case = server.send(Method::POST, "/api/templates", Some("application/json"), Some("{\"name\": ".to_owned())).await;
        assert_error("POST broken JSON", &case, StatusCode::BAD_REQUEST, "body", "not valid JSON");
        let case = server.send(Method::POST, "/api/templates", Some("text/plain"), Some(good.to_string())).await;
        assert_error("POST text/plain", &case, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type", "application/json");
        let case = server.post("/api/templates", &good).await;
        assert_error("POST taken name", &case, StatusCode::CONFLICT, "name", "already exists");

        // PUT /api/templates/{id}
        let case = server.put("/api/templates/no-such-template", &good).await;
        assert_error("PUT unknown id", &case, StatusCode::NOT_FOUND, "template_id", "no-such-template");
        let mut wrong_type = good.clone();
        wrong_type["workload"]["concurrent_connections"] = json!("many");
        let case = server.put(&format!("/api/templates/{id}"), &wrong_type).await;
        assert_error("PUT wrong type", &case, StatusCode::UNPROCESSABLE_ENTITY, "workload.concurrent_connections", "invalid type");
        let mut missing = good.clone();
        missing["workload"].as_object_mut().unwrap().remove("operations");
        let case = server.put(&format!("/api/templates/{id}"), &missing).await;
        assert_error("PUT missing field", &case, StatusCode::UNPROCESSABLE_ENTITY, "workload.operations", "missing field");
        let mut renamed = good.clone();
        renamed["name"] = json!("other");
        let case = server.put(&format!("/api/templates/{id}"), &renamed).await;
        assert_error("PUT onto a taken name", &case, StatusCode::CONFLICT, "name", "already exists");
        let mut bad_sql = good.clone();
        bad_sql["workload"]["operations"][0]["sql"] = json!("SELECT * FROM {table} WHERE id = $2");
        let case = server.put(&format!("/api/templates/{id}"), &bad_sql).await;
        assert_error("PUT placeholder", &case, StatusCode::UNPROCESSABLE_ENTITY, "workload.operations[0].sql", "$2");

        // DELETE /api/templates/{id}
        let case = server.delete("/api/templates/no-such-template").await;
        assert_error("DELETE unknown id", &case, StatusCode::NOT_FOUND, "template_id", "no-such-template");
        let case = server.delete("/api/templates").await;
        assert_error("DELETE without an id", &case, StatusCode::METHOD_NOT_ALLOWED, "method", "DELETE");
        let (status, _) = server.delete(&format!("/api/templates/{}", other["template_id"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let case = server.delete(&format!("/api/templates/{}", other["template_id"].as_str().unwrap())).await;
        assert_error("DELETE twice", &case, StatusCode::NOT_FOUND, "template_id", "not found");

        // POST /api/templates/import
        let yaml = |body: &str| Some(body.to_owned());
        let import = |body: Option<String>| server.send(Method::POST, "/api/templates/import", Some("application/yaml"), body);
        let case = import(yaml(
            "name: y\ntarget: {kind: postgres, table: items}\nworkload:\n  concurrent_connections: many\n  operations: []\n",
        ))
        .await;
        assert_error("import wrong type", &case, StatusCode::UNPROCESSABLE_ENTITY, "workload.concurrent_connections", "invalid");
        let case = import(yaml("name: y\nworkload:\n  operations: []\n")).await;
        assert_error("import missing field", &case, StatusCode::UNPROCESSABLE_ENTITY, "target", "missing field");
        let case = import(yaml("name: [unclosed\n")).await;
        assert_error("import broken YAML", &case, StatusCode::UNPROCESSABLE_ENTITY, "name", "");
        let case = import(yaml(": : :\n  - ]\n")).await;
        assert_error("import not YAML", &case, StatusCode::BAD_REQUEST, "body", "YAML");
        let case = import(None).await;
        assert_error("import empty body", &case, StatusCode::BAD_REQUEST, "body", "empty");
        let deep = format!("name: {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
        let case = import(Some(deep)).await;
        assert_error("import deep nesting", &case, StatusCode::BAD_REQUEST, "body", "nest deeper than 64");
        let case = server.send(Method::POST, "/api/templates/import?replace=maybe", Some("application/yaml"), yaml("name: y\n")).await;
        assert_error("import bad flag", &case, StatusCode::BAD_REQUEST, "replace", "true or false");

        // Nothing was half-written.
        let (_, listed) = server.get("/api/templates").await;
        let names: Vec<&str> = listed["templates"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, vec!["kept"], "{listed}");
        let (_, after) = server.get(&format!("/api/templates/{id}")).await;
        assert_eq!(after["config"], kept["config"], "failed writes left the template unchanged");
    })
    .await;
}

// Runs and tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writes_reject_bad_input() {
    within_timeout(async {
        let target = pg_target().await;
        let server = Server::start(ServerOptions { target: Some(target), ..Default::default() }).await;
        let (status, saved) = server.post("/api/templates", &template("lookup", 2, 0.0, 5.0)).await;
        assert_eq!(status, StatusCode::CREATED, "{saved}");
        let template_id = saved["template_id"].as_str().unwrap().to_owned();

        // POST /api/runs
        let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
            ("empty body", json!({}), StatusCode::UNPROCESSABLE_ENTITY, "template_id", "missing"),
            ("both templates", json!({"template_id": template_id, "template": template("x", 1, 0.0, 1.0)}),
                StatusCode::UNPROCESSABLE_ENTITY, "template", "not both"),
            ("unknown template id", json!({"template_id": "no-such-template"}), StatusCode::UNPROCESSABLE_ENTITY, "template_id", "not found"),
            ("template id wrong type", json!({"template_id": 42}), StatusCode::UNPROCESSABLE_ENTITY, "template_id", "invalid type"),
            ("workers wrong type", json!({"template_id": template_id, "overrides": {"workers": "two"}}),
                StatusCode::UNPROCESSABLE_ENTITY, "overrides.workers", "invalid type"),
            ("workers zero", json!({"template_id": template_id, "overrides": {"workers": 0}}),
                StatusCode::UNPROCESSABLE_ENTITY, "overrides.workers", "from 1"),
            ("negative duration", json!({"template_id": template_id, "overrides": {"duration_seconds": -1}}),
                StatusCode::UNPROCESSABLE_ENTITY, "overrides.duration_seconds", "greater than 0"),
            ("unknown override", json!({"template_id": template_id, "overrides": {"threads": 4}}),
                StatusCode::UNPROCESSABLE_ENTITY, "overrides.threads", "unknown field"),
            ("inline wrong type", json!({"template": {"name": "x", "target": {"kind": 5, "table": "items"}, "workload": {"operations": []}}}),
                StatusCode::UNPROCESSABLE_ENTITY, "template.target.kind", "invalid type"),
            ("inline missing field", json!({"template": {"name": "x", "target": {"kind": "postgres", "table": "items"}}}),
                StatusCode::UNPROCESSABLE_ENTITY, "template.workload", "missing field"),
        ];
        for (case, body, status, field, message) in &cases {
            let response = server.post("/api/runs", body).await;
            assert_error(case, &response, *status, field, message);
        }

        let mut unknown_connection = inline_template("bad connection", 1, 0.0, 1.0);
        unknown_connection["target"]["connection"] = json!("nope");
        let mut unknown_table = inline_template("bad table", 1, 0.0, 1.0);
        unknown_table["target"]["table"] = json!("no_such_table");
        let mut bad_sql = inline_template("bad sql", 1, 0.0, 1.0);
        bad_sql["workload"]["operations"][0]["sql"] = json!("SELECT note FROM {table} WHER id = $1");
        let target_cases = [
            ("unknown connection", unknown_connection, "template.target.connection", "nope"),
            ("unknown table", unknown_table, "template.target.table", "no_such_table"),
            ("rejected SQL", bad_sql, "template.workload.operations[0].sql", "rejected"),
        ];
        for (case, inline, field, message) in target_cases {
            let response = server.post("/api/runs", &json!({"template": inline})).await;
            assert_error(case, &response, StatusCode::UNPROCESSABLE_ENTITY, field, message);
        }
        let mut stored_bad_table = template("stored bad table", 1, 0.0, 1.0);
        stored_bad_table["target"]["table"] = json!("no_such_table");
        let (status, stored) = server.post("/api/templates", &stored_bad_table).await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        let response = server.post("/api/runs", &json!({"template_id": stored["template_id"]})).await;
        assert_error("stored template, unknown table", &response, StatusCode::UNPROCESSABLE_ENTITY, "target.table", "no_such_table");

        let (_, runs) = server.get("/api/runs").await;
        assert_eq!(runs["runs"], json!([]), "no failed create wrote a run: {runs}");

        // POST /api/runs/{id}/start and /stop
        let case = server.post("/api/runs/no-such-run/start", &json!({})).await;
        assert_error("start unknown run", &case, StatusCode::NOT_FOUND, "run_id", "no-such-run");
        let case = server.send(Method::POST, "/api/runs/no-such-run/stop", None, None).await;
        assert_error("stop unknown run", &case, StatusCode::NOT_FOUND, "run_id", "no-such-run");

        let run_id = server.create_run(&json!({"template_id": template_id})).await;
        let case = server.delete(&format!("/api/templates/{template_id}")).await;
        assert_error("DELETE a template in use", &case, StatusCode::CONFLICT, "template_id", &run_id);
        let case = server.post(&format!("/api/runs/{run_id}/stop"), &json!({"force": "yes"})).await;
        assert_error("stop force wrong type", &case, StatusCode::UNPROCESSABLE_ENTITY, "force", "invalid type");
        let case = server.post(&format!("/api/runs/{run_id}/stop"), &json!({"forse": true})).await;
        assert_error("stop unknown field", &case, StatusCode::UNPROCESSABLE_ENTITY, "forse", "unknown field");
        let case = server.send(Method::POST, &format!("/api/runs/{run_id}/stop"), Some("text/plain"), Some("now".to_owned())).await;
        assert_error("stop text body", &case, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type", "JSON");
        let case = server.post(&format!("/api/runs/{run_id}/stop"), &json!({"force": true})).await;
        assert_error("force a run not started here", &case, StatusCode::CONFLICT, "force", "without force");
        assert_eq!(server.run_status(&run_id).await, "PREPARED", "the rejected stops changed nothing");

        let (status, stopped) = server.send(Method::POST, &format!("/api/runs/{run_id}/stop"), None, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{stopped}");
        assert_eq!(stopped["status"], "CANCELLED", "a PREPARED run is cancelled at once");
        let case = server.send(Method::POST, &format!("/api/runs/{run_id}/stop"), None, None).await;
        assert_error("stop twice", &case, StatusCode::CONFLICT, "status", "already ended");
        let case = server.post(&format!("/api/runs/{run_id}/start"), &json!({})).await;
        assert_error("start a cancelled run", &case, StatusCode::CONFLICT, "status", "PREPARED");
        assert!(worker_pids(&run_id).is_empty(), "no worker was started");
        let (status, _) = server.delete(&format!("/api/templates/{template_id}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "the template is free once its run ended");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_lifecycle_and_results() {
    within_timeout(async {
        let target = pg_target().await;
        let server = Server::start(ServerOptions { target: Some(target), ..Default::default() }).await;
        let (_, saved) = server.post("/api/templates", &template("lifecycle lookup", 4, 0.0, 60.0)).await;
        let template_id = saved["template_id"].as_str().unwrap().to_owned();

        let overrides = json!({"workers": 2, "connections": 2, "warmup_seconds": 1, "duration_seconds": 3});
        let (status, created) =
            server.post("/api/runs", &json!({"template_id": template_id, "overrides": overrides})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let run_id = created["run_id"].as_str().unwrap().to_owned();
        server.run_ids.lock().unwrap().push(run_id.clone());
        assert_eq!(created["status"], "PREPARED");
        assert_eq!(created["total_workers_expected"], 2);

        let (status, run) = server.get(&format!("/api/runs/{run_id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(run["scenario_config"]["template"]["workload"]["duration_seconds"], 3.0, "overrides applied: {run}");
        assert_eq!(run["started_here"], false);

        let (status, started) = server.post(&format!("/api/runs/{run_id}/start"), &json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        let again = server.post(&format!("/api/runs/{run_id}/start"), &json!({})).await;
        assert_error("start twice", &again, StatusCode::CONFLICT, "status", "already started");
        let (_, health) = server.get("/health").await;
        assert_eq!(health["orchestrator"]["active_runs"], 1, "{health}");
        server.wait_for_status(&run_id, "COMPLETED", Duration::from_secs(90)).await;
        assert!(worker_pids(&run_id).is_empty(), "every worker exited");

        let (_, completed) = server.get("/api/runs?status=COMPLETED").await;
        assert_eq!(completed["runs"][0]["run_id"], json!(run_id), "{completed}");
        let (_, by_template) = server.get(&format!("/api/runs?template_id={template_id}&limit=5")).await;
        assert_eq!(by_template["runs"].as_array().map(Vec::len), Some(1));
        let (_, by_name) = server.get("/api/runs?name=LIFECYCLE").await;
        assert_eq!(by_name["runs"].as_array().map(Vec::len), Some(1), "name matches case-insensitively");
        let (_, none) = server.get("/api/runs?status=FAILED").await;
        assert_eq!(none["runs"], json!([]));
        let (_, paged) = server.get("/api/runs?offset=1").await;
        assert_eq!(paged["runs"], json!([]));
        let case = server.get("/api/runs?status=DONE").await;
        assert_error("bad status filter", &case, StatusCode::BAD_REQUEST, "status", "DONE");
        let case = server.get("/api/runs?sort=name").await;
        assert_error("unknown filter", &case, StatusCode::BAD_REQUEST, "sort", "unknown query parameter");

        let (status, parent) = server.get(&format!("/api/tests/{run_id}")).await;
        assert_eq!(status, StatusCode::OK, "{parent}");
        assert_eq!(parent["kind"], "parent");
        assert_eq!(parent["run"]["status"], "COMPLETED");
        assert_eq!(parent["result"]["status"], "COMPLETED");
        assert!(parent["result"]["total_operations"].as_i64().unwrap() > 0, "{parent}");
        assert!(parent["result"]["latency"]["p95_ms"].is_number(), "{parent}");
        assert!(parent["result"]["latency_by_kind"]["POINT_LOOKUP"]["p95_ms"].is_number(), "{parent}");

        let (status, series) = server.get(&format!("/api/tests/{run_id}/timeseries?phase=MEASUREMENT")).await;
        assert_eq!(status, StatusCode::OK, "{series}");
        let snapshots = series["snapshots"].as_array().unwrap();
        let test_ids: BTreeSet<&str> = snapshots.iter().filter_map(|s| s["test_id"].as_str()).collect();
        assert_eq!(test_ids.len(), 2, "snapshots of both workers: {test_ids:?}");
        assert!(snapshots.iter().all(|s| s["phase"] == "MEASUREMENT" && s.get("latency_histogram").is_none()));
        let child_id = test_ids.iter().next().unwrap().to_string();

        let (status, child) = server.get(&format!("/api/tests/{child_id}")).await;
        assert_eq!(status, StatusCode::OK, "{child}");
        assert_eq!(child["kind"], "child");
        assert_eq!(child["run_id"], json!(run_id));
        let worker_id = child["worker_id"].as_str().unwrap().to_owned();
        assert_eq!(child["result"]["worker_id"], json!(worker_id));
        assert_eq!(child["heartbeat"]["worker_id"], json!(worker_id));
        assert_eq!(child["heartbeat"]["status"], "COMPLETED");
        let (_, child_series) = server.get(&format!("/api/tests/{child_id}/timeseries")).await;
        assert!(
            child_series["snapshots"].as_array().unwrap().iter().all(|s| s["worker_id"] == json!(worker_id)),
            "{child_series}"
        );
        let (_, limited) = server.get(&format!("/api/tests/{run_id}/timeseries?limit=1")).await;
        assert_eq!(limited["snapshots"].as_array().map(Vec::len), Some(1));
        assert_eq!(limited["next_offset"], 1);

        let (status, logs) = server.get(&format!("/api/tests/{run_id}/logs")).await;
        assert_eq!(status, StatusCode::OK);
        let messages: Vec<&str> =
            logs["logs"].as_array().unwrap().iter().filter_map(|l| l["message"].as_str()).collect();
        assert!(messages.iter().any(|m| m.contains("run ended COMPLETED")), "{messages:?}");
        let (_, info) = server.get(&format!("/api/tests/{run_id}/logs?level=info")).await;
        assert!(info["logs"].as_array().unwrap().iter().all(|l| l["level"] == "INFO"));
        let case = server.get(&format!("/api/tests/{run_id}/logs?level=loud")).await;
        assert_error("bad log level", &case, StatusCode::BAD_REQUEST, "level", "INFO, WARN or ERROR");

        let mut socket = connect(&server, &run_id).await;
        let (_, last) = next_update(&mut socket).await.expect("one update of the ended run");
        assert_eq!(last["data"]["run"]["status"], "COMPLETED", "{last}");
        assert_eq!(last["data"]["workers"].as_array().map(Vec::len), Some(2), "{last}");
        assert!(next_update(&mut socket).await.is_none(), "the stream of an ended run closes after one update");

        let (status, warehouse) = server.get(&format!("/api/tests/{run_id}/warehouse")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(warehouse["polls"], json!([]), "PostgreSQL targets have no warehouse");
        let case = server.get("/api/tests/no-such-test").await;
        assert_error("unknown test", &case, StatusCode::NOT_FOUND, "test_id", "no-such-test");
        let case = server.get("/api/tests/no-such-test/logs").await;
        assert_error("logs of an unknown test", &case, StatusCode::NOT_FOUND, "test_id", "no-such-test");

        let second = server.create_run(&json!({"template_id": template_id})).await;
        let (status, compared) = server.get(&format!("/api/compare?runs={run_id},{second}")).await;
        assert_eq!(status, StatusCode::OK, "{compared}");
        let entries = compared["runs"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["run"]["run_id"], json!(run_id));
        assert_eq!(entries[0]["result"]["total_operations"], parent["result"]["total_operations"]);
        assert_eq!(entries[1]["run"]["status"], "PREPARED");
        assert_eq!(entries[1]["template"]["name"], "lifecycle lookup");
        let case = server.get(&format!("/api/compare?runs={run_id},no-such-run")).await;
        assert_error("compare unknown run", &case, StatusCode::NOT_FOUND, "runs", "no-such-run");
        let case = server.get("/api/compare?runs=a,b,c,d,e,f").await;
        assert_error("compare six runs", &case, StatusCode::BAD_REQUEST, "runs", "at most 5");
        let case = server.get("/api/compare").await;
        assert_error("compare nothing", &case, StatusCode::BAD_REQUEST, "runs", "missing");
    })
    .await;
}

// The live stream.

/// A WebSocket client of one run.
type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, run_id: &str) -> Socket {
    let (socket, response) = tokio_tungstenite::connect_async(server.ws_url(&format!("/ws/test/{run_id}")))
        .await
        .expect("open the live stream");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS.as_u16());
    socket
}

/// Reads the next text message, with the time it arrived, or `None` once
/// the server closed the stream.
async fn next_update(socket: &mut Socket) -> Option<(Instant, Value)> {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a live message within 10 s")?;
        match message.expect("read the live stream") {
            Message::Text(text) => {
                return Some((Instant::now(), serde_json::from_str(&text).expect("each message is JSON")))
            }
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Checks that a message is a full measuring snapshot of a two-worker
/// run and that the run's rate is the sum of the workers' rates.
#[track_caller]
fn assert_full_snapshot(message: &Value, run_id: &str) {
    assert_eq!(message["event"], "RUN_UPDATE", "{message}");
    let data = &message["data"];
    for key in ["run", "workers", "warehouse", "find_max"] {
        assert!(data.get(key).is_some(), "data.{key} is present: {message}");
    }

    let run = &data["run"];
    assert_eq!(run["run_id"], json!(run_id));
    assert_eq!(run["test_id"], json!(run_id));
    assert_eq!(run["status"], "RUNNING");
    assert_eq!(run["phase"], "MEASUREMENT");
    assert!(run["timestamp"].is_string(), "{run}");
    assert!(run["elapsed_seconds"].is_number(), "{run}");
    assert_eq!(run["worker_count"], 2);
    assert_eq!(run["workers_healthy"], 2);
    assert_eq!(run["warming_up"], false);
    assert_eq!(run["latency_aggregation_method"], "merged_histogram");
    for (block, keys) in [
        ("ops", &["total", "current_per_sec"][..]),
        ("operations", &["reads", "writes"][..]),
        ("latency", &["p50", "p95", "p99", "avg"][..]),
        ("latency_worst_worker", &["p95", "p99"][..]),
        ("errors", &["count", "rate"][..]),
        ("connections", &["active", "target"][..]),
    ] {
        for key in keys {
            assert!(run[block][key].is_number(), "run.{block}.{key} is a number: {run}");
        }
    }

    let workers = data["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{message}");
    for worker in workers {
        for key in
            ["worker_id", "worker_group_id", "status", "phase", "health", "last_heartbeat", "last_heartbeat_ago_s"]
        {
            assert!(!worker[key].is_null(), "worker {key} is set: {worker}");
        }
        for key in ["qps", "p95_latency_ms", "error_count", "active_connections", "target_connections"] {
            assert!(worker["metrics"][key].is_number(), "worker metrics.{key}: {worker}");
        }
        for key in ["cpu_percent", "memory_percent"] {
            assert!(worker["metrics"].get(key).is_some(), "worker metrics.{key}: {worker}");
        }
    }

    let sum: f64 = workers.iter().map(|worker| worker["metrics"]["qps"].as_f64().unwrap()).sum();
    let current = run["ops"]["current_per_sec"].as_f64().unwrap();
    assert!((current - sum).abs() < 1e-9, "run.ops.current_per_sec {current} equals the workers' sum {sum}");
    assert!(current > 0.0, "{run}");
}

/// Checks that messages arrived 1 s +- 250 ms apart. The failure message
/// also gives the gaps between the server's timestamps, which tell a late
/// tick from a late delivery.
#[track_caller]
fn assert_one_second_apart(received: &[(Instant, Value)], who: &str) {
    let arrival_gaps: Vec<Duration> = received.windows(2).map(|pair| pair[1].0 - pair[0].0).collect();
    let stamps: Vec<chrono::DateTime<chrono::Utc>> = received
        .iter()
        .map(|(_, message)| {
            message["data"]["run"]["timestamp"].as_str().and_then(|t| t.parse().ok()).expect("run.timestamp")
        })
        .collect();
    let server_gaps: Vec<i64> = stamps.windows(2).map(|pair| (pair[1] - pair[0]).num_milliseconds()).collect();
    println!("{who}: arrival gaps {arrival_gaps:?}, server timestamp gaps (ms) {server_gaps:?}");
    for gap in &arrival_gaps {
        assert!(
            *gap >= Duration::from_millis(750) && *gap <= Duration::from_millis(1250),
            "{who}: messages arrived {gap:?} apart, expected 1 s +- 250 ms; arrival gaps {arrival_gaps:?}, \
             server timestamp gaps (ms) {server_gaps:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_sends_a_snapshot_each_second() {
    within_timeout(async {
        let target = pg_target().await;
        let server = Server::start(ServerOptions { target: Some(target), ..Default::default() }).await;
        let (status, saved) = server.post("/api/templates", &template("live lookup", 2, 3.0, 120.0)).await;
        assert_eq!(status, StatusCode::CREATED, "{saved}");
        let run_id =
            server.create_run(&json!({"template_id": saved["template_id"], "overrides": {"workers": 2}})).await;

        let mut socket = connect(&server, &run_id).await;
        let (_, first) = next_update(&mut socket).await.expect("a message for the PREPARED run");
        assert_eq!(first["data"]["run"]["status"], "PREPARED", "{first}");
        assert!(first["data"]["run"]["latency"].is_null());
        let (status, started) = server.post(&format!("/api/runs/{run_id}/start"), &json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");

        let mut saw_warmup = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "no measuring snapshot within 60 s");
            let (_, message) = next_update(&mut socket).await.expect("the stream stays open");
            let run = &message["data"]["run"];
            if run["phase"] == "WARMUP" {
                assert_eq!(run["warming_up"], true, "{run}");
                assert!(run["latency"].is_null(), "no latency during warmup: {run}");
                assert!(run["ops"].is_null(), "no ops during warmup: {run}");
                saw_warmup = true;
            }
            let both_measuring = message["data"]["workers"].as_array().is_some_and(|workers| {
                workers.len() == 2
                    && workers.iter().all(|w| w["phase"] == "MEASUREMENT" && w["metrics"]["qps"].as_f64() > Some(0.0))
            });
            if run["phase"] == "MEASUREMENT" && !run["ops"].is_null() && both_measuring {
                break;
            }
        }
        assert!(saw_warmup, "the stream showed the warmup");

        let mut received = Vec::new();
        for _ in 0..6 {
            let (at, message) = next_update(&mut socket).await.expect("the stream stays open");
            assert_full_snapshot(&message, &run_id);
            received.push((at, message));
        }
        assert_one_second_apart(&received, "one client");

        let (status, stopping) = server.send(Method::POST, &format!("/api/runs/{run_id}/stop"), None, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{stopping}");
        let mut last = None;
        while let Some((_, message)) = next_update(&mut socket).await {
            last = Some(message);
        }
        let last = last.expect("updates until the end");
        assert_eq!(last["data"]["run"]["status"], "CANCELLED", "the final snapshot is terminal: {last}");
        assert_eq!(last["data"]["workers"].as_array().map(Vec::len), Some(2), "the final snapshot is full: {last}");
        assert!(socket.next().await.is_none_or(|message| message.is_err() || matches!(message, Ok(Message::Close(_)))));
        assert!(worker_pids(&run_id).is_empty(), "every worker exited");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_stop_kills_the_workers_and_says_so() {
    within_timeout(async {
        let target = pg_target().await;
        let server = Server::start(ServerOptions { target: Some(target), ..Default::default() }).await;
        // Each query outlasts the drain, so only a kill ends the workers early.
        let mut slow = template("slow lookup", 2, 0.0, 120.0);
        slow["workload"]["operations"][0]["sql"] = json!("SELECT note, pg_sleep(60) FROM {table} WHERE id = $1");
        let (status, saved) = server.post("/api/templates", &slow).await;
        assert_eq!(status, StatusCode::CREATED, "{saved}");
        let run_id =
            server.create_run(&json!({"template_id": saved["template_id"], "overrides": {"workers": 2}})).await;
        let (status, started) = server.post(&format!("/api/runs/{run_id}/start"), &json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        server.wait_for_status(&run_id, "RUNNING", Duration::from_secs(60)).await;
        eventually(Duration::from_secs(30), "two worker processes", || async {
            (worker_pids(&run_id).len() == 2).then_some(())
        })
        .await;

        let (status, stopping) = server.post(&format!("/api/runs/{run_id}/stop"), &json!({"force": true})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{stopping}");
        let run = eventually(Duration::from_secs(60), "the forced run to end", || async {
            let (_, run) = server.get(&format!("/api/runs/{run_id}")).await;
            let status = run["status"].as_str().unwrap_or_default();
            matches!(status, "COMPLETED" | "FAILED" | "CANCELLED").then_some(run)
        })
        .await;
        let reason = run["status_reason"].as_str().unwrap_or_default();
        assert!(reason.contains("stop forced: killed the workers still running"), "{run}");
        assert!(worker_pids(&run_id).is_empty(), "every worker was killed");
        let (_, logs) = server.get(&format!("/api/tests/{run_id}/logs")).await;
        assert!(logs.to_string().contains("stop forced"), "the run log tells of the kill: {logs}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_does_not_slow_the_others() {
    within_timeout(async {
        let target = pg_target().await;
        let server = Server::start(ServerOptions { target: Some(target), ..Default::default() }).await;
        let inline = inline_template("fan-out lookup", 2, 0.0, 120.0);
        let run_id = server.create_run(&json!({"template": inline, "overrides": {"workers": 2}})).await;
        let (status, _) = server.post(&format!("/api/runs/{run_id}/start"), &json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        server.wait_for_status(&run_id, "RUNNING", Duration::from_secs(60)).await;

        // This client never reads a message.
        let stalled = connect(&server, &run_id).await;
        // Each reader starts reading as soon as it is connected, so that
        // arrival times are not skewed by messages waiting in its socket.
        let mut tasks = Vec::new();
        for _ in 0..19 {
            let mut socket = connect(&server, &run_id).await;
            tasks.push(tokio::spawn(async move {
                let mut received = Vec::new();
                for _ in 0..6 {
                    received.push(next_update(&mut socket).await.expect("the stream stays open"));
                }
                received
            }));
        }
        let mut timestamps = BTreeSet::new();
        for (index, task) in tasks.into_iter().enumerate() {
            let received = task.await.expect("a reader task");
            assert_one_second_apart(&received, &format!("reader {index}"));
            timestamps.extend(received.iter().map(|(_, message)| message["data"]["run"]["timestamp"].to_string()));
        }
        // One update per tick is shared by every client: 19 readers over
        // six ticks see at most seven distinct updates (they subscribed
        // over at most two ticks).
        assert!(timestamps.len() <= 7, "{} distinct updates: each client got its own", timestamps.len());

        let (_, health) = server.get("/health").await;
        assert_eq!(health["controller"]["live_feeds"], 1, "one producer for the run: {health}");
        drop(stalled);
        let (status, _) = server.send(Method::POST, &format!("/api/runs/{run_id}/stop"), None, None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        server.wait_for_status(&run_id, "CANCELLED", Duration::from_secs(60)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_of_unknown_run_is_404() {
    within_timeout(async {
        let server = Server::start(ServerOptions::default()).await;
        match tokio_tungstenite::connect_async(server.ws_url("/ws/test/no-such-run")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
            other => panic!("expected HTTP 404, got {other:?}"),
        }
        let plain = server.get("/ws/test/no-such-run").await;
        assert_error("plain GET of the stream", &plain, StatusCode::BAD_REQUEST, "Upgrade", "");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_runs_it_started() {
    within_timeout(async {
        let target = pg_target().await;
        let mut server = Server::start(ServerOptions { target: Some(target), ..Default::default() }).await;
        let inline = inline_template("shutdown lookup", 2, 0.0, 120.0);
        let run_id = server.create_run(&json!({"template": inline, "overrides": {"workers": 2}})).await;
        let (status, _) = server.post(&format!("/api/runs/{run_id}/start"), &json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        server.wait_for_status(&run_id, "RUNNING", Duration::from_secs(60)).await;
        let mut socket = connect(&server, &run_id).await;
        assert_eq!(worker_pids(&run_id).len(), 2);

        let mut child = server.child.take().expect("the server runs");
        Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status().unwrap();
        let mut last = None;
        while let Some((_, message)) = next_update(&mut socket).await {
            last = Some(message);
        }
        let code = support::wait_with_timeout(&mut child, STOP_TIMEOUT);
        assert_eq!(code, Some(0), "stderr:\n{}", server.stderr());
        let last = last.expect("updates until the run ended");
        assert_eq!(last["data"]["run"]["status"], "CANCELLED", "clients see the run end: {last}");
        assert!(worker_pids(&run_id).is_empty(), "no worker outlives the server");

        let store_url = format!("sqlite://{}", server.dir.path().join("store.db").display());
        let store = unibench_store::Store::connect(&store_url.parse().unwrap()).await.unwrap();
        let run = store.get_run(&run_id).await.unwrap().expect("the run exists");
        assert_eq!(run.status, unibench_model::RunStatus::Cancelled);
        assert!(server.stderr().contains("unibench serve stopped"), "{}", server.stderr());
    })
    .await;
}
