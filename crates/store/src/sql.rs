//! The backend-neutral statement layer: typed values, conditions, and the
//! few statement shapes the store needs (insert, upsert, update, delete,
//! select, count), rendered for a dialect.
//!
//! Table and column names always come from the constants in
//! [`crate::schema`], never from users, and every value is a bound
//! parameter, so no statement built here can carry injected SQL.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Backend, StoreError, StoreResult};
use crate::rows::Page;
use crate::schema::{Column, ColumnType, SchemaKind, TableSpec};

/// One value bound into, or read out of, a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    /// The store's current time, taken when the statement runs.
    Now,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Json(Value),
    Time(DateTime<Utc>),
}

impl From<&str> for SqlValue {
    fn from(text: &str) -> Self {
        SqlValue::Text(text.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(text: String) -> Self {
        SqlValue::Text(text)
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::Int(value)
    }
}

impl From<f64> for SqlValue {
    fn from(value: f64) -> Self {
        SqlValue::Float(value)
    }
}

impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        SqlValue::Bool(value)
    }
}

impl From<Value> for SqlValue {
    fn from(value: Value) -> Self {
        SqlValue::Json(value)
    }
}

impl From<DateTime<Utc>> for SqlValue {
    fn from(value: DateTime<Utc>) -> Self {
        SqlValue::Time(value)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(SqlValue::Null, Into::into)
    }
}

/// A comparison in a `WHERE` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Gt,
    Lt,
    /// `LOWER(column) LIKE LOWER(value)`, with `%` around the value added
    /// by the caller.
    LikeIgnoreCase,
    /// `column IN (values...)`.
    In,
}

/// One condition; conditions of a statement are joined with `AND`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: &'static str,
    pub op: Op,
    /// One value, or any number for [`Op::In`].
    pub values: Vec<SqlValue>,
}

impl Condition {
    pub fn eq(column: &'static str, value: impl Into<SqlValue>) -> Self {
        Condition { column, op: Op::Eq, values: vec![value.into()] }
    }

    pub fn gt(column: &'static str, value: impl Into<SqlValue>) -> Self {
        Condition { column, op: Op::Gt, values: vec![value.into()] }
    }

    pub fn lt(column: &'static str, value: impl Into<SqlValue>) -> Self {
        Condition { column, op: Op::Lt, values: vec![value.into()] }
    }

    /// Case-insensitive substring match.
    pub fn contains(column: &'static str, text: &str) -> Self {
        let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        Condition { column, op: Op::LikeIgnoreCase, values: vec![SqlValue::Text(format!("%{escaped}%"))] }
    }

    /// `column IN (values...)`; an empty list matches nothing.
    pub fn one_of(column: &'static str, values: Vec<SqlValue>) -> Self {
        Condition { column, op: Op::In, values }
    }
}

/// Direction of an `ORDER BY` term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// A `SELECT` over one table.
#[derive(Debug, Clone)]
pub struct Select {
    pub table: &'static TableSpec,
    pub conditions: Vec<Condition>,
    pub order_by: Vec<(&'static str, Order)>,
    pub page: Option<Page>,
}

impl Select {
    pub fn from(table: &'static TableSpec) -> Self {
        Select { table, conditions: Vec::new(), order_by: Vec::new(), page: None }
    }

    pub fn filter(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    /// Adds the condition only when `value` is `Some`.
    pub fn filter_if<T: Into<SqlValue>>(mut self, column: &'static str, value: Option<T>) -> Self {
        if let Some(value) = value {
            self.conditions.push(Condition::eq(column, value));
        }
        self
    }

    pub fn order(mut self, column: &'static str, order: Order) -> Self {
        self.order_by.push((column, order));
        self
    }

    pub fn page(mut self, page: Page) -> Self {
        self.page = Some(page);
        self
    }
}

/// The right-hand side of a `SET` term in an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Assign {
    Value(SqlValue),
    /// `column = column + n`.
    AddInt(i64),
}

/// A write that can run inside a transaction with others.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Inserts rows. Each row contains every column of the table, in order.
    Insert {
        table: &'static TableSpec,
        rows: Vec<Vec<SqlValue>>,
    },
    /// Inserts rows or, on a primary-key match, overwrites every column but
    /// the key and `CREATED_AT`.
    Upsert {
        table: &'static TableSpec,
        rows: Vec<Vec<SqlValue>>,
    },
    Update {
        table: &'static TableSpec,
        sets: Vec<(&'static str, Assign)>,
        conditions: Vec<Condition>,
    },
    Delete {
        table: &'static TableSpec,
        conditions: Vec<Condition>,
    },
}

/// SQL dialect, which decides placeholders, table names and the current
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub fn backend(self) -> Backend {
        match self {
            Dialect::Postgres => Backend::Postgres,
            Dialect::Sqlite => Backend::Sqlite,
        }
    }

