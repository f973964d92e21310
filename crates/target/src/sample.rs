//! Checks and reads made before a run, each on a short-lived connection of
//! its own: whether the target responds, whether the table exists, and a
//! cheap sample of the key column for the template's value pools.
//!
//! Sampling reads the key bounds (`min` and `max`, which an index returns
//! without a scan) plus a bounded sample. On PostgreSQL a table over
//! [`SMALL_TABLE_PAGES`] is sampled by `TABLESAMPLE SYSTEM`, which reads
//! only the pages it picks. Smaller tables are shuffled whole.

use serde_json::Value;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::config::TargetConfig;
use crate::connection::{Session, TargetConnection};
use crate::error::TargetError;
use crate::postgres::{query_error, PostgresSession};
use crate::sql::{quote_identifier, quote_table, split_name};
use crate::sqlite::{self, SqliteSession};

/// Tables of at most this many pages (8 MiB with PostgreSQL's default
/// 8 KiB pages) are sampled with a full `ORDER BY random()`, larger ones
/// with `TABLESAMPLE SYSTEM`.
pub const SMALL_TABLE_PAGES: i64 = 1024;

/// `TABLESAMPLE SYSTEM` picks whole pages at random, so the number of rows
/// it returns varies. Asking for this many times the wanted rows makes a
/// short sample unlikely.
const OVERSAMPLE: f64 = 4.0;

/// How often a `TABLESAMPLE` that returned fewer rows than requested is
/// repeated, each time over this many times the previous share of pages.
const SHORT_SAMPLE_RETRIES: usize = 2;
const SHORT_SAMPLE_GROWTH: f32 = 4.0;

/// Rows per page assumed for a table that has never been analysed
/// (`pg_class.reltuples` unknown). This is an estimate: narrow rows fit
/// more, wide rows fewer.
const ASSUMED_ROWS_PER_PAGE: f64 = 50.0;

/// SQLSTATE `42883` (undefined_function): the key type has no `min`/`max`,
/// as for `uuid` before PostgreSQL 18.
const UNDEFINED_FUNCTION: &str = "42883";

/// Key bounds and sampled key values of a table, as JSON values.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySample {
    /// `min(key)`, or `None` for an empty table or a key type without an
    /// ordering.
    pub min: Option<Value>,
    /// `max(key)`, under the same conditions as `min`.
    pub max: Option<Value>,
    /// The keys of at most the requested number of rows, in random order,
    /// without NULLs.
    pub values: Vec<Value>,
    /// How the values were picked.
    pub method: SampleMethod,
}

/// Opens a connection and runs `SELECT 1`.
pub async fn check_reachable(config: &TargetConfig) -> Result<(), TargetError> {
    let connection = TargetConnection::open_for_checks(config).await?;
    let result = match connection.session() {
        Session::Postgres(session) => session
            .client
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|e| query_error("SELECT 1", &session.client, &e)),
        Session::Sqlite(session) => {
            session
                .call(|state| {
                    state
                        .connection
                        .query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                        .map(drop)
                        .map_err(|e| sqlite::query_error("SELECT 1", &e))
                })
                .await
        }
    };
    connection.close().await;
    result
}

/// Whether `table` (possibly schema-qualified, read as [`quote_table`]
/// reads it) exists as a table or view.
pub async fn table_exists(config: &TargetConfig, table: &str) -> Result<bool, TargetError> {
    let kind = config.kind();
    let quoted = quote_table(kind, table)?;
    let parts = split_name(kind, table, "table name")?;

    let connection = TargetConnection::open_for_checks(config).await?;
    let result = match connection.session() {
        Session::Postgres(session) => postgres_table_exists(session, quoted.as_str()).await,
        Session::Sqlite(session) => sqlite_table_exists(session, parts).await,
    };
    connection.close().await;
    result
}

/// Reads the bounds of `key_column` in `table` and a random sample of at
/// most `limit` of its values.
pub async fn sample_keys(
    config: &TargetConfig,
    table: &str,
    key_column: &str,
    limit: usize,
) -> Result<KeySample, TargetError> {
    let kind = config.kind();
    let table_sql = quote_table(kind, table)?.to_string();
    let key_sql = quote_identifier(kind, key_column)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);

    let connection = TargetConnection::open_for_checks(config).await?;
    let result = match connection.session() {
        Session::Postgres(session) => postgres_sample(session, &table_sql, &key_sql, limit).await,
        Session::Sqlite(session) => sqlite_sample(session, table_sql, key_sql, limit).await,
    };
    connection.close().await;

    if let Ok(sample) = &result {
        tracing::debug!(backend = %config.backend(), table, key_column, sampled = sample.values.len(), "sampled key values");
    }
    result
}

