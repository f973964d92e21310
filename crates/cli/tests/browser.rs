//! The web UI in headless Chromium, driven over WebDriver (chromedriver).
//! The real `unibench serve` runs on a fresh SQLite store with a
//! PostgreSQL target loaded by `pgbench -i`. The test plays a user who
//! creates a template, runs it, watches it live, stops it and finds it in
//! the history.
//!
//! Chromium runs with networking features off and a host resolver that
//! maps every name to nothing, so the page can reach only the loopback
//! controller. Screenshots go to `<target dir>/browser-screenshots/`.
//! Needs the Debian packages `chromium` and `chromium-driver`, which
//! scripts/test.sh installs.

mod support;

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// Hard limit for the whole test. When it passes, every process the test
/// started is killed.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Maximum wait for one thing to appear on the page.
const UI_TIMEOUT: Duration = Duration::from_secs(60);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Control-plane timings shrunk so that a stopped run ends in seconds. The
/// health thresholds keep their defaults: on a busy machine an SQLite
/// store can delay a heartbeat by several seconds, and a worker declared
/// dead would fail the run.
fn timings() -> String {
    json!({
        "start_wait_seconds": 30.0,
        "registration_seconds": 30.0,
        "drain_seconds": 10.0,
        "sigterm_after_drain_seconds": 2.0,
        "reconcile_seconds": 1.0
    })
    .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process killed, with its whole process group, when dropped.
struct Guarded {
    name: &'static str,
    child: Option<Child>,
    /// Text that appears only in the command lines of processes this test
    /// started (a unique directory), to find their descendants.
    marker: Option<String>,
}

impl Guarded {
    fn spawn(name: &'static str, mut command: Command, marker: Option<String>) -> Guarded {
        command.stdin(Stdio::null()).process_group(0);
        let child = command.spawn().unwrap_or_else(|error| panic!("start {name}: {error}"));
        Guarded { name, child: Some(child), marker }
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit.
    fn terminate(&mut self, grace: Duration) {
        let Some(child) = self.child.as_mut() else { return };
        Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status().ok();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not exit within {grace:?} of SIGTERM; killing it", self.name);
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The process group id is the child's pid (process_group(0)).
            Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]).status().ok();
            child.kill().ok();
            child.wait().ok();
        }
        if let Some(marker) = &self.marker {
            kill_matching(marker);
        }
    }
}

/// Kills the processes whose command line contains `marker`.
fn kill_matching(marker: &str) {
    let output = Command::new("pgrep").args(["-f", marker]).output().expect("run pgrep");
    for pid in String::from_utf8_lossy(&output.stdout).lines().filter_map(|line| line.trim().parse::<u32>().ok()) {
        Command::new("kill").args(["-s", "KILL", &pid.to_string()]).status().ok();
    }
}

/// A fresh SQLite store, a pgbench target and a connections file naming it.
struct Setup {
    dir: tempfile::TempDir,
    store_url: String,
    connections_file: PathBuf,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", dir.path().join("store.db").display());
        let output = support::run(
            {
                let mut command = support::unibench();
                command.args(["schema", "apply", "--store", &store_url]);
                command
            },
            Duration::from_secs(60),
        );
        assert!(output.success(), "schema apply failed: {}", output.stderr);

        let (_, connections_file) = support::pgbench_target(dir.path()).await;
        Setup { dir, store_url, connections_file }
    }

    /// Starts `unibench serve` on a free loopback port and returns it with
    /// its base URL.
    fn serve(&self) -> (Guarded, String) {
        let log = self.dir.path().join("serve.log");
        let mut command = support::unibench();
        command
            .args(["serve", "--bind", "127.0.0.1:0", "--store", &self.store_url])
            .arg("--connections-file")
            .arg(&self.connections_file)
            .env("UNIBENCH_HOME", self.dir.path())
            .env("UNIBENCH_TIMINGS", timings())
            .env("UNIBENCH_LOG", "info")
            .env_remove(unibench_controller::TOKEN_ENV)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let server = Guarded::spawn("unibench serve", command, Some(self.dir.path().display().to_string()));

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let address = text.lines().find_map(|line| {
                line.split_once("listening on ")
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_owned())
            });
            if let Some(address) = address {
                return (server, address);
            }
            assert!(Instant::now() < deadline, "unibench serve printed no address within 30 s:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }
}