    /// Returns the table name as written in statements.
    pub fn table_name(self, table: &TableSpec) -> String {
        match self {
            Dialect::Postgres => format!("{}.{}", schema_name(table.schema), table.name),
            Dialect::Sqlite => table.name.to_owned(),
        }
    }

    fn placeholder(self, index: usize) -> String {
        match self {
            Dialect::Postgres => format!("${index}"),
            Dialect::Sqlite => format!("?{index}"),
        }
    }
}

fn schema_name(schema: SchemaKind) -> &'static str {
    schema.postgres_name()
}

/// A rendered statement and its parameters with their column types.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// A short name for errors and logs, such as `insert TEST_LOGS`.
    pub name: String,
    pub sql: String,
    pub params: Vec<(SqlValue, ColumnType)>,
}

/// Collects parameters while a statement is rendered.
struct Binder {
    dialect: Dialect,
    params: Vec<(SqlValue, ColumnType)>,
}

impl Binder {
    fn new(dialect: Dialect) -> Self {
        Binder { dialect, params: Vec::new() }
    }

    /// Returns the SQL for one value: `now()` for [`SqlValue::Now`] on
    /// PostgreSQL, otherwise a placeholder bound to the value.
    fn bind(&mut self, value: &SqlValue, kind: ColumnType) -> String {
        match (value, self.dialect) {
            (SqlValue::Now, Dialect::Postgres) => "now()".to_owned(),
            (SqlValue::Now, Dialect::Sqlite) => self.push(SqlValue::Time(Utc::now()), kind),
            _ => self.push(value.clone(), kind),
        }
    }

    fn push(&mut self, value: SqlValue, kind: ColumnType) -> String {
        self.params.push((value, kind));
        self.dialect.placeholder(self.params.len())
    }

    fn where_clause(&mut self, table: &TableSpec, conditions: &[Condition]) -> String {
        if conditions.is_empty() {
            return String::new();
        }
        let terms: Vec<String> = conditions
            .iter()
            .map(|condition| {
                let kind = table.column(condition.column).kind;
                if condition.op == Op::In {
                    if condition.values.is_empty() {
                        return "1 = 0".to_owned();
                    }
                    let placeholders: Vec<String> =
                        condition.values.iter().map(|value| self.bind(value, kind)).collect();
                    return format!("{} IN ({})", condition.column, placeholders.join(", "));
                }
                let value = condition.values.first().unwrap_or(&SqlValue::Null);
                let placeholder = self.bind(value, kind);
                match condition.op {
                    Op::Eq => format!("{} = {placeholder}", condition.column),
                    Op::Gt => format!("{} > {placeholder}", condition.column),
                    Op::Lt => format!("{} < {placeholder}", condition.column),
                    Op::LikeIgnoreCase => {
                        format!("LOWER({}) LIKE LOWER({placeholder}) ESCAPE '\\'", condition.column)
                    }
                    Op::In => unreachable!("handled above"),
                }
            })
            .collect();
        format!(" WHERE {}", terms.join(" AND "))
    }
}

fn column_list(table: &TableSpec) -> String {
    table.columns.iter().map(|column| column.name).collect::<Vec<_>>().join(", ")
}

