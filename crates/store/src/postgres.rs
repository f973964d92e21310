//! The PostgreSQL backend: a small connection pool, typed parameter
//! binding, transactions, and the one operation that needs a row lock
//! (allocating control-event sequence ids).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

use crate::convert::values_of;
use crate::error::{Backend, MissingColumn, StoreError, StoreResult};
use crate::rows::{number_events, ControlEventRow, NewControlEvent};
use crate::schema::{ColumnType, TableSpec, POSTGRES_DDL, REQUIRED_TABLES, RUN_CONTROL_EVENTS};
use crate::sql::{self, Dialect, Rendered, RowValues, Select, SqlValue, WriteOp};

/// Maximum connections one process keeps to the store. Workers and the
/// orchestrator issue a handful of statements per second, so a few
/// connections are plenty, and the limit keeps the server's slots for targets.
const POOL_SIZE: usize = 8;

/// PostgreSQL caps a statement at 65,535 parameters; batches stay well
/// below that.
const MAX_PARAMS: usize = 30_000;

/// Serialises concurrent `schema apply` runs against one database, because
/// two concurrent `CREATE TABLE IF NOT EXISTS` can still collide.
const SCHEMA_LOCK_KEY: i64 = 0x756e_6962_656e_6368; // "unibench"

type Param = Box<dyn ToSql + Sync + Send>;

/// A PostgreSQL results and config store.
pub struct PostgresStore {
    pool: Pool,
    location: String,
    user: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("location", &self.location).field("user", &self.user).finish()
    }
}

