//! The SQLite backend: the embedded default store. One file holds both the
//! results and the config tables. WAL mode and a busy timeout let several
//! processes on one host (the orchestrator and its workers) share the file;
//! every write transaction starts `IMMEDIATE` so that two writers queue on
//! the busy timeout instead of failing on a lock upgrade.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::{ToSql, ToSqlOutput, Value as SqliteValue, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::convert::values_of;
use crate::error::{Backend, MissingColumn, StoreError, StoreResult};
use crate::rows::{number_events, ControlEventRow, NewControlEvent};
use crate::schema::{ColumnType, TableSpec, REQUIRED_TABLES, RUN_CONTROL_EVENTS, SQLITE_DDL};
use crate::sql::{self, Dialect, Rendered, RowValues, Select, SqlValue, WriteOp};

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Puts the database file in WAL mode unless it already is, so readers run
/// while one connection writes. The mode is stored in the file. Switching
/// needs every other connection to let go of the file, and SQLite reports
/// `SQLITE_BUSY` at once rather than waiting on the busy timeout, so the
/// switch is retried until `patience` has passed.
pub fn enable_wal(connection: &Connection, patience: Duration) -> rusqlite::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let attempt =
            connection.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0)).and_then(|mode| match mode
                .eq_ignore_ascii_case("wal")
            {
                true => Ok(()),
                false => connection.pragma_update(None, "journal_mode", "WAL"),
            });
        match attempt {
            Err(error)
                if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Page cache of each connection, in KiB. SQLite's default of 2 MiB makes
/// batches of execution rows read index pages back from the file once a
/// run has logged a few hundred thousand rows.
const CACHE_KIB: u32 = 64 * 1024;

/// Idle connections kept for reuse.
const POOL_SIZE: usize = 4;

/// An SQLite results and config store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and its directory.
    pub async fn connect(path: &Path) -> StoreResult<Self> {
        let store = SqliteStore { path: path.to_owned(), idle: Arc::default() };
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| store.connect_error(error.to_string()))?;
        }
        store.run(|_| Ok(())).await?;
        Ok(store)
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn connect_error(&self, reason: String) -> StoreError {
        StoreError::Connect { backend: Backend::Sqlite, location: self.location(), reason }
    }

    fn open(&self) -> StoreResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection =
            Connection::open_with_flags(&self.path, flags).map_err(|error| self.connect_error(error.to_string()))?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| self.connect_error(error.to_string()))?;
        enable_wal(&connection, BUSY_TIMEOUT).map_err(|error| self.connect_error(error.to_string()))?;
        connection
            .execute_batch(&format!("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{CACHE_KIB};"))
            .map_err(|error| self.connect_error(error.to_string()))?;
        Ok(connection)
    }

    /// Runs `work` on a pooled connection in a blocking thread.
    async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = store.idle.lock().ok().and_then(|mut idle| idle.pop());
            let mut connection = match pooled {
                Some(connection) => connection,
                None => store.open()?,
            };
            let result = work(&mut connection);
            if let Ok(mut idle) = store.idle.lock() {
                if idle.len() < POOL_SIZE {
                    idle.push(connection);
                }
            }
            result
        })
        .await
        .map_err(|error| StoreError::Task { backend: Backend::Sqlite, reason: error.to_string() })?
    }

    /// Runs the DDL files in one transaction.
    pub async fn apply_schema(&self) -> StoreResult<()> {
        self.run(|connection| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| statement_error("begin", e))?;
            for (file, ddl) in SQLITE_DDL {
                transaction.execute_batch(ddl).map_err(|e| statement_error(file, e))?;
            }
            transaction.commit().map_err(|e| statement_error("commit schema", e))
        })
        .await
    }

    /// Lists the required tables and columns that the file lacks.
    pub async fn check_schema(&self) -> StoreResult<Vec<MissingColumn>> {
        self.run(|connection| {
            let mut statement = connection
                .prepare(
                    "SELECT upper(m.name), upper(p.name) FROM sqlite_master AS m, pragma_table_info(m.name) AS p \
                     WHERE m.type = 'table'",
                )
                .map_err(|e| statement_error("list columns", e))?;
            let mut present = HashSet::new();
            let mut rows = statement.query([]).map_err(|e| statement_error("list columns", e))?;
            while let Some(row) = rows.next().map_err(|e| statement_error("list columns", e))? {
                let table: String = row.get(0).map_err(|e| statement_error("list columns", e))?;
                let column: String = row.get(1).map_err(|e| statement_error("list columns", e))?;
                present.insert((table, column));
            }
            Ok(missing_columns(&present))
        })
        .await
    }

    /// Returns the current time. SQLite runs inside this process, so its
    /// clock is the host's clock.
    pub async fn now(&self) -> StoreResult<DateTime<Utc>> {
        Ok(Utc::now())
    }

    /// Runs the writes in one transaction and returns each one's row count.
    pub async fn write(&self, ops: Vec<WriteOp>) -> StoreResult<Vec<u64>> {
        self.run(move |connection| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| statement_error("begin", e))?;
            let mut counts = Vec::with_capacity(ops.len());
            for op in &ops {
                counts.push(execute_op(&transaction, op)?);
            }
            transaction.commit().map_err(|e| statement_error("commit", e))?;
            Ok(counts)
        })
        .await
    }

    /// Reads every column of the selected rows.
    pub async fn select(&self, select: Select) -> StoreResult<Vec<RowValues>> {
        self.run(move |connection| {
            let statement = sql::render_select(Dialect::Sqlite, &select);
            query(connection, &statement, select.table)
        })
        .await
    }

    /// Runs a rendered `SELECT` of every column of `table`.
    pub async fn select_rendered(&self, table: &'static TableSpec, statement: Rendered) -> StoreResult<Vec<RowValues>> {
        self.run(move |connection| query(connection, &statement, table)).await
    }

    /// Counts the rows that match the conditions.
    pub async fn count(&self, table: &'static TableSpec, conditions: Vec<sql::Condition>) -> StoreResult<i64> {
        self.run(move |connection| {
            let statement = sql::render_count(Dialect::Sqlite, table, &conditions);
            let mut prepared =
                connection.prepare_cached(&statement.sql).map_err(|e| statement_error(&statement.name, e))?;
            prepared
                .query_row(params(&statement.params), |row| row.get(0))
                .map_err(|e| statement_error(&statement.name, e))
        })
        .await
    }

    /// Appends events with consecutive sequence ids taken from
    /// `RUN_STATUS.NEXT_SEQUENCE_ID`, and applies `run_update`, in one
    /// `IMMEDIATE` transaction: it takes the file's write lock before the
    /// read, so no other process can allocate the same ids in between.
    pub async fn append_events(
        &self,
        run_id: &str,
        events: &[NewControlEvent],
        run_update: Option<WriteOp>,
    ) -> StoreResult<Vec<ControlEventRow>> {
        let run_id = run_id.to_owned();
        let events = events.to_vec();
        self.run(move |connection| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| statement_error("begin", e))?;
            let first: Option<i64> = transaction
                .query_row("SELECT NEXT_SEQUENCE_ID FROM RUN_STATUS WHERE RUN_ID = ?1", [&run_id], |row| row.get(0))
                .map(Some)
                .or_else(|error| match error {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    other => Err(statement_error("allocate sequence ids", other)),
                })?;
            let first = first.ok_or_else(|| StoreError::RunNotFound { run_id: run_id.clone() })?;
            let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
            transaction
                .execute(
                    "UPDATE RUN_STATUS SET NEXT_SEQUENCE_ID = ?2, UPDATED_AT = ?3 WHERE RUN_ID = ?1",
                    rusqlite::params![run_id, first + count, format_time(Utc::now())],
                )
                .map_err(|e| statement_error("allocate sequence ids", e))?;
            let rows = number_events(&run_id, &events, first);
            let mut ops = vec![WriteOp::Insert { table: &RUN_CONTROL_EVENTS, rows: values_of(&rows) }];
            ops.extend(run_update);
            for op in &ops {
                execute_op(&transaction, op)?;
            }
            transaction.commit().map_err(|e| statement_error("commit events", e))?;
            Ok(rows)
        })
        .await
    }
}