/// chromedriver on a free loopback port.
fn start_chromedriver(profile: &Path) -> (Guarded, u16) {
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "{CHROMIUM} and {CHROMEDRIVER} are required: apt-get install chromium chromium-driver (scripts/test.sh does)"
    );
    let port = free_port();
    let mut command = Command::new(CHROMEDRIVER);
    command.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
    let driver = Guarded::spawn("chromedriver", command, Some(profile.display().to_string()));

    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (driver, port)
}

async fn connect_browser(port: u16, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-default-browser-check",
        // Every host but 127.0.0.1 resolves to nothing.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--window-size=1366,1600",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
    });
    let Value::Object(capabilities) = capabilities else { unreachable!() };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("start a Chromium session through chromedriver")
}

/// Polls `script` (a function body returning a JSON value) until `accept`
/// returns true for its result, and returns that result.
async fn wait_for_js(client: &Client, what: &str, script: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + UI_TIMEOUT;
    loop {
        let last = match client.execute(script, vec![]).await {
            Ok(value) if accept(&value) => return value,
            Ok(value) => value,
            Err(error) => Value::String(error.to_string()),
        };
        assert!(Instant::now() < deadline, "timed out after {UI_TIMEOUT:?} waiting for {what}; last value: {last}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn find(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(UI_TIMEOUT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no element `{css}`: {error}"))
}

async fn type_into(client: &Client, css: &str, text: &str) {
    let element = find(client, css).await;
    element.clear().await.unwrap();
    element.send_keys(text).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    find(client, css).await.click().await.unwrap_or_else(|error| panic!("click `{css}`: {error}"));
}

async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("take a screenshot");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Text of every element matching `css`.
fn texts_script(css: &str) -> String {
    format!("return [...document.querySelectorAll('{css}')].map((element) => element.textContent.trim());")
}

/// Prints the controller's log when the test fails.
struct LogOnPanic<'a>(&'a Setup);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("unibench serve log:\n{}", self.0.server_log());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_runs_and_stops_a_benchmark() {
    let setup = Setup::new().await;
    let _log = LogOnPanic(&setup);
    let (mut server, base) = setup.serve();
    let profile = setup.dir.path().join("chromium-profile");
    let (mut driver, port) = start_chromedriver(&profile);

    let outcome = tokio::time::timeout(TEST_TIMEOUT, async {
        let client = connect_browser(port, &profile).await;
        let run_id = drive_ui(&client, &base).await;
        client.close().await.ok();
        run_id
    })
    .await;
    driver.terminate(Duration::from_secs(5));
    let run_id = outcome.unwrap_or_else(|_| panic!("the browser test did not finish within {TEST_TIMEOUT:?}"));

    server.terminate(Duration::from_secs(30));
    let workers = Command::new("pgrep").args(["-f", &format!("worker --run-id {run_id} ")]).output().unwrap();
    assert!(workers.stdout.is_empty(), "worker processes remain after the run was cancelled");
}

/// Drives the user's path through the UI and returns the run id.
async fn drive_ui(client: &Client, base: &str) -> String {
    client.goto(&format!("{base}/")).await.unwrap();
    wait_for_js(client, "the templates page", &texts_script("main h1"), |value| value[0] == "Templates").await;

    import_template(client).await;
    create_template(client).await;
    let run_id = create_run(client).await;
    watch_live_run(client).await;
    stop_run(client).await;
    check_history(client, base, &run_id).await;
    run_id
}

async fn import_template(client: &Client) {
    let yaml = "name: imported lookups\ntarget:\n  kind: postgres\n  connection: local-pg\n  table: pgbench_accounts\n  key_column: aid\n\
                workload:\n  operations:\n    - kind: POINT_LOOKUP\n      weight_pct: 100\n      sql: SELECT abalance FROM {table} WHERE aid = $1\n      params: [key]\n";
    click(client, "details.panel summary").await;
    type_into(client, "[data-testid=template-import-text]", "name: [unclosed").await;
    click(client, "[data-testid=template-import-submit]").await;
    wait_for_js(client, "the import error", &texts_script("[data-testid=import-errors] li"), |value| {
        value.as_array().is_some_and(|errors| !errors.is_empty())
    })
    .await;

    type_into(client, "[data-testid=template-import-text]", yaml).await;
    click(client, "[data-testid=template-import-submit]").await;
    wait_for_js(client, "the imported template in the list", &texts_script("[data-testid=template-row] a"), |value| {
        value.as_array().is_some_and(|names| names.iter().any(|name| name == "imported lookups"))
    })
    .await;
}

