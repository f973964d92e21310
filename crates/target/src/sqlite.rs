//! The SQLite target: each logical connection is its own rusqlite
//! connection, owned by a dedicated thread that runs the jobs sent to it
//! over a channel. SQLite calls block, so they never run on the tokio
//! runtime's threads. The thread ends, closing the database, when the
//! session is closed or dropped.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::connection::Outcome;
use crate::error::{Backend, TargetError};
use crate::sql::sqlite_placeholders;
use crate::ParamValue;

const BACKEND: Backend = Backend::Sqlite;

/// How long a statement waits for another connection's lock before it
/// fails with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Minimum number of compiled statements cached per connection. A template
/// with more operations gets a cache as large as its statement list.
const MIN_STATEMENT_CACHE: usize = 16;

/// Session ids of SQLite connections, unique within the process, because
/// SQLite has no server process id to report.
static NEXT_SESSION_ID: AtomicI64 = AtomicI64::new(1);

/// The state owned by a session's thread.
pub(crate) struct SqliteState {
    pub(crate) connection: Connection,
    /// Prepared SQL, with placeholders rewritten to `?N`. The compiled
    /// statements live in the connection's statement cache.
    statements: Vec<String>,
}

type Job = Box<dyn FnOnce(&mut SqliteState) + Send>;

/// One SQLite connection on its own thread.
pub(crate) struct SqliteSession {
    jobs: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
    session_id: i64,
}

impl SqliteSession {
    /// Opens an existing database file in WAL mode on a new thread.
    pub(crate) async fn open(path: &Path) -> Result<Self, TargetError> {
        let location = path.display().to_string();
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (opened_sender, opened) = oneshot::channel();
        let thread_path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("unibench-sqlite".to_owned())
            .spawn(move || match open_connection(&thread_path) {
                Ok(connection) => {
                    if opened_sender.send(Ok(())).is_ok() {
                        run_jobs(SqliteState { connection, statements: Vec::new() }, receiver);
                    }
                }
                Err(error) => {
                    let _ = opened_sender.send(Err(error));
                }
            })
            .map_err(|error| TargetError::Connect {
                backend: BACKEND,
                location: location.clone(),
                code: None,
                reason: format!("cannot start the connection thread: {error}"),
            })?;

        match opened.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(session_ended("the connection thread stopped while opening the database")),
        }
        let session_id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(location, session_id, "opened SQLite target connection");
        Ok(SqliteSession { jobs, thread, session_id })
    }

    pub(crate) fn session_id(&self) -> i64 {
        self.session_id
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.thread.is_finished()
    }

    /// Runs `job` on the session's thread and returns its result.
    pub(crate) async fn call<T, F>(&self, job: F) -> Result<T, TargetError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteState) -> Result<T, TargetError> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            let _ = reply.send(job(state));
        });
        self.jobs.send(job).map_err(|_| session_ended("the connection thread has stopped"))?;
        // A job that panics drops `reply`, which ends the thread too.
        result.await.map_err(|_| session_ended("the connection thread stopped during a statement"))?
    }

    /// Compiles the statements, replacing any prepared before.
    pub(crate) async fn prepare(&mut self, statements: &[String]) -> Result<(), TargetError> {
        let rewritten: Vec<String> = statements.iter().map(|sql| sqlite_placeholders(sql)).collect();
        self.call(move |state| {
            let capacity = rewritten.len().max(MIN_STATEMENT_CACHE);
            state.connection.set_prepared_statement_cache_capacity(capacity);
            for (index, sql) in rewritten.iter().enumerate() {
                state.connection.prepare_cached(sql).map_err(|error| {
                    let (code, message) = describe(&error);
                    TargetError::Prepare { backend: BACKEND, statement: index, code, message, connection_lost: false }
                })?;
            }
            state.statements = rewritten;
            Ok(())
        })
        .await
    }

    /// Runs a prepared statement. Returns the number of rows it produced,
    /// or for a statement without result columns the rows it changed.
    pub(crate) async fn execute(&mut self, index: usize, params: &[ParamValue]) -> Result<Outcome, TargetError> {
        let values: Vec<Value> = params.iter().map(to_sqlite).collect();
        self.call(move |state| execute_on(state, index, &values)).await
    }

    /// Ends the session and waits for the thread to close the database.
    pub(crate) async fn close(self) {
        let SqliteSession { jobs, thread, .. } = self;
        drop(jobs);
        // The thread finishes the job it is running, then finds the
        // channel closed and drops the connection.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn run_jobs(mut state: SqliteState, receiver: mpsc::Receiver<Job>) {
    while let Ok(job) = receiver.recv() {
        job(&mut state);
    }
}