impl PostgresStore {
    /// Connects and checks that the server responds.
    pub async fn connect(config: &tokio_postgres::Config) -> StoreResult<Self> {
        let location = describe_location(config);
        let user = config.get_user().unwrap_or_default().to_owned();
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool =
            Pool::builder(manager).max_size(POOL_SIZE).runtime(deadpool_postgres::Runtime::Tokio1).build().map_err(
                |error| StoreError::Connect {
                    backend: Backend::Postgres,
                    location: location.clone(),
                    reason: error.to_string(),
                },
            )?;
        let store = PostgresStore { pool, location, user };
        store.client().await?.simple_query("SELECT 1").await.map_err(|e| store.statement_error("connect", e))?;
        Ok(store)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|error| self.pool_error(error))
    }

    fn pool_error(&self, error: deadpool_postgres::PoolError) -> StoreError {
        match error {
            deadpool_postgres::PoolError::Backend(error) => self.connect_error(error),
            other => StoreError::Connect {
                backend: Backend::Postgres,
                location: self.location.clone(),
                reason: other.to_string(),
            },
        }
    }

    fn connect_error(&self, error: tokio_postgres::Error) -> StoreError {
        if let Some(db_error) = error.as_db_error() {
            // Class 28 is invalid authorisation: wrong password, unknown
            // role, or no pg_hba.conf entry.
            if db_error.code().code().starts_with("28") {
                return StoreError::Authentication {
                    backend: Backend::Postgres,
                    location: self.location.clone(),
                    user: self.user.clone(),
                    reason: db_error.message().to_owned(),
                };
            }
            return StoreError::Connect {
                backend: Backend::Postgres,
                location: self.location.clone(),
                reason: db_error.message().to_owned(),
            };
        }
        StoreError::Connect {
            backend: Backend::Postgres,
            location: self.location.clone(),
            reason: describe_error(&error),
        }
    }

    fn statement_error(&self, statement: &str, error: tokio_postgres::Error) -> StoreError {
        match error.as_db_error() {
            Some(db_error) => StoreError::Statement {
                backend: Backend::Postgres,
                statement: statement.to_owned(),
                code: Some(db_error.code().code().to_owned()),
                message: db_error.message().to_owned(),
            },
            None if error.is_closed() => self.connect_error(error),
            None => StoreError::Statement {
                backend: Backend::Postgres,
                statement: statement.to_owned(),
                code: None,
                message: describe_error(&error),
            },
        }
    }

    /// Runs the DDL files in one transaction under an advisory lock.
    pub async fn apply_schema(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.statement_error("begin", e))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
            .await
            .map_err(|e| self.statement_error("lock schema", e))?;
        for (file, ddl) in POSTGRES_DDL {
            transaction.batch_execute(ddl).await.map_err(|e| self.statement_error(file, e))?;
        }
        transaction.commit().await.map_err(|e| self.statement_error("commit schema", e))
    }

    /// Lists the required tables and columns that the database lacks.
    pub async fn check_schema(&self) -> StoreResult<Vec<MissingColumn>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT table_schema, lower(table_name), lower(column_name) FROM information_schema.columns \
                 WHERE table_schema IN ('test_results', 'config')",
                &[],
            )
            .await
            .map_err(|e| self.statement_error("list columns", e))?;
        let mut present = HashSet::new();
        for row in rows {
            let schema: String = row.try_get(0).map_err(|e| self.statement_error("list columns", e))?;
            let table: String = row.try_get(1).map_err(|e| self.statement_error("list columns", e))?;
            let column: String = row.try_get(2).map_err(|e| self.statement_error("list columns", e))?;
            present.insert((schema, table, column));
        }
        Ok(missing_columns(&present))
    }

    /// Returns the server's current time.
    pub async fn now(&self) -> StoreResult<DateTime<Utc>> {
        let client = self.client().await?;
        let row = client.query_one("SELECT now()", &[]).await.map_err(|e| self.statement_error("now", e))?;
        row.try_get(0).map_err(|e| self.statement_error("now", e))
    }

    /// Runs the writes in one transaction and returns each one's row count.
    pub async fn write(&self, ops: &[WriteOp]) -> StoreResult<Vec<u64>> {
        let mut client = self.client().await?;
        let statements = render_ops(ops);
        if let [statement] = statements.as_slice() {
            return Ok(vec![self.execute_on(&client, statement).await?]);
        }
        let transaction = client.transaction().await.map_err(|e| self.statement_error("begin", e))?;
        let mut counts = Vec::with_capacity(ops.len());
        for statement in &statements {
            counts.push(self.execute_on(&transaction, statement).await?);
        }
        transaction.commit().await.map_err(|e| self.statement_error("commit", e))?;
        Ok(counts)
    }

    async fn execute_on<C: GenericClient>(&self, client: &C, statement: &Rendered) -> StoreResult<u64> {
        let params = bind(&statement.params);
        let prepared =
            client.prepare_cached(&statement.sql).await.map_err(|e| self.statement_error(&statement.name, e))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        client.execute(&prepared, &refs).await.map_err(|e| self.statement_error(&statement.name, e))
    }

    /// Reads every column of the selected rows.
    pub async fn select(&self, select: &Select) -> StoreResult<Vec<RowValues>> {
        let statement = sql::render_select(Dialect::Postgres, select);
        let rows = self.query(&statement).await?;
        rows.iter().map(|row| self.decode_row(select.table, row, &statement.name)).collect()
    }

    /// Runs a rendered `SELECT` of every column of `table`.
    pub async fn select_rendered(
        &self,
        table: &'static TableSpec,
        statement: &Rendered,
    ) -> StoreResult<Vec<RowValues>> {
        let rows = self.query(statement).await?;
        rows.iter().map(|row| self.decode_row(table, row, &statement.name)).collect()
    }

    /// Counts the rows that match the conditions.
    pub async fn count(&self, table: &'static TableSpec, conditions: &[sql::Condition]) -> StoreResult<i64> {
        let statement = sql::render_count(Dialect::Postgres, table, conditions);
        let rows = self.query(&statement).await?;
        let row = rows.first().ok_or_else(|| StoreError::Statement {
            backend: Backend::Postgres,
            statement: statement.name.clone(),
            code: None,
            message: "COUNT returned no row".to_owned(),
        })?;
        row.try_get(0).map_err(|e| self.statement_error(&statement.name, e))
    }

    async fn query(&self, statement: &Rendered) -> StoreResult<Vec<Row>> {
        let client = self.client().await?;
        let params = bind(&statement.params);
        let prepared =
            client.prepare_cached(&statement.sql).await.map_err(|e| self.statement_error(&statement.name, e))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        client.query(&prepared, &refs).await.map_err(|e| self.statement_error(&statement.name, e))
    }

    fn decode_row(&self, table: &'static TableSpec, row: &Row, statement: &str) -> StoreResult<RowValues> {
        let values = table
            .columns
            .iter()
            .enumerate()
            .map(|(index, column)| decode_value(row, index, column.kind))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.statement_error(statement, e))?;
        Ok(RowValues { table, backend: Backend::Postgres, values })
    }

    /// Appends events with consecutive sequence ids taken from
    /// `RUN_STATUS.NEXT_SEQUENCE_ID`, and applies `run_update` to the run,
    /// all in one transaction. The `UPDATE ... RETURNING` holds the run's
    /// row lock until commit, so concurrent appenders queue behind it and
    /// never share a sequence id.
    pub async fn append_events(
        &self,
        run_id: &str,
        events: &[NewControlEvent],
        run_update: Option<WriteOp>,
    ) -> StoreResult<Vec<ControlEventRow>> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.statement_error("begin", e))?;
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let row = transaction
            .query_opt(
                "UPDATE test_results.RUN_STATUS SET NEXT_SEQUENCE_ID = NEXT_SEQUENCE_ID + $2, UPDATED_AT = now() \
                 WHERE RUN_ID = $1 RETURNING NEXT_SEQUENCE_ID - $2",
                &[&run_id, &count],
            )
            .await
            .map_err(|e| self.statement_error("allocate sequence ids", e))?
            .ok_or_else(|| StoreError::RunNotFound { run_id: run_id.to_owned() })?;
        let first: i64 = row.try_get(0).map_err(|e| self.statement_error("allocate sequence ids", e))?;
        let rows = number_events(run_id, events, first);
        let mut ops = vec![WriteOp::Insert { table: &RUN_CONTROL_EVENTS, rows: values_of(&rows) }];
        ops.extend(run_update);
        for statement in render_ops(&ops) {
            self.execute_on(&transaction, &statement).await?;
        }
        transaction.commit().await.map_err(|e| self.statement_error("commit events", e))?;
        Ok(rows)
    }
}