async fn create_template(client: &Client) {
    click(client, "[data-testid=template-new]").await;
    type_into(client, "[data-testid=template-name]", "browser lookups").await;
    type_into(client, "[data-testid=target-connection]", "local-pg").await;
    type_into(client, "[data-testid=target-table]", "pgbench_accounts").await;
    type_into(client, "[data-testid=target-key-column]", "aid").await;
    find(client, "[data-testid=preset-select]").await.select_by_value("READ_ONLY").await.unwrap();
    click(client, "[data-testid=preset-apply]").await;
    let sql = wait_for_js(
        client,
        "the preset's SQL",
        "return [...document.querySelectorAll('[data-testid=op-sql]')].map((e) => e.value);",
        |value| value.as_array().is_some_and(|rows| rows.len() == 2),
    )
    .await;
    assert_eq!(sql[0], "SELECT * FROM {table} WHERE aid = $1");

    // Client-side check: the weights no longer sum to 100.
    type_into(client, "[data-testid=op-weight]", "80").await;
    click(client, "[data-testid=template-save]").await;
    let errors = wait_for_js(
        client,
        "the weight-sum error",
        "return [...document.querySelectorAll('[data-testid=field-error]')].map((e) => e.dataset.for);",
        |value| value.as_array().is_some_and(|fields| !fields.is_empty()),
    )
    .await;
    assert_eq!(errors, json!(["workload.operations[*].weight_pct"]));
    type_into(client, "[data-testid=op-weight]", "90").await;

    // The API's check: the client accepts this generator but the
    // controller rejects it. The 422 names the parameter, and the message
    // shows next to that input.
    let params = client.find_all(Locator::Css("[data-testid=op-params]")).await.unwrap();
    params[1].clear().await.unwrap();
    params[1].send_keys("random_string(0)").await.unwrap();
    click(client, "[data-testid=template-save]").await;
    let placed = wait_for_js(
        client,
        "the API's field error",
        "const error = document.querySelector('[data-testid=field-error]'); \
         return error && [error.dataset.for, error.previousElementSibling.dataset.field, error.textContent];",
        // The weight-sum error stays on the page until the API responds.
        |value| value.is_array() && value[0] != "workload.operations[*].weight_pct",
    )
    .await;
    assert_eq!(placed[0], "workload.operations[1].params[0]", "{placed}");
    assert_eq!(placed[1], "workload.operations[1].params", "the error sits after the parameters input: {placed}");
    save_screenshot(client, "template-editor.png").await;
    params[1].clear().await.unwrap();
    params[1].send_keys("key").await.unwrap();

    type_into(client, "[data-testid=concurrent-connections]", "4").await;
    type_into(client, "[data-testid=warmup-seconds]", "5").await;
    type_into(client, "[data-testid=duration-seconds]", "300").await;
    // Logging every query would make the SQLite store the bottleneck.
    type_into(client, "[data-testid=query-log]", "sample:0.01").await;
    click(client, "[data-testid=template-save]").await;
    wait_for_js(client, "the saved template in the list", &texts_script("[data-testid=template-row] a"), |value| {
        value.as_array().is_some_and(|names| names.iter().any(|name| name == "browser lookups"))
    })
    .await;
    save_screenshot(client, "templates.png").await;
}

async fn create_run(client: &Client) -> String {
    let run_button =
        "//tr[@data-testid='template-row'][.//a[text()='browser lookups']]//button[@data-testid='template-run']";
    client.find(Locator::XPath(run_button)).await.expect("the template's Run button").click().await.unwrap();
    type_into(client, "[data-testid=override-workers]", "2").await;
    click(client, "[data-testid=run-create]").await;
    let hash = wait_for_js(client, "the run page", "return location.hash;", |value| {
        value.as_str().is_some_and(|hash| hash.starts_with("#/runs/"))
    })
    .await;
    let run_id = hash.as_str().unwrap().trim_start_matches("#/runs/").to_owned();
    wait_for_js(
        client,
        "a PREPARED run",
        "return document.querySelector('[data-testid=run-status]')?.dataset.status;",
        |value| value == "PREPARED",
    )
    .await;
    run_id
}

