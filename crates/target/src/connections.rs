//! Named connections: how to reach a target database.
//!
//! Connections live in `connections.toml`, in the Snowflake CLI layout: one
//! `[connections.<name>]` table per connection. The file is
//! `$UNIBENCH_HOME/connections.toml` (`~/.unibench/connections.toml` when
//! `UNIBENCH_HOME` is unset) unless a path is given. The usual environment
//! variables (`PGHOST`, `PGUSER`, `SNOWFLAKE_ACCOUNT`, ...) fill what a
//! connection leaves out, and a template that names no connection takes
//! its connection from the environment alone.
//!
//! The file contains passwords, so nothing in this module prints a value it
//! read: secrets are [`Secret`]s, whose `Debug` prints `***`, and error
//! messages name the file, the connection and the key, never the value of
//! a password or a URL.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use unibench_model::scenario::{TargetKind, TargetSpec};

/// Environment variable naming unibench's per-user directory.
pub const HOME_ENV: &str = "UNIBENCH_HOME";
/// File name of the connections file inside the per-user directory.
pub const CONNECTIONS_FILE_NAME: &str = "connections.toml";

/// PostgreSQL host and port when neither the connection nor the
/// environment sets one, as for libpq over TCP.
const DEFAULT_POSTGRES_HOST: &str = "localhost";
pub(crate) const DEFAULT_POSTGRES_PORT: u16 = 5432;

const POSTGRES_KEYS: &[&str] = &["kind", "url", "host", "port", "user", "password", "database"];
const SQLITE_KEYS: &[&str] = &["kind", "path"];

/// Reads one environment variable. Resolution takes this as a parameter so
/// that tests need not change the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a variable from the process environment. An empty value counts
/// as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// A password or other secret. `Debug` prints `***` and there is no
/// `Display`, so a secret reaches text only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a connection's settings came from, as error messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionOrigin {
    /// A `[connections.<name>]` table in a connections file.
    Named { name: String, file: PathBuf },
    /// The environment alone, for a template that names no connection.
    Environment,
}

impl fmt::Display for ConnectionOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionOrigin::Named { name, file } => write!(f, "connection `{name}` in {}", file.display()),
            ConnectionOrigin::Environment => f.write_str("the environment (the template names no connection)"),
        }
    }
}

/// Error raised while reading connections or resolving one.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot locate the connections file: neither {HOME_ENV} nor HOME is set; pass the file's path")]
    NoHome,

    #[error("cannot read connections file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },

    #[error("invalid connections file {}{}: {reason}", path.display(), line.map(|line| format!(", line {line}")).unwrap_or_default())]
    Parse { path: PathBuf, line: Option<usize>, reason: String },

    #[error("connection `{name}` not found in {}; {}", path.display(), describe_available(available))]
    UnknownConnection { name: String, path: PathBuf, available: Vec<String> },

    #[error("connection `{name}` not found: connections file {} does not exist; create it or pass another file", path.display())]
    NoConnectionsFile { name: String, path: PathBuf },

    #[error("{origin} has no `{key}`; {hint}")]
    MissingKey { origin: ConnectionOrigin, key: &'static str, hint: String },

    #[error("invalid `{key}` in {origin}: {reason}")]
    InvalidKey { origin: ConnectionOrigin, key: String, reason: String },

    #[error("unknown key `{key}` in {origin}; {kind} connections accept {}", expected.join(", "))]
    UnknownKey { origin: ConnectionOrigin, key: String, kind: TargetKind, expected: &'static [&'static str] },

    #[error("{origin} is a {actual} connection, but the template's target kind is {expected}")]
    KindMismatch { origin: ConnectionOrigin, actual: TargetKind, expected: TargetKind },

    #[error("{kind} targets are not supported by this build ({origin})")]
    Unsupported { origin: ConnectionOrigin, kind: TargetKind },
}

fn describe_available(names: &[String]) -> String {
    if names.is_empty() {
        "the file defines no connections".to_owned()
    } else {
        format!("available connections: {}", names.join(", "))
    }
}

/// A connection resolved from a named entry or the environment, with every
/// setting the database needs.
#[derive(Debug, Clone)]
pub enum ResolvedConnection {
    Postgres(PostgresConnection),
    Sqlite(SqliteConnection),
    Snowflake(SnowflakeConnection),
}

