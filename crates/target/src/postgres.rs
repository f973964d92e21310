//! The PostgreSQL target: one tokio-postgres client per logical
//! connection, with its own server session and its own prepared
//! statements. Rows of a SELECT are counted as they stream in and never
//! collected.
//!
//! A tokio-postgres client hands each request to a connection future that
//! does the socket I/O. A workload session polls that future inside the
//! task that runs its requests, so a request costs no wake-up of another
//! task and no hop between threads; between requests nothing polls the
//! socket, which the server does not need. The workload's statements then
//! usually skip tokio-postgres altogether (see `postgres_wire`). Sessions
//! for one-off checks run the connection future on a task of its own.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use futures_util::TryStreamExt;
use sync_wrapper::SyncWrapper;
use tokio::task::JoinHandle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use crate::connection::Outcome;
use crate::error::{Backend, TargetError};
use crate::postgres_params::{bind_all, PgValue};
use crate::postgres_wire::{self, Address, Wire, WireError};
use crate::ParamValue;

const BACKEND: Backend = Backend::Postgres;

/// How long closing waits for the server to acknowledge the end of the
/// session before the connection task is abandoned.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// SQLSTATE `57014` (query_canceled): raised when `statement_timeout`
/// expires, and when a cancel request stops a statement.
const QUERY_CANCELED: &str = "57014";

/// A tokio-postgres connection future, over a socket of either kind.
type ConnectionFuture = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Where the connection future of a session is polled.
pub(crate) enum Driver {
    /// In the caller's task, while a request of the session is waiting.
    /// `None` once the future has ended. The future is not `Sync`; the
    /// wrapper makes the session `Sync` by allowing only `&mut` access.
    Inline(Option<SyncWrapper<ConnectionFuture>>),
    /// On a task of its own.
    Task(JoinHandle<()>),
}

impl Driver {
    /// Runs `request` to completion, polling the connection future in the
    /// same task when it is inline. When the connection ends first, the
    /// request sees the closed channel and fails.
    pub(crate) async fn run<F: Future>(&mut self, request: F) -> F::Output {
        let connection = match self {
            Driver::Task(_) => return request.await,
            Driver::Inline(connection) => connection,
        };
        let mut request = pin!(request);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = request.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            if let Some(driver) = connection.as_mut() {
                if let Poll::Ready(result) = driver.get_mut().as_mut().poll(cx) {
                    if let Err(error) = result {
                        tracing::debug!(error = %error, "PostgreSQL target connection ended with an error");
                    }
                    *connection = None;
                }
            }
            // The connection may have delivered the response just now, or
            // ended and dropped the request's channel: poll the request again
            // rather than wait for the wake-up it sent to this same task.
            request.as_mut().poll(cx)
        })
        .await
    }
}

/// The session's prepared statements and how they run.
enum Statements {
    /// Through tokio-postgres.
    Client(Vec<Statement>),
    /// On the session's own socket.
    Wire { wire: Wire, prepared: Vec<WireStatement> },
}

/// A statement prepared by the wire under a name of its own.
struct WireStatement {
    name: String,
    types: Vec<Type>,
}

fn unknown_statement(index: usize, prepared: usize) -> TargetError {
    TargetError::UnknownStatement { backend: BACKEND, statement: index, prepared }
}

/// One PostgreSQL session.
pub(crate) struct PostgresSession {
    pub(crate) client: Client,
    driver: Driver,
    /// On the wire when the session's socket allows it.
    statements: Statements,
    /// The converted parameters of the current query, reused by every query.
    values: Vec<PgValue>,
    /// Times the statements were prepared, which keeps wire names unique.
    generation: u32,
    backend_pid: i32,
}