async fn watch_live_run(client: &Client) {
    click(client, "[data-testid=run-start]").await;
    wait_for_js(
        client,
        "the warmup notice on the cards",
        &texts_script("[data-testid=qps-value], [data-testid=p95-value]"),
        |value| value == &json!(["warming up", "warming up"]),
    )
    .await;
    wait_for_js(
        client,
        "two healthy workers",
        "return [...document.querySelectorAll('[data-testid=worker-cell]')].map((cell) => cell.dataset.health);",
        |value| value == &json!(["HEALTHY", "HEALTHY"]),
    )
    .await;
    wait_for_js(
        client,
        "a RUNNING run in MEASUREMENT",
        &texts_script("[data-testid=run-status], [data-testid=run-phase]"),
        |value| value == &json!(["RUNNING", "MEASUREMENT"]),
    )
    .await;
    let qps = wait_for_js(client, "QPS above zero", &texts_script("[data-testid=qps-value]"), |value| {
        value[0].as_str().and_then(|text| text.replace(',', "").parse::<f64>().ok()).is_some_and(|qps| qps > 0.0)
    })
    .await;
    eprintln!("live QPS card: {qps}");
    let method = find(client, "[data-testid=aggregation-method]").await.text().await.unwrap();
    assert!(method.contains("merged histogram"), "{method}");

    click(client, "[data-testid=worker-cell]").await;
    find(client, "[data-testid=worker-detail]").await;
    // Let the charts collect a few seconds of points.
    tokio::time::sleep(Duration::from_secs(4)).await;
    save_screenshot(client, "live-run.png").await;
}

async fn stop_run(client: &Client) {
    click(client, "[data-testid=run-stop]").await;
    wait_for_js(client, "the final CANCELLED status", &texts_script("[data-testid=run-final-status]"), |value| {
        value == &json!(["CANCELLED"])
    })
    .await;
    assert_eq!(find(client, "[data-testid=run-status]").await.text().await.unwrap(), "CANCELLED");
    wait_for_js(
        client,
        "two worker result rows",
        "return document.querySelectorAll('[data-testid=worker-row]').length;",
        |value| value == 2,
    )
    .await;
    save_screenshot(client, "cancelled-run.png").await;
}

async fn check_history(client: &Client, base: &str, run_id: &str) {
    client.goto(&format!("{base}/#/history?status=CANCELLED")).await.unwrap();
    let row = wait_for_js(
        client,
        "the run in the history",
        "return [...document.querySelectorAll('[data-testid=history-row]')].map((row) => [row.dataset.runId, row.dataset.status]);",
        |value| value.as_array().is_some_and(|rows| !rows.is_empty()),
    )
    .await;
    assert_eq!(row, json!([[run_id, "CANCELLED"]]));
    save_screenshot(client, "history.png").await;

    click(client, &format!("[data-testid=history-row][data-run-id='{run_id}'] a")).await;
    let qps = wait_for_js(client, "the stored results", &texts_script("[data-testid=result-qps]"), |value| {
        value[0].as_str().and_then(|text| text.replace(',', "").parse::<f64>().ok()).is_some_and(|qps| qps > 0.0)
    })
    .await;
    eprintln!("final QPS: {qps}");
    wait_for_js(
        client,
        "the per-kind latency rows",
        "return document.querySelectorAll('[data-testid=kind-row]').length;",
        |value| value == 2,
    )
    .await;
    wait_for_js(
        client,
        "the stored QPS chart",
        "return document.querySelectorAll('[data-testid=history-chart-qps] canvas').length;",
        |value| value == 1,
    )
    .await;
    save_screenshot(client, "history-run.png").await;

    client.goto(&format!("{base}/#/compare?runs={run_id}")).await.unwrap();
    wait_for_js(
        client,
        "the comparison table",
        "return document.querySelectorAll('[data-testid=compare-table] tbody tr').length;",
        |value| value.as_u64().is_some_and(|rows| rows >= 10),
    )
    .await;
    save_screenshot(client, "compare.png").await;
}