/// Runs one write and returns the number of rows it changed. Inserts and
/// upserts run one row at a time through one cached statement inside the
/// caller's transaction, so the SQL stays the same size whatever the number
/// of rows. For 300,000 execution rows in batches of 5,000, this took about
/// half the CPU of multi-row statements (measured on a 2-core VM).
fn execute_op(connection: &Connection, op: &WriteOp) -> StoreResult<u64> {
    let statement = match op {
        WriteOp::Insert { table, rows } | WriteOp::Upsert { table, rows } => {
            let Some(first) = rows.first() else { return Ok(0) };
            let one_row = std::slice::from_ref(first);
            let statement = match op {
                WriteOp::Insert { .. } => sql::render_insert(Dialect::Sqlite, table, one_row),
                _ => sql::render_upsert(Dialect::Sqlite, table, one_row),
            };
            let mut prepared =
                connection.prepare_cached(&statement.sql).map_err(|e| statement_error(&statement.name, e))?;
            let mut changed = 0;
            for row in rows {
                debug_assert_eq!(row.len(), table.columns.len(), "row width of {}", table.name);
                changed += prepared
                    .execute(rusqlite::params_from_iter(row.iter().map(Param)))
                    .map_err(|e| statement_error(&statement.name, e))?;
            }
            return Ok(changed as u64);
        }
        WriteOp::Update { table, sets, conditions } => sql::render_update(Dialect::Sqlite, table, sets, conditions),
        WriteOp::Delete { table, conditions } => sql::render_delete(Dialect::Sqlite, table, conditions),
    };
    execute(connection, &statement)
}