fn values_clause(binder: &mut Binder, table: &TableSpec, rows: &[Vec<SqlValue>]) -> String {
    rows.iter()
        .map(|row| {
            debug_assert_eq!(row.len(), table.columns.len(), "row width of {}", table.name);
            let values: Vec<String> =
                row.iter().zip(table.columns).map(|(value, column)| binder.bind(value, column.kind)).collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders a multi-row `INSERT`.
pub fn render_insert(dialect: Dialect, table: &TableSpec, rows: &[Vec<SqlValue>]) -> Rendered {
    let mut binder = Binder::new(dialect);
    let values = values_clause(&mut binder, table, rows);
    Rendered {
        name: format!("insert {}", table.name),
        sql: format!("INSERT INTO {} ({}) VALUES {values}", dialect.table_name(table), column_list(table)),
        params: binder.params,
    }
}

/// Renders a multi-row upsert on the table's primary key.
pub fn render_upsert(dialect: Dialect, table: &TableSpec, rows: &[Vec<SqlValue>]) -> Rendered {
    let mut binder = Binder::new(dialect);
    let sql = upsert_sql(&mut binder, table, rows);
    Rendered { name: format!("upsert {}", table.name), sql, params: binder.params }
}

fn upsert_sql(binder: &mut Binder, table: &TableSpec, rows: &[Vec<SqlValue>]) -> String {
    let values = values_clause(binder, table, rows);
    let updates: Vec<String> = table
        .columns
        .iter()
        .filter(|column| !table.key.contains(&column.name) && column.name != "CREATED_AT")
        .map(|column| format!("{0} = excluded.{0}", column.name))
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES {values} ON CONFLICT ({}) DO UPDATE SET {}",
        binder.dialect.table_name(table),
        column_list(table),
        table.key.join(", "),
        updates.join(", ")
    )
}

/// Renders an `UPDATE`.
pub fn render_update(
    dialect: Dialect,
    table: &TableSpec,
    sets: &[(&'static str, Assign)],
    conditions: &[Condition],
) -> Rendered {
    let mut binder = Binder::new(dialect);
    let assignments: Vec<String> = sets
        .iter()
        .map(|(name, assign)| {
            let column: &Column = table.column(name);
            match assign {
                Assign::Value(value) => format!("{name} = {}", binder.bind(value, column.kind)),
                Assign::AddInt(delta) => {
                    format!("{name} = {name} + {}", binder.bind(&SqlValue::Int(*delta), column.kind))
                }
            }
        })
        .collect();
    let where_clause = binder.where_clause(table, conditions);
    Rendered {
        name: format!("update {}", table.name),
        sql: format!("UPDATE {} SET {}{where_clause}", dialect.table_name(table), assignments.join(", ")),
        params: binder.params,
    }
}

/// Renders a `DELETE`.
pub fn render_delete(dialect: Dialect, table: &TableSpec, conditions: &[Condition]) -> Rendered {
    let mut binder = Binder::new(dialect);
    let where_clause = binder.where_clause(table, conditions);
    Rendered {
        name: format!("delete {}", table.name),
        sql: format!("DELETE FROM {}{where_clause}", dialect.table_name(table)),
        params: binder.params,
    }
}

/// Renders a `SELECT` of every column.
pub fn render_select(dialect: Dialect, select: &Select) -> Rendered {
    let mut binder = Binder::new(dialect);
    let where_clause = binder.where_clause(select.table, &select.conditions);
    let mut sql =
        format!("SELECT {} FROM {}{where_clause}", column_list(select.table), dialect.table_name(select.table));
    if !select.order_by.is_empty() {
        let terms: Vec<String> = select
            .order_by
            .iter()
            .map(|(column, order)| match order {
                Order::Asc => format!("{column} ASC"),
                Order::Desc => format!("{column} DESC"),
            })
            .collect();
        sql.push_str(&format!(" ORDER BY {}", terms.join(", ")));
    }
    if let Some(page) = select.page {
        sql.push_str(&format!(" LIMIT {} OFFSET {}", page.limit, page.offset));
    }
    Rendered { name: format!("select {}", select.table.name), sql, params: binder.params }
}

/// Renders, for PostgreSQL, a worker's whole once-a-second exchange as one
/// statement: the heartbeat upsert and snapshot insert run in
/// data-modifying `WITH` clauses, and the statement returns the control
/// events after `after_sequence`.
pub fn render_postgres_worker_tick(
    heartbeat: &[Vec<SqlValue>],
    snapshots: &[Vec<SqlValue>],
    run_id: &str,
    after_sequence: i64,
    limit: u32,
) -> Rendered {
    use crate::schema::{RUN_CONTROL_EVENTS, WORKER_HEARTBEATS, WORKER_METRICS_SNAPSHOTS};
    let mut binder = Binder::new(Dialect::Postgres);
    let upsert = upsert_sql(&mut binder, &WORKER_HEARTBEATS, heartbeat);
    let mut sql = format!("WITH upserted AS ({upsert} RETURNING 1)");
    if !snapshots.is_empty() {
        let values = values_clause(&mut binder, &WORKER_METRICS_SNAPSHOTS, snapshots);
        sql.push_str(&format!(
            ", inserted AS (INSERT INTO {} ({}) VALUES {values} RETURNING 1)",
            Dialect::Postgres.table_name(&WORKER_METRICS_SNAPSHOTS),
            column_list(&WORKER_METRICS_SNAPSHOTS)
        ));
    }
    let conditions = [Condition::eq("RUN_ID", run_id), Condition::gt("SEQUENCE_ID", after_sequence)];
    let where_clause = binder.where_clause(&RUN_CONTROL_EVENTS, &conditions);
    sql.push_str(&format!(
        " SELECT {} FROM {}{where_clause} ORDER BY SEQUENCE_ID ASC LIMIT {limit}",
        column_list(&RUN_CONTROL_EVENTS),
        Dialect::Postgres.table_name(&RUN_CONTROL_EVENTS)
    ));
    Rendered { name: "worker tick".to_owned(), sql, params: binder.params }
}

/// Renders a `SELECT` of the newest row of each `group_column` value among
/// the rows matching `column = value`, newest by `order_column`, in one
/// statement (a correlated subquery both dialects run on an index).
pub fn render_latest_per_group(
    dialect: Dialect,
    table: &TableSpec,
    filter: Condition,
    group_column: &'static str,
    order_column: &'static str,
) -> Rendered {
    let mut binder = Binder::new(dialect);
    let where_clause = binder.where_clause(table, std::slice::from_ref(&filter));
    let name = dialect.table_name(table);
    Rendered {
        name: format!("select latest {} per {group_column}", table.name),
        sql: format!(
            "SELECT {columns} FROM {name} AS latest{where_clause} AND {order_column} = \
             (SELECT MAX(newer.{order_column}) FROM {name} AS newer \
              WHERE newer.{filter_column} = latest.{filter_column} AND newer.{group_column} = latest.{group_column}) \
             ORDER BY {group_column}",
            columns = table.columns.iter().map(|c| format!("latest.{}", c.name)).collect::<Vec<_>>().join(", "),
            filter_column = filter.column,
        ),
        params: binder.params,
    }
}

/// Renders a `SELECT COUNT(*)`.
pub fn render_count(dialect: Dialect, table: &TableSpec, conditions: &[Condition]) -> Rendered {
    let mut binder = Binder::new(dialect);
    let where_clause = binder.where_clause(table, conditions);
    Rendered {
        name: format!("count {}", table.name),
        sql: format!("SELECT COUNT(*) FROM {}{where_clause}", dialect.table_name(table)),
        params: binder.params,
    }
}

/// One row read from a table, with typed accessors that turn a bad or
/// missing value into an error naming the table and column.
#[derive(Debug, Clone)]
pub struct RowValues {
    pub table: &'static TableSpec,
    pub backend: Backend,
    pub values: Vec<SqlValue>,
}

impl RowValues {
    fn get(&self, column: &'static str) -> &SqlValue {
        &self.values[self.table.index_of(column)]
    }

    fn invalid(&self, column: &'static str, reason: impl Into<String>) -> StoreError {
        StoreError::InvalidValue { backend: self.backend, table: self.table.name, column, reason: reason.into() }
    }

    fn required<T>(&self, column: &'static str, value: Option<T>) -> StoreResult<T> {
        value.ok_or_else(|| self.invalid(column, "unexpected NULL"))
    }

    pub fn opt_text(&self, column: &'static str) -> StoreResult<Option<String>> {
        match self.get(column) {
            SqlValue::Null => Ok(None),
            SqlValue::Text(text) => Ok(Some(text.clone())),
            other => Err(self.invalid(column, format!("expected text, found {other:?}"))),
        }
    }

    pub fn text(&self, column: &'static str) -> StoreResult<String> {
        let value = self.opt_text(column)?;
        self.required(column, value)
    }

    pub fn opt_int(&self, column: &'static str) -> StoreResult<Option<i64>> {
        match self.get(column) {
            SqlValue::Null => Ok(None),
            SqlValue::Int(value) => Ok(Some(*value)),
            other => Err(self.invalid(column, format!("expected an integer, found {other:?}"))),
        }
    }

    pub fn int(&self, column: &'static str) -> StoreResult<i64> {
        let value = self.opt_int(column)?;
        self.required(column, value)
    }

    pub fn opt_float(&self, column: &'static str) -> StoreResult<Option<f64>> {
        match self.get(column) {
            SqlValue::Null => Ok(None),
            SqlValue::Float(value) => Ok(Some(*value)),
            SqlValue::Int(value) => Ok(Some(*value as f64)),
            other => Err(self.invalid(column, format!("expected a number, found {other:?}"))),
        }
    }

    pub fn float(&self, column: &'static str) -> StoreResult<f64> {
        let value = self.opt_float(column)?;
        self.required(column, value)
    }

    pub fn bool(&self, column: &'static str) -> StoreResult<bool> {
        match self.get(column) {
            SqlValue::Bool(value) => Ok(*value),
            SqlValue::Int(value) => Ok(*value != 0),
            other => Err(self.invalid(column, format!("expected a boolean, found {other:?}"))),
        }
    }

    pub fn opt_json(&self, column: &'static str) -> StoreResult<Option<Value>> {
        match self.get(column) {
            SqlValue::Null => Ok(None),
            SqlValue::Json(value) => Ok(Some(value.clone())),
            other => Err(self.invalid(column, format!("expected JSON, found {other:?}"))),
        }
    }

    pub fn json(&self, column: &'static str) -> StoreResult<Value> {
        let value = self.opt_json(column)?;
        self.required(column, value)
    }

    pub fn opt_time(&self, column: &'static str) -> StoreResult<Option<DateTime<Utc>>> {
        match self.get(column) {
            SqlValue::Null => Ok(None),
            SqlValue::Time(value) => Ok(Some(*value)),
            other => Err(self.invalid(column, format!("expected a timestamp, found {other:?}"))),
        }
    }

    pub fn time(&self, column: &'static str) -> StoreResult<DateTime<Utc>> {
        let value = self.opt_time(column)?;
        self.required(column, value)
    }

    /// Parses a text column into one of the model's enums.
    pub fn parse<T>(&self, column: &'static str) -> StoreResult<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let text = self.text(column)?;
        text.parse().map_err(|error: T::Err| self.invalid(column, error.to_string()))
    }

    /// Parses an optional text column into one of the model's enums.
    pub fn opt_parse<T>(&self, column: &'static str) -> StoreResult<Option<T>>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.opt_text(column)? {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|error: T::Err| self.invalid(column, error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{TEST_LOGS, WORKER_HEARTBEATS};

    #[test]
    fn postgres_upsert_keeps_key_and_created_at() {
        let row = vec![SqlValue::Null; WORKER_HEARTBEATS.columns.len()];
        let rendered = render_upsert(Dialect::Postgres, &WORKER_HEARTBEATS, &[row]);
        assert!(rendered.sql.starts_with("INSERT INTO test_results.WORKER_HEARTBEATS (RUN_ID, WORKER_ID,"));
        assert!(rendered
            .sql
            .contains("ON CONFLICT (RUN_ID, WORKER_ID) DO UPDATE SET WORKER_GROUP_ID = excluded.WORKER_GROUP_ID"));
        assert!(!rendered.sql.contains("CREATED_AT = excluded"));
        assert!(!rendered.sql.contains("RUN_ID = excluded"));
    }

    #[test]
    fn now_is_inline_on_postgres_and_bound_on_sqlite() {
        let mut row = vec![SqlValue::Null; TEST_LOGS.columns.len()];
        let last = row.len() - 1;
        row[last] = SqlValue::Now;
        let postgres = render_insert(Dialect::Postgres, &TEST_LOGS, &[row.clone()]);
        assert!(postgres.sql.ends_with(", now())"), "{}", postgres.sql);
        assert_eq!(postgres.params.len(), TEST_LOGS.columns.len() - 1);
        let sqlite = render_insert(Dialect::Sqlite, &TEST_LOGS, &[row]);
        assert_eq!(sqlite.params.len(), TEST_LOGS.columns.len());
        assert!(matches!(sqlite.params[last].0, SqlValue::Time(_)));
    }

    #[test]
    fn select_renders_filters_order_and_page() {
        let select = Select::from(&TEST_LOGS)
            .filter(Condition::eq("RUN_ID", "r1"))
            .filter(Condition::contains("MESSAGE", "50%_done"))
            .order("TIMESTAMP", Order::Asc)
            .page(Page { limit: 10, offset: 20 });
        let rendered = render_select(Dialect::Sqlite, &select);
        assert!(rendered.sql.ends_with(
            "FROM TEST_LOGS WHERE RUN_ID = ?1 AND LOWER(MESSAGE) LIKE LOWER(?2) ESCAPE '\\' ORDER BY TIMESTAMP ASC LIMIT 10 OFFSET 20"
        ), "{}", rendered.sql);
        assert_eq!(rendered.params[1].0, SqlValue::Text("%50\\%\\_done%".into()));
    }
}
