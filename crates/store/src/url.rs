//! Store URLs: which store to use and how to reach it.
//!
//! `sqlite://PATH` and `postgres://...` (or `postgresql://...`) are
//! accepted. With no URL given, the `UNIBENCH_STORE` environment variable
//! is used, and without that an embedded SQLite file at
//! `$UNIBENCH_HOME/unibench.db` (`~/.unibench/unibench.db` by default).
//! PostgreSQL URLs may hold a password, so this type never prints one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{StoreError, StoreResult};

/// Environment variable naming the default store URL.
pub const STORE_ENV: &str = "UNIBENCH_STORE";
/// Environment variable naming unibench's per-user directory.
pub const HOME_ENV: &str = "UNIBENCH_HOME";
/// File name of the embedded store inside the per-user directory.
pub const DEFAULT_SQLITE_FILE: &str = "unibench.db";

/// How long to wait for a PostgreSQL store to accept a connection, unless
/// the URL sets `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed store URL.
#[derive(Clone)]
pub enum StoreUrl {
    Sqlite { path: PathBuf },
    Postgres { config: Box<tokio_postgres::Config>, display: String },
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `tokio_postgres::Config`'s own Debug prints the password, so only
        // the redacted form is shown.
        write!(f, "StoreUrl({self})")
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            StoreUrl::Postgres { display, .. } => f.write_str(display),
        }
    }
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> StoreResult<Self> {
        let invalid = |reason: &str| StoreError::InvalidUrl { url: redact_url(url), reason: reason.to_owned() };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid("expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(invalid("the SQLite file path is empty"));
                }
                Ok(StoreUrl::Sqlite { path: PathBuf::from(rest) })
            }
            "postgres" | "postgresql" => parse_postgres(url).map_err(|reason| invalid(&reason)),
            "snowflake" => Err(invalid("the Snowflake store is not available in this build")),
            other => Err(invalid(&format!("unknown scheme `{other}`: expected sqlite or postgres"))),
        }
    }
}

fn parse_postgres(url: &str) -> Result<StoreUrl, String> {
    // tokio-postgres's parse errors describe the syntax problem without
    // echoing the URL, so they are safe to show.
    let mut config = tokio_postgres::Config::from_str(url).map_err(|error| error.to_string())?;
    if config.get_hosts().is_empty() {
        return Err("the URL names no host".to_owned());
    }
    if config.get_user().is_none() {
        config.user(std::env::var("PGUSER").unwrap_or_else(|_| "postgres".to_owned()));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("unibench");
    }
    let display = redact_url(url);
    Ok(StoreUrl::Postgres { config: Box::new(config), display })
}

impl StoreUrl {
    /// Resolves the store to use: the given URL, else `UNIBENCH_STORE`, else
    /// the embedded default file.
    pub fn resolve(explicit: Option<&str>) -> StoreResult<Self> {
        if let Some(url) = explicit.filter(|url| !url.trim().is_empty()) {
            return url.trim().parse();
        }
        if let Ok(url) = std::env::var(STORE_ENV) {
            if !url.trim().is_empty() {
                return url.trim().parse();
            }
        }
        Ok(StoreUrl::Sqlite { path: default_sqlite_path()? })
    }

    /// The SQLite file, for an SQLite URL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            StoreUrl::Sqlite { path } => Some(path),
            StoreUrl::Postgres { .. } => None,
        }
    }
}

/// unibench's per-user directory: `$UNIBENCH_HOME`, else `~/.unibench`.
pub fn unibench_home() -> StoreResult<PathBuf> {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|home| !home.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".unibench")),
        None => Err(StoreError::InvalidUrl {
            url: String::new(),
            reason: format!("no store URL given and neither {HOME_ENV} nor HOME is set; pass --store"),
        }),
    }
}

/// The embedded store used when no URL is given.
pub fn default_sqlite_path() -> StoreResult<PathBuf> {
    Ok(unibench_home()?.join(DEFAULT_SQLITE_FILE))
}

/// Replaces the password in a store URL with `***`: the password of
/// `user:password@`, a `password=` query parameter, and a `password=`
/// keyword of the `key=value` form. The user information is taken to end
/// at the last `@`, because tokio-postgres accepts a password with an
/// unencoded `/`, `?` or `@`. A URL with an `@` in its query may so lose
/// more than its password, never less.
pub fn redact_url(url: &str) -> String {
    let mut redacted = url.to_owned();
    let userinfo_start = match redacted.find("://") {
        Some(scheme_end) => scheme_end + 3,
        None => redacted.find(':').map_or(0, |colon| colon + 1),
    };
    if let Some(at) = redacted[userinfo_start..].rfind('@') {
        let userinfo = &redacted[userinfo_start..userinfo_start + at];
        if let Some(colon) = userinfo.find(':') {
            redacted.replace_range(userinfo_start + colon + 1..userinfo_start + at, "***");
        }
    }
    redact_password_keywords(&redacted)
}