impl ResolvedConnection {
    pub fn kind(&self) -> TargetKind {
        match self {
            ResolvedConnection::Postgres(_) => TargetKind::Postgres,
            ResolvedConnection::Sqlite(_) => TargetKind::Sqlite,
            ResolvedConnection::Snowflake(_) => TargetKind::Snowflake,
        }
    }

    pub fn origin(&self) -> &ConnectionOrigin {
        match self {
            ResolvedConnection::Postgres(connection) => &connection.origin,
            ResolvedConnection::Sqlite(connection) => &connection.origin,
            ResolvedConnection::Snowflake(connection) => &connection.origin,
        }
    }
}

/// PostgreSQL settings. Host, port, user and database are always set, and
/// settings from a `url` (such as `sslmode` or `options`) are kept.
#[derive(Clone)]
pub struct PostgresConnection {
    pub origin: ConnectionOrigin,
    config: tokio_postgres::Config,
}

impl PostgresConnection {
    /// The driver configuration, password included.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The first host: a name, an address or a Unix socket directory.
    pub fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => DEFAULT_POSTGRES_HOST.to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(DEFAULT_POSTGRES_PORT)
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// `host:port/database`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}/{}", self.host(), self.port(), self.database())
    }
}

impl fmt::Debug for PostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnection")
            .field("origin", &self.origin)
            .field("host", &self.host())
            .field("port", &self.port())
            .field("user", &self.user())
            .field("password", &self.has_password().then_some("***"))
            .field("database", &self.database())
            .finish()
    }
}

/// SQLite settings: the database file, which must already exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConnection {
    pub origin: ConnectionOrigin,
    pub path: PathBuf,
}

/// Snowflake settings, kept for the Snowflake target. Either `password` or
/// `private_key_file` is set.
#[derive(Clone)]
pub struct SnowflakeConnection {
    pub origin: ConnectionOrigin,
    pub account: String,
    pub user: String,
    pub password: Option<Secret>,
    pub private_key_file: Option<PathBuf>,
    pub authenticator: Option<String>,
    pub warehouse: Option<String>,
    pub role: Option<String>,
    pub database: Option<String>,
    pub schema: Option<String>,
    /// Host name for private endpoints. Without it, clients use the
    /// account's public host.
    pub host: Option<String>,
}

impl fmt::Debug for SnowflakeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnowflakeConnection")
            .field("origin", &self.origin)
            .field("account", &self.account)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("private_key_file", &self.private_key_file)
            .field("authenticator", &self.authenticator)
            .field("warehouse", &self.warehouse)
            .field("role", &self.role)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .field("host", &self.host)
            .finish()
    }
}

/// The connections of one `connections.toml`. Entries are checked when
/// resolved, so one broken or foreign entry (the Snowflake CLI defines keys
/// unibench does not use) does not block the others.
#[derive(Clone)]
pub struct ConnectionsFile {
    path: PathBuf,
    /// Whether the file exists; a missing default file reads as empty.
    exists: bool,
    entries: BTreeMap<String, toml::Table>,
}

impl fmt::Debug for ConnectionsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The entries hold passwords, so only their names are shown.
        f.debug_struct("ConnectionsFile").field("path", &self.path).field("names", &self.names()).finish()
    }
}

impl ConnectionsFile {
    /// `$UNIBENCH_HOME/connections.toml`, else `~/.unibench/connections.toml`.
    pub fn default_path() -> Result<PathBuf, ConnectionError> {
        default_path_with(&process_env)
    }

    /// Reads the given file, or the default one when `path` is `None`. A
    /// missing default file reads as empty, because templates that name no
    /// connection need none. A missing given file is an error.
    pub fn open(path: Option<&Path>) -> Result<Self, ConnectionError> {
        match path {
            Some(path) => Self::load(path),
            None => {
                let path = Self::default_path()?;
                if path.exists() {
                    Self::load(&path)
                } else {
                    Ok(ConnectionsFile { path, exists: false, entries: BTreeMap::new() })
                }
            }
        }
    }