impl PostgresStore {
    /// Writes rows with one binary `COPY ... FROM STDIN`, the fastest bulk
    /// path PostgreSQL has. Store-assigned timestamps such as `CREATED_AT` take the
    /// client's clock here, because COPY cannot call `now()`.
    pub async fn copy_in(&self, table: &'static TableSpec, rows: &[Vec<SqlValue>]) -> StoreResult<u64> {
        let statement = format!("copy {}", table.name);
        let columns: Vec<&str> = table.columns.iter().map(|column| column.name).collect();
        let types: Vec<Type> = table.columns.iter().map(|column| postgres_type(column.kind)).collect();
        let sql =
            format!("COPY {} ({}) FROM STDIN (FORMAT binary)", Dialect::Postgres.table_name(table), columns.join(", "));
        let client = self.client().await?;
        let sink = client.copy_in::<_, bytes::Bytes>(&sql).await.map_err(|e| self.statement_error(&statement, e))?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        futures_util::pin_mut!(writer);
        for row in rows {
            let typed: Vec<(SqlValue, ColumnType)> =
                row.iter().cloned().zip(table.columns.iter().map(|column| column.kind)).collect();
            let params = bind(&typed);
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&refs).await.map_err(|e| self.statement_error(&statement, e))?;
        }
        writer.finish().await.map_err(|e| self.statement_error(&statement, e))
    }
}

fn postgres_type(kind: ColumnType) -> Type {
    match kind {
        ColumnType::Text => Type::TEXT,
        ColumnType::Int => Type::INT8,
        ColumnType::Float => Type::FLOAT8,
        ColumnType::Bool => Type::BOOL,
        ColumnType::Json => Type::JSONB,
        ColumnType::Time => Type::TIMESTAMPTZ,
    }
}

