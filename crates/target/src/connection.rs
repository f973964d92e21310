//! One logical target connection: a database session of its own, the
//! statements prepared on it, and their execution. Workers hold one per
//! connection of their load target and run them back to back.

use crate::config::{Endpoint, TargetConfig};
use crate::error::{Backend, TargetError};
use crate::postgres::PostgresSession;
use crate::sqlite::SqliteSession;
use crate::ParamValue;

/// The result of one executed statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Rows returned by a SELECT (or a statement with `RETURNING`), else
    /// rows inserted, updated or deleted.
    pub rows_affected: u64,
}

/// A logical connection with its own session on the target.
///
/// `execute` takes `&mut self`, so a connection runs one statement at a
/// time. After an error for which [`TargetError::is_connection_lost`] is
/// true, the connection is unusable: close it and open a new one.
pub struct TargetConnection {
    session: Session,
    /// Set by the first error that ended the session. The driver may
    /// notice the closed socket only after that error is returned.
    lost: bool,
}

// Each connection owns one session for its whole life, so the size of the
// PostgreSQL variant costs nothing, and a box would add a pointer hop per query.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Session {
    Postgres(PostgresSession),
    Sqlite(SqliteSession),
}

impl std::fmt::Debug for TargetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetConnection")
            .field("backend", &self.backend())
            .field("session_id", &self.session_id())
            .finish()
    }
}

impl TargetConnection {
    /// Opens a session: connects and logs in (PostgreSQL) or opens the
    /// database file on a thread of its own (SQLite).
    pub async fn open(config: &TargetConfig) -> Result<Self, TargetError> {
        Self::open_session(config, false).await
    }

    /// Opens a session whose PostgreSQL client may be used directly, for
    /// the one-off queries of checks and sampling.
    pub(crate) async fn open_for_checks(config: &TargetConfig) -> Result<Self, TargetError> {
        Self::open_session(config, true).await
    }

    async fn open_session(config: &TargetConfig, spawn_driver: bool) -> Result<Self, TargetError> {
        let session = match &config.endpoint {
            Endpoint::Postgres { config: driver_config, location } => Session::Postgres(
                PostgresSession::open(
                    driver_config,
                    location,
                    config.connect_timeout,
                    config.statement_timeout,
                    spawn_driver,
                )
                .await?,
            ),
            Endpoint::Sqlite { path } => Session::Sqlite(SqliteSession::open(path).await?),
        };
        Ok(TargetConnection { session, lost: false })
    }

    pub fn backend(&self) -> Backend {
        match self.session {
            Session::Postgres(_) => Backend::Postgres,
            Session::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The id of the session, for `QUERY_EXECUTIONS.CONNECTION_ID`: the
    /// server process id (`pg_backend_pid()`) for PostgreSQL, a number
    /// unique within this process for SQLite.
    pub fn session_id(&self) -> i64 {
        match &self.session {
            Session::Postgres(session) => i64::from(session.backend_pid()),
            Session::Sqlite(session) => session.session_id(),
        }
    }

    /// Whether the session has ended, for example because the server
    /// closed it.
    pub fn is_closed(&self) -> bool {
        self.lost
            || match &self.session {
                Session::Postgres(session) => session.is_closed(),
                Session::Sqlite(session) => session.is_closed(),
            }
    }

    /// Prepares each statement once on this session. `execute` refers to
    /// them by their index in `statements`. The SQL uses `$1`, `$2`, ...
    /// for parameters on every backend, and `{table}` must already be
    /// expanded. Calling it again replaces the prepared statements.
    pub async fn prepare(&mut self, statements: &[String]) -> Result<(), TargetError> {
        let result = match &mut self.session {
            Session::Postgres(session) => session.prepare(statements).await,
            Session::Sqlite(session) => session.prepare(statements).await,
        };
        self.note_lost(result)
    }

    /// Runs prepared statement `statement` with `params` bound to `$1`,
    /// `$2`, ... in order.
    pub async fn execute(&mut self, statement: usize, params: &[ParamValue]) -> Result<Outcome, TargetError> {
        let result = match &mut self.session {
            Session::Postgres(session) => session.execute(statement, params).await,
            Session::Sqlite(session) => session.execute(statement, params).await,
        };
        self.note_lost(result)
    }

    fn note_lost<T>(&mut self, result: Result<T, TargetError>) -> Result<T, TargetError> {
        if result.as_ref().is_err_and(TargetError::is_connection_lost) {
            self.lost = true;
        }
        result
    }

    /// Ends the session and waits (briefly, for PostgreSQL) until it is
    /// closed. Dropping a connection ends the session too, without waiting.
    pub async fn close(self) {
        match self.session {
            Session::Postgres(session) => session.close().await,
            Session::Sqlite(session) => session.close().await,
        }
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn require_send<T: Send>(_: &T) {}

    /// Workers spawn connections onto tokio tasks and the controller calls
    /// the checks from request handlers, so every future must be `Send`.
    /// This function only has to compile.
    #[allow(dead_code)]
    async fn futures_are_send(config: TargetConfig, mut connection: TargetConnection) {
        require_send(&TargetConnection::open(&config));
        require_send(&connection.prepare(&[]));
        require_send(&connection.execute(0, &[]));
        require_send(&connection.close());
        require_send(&crate::check_reachable(&config));
        require_send(&crate::table_exists(&config, "t"));
        require_send(&crate::sample_keys(&config, "t", "k", 1));
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn require_send_sync<T: Send + Sync>() {}
        require_send_sync::<TargetConfig>();
        require_send_sync::<TargetConnection>();
        require_send_sync::<TargetError>();
    }
}
