//! Errors of target operations. Every variant names the backend and the
//! step that failed, and carries the database's error code where one
//! exists (the SQLSTATE for PostgreSQL, the extended result code for
//! SQLite). None ever carries a password or a connection string: locations
//! are `host:port/database` or a file path.

use std::fmt;
use std::time::Duration;

use crate::sql::IdentifierError;

/// The database product behind a target connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        })
    }
}

/// The step that failed, coarse enough to count errors by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetErrorKind {
    Connect,
    Prepare,
    Execute,
    Timeout,
}

impl TargetErrorKind {
    /// The lower-case name (`connect`, `prepare`, `execute`, `timeout`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetErrorKind::Connect => "connect",
            TargetErrorKind::Prepare => "prepare",
            TargetErrorKind::Execute => "execute",
            TargetErrorKind::Timeout => "timeout",
        }
    }
}

impl fmt::Display for TargetErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error raised by a target connection. `statement` fields are the index
/// of the statement in the list given to `TargetConnection::prepare`.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot connect to the {backend} target at {location}{}: {reason}", code_suffix(code))]
    Connect { backend: Backend, location: String, code: Option<String>, reason: String },

    #[error("the {backend} target at {location} did not accept a connection within {} s", timeout.as_secs_f64())]
    ConnectTimeout { backend: Backend, location: String, timeout: Duration },

    #[error("{backend} statement {statement} failed to prepare{}: {message}", code_suffix(code))]
    Prepare { backend: Backend, statement: usize, code: Option<String>, message: String, connection_lost: bool },

    #[error("{backend} statement {statement} was not prepared: the connection has {prepared} prepared statements")]
    UnknownStatement { backend: Backend, statement: usize, prepared: usize },

    #[error("{backend} statement {statement} expects {expected} parameters but {given} were given")]
    ParameterCount { backend: Backend, statement: usize, expected: usize, given: usize },

    #[error(
        "{backend} statement {statement}: cannot bind parameter ${position}: \
         a {value_type} value does not convert to {column_type}: {reason}"
    )]
    Bind {
        backend: Backend,
        statement: usize,
        /// 1-based, as in `$1`.
        position: usize,
        value_type: &'static str,
        column_type: String,
        reason: String,
    },

    #[error("{backend} statement {statement} failed{}: {message}", code_suffix(code))]
    Execute { backend: Backend, statement: usize, code: Option<String>, message: String, connection_lost: bool },

    #[error("{backend} statement {statement} timed out{}: {message}", code_suffix(code))]
    Timeout { backend: Backend, statement: usize, code: Option<String>, message: String },

    /// A fixed query of this crate failed (reachability check, sampling).
    #[error("{backend} query `{query}` failed{}: {message}", code_suffix(code))]
    Query { backend: Backend, query: &'static str, code: Option<String>, message: String, connection_lost: bool },

    #[error("the {backend} session ended: {reason}")]
    SessionEnded { backend: Backend, reason: String },

    #[error(transparent)]
    InvalidIdentifier(#[from] IdentifierError),
}

fn code_suffix(code: &Option<String>) -> String {
    match code {
        Some(code) => format!(" (code {code})"),
        None => String::new(),
    }
}

impl TargetError {
    /// The step that failed.
    pub fn kind(&self) -> TargetErrorKind {
        match self {
            TargetError::Connect { .. } => TargetErrorKind::Connect,
            TargetError::ConnectTimeout { .. } | TargetError::Timeout { .. } => TargetErrorKind::Timeout,
            TargetError::Prepare { .. } | TargetError::InvalidIdentifier(_) => TargetErrorKind::Prepare,
            TargetError::UnknownStatement { .. }
            | TargetError::ParameterCount { .. }
            | TargetError::Bind { .. }
            | TargetError::Execute { .. }
            | TargetError::Query { .. }
            | TargetError::SessionEnded { .. } => TargetErrorKind::Execute,
        }
    }

    /// The database's error code: a SQLSTATE such as `23505` for
    /// PostgreSQL, an extended result code such as `2067` for SQLite.
    pub fn code(&self) -> Option<&str> {
        match self {
            TargetError::Connect { code, .. }
            | TargetError::Prepare { code, .. }
            | TargetError::Execute { code, .. }
            | TargetError::Timeout { code, .. }
            | TargetError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The backend that raised the error, when it came from one.
    pub fn backend(&self) -> Option<Backend> {
        match self {
            TargetError::Connect { backend, .. }
            | TargetError::ConnectTimeout { backend, .. }
            | TargetError::Prepare { backend, .. }
            | TargetError::UnknownStatement { backend, .. }
            | TargetError::ParameterCount { backend, .. }
            | TargetError::Bind { backend, .. }
            | TargetError::Execute { backend, .. }
            | TargetError::Timeout { backend, .. }
            | TargetError::Query { backend, .. }
            | TargetError::SessionEnded { backend, .. } => Some(*backend),
            TargetError::InvalidIdentifier(_) => None,
        }
    }

    /// Whether the session is gone, so the connection must be dropped and
    /// opened again before it can run another statement. Errors that leave
    /// the session usable (a constraint violation, a bad parameter, a
    /// statement timeout) return false.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            TargetError::Prepare { connection_lost, .. }
            | TargetError::Execute { connection_lost, .. }
            | TargetError::Query { connection_lost, .. } => *connection_lost,
            TargetError::SessionEnded { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_backend_statement_and_code() {
        let error = TargetError::Execute {
            backend: Backend::Postgres,
            statement: 1,
            code: Some("23505".to_owned()),
            message: "duplicate key value violates unique constraint \"orders_pkey\"".to_owned(),
            connection_lost: false,
        };
        assert_eq!(
            error.to_string(),
            "PostgreSQL statement 1 failed (code 23505): duplicate key value violates unique constraint \"orders_pkey\""
        );
        assert_eq!(error.kind(), TargetErrorKind::Execute);
        assert_eq!(error.code(), Some("23505"));
        assert!(!error.is_connection_lost());
    }

    #[test]
    fn bind_error_names_position_and_types() {
        let error = TargetError::Bind {
            backend: Backend::Postgres,
            statement: 0,
            position: 2,
            value_type: "text",
            column_type: "int4".to_owned(),
            reason: "invalid digit found in string".to_owned(),
        };
        let text = error.to_string();
        assert!(text.contains("parameter $2"), "{text}");
        assert!(text.contains("a text value does not convert to int4"), "{text}");
        assert_eq!(error.kind(), TargetErrorKind::Execute);
    }

    #[test]
    fn session_end_counts_as_lost_connection() {
        let error = TargetError::SessionEnded { backend: Backend::Sqlite, reason: "thread stopped".to_owned() };
        assert!(error.is_connection_lost());
        assert_eq!(error.kind(), TargetErrorKind::Execute);
    }
}