impl PostgresSession {
    /// Connects, logs in, and reads the server process id of the session.
    /// With `spawn_driver` the connection future runs on a task of its own,
    /// so that callers may use `client` directly.
    pub(crate) async fn open(
        config: &tokio_postgres::Config,
        location: &str,
        connect_timeout: Duration,
        statement_timeout: Option<Duration>,
        spawn_driver: bool,
    ) -> Result<Self, TargetError> {
        // A spawned connection future would read the socket whenever it is
        // readable, so only an inline one can share it with the wire.
        let address = Address::of(config).filter(|_| !spawn_driver);
        let (client, connection, wire) =
            match tokio::time::timeout(connect_timeout, connect(config, location, address)).await {
                Err(_) => {
                    return Err(TargetError::ConnectTimeout {
                        backend: BACKEND,
                        location: location.to_owned(),
                        timeout: connect_timeout,
                    });
                }
                Ok(result) => result?,
            };
        // The connection future performs the socket I/O of the client. It
        // ends when the client is dropped or the server closes the session.
        let mut driver = if spawn_driver {
            Driver::Task(tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(error = %error, "PostgreSQL target connection ended with an error");
                }
            }))
        } else {
            Driver::Inline(Some(SyncWrapper::new(connection)))
        };

        let row = driver
            .run(client.query_one("SELECT pg_backend_pid()", &[]))
            .await
            .map_err(|e| query_error("pg_backend_pid", &client, &e))?;
        let backend_pid: i32 = row.try_get(0).map_err(|e| query_error("pg_backend_pid", &client, &e))?;
        if let Some(timeout) = statement_timeout {
            // A whole number of milliseconds, so the SQL contains no user text.
            let millis = timeout.as_millis().max(1);
            driver
                .run(client.batch_execute(&format!("SET statement_timeout = {millis}")))
                .await
                .map_err(|e| query_error("SET statement_timeout", &client, &e))?;
        }
        tracing::debug!(location, backend_pid, "opened PostgreSQL target session");
        Ok(PostgresSession {
            client,
            driver,
            statements: match wire {
                Some(wire) => Statements::Wire { wire, prepared: Vec::new() },
                None => Statements::Client(Vec::new()),
            },
            values: Vec::new(),
            generation: 0,
            backend_pid,
        })
    }

    pub(crate) fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed() || matches!(&self.statements, Statements::Wire { wire, .. } if wire.is_lost())
    }

    /// Prepares the statements on the server, replacing any prepared before.
    pub(crate) async fn prepare(&mut self, statements: &[String]) -> Result<(), TargetError> {
        let prepare_error = |index: usize, (code, message, connection_lost)| TargetError::Prepare {
            backend: BACKEND,
            statement: index,
            code,
            message,
            connection_lost,
        };
        match &mut self.statements {
            Statements::Client(prepared) => prepared.clear(),
            Statements::Wire { wire, prepared } => {
                if !wire.is_idle() {
                    let message = "the session holds an unread message from the server".to_owned();
                    return Err(prepare_error(0, (None, message, true)));
                }
                let names: Vec<&str> = prepared.iter().map(|statement| statement.name.as_str()).collect();
                wire.close_statements(&names).await.map_err(|error| prepare_error(0, wire_failure(error)))?;
                prepared.clear();
            }
        }
        self.generation += 1;
        let mut prepared = Vec::with_capacity(statements.len());
        for (index, sql) in statements.iter().enumerate() {
            // tokio-postgres prepares first: it resolves the parameter types,
            // including types defined in the database.
            let statement = self
                .driver
                .run(self.client.prepare(sql))
                .await
                .map_err(|error| prepare_error(index, describe(&self.client, &error)))?;
            prepared.push(statement);
        }
        let (wire, wire_prepared) = match &mut self.statements {
            Statements::Client(client_prepared) => {
                *client_prepared = prepared;
                return Ok(());
            }
            Statements::Wire { wire, prepared } => (wire, prepared),
        };
        if statements.is_empty() {
            return Ok(());
        }
        let named: Vec<(String, &str, Vec<Type>)> = prepared
            .iter()
            .zip(statements)
            .enumerate()
            .map(|(index, (statement, sql))| {
                (format!("unibench_{}_{index}", self.generation), sql.as_str(), statement.params().to_vec())
            })
            .collect();
        // Dropping tokio-postgres's statements queues a Close for each. An
        // empty query sends them and returns only after the server's
        // ReadyForQuery for all that came before, which tokio-postgres's
        // prepare does not wait for; the socket is then quiet for the wire.
        drop(prepared);
        self.driver
            .run(self.client.batch_execute(""))
            .await
            .map_err(|error| prepare_error(0, describe(&self.client, &error)))?;
        wire.prepare_all(&named).await.map_err(|error| prepare_error(0, wire_failure(error)))?;
        *wire_prepared = named.into_iter().map(|(name, _, types)| WireStatement { name, types }).collect();
        Ok(())
    }

    /// Runs a prepared statement. Returns the number of rows a SELECT (or a
    /// statement with `RETURNING`) produced, else the number of rows the
    /// statement changed.
    pub(crate) async fn execute(&mut self, index: usize, params: &[ParamValue]) -> Result<Outcome, TargetError> {
        let PostgresSession { client, driver, statements, values, .. } = self;
        let statement = match statements {
            Statements::Wire { wire, prepared } => {
                let statement = prepared.get(index).ok_or_else(|| unknown_statement(index, prepared.len()))?;
                bind(&statement.types, index, params, values)?;
                return match wire.execute(&statement.name, &statement.types, values).await {
                    Ok(rows_affected) => Ok(Outcome { rows_affected }),
                    Err(error) => {
                        let (code, message, connection_lost) = wire_failure(error);
                        Err(statement_error(index, code, message, connection_lost))
                    }
                };
            }
            Statements::Client(prepared) => {
                prepared.get(index).ok_or_else(|| unknown_statement(index, prepared.len()))?
            }
        };
        bind(statement.params(), index, params, values)?;
        let values = &*values;
        let client = &*client;
        let request = async move {
            let arguments = values.iter().map(|value| value as &(dyn ToSql + Sync));
            let rows = client.query_raw(statement, arguments).await?;
            let mut rows = pin!(rows);
            let mut returned: u64 = 0;
            while rows.try_next().await?.is_some() {
                returned += 1;
            }
            // The command tag counts rows for SELECT, INSERT, UPDATE and
            // DELETE. Other commands (such as CALL) have no count.
            Ok(Outcome { rows_affected: rows.rows_affected().unwrap_or(returned) })
        };
        driver.run(request).await.map_err(|error| execute_error(client, index, &error))
    }

    /// Ends the session: dropping the client makes the connection future
    /// send a Terminate message and close the socket, which this waits for.
    pub(crate) async fn close(self) {
        let PostgresSession { client, driver, statements, .. } = self;
        drop(statements);
        drop(client);
        let closed = match driver {
            Driver::Inline(None) => return,
            Driver::Inline(Some(connection)) => {
                tokio::time::timeout(CLOSE_TIMEOUT, async move { drop(connection.into_inner().await) }).await
            }
            Driver::Task(task) => tokio::time::timeout(CLOSE_TIMEOUT, async move { drop(task.await) }).await,
        };
        if closed.is_err() {
            tracing::debug!("PostgreSQL target session did not close within {CLOSE_TIMEOUT:?}");
        }
    }
}