async fn postgres_table_exists(session: &PostgresSession, quoted: &str) -> Result<bool, TargetError> {
    let row = session
        .client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])
        .await
        .map_err(|e| query_error("to_regclass", &session.client, &e))?;
    row.try_get(0).map_err(|e| query_error("to_regclass", &session.client, &e))
}

async fn sqlite_table_exists(session: &SqliteSession, parts: Vec<String>) -> Result<bool, TargetError> {
    session
        .call(move |state| {
            let (schema, name) = match parts.as_slice() {
                [name] => (None, name.clone()),
                [schema, name] => (Some(schema.clone()), name.clone()),
                _ => (None, String::new()),
            };
            let count: i64 = state
                .connection
                .query_row(
                    "SELECT count(*) FROM pragma_table_list \
                     WHERE name = ?1 COLLATE NOCASE AND (?2 IS NULL OR schema = ?2 COLLATE NOCASE)",
                    rusqlite::params![name, schema],
                    |row| row.get(0),
                )
                .map_err(|e| sqlite::query_error("pragma_table_list", &e))?;
            Ok(count > 0)
        })
        .await
}

/// How sampled values were picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleMethod {
    /// `ORDER BY random()` over the whole table: SQLite, and small
    /// PostgreSQL tables.
    Shuffle,
    /// `TABLESAMPLE SYSTEM (percent)`, then shuffled: large PostgreSQL
    /// tables.
    System { percent: f32 },
    /// The first rows a scan returns: PostgreSQL relations that
    /// `TABLESAMPLE` does not support (views, foreign tables), where a
    /// shuffle could read without bound.
    First,
    /// The lowest keys, after a `TABLESAMPLE` found no rows.
    Lowest,
}

/// Size statistics of a relation and its partitions.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RelationSize {
    /// `pg_class.relkind`: `r` table, `p` partitioned table, `m`
    /// materialised view, `v` view, `f` foreign table.
    relkind: char,
    /// Pages on disk now.
    pages: i64,
    /// Rows and pages at the last `ANALYZE` or `VACUUM`, or zero when
    /// unknown.
    analysed_rows: f64,
    analysed_pages: i64,
}

fn choose_method(size: RelationSize, limit: i64) -> SampleMethod {
    if !matches!(size.relkind, 'r' | 'p' | 'm') {
        return SampleMethod::First;
    }
    if size.pages <= SMALL_TABLE_PAGES {
        return SampleMethod::Shuffle;
    }
    let rows_per_page = if size.analysed_rows > 0.0 && size.analysed_pages > 0 {
        size.analysed_rows / size.analysed_pages as f64
    } else {
        ASSUMED_ROWS_PER_PAGE
    };
    let wanted_pages = (limit as f64 * OVERSAMPLE / rows_per_page.max(1.0)).ceil().max(1.0);
    let percent = (wanted_pages / size.pages as f64 * 100.0).clamp(0.000_001, 100.0);
    SampleMethod::System { percent: percent as f32 }
}

/// Sums the sizes of the relation and, for a partitioned table, of its
/// partitions. `pg_partition_tree` (PostgreSQL 12 or later) returns no
/// rows for a relation that is not partitioned. The analysed counts skip
/// partitioned tables themselves, whose `reltuples` repeats the count of
/// their partitions.
const POSTGRES_RELATION_SIZE: &str = "\
    SELECT c.relkind::text, \
           COALESCE(sum(pg_relation_size(p.oid)), 0)::int8 / current_setting('block_size')::int8, \
           COALESCE(sum(GREATEST(p.reltuples, 0)) FILTER (WHERE p.relkind <> 'p'), 0)::float8, \
           COALESCE(sum(p.relpages) FILTER (WHERE p.relkind <> 'p'), 0)::int8 \
    FROM pg_class AS c \
    JOIN pg_class AS p ON p.oid = c.oid OR p.oid IN (SELECT t.relid FROM pg_partition_tree(c.oid) AS t) \
    WHERE c.oid = $1::text::regclass \
    GROUP BY c.relkind";

async fn postgres_relation_size(session: &PostgresSession, table: &str) -> Result<RelationSize, TargetError> {
    let fail = |e: tokio_postgres::Error| query_error("relation size", &session.client, &e);
    let row = session.client.query_one(POSTGRES_RELATION_SIZE, &[&table]).await.map_err(fail)?;
    let relkind: String = row.try_get(0).map_err(fail)?;
    Ok(RelationSize {
        relkind: relkind.chars().next().unwrap_or('r'),
        pages: row.try_get(1).map_err(fail)?,
        analysed_rows: row.try_get(2).map_err(fail)?,
        analysed_pages: row.try_get(3).map_err(fail)?,
    })
}