fn open_connection(path: &Path) -> Result<Connection, TargetError> {
    let fail = |error: rusqlite::Error| {
        let (code, reason) = describe(&error);
        TargetError::Connect { backend: BACKEND, location: path.display().to_string(), code, reason }
    };
    // No SQLITE_OPEN_CREATE: a target must exist, and a mistyped path must
    // fail rather than create an empty database.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(fail)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    // By default SQLite reads an unknown "identifier" as a string literal,
    // so a mistyped column would be compared as text and silently match
    // nothing. Without that fallback, it is a "no such column" error.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false).map_err(fail)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false).map_err(fail)?;
    unibench_store::enable_wal(&connection, BUSY_TIMEOUT).map_err(fail)?;
    Ok(connection)
}

fn execute_on(state: &mut SqliteState, index: usize, values: &[Value]) -> Result<Outcome, TargetError> {
    let sql = state.statements.get(index).ok_or(TargetError::UnknownStatement {
        backend: BACKEND,
        statement: index,
        prepared: state.statements.len(),
    })?;
    let fail = |error: rusqlite::Error| execute_error(index, &error);
    let mut statement = state.connection.prepare_cached(sql).map_err(fail)?;

    let expected = statement.parameter_count();
    if expected != values.len() {
        return Err(TargetError::ParameterCount { backend: BACKEND, statement: index, expected, given: values.len() });
    }
    for (position, value) in values.iter().enumerate() {
        statement.raw_bind_parameter(position + 1, value).map_err(fail)?;
    }

    if statement.column_count() == 0 {
        let changed = statement.raw_execute().map_err(fail)?;
        return Ok(Outcome { rows_affected: changed as u64 });
    }
    let mut rows = statement.raw_query();
    let mut returned: u64 = 0;
    while rows.next().map_err(fail)?.is_some() {
        returned += 1;
    }
    Ok(Outcome { rows_affected: returned })
}

/// Converts a parameter to an SQLite value. SQLite has no boolean or
/// timestamp type: booleans bind as 0 or 1, timestamps as UTC text in the
/// `YYYY-MM-DD HH:MM:SS.SSS` form of SQLite's date functions.
fn to_sqlite(value: &ParamValue) -> Value {
    match value {
        ParamValue::Null => Value::Null,
        ParamValue::Int(value) => Value::Integer(*value),
        ParamValue::Float(value) => Value::Real(*value),
        ParamValue::Text(text) => Value::Text(text.clone()),
        ParamValue::Bool(value) => Value::Integer(i64::from(*value)),
        ParamValue::Timestamp(value) => Value::Text(value.format("%Y-%m-%d %H:%M:%S%.3f").to_string()),
    }
}

fn execute_error(index: usize, error: &rusqlite::Error) -> TargetError {
    let (code, message) = describe(error);
    if is_busy(error) {
        return TargetError::Timeout { backend: BACKEND, statement: index, code, message };
    }
    TargetError::Execute { backend: BACKEND, statement: index, code, message, connection_lost: false }
}

/// Whether the error is `SQLITE_BUSY`: the busy timeout passed while another
/// connection held the lock.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy))
}

/// Returns the extended result code and the message of an SQLite error.
pub(crate) fn describe(error: &rusqlite::Error) -> (Option<String>, String) {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.clone().unwrap_or_else(|| failure.to_string());
            (Some(failure.extended_code.to_string()), message)
        }
        other => (None, other.to_string()),
    }
}

pub(crate) fn query_error(query: &'static str, error: &rusqlite::Error) -> TargetError {
    let (code, message) = describe(error);
    TargetError::Query { backend: BACKEND, query, code, message, connection_lost: false }
}

fn session_ended(reason: &str) -> TargetError {
    TargetError::SessionEnded { backend: BACKEND, reason: reason.to_owned() }
}
