//! Helpers for tests that start the real `unibench` binary: a hard timeout
//! on every process, and fresh stores.

#![allow(dead_code)]

pub mod proxy;
pub mod worker;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Builds a `unibench` command with the store settings removed from its
/// environment.
pub fn unibench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_unibench"));
    command.env_remove("UNIBENCH_STORE").env_remove("UNIBENCH_LOG").env_remove("RUST_LOG");
    command
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run(mut command: Command, timeout: Duration) -> Output {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start unibench");
    let code = wait_with_timeout(&mut child, timeout);
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout).ok();
    }
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).ok();
    }
    Output { code, stdout, stderr }
}

/// Waits for the child; past the deadline kills it and fails the test.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("poll the child") {
            Some(status) => return status.code(),
            None if Instant::now() >= deadline => {
                child.kill().ok();
                child.wait().ok();
                panic!("process {} did not finish within {timeout:?} and was killed", child.id());
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits asynchronously for a child to exit and returns its exit code. Past
/// `timeout` it kills the child and fails the test, showing `output()`.
pub async fn wait_for_exit(
    child: &mut Child,
    timeout: Duration,
    description: &str,
    output: impl Fn() -> String,
) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status.code();
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("{description} did not exit within {timeout:?}; output:\n{}", output());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns the admin URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("UNIBENCH_TEST_PG_URL")
        .expect("UNIBENCH_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL")
}

/// Runs SQL on the test server's admin database or, with `database`, on
/// that database.
pub async fn pg_execute(database: Option<&str>, sql: &str) {
    let url = match database {
        Some(name) => database_url(name),
        None => pg_admin_url(),
    };
    let (client, connection) =
        tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.expect("run SQL on the test server");
    drop(client);
    task.await.ok();
}

/// The URL of a database on the test server.
pub fn database_url(name: &str) -> String {
    let admin = pg_admin_url();
    let (server, _) = admin.rsplit_once('/').expect("UNIBENCH_TEST_PG_URL ends with a database name");
    format!("{server}/{name}")
}

/// Creates an empty database and returns its name.
pub async fn create_database() -> String {
    let name = format!("unibench_cli_{}", uuid::Uuid::new_v4().simple());
    pg_execute(None, &format!("CREATE DATABASE {name}")).await;
    name
}

/// Creates a database loaded by `pgbench -i -s 1` and writes a connections
/// file in `dir` that names it `local-pg`. Returns the database URL and the
/// file.
pub async fn pgbench_target(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let target_url = database_url(&create_database().await);
    let status = Command::new("pgbench")
        .args(["-i", "-s", "1", "-q", &target_url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run pgbench -i (scripts/test.sh puts it on PATH)");
    assert!(status.success(), "pgbench -i failed");
    let connections_file = dir.join("connections.toml");
    std::fs::write(&connections_file, format!("[connections.local-pg]\nkind = \"postgres\"\nurl = \"{target_url}\"\n"))
        .unwrap();
    (target_url, connections_file)
}