async fn postgres_sample(
    session: &PostgresSession,
    table: &str,
    key: &str,
    limit: i64,
) -> Result<KeySample, TargetError> {
    let client = &session.client;

    // The key column's type decides whether values are read as they are
    // or as text (numeric, uuid, dates and other types without a JSON
    // counterpart here).
    let probe = client
        .prepare(&format!("SELECT {key} FROM {table} LIMIT 0"))
        .await
        .map_err(|e| query_error("key column type", client, &e))?;
    let native = probe.columns().first().is_some_and(|column| is_native(column.type_()));
    let cast = if native { "" } else { "::text" };

    let (min, max) = postgres_bounds(session, table, key, cast).await?;
    let size = postgres_relation_size(session, table).await?;
    tracing::debug!(table, pages = size.pages, analysed_rows = size.analysed_rows, "sampling PostgreSQL key values");

    let mut method = choose_method(size, limit);
    let mut values = postgres_values(session, &postgres_sample_sql(method, table, key, cast), limit).await?;
    for _ in 0..SHORT_SAMPLE_RETRIES {
        // Sampled pages hold a random number of rows, so a sample can come
        // back short. Retry with a larger share of the table.
        let SampleMethod::System { percent } = method else { break };
        if values.len() as i64 >= limit || percent >= 100.0 {
            break;
        }
        method = SampleMethod::System { percent: (percent * SHORT_SAMPLE_GROWTH).min(100.0) };
        values = postgres_values(session, &postgres_sample_sql(method, table, key, cast), limit).await?;
    }
    if values.is_empty() && matches!(method, SampleMethod::System { .. }) && min.is_some() {
        // The sampled pages still contained no rows (a table of mostly
        // dead rows), so read the lowest keys instead, which an index on
        // the key returns cheaply.
        let sql = postgres_sample_sql(SampleMethod::Lowest, table, key, cast);
        let values = postgres_values(session, &sql, limit).await?;
        return Ok(KeySample { min, max, values, method: SampleMethod::Lowest });
    }
    Ok(KeySample { min, max, values, method })
}

/// Builds the sampling query, whose `$1` is the row limit. `table` and `key` are quoted
/// identifiers and `cast` is empty or `::text`.
fn postgres_sample_sql(method: SampleMethod, table: &str, key: &str, cast: &str) -> String {
    let select = format!("SELECT {key}{cast} FROM {table}");
    let not_null = format!("WHERE {key} IS NOT NULL");
    match method {
        SampleMethod::Shuffle => format!("{select} {not_null} ORDER BY random() LIMIT $1"),
        // The percentage is a number this file computed, never user text.
        SampleMethod::System { percent } => {
            format!("{select} TABLESAMPLE SYSTEM ({percent}) {not_null} ORDER BY random() LIMIT $1")
        }
        SampleMethod::First => format!("{select} {not_null} LIMIT $1"),
        // Qualified, so that `ORDER BY` reads the column and not the
        // output column of the same name, which may be cast to text.
        SampleMethod::Lowest => format!("{select} {not_null} ORDER BY {table}.{key} LIMIT $1"),
    }
}

/// Types read without a cast to text.
fn is_native(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::BOOL
            | Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
    )
}

async fn postgres_bounds(
    session: &PostgresSession,
    table: &str,
    key: &str,
    cast: &str,
) -> Result<(Option<Value>, Option<Value>), TargetError> {
    let client = &session.client;
    let sql = format!("SELECT min({key}){cast}, max({key}){cast} FROM {table}");
    let row = match client.query_one(&sql, &[]).await {
        Ok(row) => row,
        Err(error) if error.code().map(|code| code.code()) == Some(UNDEFINED_FUNCTION) => return Ok((None, None)),
        Err(error) => return Err(query_error("key bounds", client, &error)),
    };
    let min = postgres_json(&row, 0).map_err(|e| query_error("key bounds", client, &e))?;
    let max = postgres_json(&row, 1).map_err(|e| query_error("key bounds", client, &e))?;
    Ok((min, max))
}

async fn postgres_values(session: &PostgresSession, sql: &str, limit: i64) -> Result<Vec<Value>, TargetError> {
    let client = &session.client;
    let rows = client.query(sql, &[&limit]).await.map_err(|e| query_error("key sample", client, &e))?;
    let mut values = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(value) = postgres_json(row, 0).map_err(|e| query_error("key sample", client, &e))? {
            values.push(value);
        }
    }
    Ok(values)
}