fn execute(connection: &Connection, statement: &Rendered) -> StoreResult<u64> {
    let mut prepared = connection.prepare_cached(&statement.sql).map_err(|e| statement_error(&statement.name, e))?;
    let changed = prepared.execute(params(&statement.params)).map_err(|e| statement_error(&statement.name, e))?;
    Ok(changed as u64)
}

fn query(connection: &Connection, statement: &Rendered, table: &'static TableSpec) -> StoreResult<Vec<RowValues>> {
    let mut prepared = connection.prepare_cached(&statement.sql).map_err(|e| statement_error(&statement.name, e))?;
    let mut rows = prepared.query(params(&statement.params)).map_err(|e| statement_error(&statement.name, e))?;
    let mut decoded = Vec::new();
    while let Some(row) = rows.next().map_err(|e| statement_error(&statement.name, e))? {
        let mut values = Vec::with_capacity(table.columns.len());
        for (index, column) in table.columns.iter().enumerate() {
            let raw = row.get_ref(index).map_err(|e| statement_error(&statement.name, e))?;
            values.push(decode_value(raw, column.kind).map_err(|reason| StoreError::InvalidValue {
                backend: Backend::Sqlite,
                table: table.name,
                column: column.name,
                reason,
            })?);
        }
        decoded.push(RowValues { table, backend: Backend::Sqlite, values });
    }
    Ok(decoded)
}

fn statement_error(statement: &str, error: rusqlite::Error) -> StoreError {
    let code = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => Some(format!("{:?}", failure.code)),
        _ => None,
    };
    StoreError::Statement {
        backend: Backend::Sqlite,
        statement: statement.to_owned(),
        code,
        message: error.to_string(),
    }
}

/// Timestamps are stored as fixed-width UTC text with microseconds, so
/// that text order is time order.
fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A value bound to a statement parameter. Text is passed by reference, so
/// no `String` is cloned, but SQLite still copies it when binding.
struct Param<'a>(&'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            SqlValue::Null => ToSqlOutput::Owned(SqliteValue::Null),
            SqlValue::Now => ToSqlOutput::Owned(SqliteValue::Text(format_time(Utc::now()))),
            SqlValue::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            SqlValue::Int(value) => ToSqlOutput::Owned(SqliteValue::Integer(*value)),
            SqlValue::Float(value) => ToSqlOutput::Owned(SqliteValue::Real(*value)),
            SqlValue::Bool(value) => ToSqlOutput::Owned(SqliteValue::Integer(i64::from(*value))),
            SqlValue::Json(value) => ToSqlOutput::Owned(SqliteValue::Text(value.to_string())),
            SqlValue::Time(value) => ToSqlOutput::Owned(SqliteValue::Text(format_time(*value))),
        })
    }
}

fn params(params: &[(SqlValue, ColumnType)]) -> impl rusqlite::Params + '_ {
    rusqlite::params_from_iter(params.iter().map(|(value, _)| Param(value)))
}

fn decode_value(raw: ValueRef<'_>, kind: ColumnType) -> Result<SqlValue, String> {
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| e.to_string());
    Ok(match (raw, kind) {
        (ValueRef::Null, _) => SqlValue::Null,
        (ValueRef::Text(bytes), ColumnType::Text) => SqlValue::Text(text(bytes)?),
        (ValueRef::Text(bytes), ColumnType::Json) => {
            SqlValue::Json(serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?)
        }
        (ValueRef::Text(bytes), ColumnType::Time) => {
            let text = text(bytes)?;
            let time = DateTime::parse_from_rfc3339(&text).map_err(|e| format!("invalid timestamp `{text}`: {e}"))?;
            SqlValue::Time(time.with_timezone(&Utc))
        }
        (ValueRef::Integer(value), ColumnType::Int) => SqlValue::Int(value),
        (ValueRef::Integer(value), ColumnType::Bool) => SqlValue::Bool(value != 0),
        (ValueRef::Integer(value), ColumnType::Float) => SqlValue::Float(value as f64),
        (ValueRef::Real(value), ColumnType::Float) => SqlValue::Float(value),
        (other, kind) => return Err(format!("expected {kind:?}, found SQLite {:?}", other.data_type())),
    })
}

/// Lists the required columns absent from `present`, which contains upper-case
/// (table, column) pairs.
fn missing_columns(present: &HashSet<(String, String)>) -> Vec<MissingColumn> {
    let tables: HashSet<&str> = present.iter().map(|(table, _)| table.as_str()).collect();
    let mut missing = Vec::new();
    for table in REQUIRED_TABLES {
        if !tables.contains(table.name) {
            missing.push(MissingColumn { schema: String::new(), table: table.name.to_owned(), column: None });
            continue;
        }
        for column in table.columns {
            if !present.contains(&(table.name.to_owned(), column.name.to_owned())) {
                missing.push(MissingColumn {
                    schema: String::new(),
                    table: table.name.to_owned(),
                    column: Some(column.name.to_owned()),
                });
            }
        }
    }
    missing
}
