//! The PostgreSQL target: one tokio-postgres client per logical
//! connection, with its own server session and its own prepared
//! statements. Rows of a SELECT are counted as they stream in and never
//! collected.

use std::pin::pin;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use crate::connection::Outcome;
use crate::error::{Backend, TargetError};
use crate::postgres_params::{bind_all, PgValue};
use crate::ParamValue;

const BACKEND: Backend = Backend::Postgres;

/// How long closing waits for the server to acknowledge the end of the
/// session before the connection task is abandoned.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// SQLSTATE `57014` (query_canceled): raised when `statement_timeout`
/// expires, and when a cancel request stops a statement.
const QUERY_CANCELED: &str = "57014";

/// One PostgreSQL session.
pub(crate) struct PostgresSession {
    pub(crate) client: Client,
    connection_task: JoinHandle<()>,
    statements: Vec<Statement>,
    backend_pid: i32,
}

impl PostgresSession {
    /// Connects, logs in, and reads the server process id of the session.
    pub(crate) async fn open(
        config: &tokio_postgres::Config,
        location: &str,
        connect_timeout: Duration,
        statement_timeout: Option<Duration>,
    ) -> Result<Self, TargetError> {
        let (client, connection) = match tokio::time::timeout(connect_timeout, config.connect(NoTls)).await {
            Err(_) => {
                return Err(TargetError::ConnectTimeout {
                    backend: BACKEND,
                    location: location.to_owned(),
                    timeout: connect_timeout,
                });
            }
            Ok(Err(error)) => return Err(connect_error(location, &error)),
            Ok(Ok(pair)) => pair,
        };
        // The connection future performs the socket I/O of the client. It
        // ends when the client is dropped or the server closes the session.
        let connection_task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "PostgreSQL target connection ended with an error");
            }
        });

        let row = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| query_error("pg_backend_pid", &client, &e))?;
        let backend_pid: i32 = row.try_get(0).map_err(|e| query_error("pg_backend_pid", &client, &e))?;
        if let Some(timeout) = statement_timeout {
            // A whole number of milliseconds, so the SQL contains no user text.
            let millis = timeout.as_millis().max(1);
            client
                .batch_execute(&format!("SET statement_timeout = {millis}"))
                .await
                .map_err(|e| query_error("SET statement_timeout", &client, &e))?;
        }
        tracing::debug!(location, backend_pid, "opened PostgreSQL target session");
        Ok(PostgresSession { client, connection_task, statements: Vec::new(), backend_pid })
    }

    pub(crate) fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Prepares the statements on the server, replacing any prepared before.
    pub(crate) async fn prepare(&mut self, statements: &[String]) -> Result<(), TargetError> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (index, sql) in statements.iter().enumerate() {
            let statement = self.client.prepare(sql).await.map_err(|error| {
                let (code, message, connection_lost) = describe(&self.client, &error);
                TargetError::Prepare { backend: BACKEND, statement: index, code, message, connection_lost }
            })?;
            prepared.push(statement);
        }
        self.statements = prepared;
        Ok(())
    }

    /// Runs a prepared statement. Returns the number of rows a SELECT (or a
    /// statement with `RETURNING`) produced, else the number of rows the
    /// statement changed.
    pub(crate) async fn execute(&mut self, index: usize, params: &[ParamValue]) -> Result<Outcome, TargetError> {
        let statement = self.statements.get(index).ok_or(TargetError::UnknownStatement {
            backend: BACKEND,
            statement: index,
            prepared: self.statements.len(),
        })?;
        let values = bind(statement, index, params)?;

        let arguments = values.iter().map(|value| value as &(dyn ToSql + Sync));
        let rows = self.client.query_raw(statement, arguments).await.map_err(|e| self.execute_error(index, &e))?;
        let mut rows = pin!(rows);
        let mut returned: u64 = 0;
        while rows.try_next().await.map_err(|e| self.execute_error(index, &e))?.is_some() {
            returned += 1;
        }
        // The command tag counts rows for SELECT, INSERT, UPDATE and
        // DELETE. Other commands (such as CALL) have no count.
        Ok(Outcome { rows_affected: rows.rows_affected().unwrap_or(returned) })
    }

    fn execute_error(&self, index: usize, error: &tokio_postgres::Error) -> TargetError {
        let (code, message, connection_lost) = describe(&self.client, error);
        if code.as_deref() == Some(QUERY_CANCELED) {
            return TargetError::Timeout { backend: BACKEND, statement: index, code, message };
        }
        TargetError::Execute { backend: BACKEND, statement: index, code, message, connection_lost }
    }

    /// Ends the session: dropping the client makes the connection task send
    /// a Terminate message and close the socket, which this waits for.
    pub(crate) async fn close(self) {
        let PostgresSession { client, connection_task, statements, .. } = self;
        drop(statements);
        drop(client);
        if tokio::time::timeout(CLOSE_TIMEOUT, connection_task).await.is_err() {
            tracing::debug!("PostgreSQL target session did not close within {CLOSE_TIMEOUT:?}");
        }
    }
}

/// Converts the values for the statement's parameter types.
fn bind(statement: &Statement, index: usize, params: &[ParamValue]) -> Result<Vec<PgValue>, TargetError> {
    let types = statement.params();
    if types.len() != params.len() {
        return Err(TargetError::ParameterCount {
            backend: BACKEND,
            statement: index,
            expected: types.len(),
            given: params.len(),
        });
    }
    bind_all(types, params).map_err(|(position, failure)| TargetError::Bind {
        backend: BACKEND,
        statement: index,
        position: position + 1,
        value_type: params[position].type_name(),
        column_type: failure.column_type,
        reason: failure.reason,
    })
}

/// Returns the SQLSTATE, the message and whether the session is gone. The
/// session is gone when the client saw the socket close, or the server ended the
/// session: class 08 (connection exception) or 57P01 to 57P03 (admin
/// shutdown, crash shutdown, cannot connect now).
pub(crate) fn describe(client: &Client, error: &tokio_postgres::Error) -> (Option<String>, String, bool) {
    match error.as_db_error() {
        Some(db_error) => {
            let code = db_error.code().code().to_owned();
            let lost =
                client.is_closed() || code.starts_with("08") || matches!(code.as_str(), "57P01" | "57P02" | "57P03");
            (Some(code), db_error.message().to_owned(), lost)
        }
        None => (None, unibench_store::describe_error(error), client.is_closed() || error.is_closed()),
    }
}

pub(crate) fn query_error(query: &'static str, client: &Client, error: &tokio_postgres::Error) -> TargetError {
    let (code, message, connection_lost) = describe(client, error);
    TargetError::Query { backend: BACKEND, query, code, message, connection_lost }
}

fn connect_error(location: &str, error: &tokio_postgres::Error) -> TargetError {
    let (code, reason) = match error.as_db_error() {
        Some(db_error) => (Some(db_error.code().code().to_owned()), db_error.message().to_owned()),
        None => (None, unibench_store::describe_error(error)),
    };
    TargetError::Connect { backend: BACKEND, location: location.to_owned(), code, reason }
}