/// Reads column `index` as JSON, or `None` for SQL NULL. Non-native types
/// arrive cast to text.
fn postgres_json(row: &Row, index: usize) -> Result<Option<Value>, tokio_postgres::Error> {
    let ty = row.columns().get(index).map(|column| column.type_().clone()).unwrap_or(Type::TEXT);
    Ok(match ty {
        Type::INT2 => row.try_get::<_, Option<i16>>(index)?.map(Value::from),
        Type::INT4 => row.try_get::<_, Option<i32>>(index)?.map(Value::from),
        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(Value::from),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(index)?.map(|value| float_json(f64::from(value))),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(index)?.map(float_json),
        Type::BOOL => row.try_get::<_, Option<bool>>(index)?.map(Value::from),
        _ => row.try_get::<_, Option<String>>(index)?.map(Value::from),
    })
}

/// Converts a float to a JSON number. NaN and the infinities, which JSON
/// lacks, become their PostgreSQL spelling.
fn float_json(value: f64) -> Value {
    match serde_json::Number::from_f64(value) {
        Some(number) => Value::Number(number),
        None if value.is_nan() => Value::from("NaN"),
        None if value > 0.0 => Value::from("Infinity"),
        None => Value::from("-Infinity"),
    }
}

async fn sqlite_sample(
    session: &SqliteSession,
    table: String,
    key: String,
    limit: i64,
) -> Result<KeySample, TargetError> {
    session
        .call(move |state| {
            let connection = &state.connection;
            let bounds_sql = format!("SELECT min({key}), max({key}) FROM {table}");
            let (min, max) = connection
                .query_row(&bounds_sql, [], |row| Ok((sqlite_json(row.get_ref(0)?), sqlite_json(row.get_ref(1)?))))
                .map_err(|e| sqlite::query_error("key bounds", &e))?;

            let sample_sql = format!("SELECT {key} FROM {table} WHERE {key} IS NOT NULL ORDER BY random() LIMIT ?1");
            let mut statement = connection.prepare(&sample_sql).map_err(|e| sqlite::query_error("key sample", &e))?;
            let mut rows = statement.query([limit]).map_err(|e| sqlite::query_error("key sample", &e))?;
            let mut values = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sqlite::query_error("key sample", &e))? {
                if let Some(value) = sqlite_json(row.get_ref(0).map_err(|e| sqlite::query_error("key sample", &e))?) {
                    values.push(value);
                }
            }
            Ok(KeySample { min, max, values, method: SampleMethod::Shuffle })
        })
        .await
}

/// Converts an SQLite value to JSON, or `None` for NULL. Blobs become lower-case hex.
fn sqlite_json(value: rusqlite::types::ValueRef<'_>) -> Option<Value> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(integer) => Some(Value::from(integer)),
        ValueRef::Real(real) => Some(float_json(real)),
        ValueRef::Text(bytes) => Some(Value::from(String::from_utf8_lossy(bytes).into_owned())),
        ValueRef::Blob(bytes) => Some(Value::from(bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(relkind: char, pages: i64, analysed_rows: f64, analysed_pages: i64) -> RelationSize {
        RelationSize { relkind, pages, analysed_rows, analysed_pages }
    }

    #[test]
    fn small_tables_are_shuffled() {
        assert_eq!(choose_method(size('r', 0, 0.0, 0), 100), SampleMethod::Shuffle);
        assert_eq!(choose_method(size('r', SMALL_TABLE_PAGES, 0.0, 0), 100), SampleMethod::Shuffle);
        assert_eq!(choose_method(size('p', 10, 0.0, 0), 100), SampleMethod::Shuffle);
    }

    #[test]
    fn views_take_first_rows() {
        assert_eq!(choose_method(size('v', 0, 0.0, 0), 100), SampleMethod::First);
        assert_eq!(choose_method(size('f', 0, 0.0, 0), 100), SampleMethod::First);
    }

    #[test]
    fn large_tables_sample_enough_pages() {
        // 1,000,000 rows on 10,000 pages: 100 rows per page, so 1,000 keys
        // need 10 pages, 40 with oversampling: 0.4 % of the table.
        let SampleMethod::System { percent } = choose_method(size('r', 10_000, 1_000_000.0, 10_000), 1_000) else {
            panic!("expected TABLESAMPLE");
        };
        assert!((percent - 0.4).abs() < 1e-4, "{percent}");
        // A huge request caps at the whole table.
        let SampleMethod::System { percent } = choose_method(size('r', 2_000, 0.0, 0), 1_000_000) else {
            panic!("expected TABLESAMPLE");
        };
        assert_eq!(percent, 100.0);
    }

    #[test]
    fn float_json_spells_non_finite_values() {
        assert_eq!(float_json(1.5), Value::from(1.5));
        assert_eq!(float_json(f64::NAN), Value::from("NaN"));
        assert_eq!(float_json(f64::NEG_INFINITY), Value::from("-Infinity"));
    }
}