/// Renders writes, splitting large batches so that no statement exceeds
/// the parameter limit.
fn render_ops(ops: &[WriteOp]) -> Vec<Rendered> {
    let mut statements = Vec::new();
    for op in ops {
        match op {
            WriteOp::Insert { table, rows } | WriteOp::Upsert { table, rows } => {
                let rows_per_statement = (MAX_PARAMS / table.columns.len().max(1)).max(1);
                for chunk in rows.chunks(rows_per_statement) {
                    statements.push(match op {
                        WriteOp::Insert { .. } => sql::render_insert(Dialect::Postgres, table, chunk),
                        _ => sql::render_upsert(Dialect::Postgres, table, chunk),
                    });
                }
            }
            WriteOp::Update { table, sets, conditions } => {
                statements.push(sql::render_update(Dialect::Postgres, table, sets, conditions));
            }
            WriteOp::Delete { table, conditions } => {
                statements.push(sql::render_delete(Dialect::Postgres, table, conditions));
            }
        }
    }
    statements
}

/// Converts values to parameters typed by their column, so that a null
/// binds as the column's type.
fn bind(params: &[(SqlValue, ColumnType)]) -> Vec<Param> {
    params
        .iter()
        .map(|(value, kind)| -> Param {
            match (value, kind) {
                (SqlValue::Text(text), _) => Box::new(text.clone()),
                (SqlValue::Int(value), ColumnType::Float) => Box::new(*value as f64),
                (SqlValue::Int(value), _) => Box::new(*value),
                (SqlValue::Float(value), _) => Box::new(*value),
                (SqlValue::Bool(value), _) => Box::new(*value),
                (SqlValue::Json(value), _) => Box::new(value.clone()),
                (SqlValue::Time(value), _) => Box::new(*value),
                // Statements write `now()` inline; only COPY, which cannot,
                // binds the client's clock.
                (SqlValue::Now, _) => Box::new(Utc::now()),
                (SqlValue::Null, ColumnType::Text) => Box::new(None::<String>),
                (SqlValue::Null, ColumnType::Int) => Box::new(None::<i64>),
                (SqlValue::Null, ColumnType::Float) => Box::new(None::<f64>),
                (SqlValue::Null, ColumnType::Bool) => Box::new(None::<bool>),
                (SqlValue::Null, ColumnType::Json) => Box::new(None::<serde_json::Value>),
                (SqlValue::Null, ColumnType::Time) => Box::new(None::<DateTime<Utc>>),
            }
        })
        .collect()
}

fn decode_value(row: &Row, index: usize, kind: ColumnType) -> Result<SqlValue, tokio_postgres::Error> {
    Ok(match kind {
        ColumnType::Text => row.try_get::<_, Option<String>>(index)?.into(),
        ColumnType::Int => row.try_get::<_, Option<i64>>(index)?.into(),
        ColumnType::Float => row.try_get::<_, Option<f64>>(index)?.into(),
        ColumnType::Bool => row.try_get::<_, Option<bool>>(index)?.into(),
        ColumnType::Json => row.try_get::<_, Option<serde_json::Value>>(index)?.into(),
        ColumnType::Time => row.try_get::<_, Option<DateTime<Utc>>>(index)?.into(),
    })
}

/// Lists the required columns absent from `present`, which contains lower-case
/// (schema, table, column) triples.
fn missing_columns(present: &HashSet<(String, String, String)>) -> Vec<MissingColumn> {
    let tables: HashSet<(&str, &str)> = present.iter().map(|(s, t, _)| (s.as_str(), t.as_str())).collect();
    let mut missing = Vec::new();
    for table in REQUIRED_TABLES {
        let schema = table.schema.postgres_name();
        let table_name = table.name.to_ascii_lowercase();
        if !tables.contains(&(schema, table_name.as_str())) {
            missing.push(MissingColumn { schema: schema.to_owned(), table: table.name.to_owned(), column: None });
            continue;
        }
        for column in table.columns {
            let key = (schema.to_owned(), table_name.clone(), column.name.to_ascii_lowercase());
            if !present.contains(&key) {
                missing.push(MissingColumn {
                    schema: schema.to_owned(),
                    table: table.name.to_owned(),
                    column: Some(column.name.to_owned()),
                });
            }
        }
    }
    missing
}

/// Returns `host:port/database` of a PostgreSQL connection, without user
/// or password. Shared with the target crate, which reports targets the
/// same way.
pub fn describe_location(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{database}")
}

/// Joins an error and its causes into one line, because tokio-postgres
/// puts the useful part ("Connection refused") in the source chain.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