/// Redacts `password=value` as a URL query parameter and in the
/// `key=value` connection string form, where a value may be single-quoted.
fn redact_password_keywords(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search_from = 0;
    while let Some(found) = lower[search_from..].find("password") {
        let key_start = search_from + found;
        let mut cursor = key_start + "password".len();
        search_from = cursor;
        let at_word_start = key_start == 0 || !lower.as_bytes()[key_start - 1].is_ascii_alphanumeric();
        let rest = &text[cursor..];
        let after_spaces = rest.trim_start();
        if !at_word_start || !after_spaces.starts_with('=') {
            continue;
        }
        cursor += rest.len() - after_spaces.len() + 1;
        cursor += text[cursor..].len() - text[cursor..].trim_start().len();
        let value_end = value_end(text, cursor);
        if value_end == cursor || text[cursor..].starts_with("***") {
            continue;
        }
        redacted.push_str(&text[copied..cursor]);
        redacted.push_str("***");
        copied = value_end;
        search_from = value_end;
    }
    redacted.push_str(&text[copied..]);
    redacted
}

/// Returns where a `key=value` value that starts at `start` ends: after its
/// closing quote, or at the next whitespace or `&`.
fn value_end(text: &str, start: usize) -> usize {
    let value = &text[start..];
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (offset, character) in quoted.char_indices() {
            match character {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return start + 1 + offset + 1,
                _ => escaped = false,
            }
        }
        return text.len();
    }
    value.find(|character: char| character.is_whitespace() || character == '&').map_or(text.len(), |end| start + end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_keeps_path() {
        let url: StoreUrl = "sqlite:///tmp/x/unibench.db".parse().unwrap();
        assert_eq!(url.sqlite_path(), Some(Path::new("/tmp/x/unibench.db")));
        let relative: StoreUrl = "sqlite://data/run.db".parse().unwrap();
        assert_eq!(relative.sqlite_path(), Some(Path::new("data/run.db")));
    }

    #[test]
    fn bad_scheme_is_named() {
        let error = "mysql://root:hunter2@localhost/db".parse::<StoreUrl>().unwrap_err();
        let text = error.to_string();
        assert!(text.contains("unknown scheme `mysql`"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn missing_scheme_is_rejected() {
        let error = "/tmp/unibench.db".parse::<StoreUrl>().unwrap_err();
        assert!(error.to_string().contains("expected sqlite://PATH"), "{error}");
    }

    #[test]
    fn postgres_password_never_printed() {
        let url: StoreUrl = "postgres://bench:s3cr3t@127.0.0.1:5432/results".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://bench:***@127.0.0.1:5432/results");
        assert!(!format!("{url:?}").contains("s3cr3t"));
        let with_parameter: StoreUrl =
            "postgresql://bench@127.0.0.1/results?password=s3cr3t&sslmode=disable".parse().unwrap();
        assert!(!format!("{with_parameter} {with_parameter:?}").contains("s3cr3t"));
    }

    #[test]
    fn redact_hides_passwords_with_url_delimiters() {
        assert_eq!(
            redact_url("postgres://slash:Pa/ss?LEAK@127.0.0.1:5432/store"),
            "postgres://slash:***@127.0.0.1:5432/store"
        );
        assert_eq!(redact_url("postgres://a:p@ss@host/db"), "postgres://a:***@host/db");
        assert_eq!(redact_url("postgres:/bench:SECRET@127.0.0.1/x"), "postgres:/bench:***@127.0.0.1/x");
        assert_eq!(redact_url("host=127.0.0.1 password=SECRET user=bench"), "host=127.0.0.1 password=*** user=bench");
        assert_eq!(redact_url("host=h password = 'a b\\' c' dbname=x"), "host=h password = *** dbname=x");
        assert_eq!(redact_url("postgres://h/db?user=a&PASSWORD=SECRET"), "postgres://h/db?user=a&PASSWORD=***");
        for url in ["postgres://slash:Pa/ss?LEAK@h/db", "host=h password=LEAK", "x:/a:LEAK@h", "password='LEAK"] {
            assert!(!redact_url(url).contains("LEAK"), "{url} -> {}", redact_url(url));
        }
    }

    #[test]
    fn redact_leaves_passwordless_urls_alone() {
        assert_eq!(redact_url("postgres://bench@host/db"), "postgres://bench@host/db");
        assert_eq!(redact_url("postgres://a:b@host/db?x=1"), "postgres://a:***@host/db?x=1");
    }
}