/// Connects and logs in: on a socket opened here and shared with a
/// [`Wire`] when the configuration names one address, else through
/// tokio-postgres alone.
async fn connect(
    config: &tokio_postgres::Config,
    location: &str,
    address: Option<Address>,
) -> Result<(Client, ConnectionFuture, Option<Wire>), TargetError> {
    let Some(address) = address else {
        let (client, connection) = config.connect(NoTls).await.map_err(|error| connect_error(location, &error))?;
        return Ok((client, Box::pin(connection), None));
    };
    let stream = postgres_wire::connect(&address, config).await.map_err(|error| TargetError::Connect {
        backend: BACKEND,
        location: location.to_owned(),
        code: None,
        reason: format!("error connecting to server: {error}"),
    })?;
    let (client, connection) =
        config.connect_raw(stream.clone(), NoTls).await.map_err(|error| connect_error(location, &error))?;
    Ok((client, Box::pin(connection), Some(Wire::new(stream))))
}

fn execute_error(client: &Client, index: usize, error: &tokio_postgres::Error) -> TargetError {
    let (code, message, connection_lost) = describe(client, error);
    statement_error(index, code, message, connection_lost)
}

/// Returns the SQLSTATE, the message and whether the session is gone.
fn wire_failure(error: WireError) -> (Option<String>, String, bool) {
    match error {
        WireError::Server { code, message, session_ended } => {
            let lost = session_ended || ends_session(&code);
            (Some(code), message, lost)
        }
        WireError::Encode(message) => (None, message, false),
        WireError::Lost(message) => (None, message, true),
    }
}

fn statement_error(index: usize, code: Option<String>, message: String, connection_lost: bool) -> TargetError {
    if code.as_deref() == Some(QUERY_CANCELED) {
        return TargetError::Timeout { backend: BACKEND, statement: index, code, message };
    }
    TargetError::Execute { backend: BACKEND, statement: index, code, message, connection_lost }
}

/// Whether an SQLSTATE means the server ended the session: class 08
/// (connection exception) or 57P01 to 57P03 (admin shutdown, crash
/// shutdown, cannot connect now).
fn ends_session(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Converts the values for the statement's parameter types into `values`.
fn bind(types: &[Type], index: usize, params: &[ParamValue], values: &mut Vec<PgValue>) -> Result<(), TargetError> {
    if types.len() != params.len() {
        return Err(TargetError::ParameterCount {
            backend: BACKEND,
            statement: index,
            expected: types.len(),
            given: params.len(),
        });
    }
    bind_all(types, params, values).map_err(|(position, failure)| TargetError::Bind {
        backend: BACKEND,
        statement: index,
        position: position + 1,
        value_type: params[position].type_name(),
        column_type: failure.column_type,
        reason: failure.reason,
    })
}

/// Returns the SQLSTATE, the message and whether the session is gone: the
/// client saw the socket close, or the server ended the session.
pub(crate) fn describe(client: &Client, error: &tokio_postgres::Error) -> (Option<String>, String, bool) {
    match error.as_db_error() {
        Some(db_error) => {
            let code = db_error.code().code().to_owned();
            let lost = client.is_closed() || ends_session(&code);
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