    /// Reads and parses one file.
    pub fn load(path: &Path) -> Result<Self, ConnectionError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConnectionError::Read { path: path.to_owned(), reason: error.to_string() })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a connections file. `path` names the file in
    /// errors and anchors relative SQLite paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConnectionError> {
        let invalid =
            |line: Option<usize>, reason: String| ConnectionError::Parse { path: path.to_owned(), line, reason };

        // The TOML parser's own Display quotes the offending line, which may
        // hold a password, so only its message and line number are used.
        let document: toml::Table = toml::from_str(text)
            .map_err(|error| invalid(error.span().map(|span| line_of(text, span.start)), error.message().to_owned()))?;

        let mut entries = BTreeMap::new();
        match document.get("connections") {
            None => {}
            Some(toml::Value::Table(connections)) => {
                for (name, entry) in connections {
                    let toml::Value::Table(entry) = entry else {
                        return Err(invalid(
                            None,
                            format!("`connections.{name}` must be a table ([connections.{name}])"),
                        ));
                    };
                    entries.insert(name.clone(), entry.clone());
                }
            }
            Some(other) => {
                return Err(invalid(None, format!("`connections` must be a table, found {}", other.type_str())));
            }
        }
        Ok(ConnectionsFile { path: path.to_owned(), exists: true, entries })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Resolves a named connection for a target of kind `expected`, with the
    /// process environment filling what the entry leaves out.
    pub fn resolve(&self, name: &str, expected: TargetKind) -> Result<ResolvedConnection, ConnectionError> {
        self.resolve_with_env(name, expected, &process_env)
    }

    /// [`ConnectionsFile::resolve`] with an explicit environment.
    pub fn resolve_with_env(
        &self,
        name: &str,
        expected: TargetKind,
        env: EnvLookup<'_>,
    ) -> Result<ResolvedConnection, ConnectionError> {
        if !self.exists {
            return Err(ConnectionError::NoConnectionsFile { name: name.to_owned(), path: self.path.clone() });
        }
        let table = self.entries.get(name).ok_or_else(|| ConnectionError::UnknownConnection {
            name: name.to_owned(),
            path: self.path.clone(),
            available: self.names(),
        })?;
        let origin = ConnectionOrigin::Named { name: name.to_owned(), file: self.path.clone() };
        let entry = Entry { origin, table: Some(table), base_dir: self.path.parent(), env };
        entry.resolve(expected)
    }
}

/// Resolves the connection of a template's target: the named connection
/// from `connections_file` (or the default file), or the environment alone
/// when the target names none.
pub fn resolve_target(
    spec: &TargetSpec,
    connections_file: Option<&Path>,
) -> Result<ResolvedConnection, ConnectionError> {
    match &spec.connection {
        Some(name) => ConnectionsFile::open(connections_file)?.resolve(name, spec.kind),
        None => resolve_environment(spec.kind, &process_env),
    }
}

/// Resolves a connection of `kind` from environment variables alone.
pub fn resolve_environment(kind: TargetKind, env: EnvLookup<'_>) -> Result<ResolvedConnection, ConnectionError> {
    let entry = Entry { origin: ConnectionOrigin::Environment, table: None, base_dir: None, env };
    entry.resolve(kind)
}

fn default_path_with(env: EnvLookup<'_>) -> Result<PathBuf, ConnectionError> {
    if let Some(home) = env(HOME_ENV) {
        return Ok(PathBuf::from(home).join(CONNECTIONS_FILE_NAME));
    }
    match env("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".unibench").join(CONNECTIONS_FILE_NAME)),
        None => Err(ConnectionError::NoHome),
    }
}

/// The 1-based line that contains byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&byte| byte == b'\n').count() + 1
}

/// One connection being resolved: its table in the file (none for the
/// environment alone) and the environment that fills the gaps.
struct Entry<'a> {
    origin: ConnectionOrigin,
    table: Option<&'a toml::Table>,
    /// Directory of the connections file, for relative SQLite paths.
    base_dir: Option<&'a Path>,
    env: EnvLookup<'a>,
}

