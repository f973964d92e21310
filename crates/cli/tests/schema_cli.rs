//! `unibench schema apply` and `unibench schema check` against real stores,
//! and the errors a bad store URL gives.

mod support;

use std::time::Duration;

use support::{run, unibench};

const TIMEOUT: Duration = Duration::from_secs(60);

fn schema(action: &str, store: &str) -> support::Output {
    let mut command = unibench();
    command.args(["schema", action, "--store", store]);
    run(command, TIMEOUT)
}

#[test]
fn sqlite_apply_twice_then_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("fresh.db").display());
    for attempt in 1..=2 {
        let output = schema("apply", &store);
        assert!(output.success(), "apply #{attempt} failed: {output:?}");
    }
    let output = schema("check", &store);
    assert!(output.success(), "{output:?}");
    assert!(output.stdout.contains("schema complete"), "{output:?}");
}

#[test]
fn sqlite_check_names_dropped_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.db");
    let store = format!("sqlite://{}", path.display());
    assert!(schema("apply", &store).success());

    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute_batch("ALTER TABLE WORKER_HEARTBEATS DROP COLUMN LAST_ERROR").unwrap();
    drop(connection);

    let output = schema("check", &store);
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("missing column WORKER_HEARTBEATS.LAST_ERROR"), "{output:?}");
    assert!(output.stderr.contains("1 missing"), "only the dropped column is reported: {output:?}");
}

#[test]
fn sqlite_check_on_empty_file_lists_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("empty.db").display());
    let output = schema("check", &store);
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("missing table RUN_STATUS"), "{output:?}");
    assert!(output.stderr.contains("missing table TEMPLATE_VALUE_POOLS"), "{output:?}");
}

#[tokio::test]
async fn postgres_apply_twice_check_and_dropped_column() {
    let database = support::create_database().await;
    let store = support::database_url(&database);
    for attempt in 1..=2 {
        let output = schema("apply", &store);
        assert!(output.success(), "apply #{attempt} failed: {output:?}");
    }
    let output = schema("check", &store);
    assert!(output.success(), "{output:?}");

    support::pg_execute(Some(&database), "ALTER TABLE test_results.worker_heartbeats DROP COLUMN last_error").await;
    let output = schema("check", &store);
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("missing column test_results.WORKER_HEARTBEATS.LAST_ERROR"), "{output:?}");
}

#[test]
fn default_store_is_file_in_unibench_home() {
    let home = tempfile::tempdir().unwrap();
    let mut command = unibench();
    command.args(["schema", "apply"]).env("UNIBENCH_HOME", home.path());
    let output = run(command, TIMEOUT);
    assert!(output.success(), "{output:?}");
    assert!(home.path().join("unibench.db").exists(), "the default store lives in UNIBENCH_HOME");
}

#[test]
fn store_url_comes_from_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-env.db");
    let mut command = unibench();
    command.args(["schema", "apply"]).env("UNIBENCH_STORE", format!("sqlite://{}", path.display()));
    let output = run(command, TIMEOUT);
    assert!(output.success(), "{output:?}");
    assert!(path.exists());
}

/// Asserts a failed command printed exactly one line, containing `expected`
/// and never the password.
fn assert_one_line_error(output: &support::Output, expected: &str) {
    assert_eq!(output.code, Some(1), "{output:?}");
    let lines: Vec<&str> = output.stderr.lines().filter(|line| !line.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error: {output:?}");
    assert!(lines[0].contains(expected), "expected `{expected}` in: {}", lines[0]);
    assert!(!output.stderr.contains("hunter2"), "the password leaked: {}", lines[0]);
    assert!(!output.stdout.contains("hunter2"), "the password leaked: {}", output.stdout);
}

#[test]
fn bad_scheme_is_one_line_without_password() {
    let output = schema("check", "mysql://root:hunter2@127.0.0.1:3306/bench");
    assert_one_line_error(&output, "unknown scheme `mysql`");
    assert!(output.stderr.contains("mysql://root:***@127.0.0.1:3306/bench"), "{output:?}");
}

#[test]
fn unreachable_host_is_one_line_without_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let output = schema("check", &format!("postgres://bench:hunter2@127.0.0.1:{port}/results"));
    assert_one_line_error(&output, &format!("cannot connect to the PostgreSQL store at 127.0.0.1:{port}/results"));
    assert!(output.stderr.to_lowercase().contains("connection refused"), "{output:?}");
}

#[test]
fn wrong_password_is_one_line_without_password() {
    let url = std::env::var("UNIBENCH_TEST_PG_PASSWORD_URL")
        .expect("UNIBENCH_TEST_PG_PASSWORD_URL is not set: run the tests through scripts/test.sh");
    let with_password = url.replacen("://unibench_pw@", "://unibench_pw:hunter2@", 1);
    assert_ne!(with_password, url, "the password URL names the unibench_pw role");
    let output = schema("check", &with_password);
    assert_one_line_error(&output, "rejected the login of user `unibench_pw`");
    assert!(output.stderr.contains("password authentication failed"), "{output:?}");
}

#[test]
fn bad_postgres_url_syntax_is_named() {
    let output = schema("check", "postgres://bench:hunter2@127.0.0.1:notaport/results");
    assert_one_line_error(&output, "invalid store URL");
}
