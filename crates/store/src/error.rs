//! Errors of the store. Every variant names the backend and the step that
//! failed; none ever carries a password or a full connection string.

use std::fmt;

/// The kind of store behind a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// A column that the binary needs and the store lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingColumn {
    /// `test_results` or `config` (empty for SQLite, which has one schema).
    pub schema: String,
    pub table: String,
    /// `None` when the whole table is missing.
    pub column: Option<String>,
}

impl fmt::Display for MissingColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = if self.schema.is_empty() { self.table.clone() } else { format!("{}.{}", self.schema, self.table) };
        match &self.column {
            Some(column) => write!(f, "column {table}.{column}"),
            None => write!(f, "table {table}"),
        }
    }
}

/// Error raised by any store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("cannot connect to the {backend} store at {location}: {reason}")]
    Connect { backend: Backend, location: String, reason: String },

    #[error("the {backend} store at {location} rejected the login of user `{user}`: {reason}")]
    Authentication { backend: Backend, location: String, user: String, reason: String },

    #[error("{backend} statement `{statement}` failed{}: {message}", code.as_ref().map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default())]
    Statement { backend: Backend, statement: String, code: Option<String>, message: String },

    #[error("invalid value in {backend} column {table}.{column}: {reason}")]
    InvalidValue { backend: Backend, table: &'static str, column: &'static str, reason: String },

    #[error(
        "the {backend} store schema is incomplete: missing {}; run `unibench schema apply`",
        join_missing(missing)
    )]
    SchemaIncomplete { backend: Backend, missing: Vec<MissingColumn> },

    #[error("run `{run_id}` not found in the store")]
    RunNotFound { run_id: String },

    #[error("{backend} store task failed: {reason}")]
    Task { backend: Backend, reason: String },
}

fn join_missing(missing: &[MissingColumn]) -> String {
    missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl StoreError {
    /// Whether retrying the operation later may succeed: the store was
    /// unreachable or the connection broke, as opposed to a bad statement,
    /// bad data or a missing schema.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } | StoreError::Task { .. } => true,
            StoreError::Statement { code, .. } => match code.as_deref() {
                // No SQLSTATE: the connection failed before the server answered.
                None => true,
                // Class 08 is connection exceptions, 40 transaction rollbacks
                // (serialisation failures, deadlocks), 53 insufficient
                // resources, 57 operator intervention (server shutting down).
                Some(code) => ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class)),
            },
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