impl Entry<'_> {
    fn resolve(&self, expected: TargetKind) -> Result<ResolvedConnection, ConnectionError> {
        let kind = match self.string("kind")? {
            Some(text) => TargetKind::from_str(&text).map_err(|error| self.invalid("kind", error.to_string()))?,
            None => expected,
        };
        if kind != expected {
            return Err(ConnectionError::KindMismatch { origin: self.origin.clone(), actual: kind, expected });
        }
        match kind {
            TargetKind::Postgres => self.postgres().map(ResolvedConnection::Postgres),
            TargetKind::Sqlite => self.sqlite().map(ResolvedConnection::Sqlite),
            TargetKind::Snowflake => self.snowflake().map(ResolvedConnection::Snowflake),
        }
    }

    fn invalid(&self, key: &str, reason: String) -> ConnectionError {
        ConnectionError::InvalidKey { origin: self.origin.clone(), key: key.to_owned(), reason }
    }

    fn missing(&self, key: &'static str, env_var: &str) -> ConnectionError {
        let hint = match self.origin {
            ConnectionOrigin::Named { .. } => {
                format!("set `{key}` in the connection or the {env_var} environment variable")
            }
            ConnectionOrigin::Environment => {
                format!(
                    "set the {env_var} environment variable or name a connection in the template's target.connection"
                )
            }
        };
        ConnectionError::MissingKey { origin: self.origin.clone(), key, hint }
    }

    /// Rejects keys that `kind` does not define.
    fn check_keys(&self, kind: TargetKind, expected: &'static [&'static str]) -> Result<(), ConnectionError> {
        let Some(table) = self.table else {
            return Ok(());
        };
        match table.keys().find(|key| !expected.contains(&key.as_str())) {
            Some(key) => {
                Err(ConnectionError::UnknownKey { origin: self.origin.clone(), key: key.clone(), kind, expected })
            }
            None => Ok(()),
        }
    }

    /// A string key of the entry. The error names the value's TOML type,
    /// never the value, because the key may be a password.
    fn string(&self, key: &str) -> Result<Option<String>, ConnectionError> {
        match self.table.and_then(|table| table.get(key)) {
            None => Ok(None),
            Some(toml::Value::String(text)) if text.is_empty() => Ok(None),
            Some(toml::Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(self.invalid(key, format!("expected a string, found {}", other.type_str()))),
        }
    }

    /// A string key of the entry, else the environment variable.
    fn string_or_env(&self, key: &str, env_var: &str) -> Result<Option<String>, ConnectionError> {
        Ok(self.string(key)?.or_else(|| (self.env)(env_var)))
    }

    fn port(&self) -> Result<Option<u16>, ConnectionError> {
        let expected = "expected a port number from 1 to 65535";
        let from_file = match self.table.and_then(|table| table.get("port")) {
            None => None,
            Some(toml::Value::Integer(number)) => {
                let port = u16::try_from(*number).ok().filter(|&port| port > 0);
                Some(port.ok_or_else(|| self.invalid("port", format!("{expected}, found {number}")))?)
            }
            Some(toml::Value::String(text)) => {
                Some(parse_port(text).ok_or_else(|| self.invalid("port", format!("{expected}, found `{text}`")))?)
            }
            Some(other) => return Err(self.invalid("port", format!("{expected}, found {}", other.type_str()))),
        };
        if from_file.is_some() {
            return Ok(from_file);
        }
        match (self.env)("PGPORT") {
            None => Ok(None),
            Some(text) => parse_port(&text)
                .map(Some)
                .ok_or_else(|| self.invalid("port", format!("{expected} in PGPORT, found `{text}`"))),
        }
    }

    fn postgres(&self) -> Result<PostgresConnection, ConnectionError> {
        self.check_keys(TargetKind::Postgres, POSTGRES_KEYS)?;
        let mut config = match self.string("url")? {
            Some(url) => self.postgres_url(&url)?,
            None => tokio_postgres::Config::new(),
        };

        if config.get_hosts().is_empty() {
            let host = self.string_or_env("host", "PGHOST")?;
            config.host(host.as_deref().unwrap_or(DEFAULT_POSTGRES_HOST));
        }
        if config.get_ports().is_empty() {
            config.port(self.port()?.unwrap_or(DEFAULT_POSTGRES_PORT));
        }
        if config.get_user().is_none() {
            let user = self.string_or_env("user", "PGUSER")?.ok_or_else(|| self.missing("user", "PGUSER"))?;
            config.user(&user);
        }
        if config.get_password().is_none() {
            if let Some(password) = self.string_or_env("password", "PGPASSWORD")? {
                config.password(password);
            }
        }
        if config.get_dbname().is_none() {
            // libpq's default: the database named after the user.
            let database = match self.string_or_env("database", "PGDATABASE")? {
                Some(database) => database,
                None => config.get_user().unwrap_or_default().to_owned(),
            };
            config.dbname(&database);
        }
        Ok(PostgresConnection { origin: self.origin.clone(), config })
    }

    /// Parses a `url` key. It replaces `host`, `port`, `user` and
    /// `database`, which would otherwise compete with it. A `password` key
    /// may accompany it, so that the URL itself contains no secret.
    fn postgres_url(&self, url: &str) -> Result<tokio_postgres::Config, ConnectionError> {
        if let Some(key) =
            ["host", "port", "user", "database"].into_iter().find(|key| self.string(key).ok().flatten().is_some())
        {
            return Err(self.invalid("url", format!("set either `url` or `{key}`, not both")));
        }
        // tokio-postgres's parse errors describe the syntax problem without
        // echoing the URL, so they are safe to show.
        tokio_postgres::Config::from_str(url).map_err(|error| self.invalid("url", error.to_string()))
    }

    fn sqlite(&self) -> Result<SqliteConnection, ConnectionError> {
        self.check_keys(TargetKind::Sqlite, SQLITE_KEYS)?;
        let Some(path) = self.string("path")? else {
            let hint = match self.origin {
                ConnectionOrigin::Named { .. } => "set `path` to the SQLite database file".to_owned(),
                ConnectionOrigin::Environment => {
                    "SQLite targets have no environment variables: name a connection with a `path` in the template's target.connection".to_owned()
                }
            };
            return Err(ConnectionError::MissingKey { origin: self.origin.clone(), key: "path", hint });
        };
        Ok(SqliteConnection { origin: self.origin.clone(), path: self.expand_path(&path) })
    }

    /// Expands a leading `~/` to the home directory and anchors a relative
    /// path at the connections file's directory.
    fn expand_path(&self, path: &str) -> PathBuf {
        let expanded = match (path.strip_prefix("~/"), (self.env)("HOME")) {
            (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
            _ => PathBuf::from(path),
        };
        match self.base_dir {
            Some(base) if expanded.is_relative() => base.join(expanded),
            _ => expanded,
        }
    }

    fn snowflake(&self) -> Result<SnowflakeConnection, ConnectionError> {
        // Unknown keys are allowed: a Snowflake CLI connections file
        // defines more keys than unibench reads.
        let account = self
            .string_or_env("account", "SNOWFLAKE_ACCOUNT")?
            .ok_or_else(|| self.missing("account", "SNOWFLAKE_ACCOUNT"))?;
        let user =
            self.string_or_env("user", "SNOWFLAKE_USER")?.ok_or_else(|| self.missing("user", "SNOWFLAKE_USER"))?;
        let password = self.string_or_env("password", "SNOWFLAKE_PASSWORD")?.map(Secret::new);
        // Older Snowflake CLI files name the key `private_key_path`.
        let private_key_file = match self.string("private_key_file")? {
            Some(path) => Some(path),
            None => self.string_or_env("private_key_path", "SNOWFLAKE_PRIVATE_KEY_PATH")?,
        };
        if password.is_none() && private_key_file.is_none() {
            return Err(ConnectionError::MissingKey {
                origin: self.origin.clone(),
                key: "password",
                hint: "set `password` or `private_key_file` (or SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH)"
                    .to_owned(),
            });
        }
        Ok(SnowflakeConnection {
            origin: self.origin.clone(),
            account,
            user,
            password,
            private_key_file: private_key_file.map(|path| self.expand_path(&path)),
            authenticator: self.string_or_env("authenticator", "SNOWFLAKE_AUTHENTICATOR")?,
            warehouse: self.string_or_env("warehouse", "SNOWFLAKE_WAREHOUSE")?,
            role: self.string_or_env("role", "SNOWFLAKE_ROLE")?,
            database: self.string_or_env("database", "SNOWFLAKE_DATABASE")?,
            schema: self.string_or_env("schema", "SNOWFLAKE_SCHEMA")?,
            host: self.string_or_env("host", "SNOWFLAKE_HOST")?,
        })
    }
}

fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|&port| port > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const PASSWORD: &str = "pa55-w0rd-never-shown";

    fn file(text: &str) -> ConnectionsFile {
        ConnectionsFile::parse(Path::new("/home/u/.unibench/connections.toml"), text).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn postgres(resolved: ResolvedConnection) -> PostgresConnection {
        match resolved {
            ResolvedConnection::Postgres(connection) => connection,
            other => panic!("expected a PostgreSQL connection, got {other:?}"),
        }
    }

    #[test]
    fn postgres_keys_are_read() {
        let connections = file(&format!(
            "[connections.local-pg]\nkind = \"postgres\"\nhost = \"db.internal\"\nport = 6543\n\
             user = \"bench\"\npassword = \"{PASSWORD}\"\ndatabase = \"shop\"\n"
        ));
        let pg = postgres(connections.resolve_with_env("local-pg", TargetKind::Postgres, &env(&[])).unwrap());
        assert_eq!(pg.host(), "db.internal");
        assert_eq!(pg.port(), 6543);
        assert_eq!(pg.user(), "bench");
        assert_eq!(pg.database(), "shop");
        assert_eq!(pg.config().get_password(), Some(PASSWORD.as_bytes()));
        assert_eq!(pg.location(), "db.internal:6543/shop");
    }

    #[test]
    fn environment_fills_missing_keys() {
        let connections = file("[connections.partial]\nkind = \"postgres\"\nhost = \"from-file\"\n");
        let vars = env(&[("PGHOST", "from-env"), ("PGPORT", "5433"), ("PGUSER", "envuser"), ("PGPASSWORD", PASSWORD)]);
        let pg = postgres(connections.resolve_with_env("partial", TargetKind::Postgres, &vars).unwrap());
        assert_eq!(pg.host(), "from-file");
        assert_eq!(pg.port(), 5433);
        assert_eq!(pg.user(), "envuser");
        assert_eq!(pg.database(), "envuser");
        assert!(pg.has_password());
    }

    #[test]
    fn environment_alone_resolves_postgres() {
        let vars = env(&[("PGUSER", "u"), ("PGDATABASE", "d")]);
        let pg = postgres(resolve_environment(TargetKind::Postgres, &vars).unwrap());
        assert_eq!(pg.location(), "localhost:5432/d");
        assert_eq!(pg.origin, ConnectionOrigin::Environment);
        assert!(!pg.has_password());
    }

    #[test]
    fn url_connection_is_parsed() {
        let connections = file(
            "[connections.u]\nkind = \"postgres\"\nurl = \"postgres://bench@10.0.0.5:5555/orders?sslmode=disable\"\n",
        );
        let pg = postgres(
            connections.resolve_with_env("u", TargetKind::Postgres, &env(&[("PGPASSWORD", PASSWORD)])).unwrap(),
        );
        assert_eq!(pg.location(), "10.0.0.5:5555/orders");
        assert_eq!(pg.user(), "bench");
        assert!(pg.has_password());
    }

    #[test]
    fn url_with_host_key_is_rejected() {
        let connections = file("[connections.u]\nurl = \"postgres://a@b/c\"\nhost = \"d\"\n");
        let error = connections.resolve_with_env("u", TargetKind::Postgres, &env(&[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid `url` in connection `u` in /home/u/.unibench/connections.toml: set either `url` or `host`, not both"
        );
    }

    #[test]
    fn missing_user_is_named() {
        let connections = file("[connections.nouser]\nkind = \"postgres\"\n");
        let error = connections.resolve_with_env("nouser", TargetKind::Postgres, &env(&[])).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("connection `nouser` in /home/u/.unibench/connections.toml has no `user`"), "{text}");
        assert!(text.contains("PGUSER"), "{text}");
        let error = resolve_environment(TargetKind::Postgres, &env(&[])).unwrap_err();
        assert!(
            error.to_string().starts_with("the environment (the template names no connection) has no `user`"),
            "{error}"
        );
    }

    #[test]
    fn unknown_connection_lists_names() {
        let connections = file("[connections.b]\nkind = \"sqlite\"\npath = \"b.db\"\n[connections.a]\nkind = \"sqlite\"\npath = \"a.db\"\n");
        let error = connections.resolve_with_env("c", TargetKind::Sqlite, &env(&[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "connection `c` not found in /home/u/.unibench/connections.toml; available connections: a, b"
        );
        let empty = file("");
        let error = empty.resolve_with_env("c", TargetKind::Sqlite, &env(&[])).unwrap_err();
        assert!(error.to_string().ends_with("the file defines no connections"), "{error}");
    }

    #[test]
    fn sqlite_path_is_anchored_at_the_file() {
        let connections = file("[connections.rel]\npath = \"data/demo.db\"\n[connections.abs]\npath = \"/srv/demo.db\"\n[connections.home]\npath = \"~/demo.db\"\n");
        let path_of = |name: &str| match connections
            .resolve_with_env(name, TargetKind::Sqlite, &env(&[("HOME", "/home/u")]))
            .unwrap()
        {
            ResolvedConnection::Sqlite(sqlite) => sqlite.path,
            other => panic!("expected SQLite, got {other:?}"),
        };
        assert_eq!(path_of("rel"), Path::new("/home/u/.unibench/data/demo.db"));
        assert_eq!(path_of("abs"), Path::new("/srv/demo.db"));
        assert_eq!(path_of("home"), Path::new("/home/u/demo.db"));
    }

    #[test]
    fn sqlite_without_path_is_explained() {
        let error = resolve_environment(TargetKind::Sqlite, &env(&[])).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("has no `path`"), "{text}");
        assert!(text.contains("target.connection"), "{text}");
        let connections = file("[connections.s]\nkind = \"sqlite\"\n");
        let error = connections.resolve_with_env("s", TargetKind::Sqlite, &env(&[])).unwrap_err();
        assert!(error.to_string().contains("connection `s` in"), "{error}");
    }

    #[test]
    fn kind_mismatch_is_rejected() {
        let connections = file("[connections.s]\nkind = \"sqlite\"\npath = \"x.db\"\n");
        let error = connections.resolve_with_env("s", TargetKind::Postgres, &env(&[])).unwrap_err();
        assert!(
            error.to_string().contains("is a sqlite connection, but the template's target kind is postgres"),
            "{error}"
        );
        let bad_kind = file("[connections.m]\nkind = \"mysql\"\n");
        let error = bad_kind.resolve_with_env("m", TargetKind::Postgres, &env(&[])).unwrap_err();
        assert!(error.to_string().contains("invalid `kind`"), "{error}");
    }

    #[test]
    fn unknown_and_mistyped_keys_are_rejected() {
        let connections = file("[connections.p]\nkind = \"postgres\"\nuser = \"u\"\npasword = \"x\"\n");
        let error = connections.resolve_with_env("p", TargetKind::Postgres, &env(&[])).unwrap_err();
        assert!(error.to_string().contains("unknown key `pasword`"), "{error}");
        let connections = file("[connections.p]\nuser = \"u\"\nport = 70000\n");
        let error = connections.resolve_with_env("p", TargetKind::Postgres, &env(&[])).unwrap_err();
        assert!(error.to_string().contains("invalid `port`"), "{error}");
        assert!(error.to_string().contains("70000"), "{error}");
        let error = resolve_environment(TargetKind::Postgres, &env(&[("PGUSER", "u"), ("PGPORT", "x")])).unwrap_err();
        assert!(error.to_string().contains("PGPORT"), "{error}");
    }

    #[test]
    fn snowflake_keys_and_environment_are_read() {
        let connections = file(&format!(
            "[connections.sf]\naccount = \"xy12345\"\nuser = \"bench\"\npassword = \"{PASSWORD}\"\n\
             warehouse = \"BENCH_WH\"\nauthenticator = \"snowflake\"\nclient_session_keep_alive = true\n"
        ));
        let vars = env(&[("SNOWFLAKE_ROLE", "BENCH_ROLE"), ("SNOWFLAKE_WAREHOUSE", "OTHER_WH")]);
        let ResolvedConnection::Snowflake(sf) =
            connections.resolve_with_env("sf", TargetKind::Snowflake, &vars).unwrap()
        else {
            panic!("expected Snowflake");
        };
        assert_eq!(sf.account, "xy12345");
        assert_eq!(sf.warehouse.as_deref(), Some("BENCH_WH"));
        assert_eq!(sf.role.as_deref(), Some("BENCH_ROLE"));
        assert_eq!(sf.password.as_ref().map(Secret::expose), Some(PASSWORD));

        let key_pair = resolve_environment(
            TargetKind::Snowflake,
            &env(&[
                ("SNOWFLAKE_ACCOUNT", "a"),
                ("SNOWFLAKE_USER", "u"),
                ("SNOWFLAKE_PRIVATE_KEY_PATH", "/keys/rsa.p8"),
            ]),
        )
        .unwrap();
        let ResolvedConnection::Snowflake(sf) = key_pair else { panic!("expected Snowflake") };
        assert_eq!(sf.private_key_file.as_deref(), Some(Path::new("/keys/rsa.p8")));
        assert!(sf.password.is_none());

        let error =
            resolve_environment(TargetKind::Snowflake, &env(&[("SNOWFLAKE_ACCOUNT", "a"), ("SNOWFLAKE_USER", "u")]))
                .unwrap_err();
        assert!(error.to_string().contains("private_key_file"), "{error}");
    }

    #[test]
    fn missing_default_file_is_named() {
        let missing = ConnectionsFile {
            path: PathBuf::from("/nowhere/connections.toml"),
            exists: false,
            entries: BTreeMap::new(),
        };
        let error = missing.resolve_with_env("bench", TargetKind::Postgres, &env(&[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "connection `bench` not found: connections file /nowhere/connections.toml does not exist; \
             create it or pass another file"
        );
    }

    #[test]
    fn default_path_follows_unibench_home() {
        assert_eq!(
            default_path_with(&env(&[("UNIBENCH_HOME", "/opt/ub"), ("HOME", "/h")])).unwrap(),
            Path::new("/opt/ub/connections.toml")
        );
        assert_eq!(default_path_with(&env(&[("HOME", "/h")])).unwrap(), Path::new("/h/.unibench/connections.toml"));
        assert!(matches!(default_path_with(&env(&[])), Err(ConnectionError::NoHome)));
    }

    #[test]
    fn password_never_in_debug() {
        let connections = file(&format!(
            "[connections.pg]\nuser = \"u\"\npassword = \"{PASSWORD}\"\n\
             [connections.sf]\naccount = \"a\"\nuser = \"u\"\npassword = \"{PASSWORD}\"\n\
             [connections.url]\nurl = \"postgres://u:{PASSWORD}@h/d\"\n"
        ));
        let vars = env(&[]);
        let pg = connections.resolve_with_env("pg", TargetKind::Postgres, &vars).unwrap();
        let sf = connections.resolve_with_env("sf", TargetKind::Snowflake, &vars).unwrap();
        let url = connections.resolve_with_env("url", TargetKind::Postgres, &vars).unwrap();
        let env_pg =
            resolve_environment(TargetKind::Postgres, &env(&[("PGUSER", "u"), ("PGPASSWORD", PASSWORD)])).unwrap();
        for text in [
            format!("{connections:?}"),
            format!("{pg:?}"),
            format!("{pg:#?}"),
            format!("{sf:?}"),
            format!("{url:?}"),
            format!("{env_pg:?}"),
            format!("{:?}", Secret::new(PASSWORD)),
        ] {
            assert!(!text.contains(PASSWORD), "{text}");
        }
        assert!(format!("{pg:?}").contains("***"));
        assert!(format!("{sf:?}").contains("***"));
    }

    #[test]
    fn password_never_in_errors() {
        let errors = [
            // A syntax error on the password's line.
            ConnectionsFile::parse(Path::new("c.toml"), &format!("[connections.p]\npassword = \"{PASSWORD}\" x\n"))
                .unwrap_err(),
            // A password of the wrong type.
            file(&format!("[connections.p]\nuser = \"u\"\npassword = [\"{PASSWORD}\"]\n"))
                .resolve_with_env("p", TargetKind::Postgres, &env(&[]))
                .unwrap_err(),
            // An invalid URL that contains a password.
            file(&format!("[connections.p]\nurl = \"postgres://u:{PASSWORD}@h:notaport/d\"\n"))
                .resolve_with_env("p", TargetKind::Postgres, &env(&[]))
                .unwrap_err(),
            // A missing key next to a password.
            file(&format!("[connections.p]\npassword = \"{PASSWORD}\"\n"))
                .resolve_with_env("p", TargetKind::Postgres, &env(&[]))
                .unwrap_err(),
            file(&format!("[connections.p]\npassword = \"{PASSWORD}\"\n"))
                .resolve_with_env("q", TargetKind::Postgres, &env(&[]))
                .unwrap_err(),
        ];
        for error in errors {
            let text = format!("{error} {error:?}");
            assert!(!text.contains(PASSWORD), "{text}");
        }
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let error =
            ConnectionsFile::parse(Path::new("/etc/c.toml"), "[connections.a]\nkind = \"postgres\"\nport = = 1\n")
                .unwrap_err();
        assert!(error.to_string().starts_with("invalid connections file /etc/c.toml, line 3:"), "{error}");
        let error = ConnectionsFile::parse(Path::new("/etc/c.toml"), "connections = 5\n").unwrap_err();
        assert!(error.to_string().contains("`connections` must be a table"), "{error}");
    }
}
