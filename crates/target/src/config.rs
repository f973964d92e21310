//! How to open target connections: a resolved connection turned into the
//! settings of one backend, plus the session settings unibench adds
//! (application name, connect and statement timeouts). A `TargetConfig` is
//! built once per run and shared by every logical connection.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use unibench_model::scenario::{TargetKind, TargetSpec};

use crate::connections::{self, ConnectionError, ResolvedConnection};
use crate::error::Backend;

/// `application_name` of target sessions, so that a DBA can tell benchmark
/// load from other clients in `pg_stat_activity`. A URL that sets its own
/// `application_name` keeps it.
pub const APPLICATION_NAME: &str = "unibench-worker";

/// How long opening a connection may take, login included.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for opening connections to one target database.
#[derive(Clone)]
pub struct TargetConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) connect_timeout: Duration,
    pub(crate) statement_timeout: Option<Duration>,
}

#[derive(Clone)]
pub(crate) enum Endpoint {
    Postgres { config: Box<tokio_postgres::Config>, location: String },
    Sqlite { path: PathBuf },
}

impl fmt::Debug for TargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the location is shown: the driver configuration contains the
        // password.
        f.debug_struct("TargetConfig")
            .field("backend", &self.backend())
            .field("location", &self.location())
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl TargetConfig {
    /// Resolves a template's target: its named connection from
    /// `connections_file` (the default file when `None`), or the
    /// environment alone when it names none.
    pub fn resolve(spec: &TargetSpec, connections_file: Option<&Path>) -> Result<Self, ConnectionError> {
        Self::from_connection(&connections::resolve_target(spec, connections_file)?)
    }

    /// Builds the settings of a resolved connection.
    pub fn from_connection(connection: &ResolvedConnection) -> Result<Self, ConnectionError> {
        match connection {
            ResolvedConnection::Postgres(postgres) => Ok(Self::postgres(postgres.config().clone())),
            ResolvedConnection::Sqlite(sqlite) => Ok(Self::sqlite(&sqlite.path)),
            ResolvedConnection::Snowflake(snowflake) => {
                Err(ConnectionError::Unsupported { origin: snowflake.origin.clone(), kind: TargetKind::Snowflake })
            }
        }
    }

    /// A PostgreSQL target from a driver configuration.
    pub fn postgres(mut config: tokio_postgres::Config) -> Self {
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        let location = unibench_store::describe_location(&config);
        TargetConfig {
            endpoint: Endpoint::Postgres { config: Box::new(config), location },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: None,
        }
    }

    /// An SQLite target. The file must exist: targets are never created.
    pub fn sqlite(path: &Path) -> Self {
        TargetConfig {
            endpoint: Endpoint::Sqlite { path: path.to_owned() },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: None,
        }
    }

    /// Sets how long opening a connection may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the server-side limit on one statement's run time
    /// (PostgreSQL's `statement_timeout`). A statement that exceeds it
    /// fails with a timeout error, and the session stays usable. `None`
    /// keeps the server's setting.
    ///
    /// NOTE: SQLite has no statement time limit, so SQLite targets ignore
    /// this setting.
    pub fn with_statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets the session's `application_name` (PostgreSQL only).
    pub fn with_application_name(mut self, name: &str) -> Self {
        if let Endpoint::Postgres { config, .. } = &mut self.endpoint {
            config.application_name(name);
        }
        self
    }

    pub fn backend(&self) -> Backend {
        match self.endpoint {
            Endpoint::Postgres { .. } => Backend::Postgres,
            Endpoint::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// The target kind, for quoting identifiers.
    pub fn kind(&self) -> TargetKind {
        match self.endpoint {
            Endpoint::Postgres { .. } => TargetKind::Postgres,
            Endpoint::Sqlite { .. } => TargetKind::Sqlite,
        }
    }

    /// `host:port/database` or the SQLite file path, for messages. Never
    /// contains a user name or password.
    pub fn location(&self) -> String {
        match &self.endpoint {
            Endpoint::Postgres { location, .. } => location.clone(),
            Endpoint::Sqlite { path } => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn postgres_config_never_prints_password() {
        let config = tokio_postgres::Config::from_str("postgres://bench:s3cr3t-value@db:5433/shop").unwrap();
        let target = TargetConfig::postgres(config);
        let text = format!("{target:?} {target:#?} {}", target.location());
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert_eq!(target.location(), "db:5433/shop");
        assert_eq!(target.backend(), Backend::Postgres);
    }

    #[test]
    fn application_name_defaults_to_worker() {
        let target = TargetConfig::postgres(tokio_postgres::Config::from_str("postgres://u@h/d").unwrap());
        let Endpoint::Postgres { config, .. } = &target.endpoint else { panic!("expected PostgreSQL") };
        assert_eq!(config.get_application_name(), Some(APPLICATION_NAME));
        let named =
            TargetConfig::postgres(tokio_postgres::Config::from_str("postgres://u@h/d?application_name=mine").unwrap());
        let Endpoint::Postgres { config, .. } = &named.endpoint else { panic!("expected PostgreSQL") };
        assert_eq!(config.get_application_name(), Some("mine"));
    }

    #[test]
    fn snowflake_is_unsupported() {
        let connection = connections::resolve_environment(TargetKind::Snowflake, &|name| match name {
            "SNOWFLAKE_ACCOUNT" | "SNOWFLAKE_USER" | "SNOWFLAKE_PASSWORD" => Some("x".to_owned()),
            _ => None,
        })
        .unwrap();
        let error = TargetConfig::from_connection(&connection).unwrap_err();
        assert!(error.to_string().contains("snowflake targets are not supported"), "{error}");
    }
}
