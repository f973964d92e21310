//! The unibench results and config store.
//!
//! Every role coordinates through this store and nothing else: the
//! orchestrator writes run status and control events, workers write
//! heartbeats, snapshots, executions and logs, and the controller reads.
//! [`Store`] is one API over the backends (SQLite, the embedded default,
//! and PostgreSQL). Its writes take slices of rows, because a store where a
//! statement costs tens of milliseconds (Snowflake) only keeps up when rows
//! travel in batches.

mod convert;
pub mod error;
mod postgres;
pub mod rows;
pub mod schema;
pub mod sql;
mod sqlite;
pub mod url;

use chrono::{DateTime, Utc};

use convert::{values_of, TableRow};
pub use error::{Backend, MissingColumn, StoreError, StoreResult};
use postgres::PostgresStore;
pub use postgres::{describe_error, describe_location};
pub use rows::*;
use schema::TableSpec;
use sql::{Assign, Condition, Order, RowValues, Select, SqlValue, WriteOp};
pub use sqlite::enable_wal;
use sqlite::SqliteStore;
pub use url::StoreUrl;

/// A connected results and config store.
#[derive(Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Connects to the store and checks that it responds. Runs no DDL.
    pub async fn connect(url: &StoreUrl) -> StoreResult<Self> {
        match url {
            StoreUrl::Sqlite { path } => Ok(Store::Sqlite(SqliteStore::connect(path).await?)),
            StoreUrl::Postgres { config, .. } => Ok(Store::Postgres(PostgresStore::connect(config).await?)),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Creates whatever tables and indexes are missing. Rerunnable.
    pub async fn apply_schema(&self) -> StoreResult<()> {
        match self {
            Store::Sqlite(store) => store.apply_schema().await,
            Store::Postgres(store) => store.apply_schema().await,
        }
    }

    /// Lists the tables and columns the binary needs that are missing.
    pub async fn check_schema(&self) -> StoreResult<Vec<MissingColumn>> {
        match self {
            Store::Sqlite(store) => store.check_schema().await,
            Store::Postgres(store) => store.check_schema().await,
        }
    }

    /// Fails with [`StoreError::SchemaIncomplete`] unless every table and
    /// column is present.
    pub async fn require_schema(&self) -> StoreResult<()> {
        let missing = self.check_schema().await?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::SchemaIncomplete { backend: self.backend(), missing })
        }
    }

    /// Returns the store's clock, which heartbeat ages are measured against.
    pub async fn now(&self) -> StoreResult<DateTime<Utc>> {
        match self {
            Store::Sqlite(store) => store.now().await,
            Store::Postgres(store) => store.now().await,
        }
    }

    async fn write(&self, ops: Vec<WriteOp>) -> StoreResult<Vec<u64>> {
        let ops: Vec<WriteOp> = ops.into_iter().filter(|op| !is_empty_batch(op)).collect();
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Sqlite(store) => store.write(ops).await,
            Store::Postgres(store) => store.write(&ops).await,
        }
    }

    async fn select<T: TableRow>(&self, select: Select) -> StoreResult<Vec<T>> {
        let rows: Vec<RowValues> = match self {
            Store::Sqlite(store) => store.select(select).await?,
            Store::Postgres(store) => store.select(&select).await?,
        };
        rows.iter().map(T::from_values).collect()
    }

    async fn select_one<T: TableRow>(&self, select: Select) -> StoreResult<Option<T>> {
        let select = select.page(Page { limit: 1, offset: 0 });
        Ok(self.select(select).await?.into_iter().next())
    }

    async fn count(&self, table: &'static TableSpec, conditions: Vec<Condition>) -> StoreResult<i64> {
        match self {
            Store::Sqlite(store) => store.count(table, conditions).await,
            Store::Postgres(store) => store.count(table, &conditions).await,
        }
    }

    // Runs.

    /// Creates a run: its `RUN_STATUS` row and its parent `TEST_RESULTS`
    /// row, together or not at all.
    pub async fn create_run(&self, run: &RunStatusRow, parent: &TestResultRow) -> StoreResult<()> {
        self.write(vec![
            WriteOp::Insert { table: &schema::RUN_STATUS, rows: vec![run.to_values()] },
            WriteOp::Insert { table: &schema::TEST_RESULTS, rows: vec![parent.to_values()] },
        ])
        .await
        .map(drop)
    }

    pub async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunStatusRow>> {
        self.select_one(Select::from(&schema::RUN_STATUS).filter(Condition::eq("RUN_ID", run_id))).await
    }

    /// Applies a partial update to a run. Returns whether the run matched
    /// (it exists and, when `only_if_status` is set, had one of those
    /// statuses).
    pub async fn update_run(&self, run_id: &str, update: &RunStatusUpdate) -> StoreResult<bool> {
        let counts = self.write(vec![run_update_op(run_id, update)]).await?;
        Ok(counts.iter().sum::<u64>() > 0)
    }

    /// Lists runs, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunStatusRow>> {
        let mut select = Select::from(&schema::RUN_STATUS)
            .filter_if("STATUS", filter.status.map(|status| status.as_str()))
            .filter_if("TEMPLATE_ID", filter.template_id.clone());
        if let Some(name) = &filter.name_contains {
            select = select.filter(Condition::contains("TEST_NAME", name));
        }
        self.select(select.order("CREATED_AT", Order::Desc).order("RUN_ID", Order::Asc).page(filter.page)).await
    }

    /// Lists runs with the given status whose `UPDATED_AT` is before
    /// `updated_before`: active runs whose orchestrator stopped touching
    /// them.
    pub async fn list_stale_runs(
        &self,
        status: unibench_model::RunStatus,
        updated_before: DateTime<Utc>,
    ) -> StoreResult<Vec<RunStatusRow>> {
        let select = Select::from(&schema::RUN_STATUS)
            .filter(Condition::eq("STATUS", status.as_str()))
            .filter(Condition::lt("UPDATED_AT", updated_before))
            .order("CREATED_AT", Order::Asc);
        self.select(select).await
    }

    // Control events.

    /// Appends control events with the next sequence ids of the run and, in
    /// the same transaction, applies `run_update` (the mirror of the events
    /// in `RUN_STATUS`). Returns the events as written; their `created_at`
    /// is `None`.
    pub async fn append_events(
        &self,
        run_id: &str,
        events: &[NewControlEvent],
        run_update: Option<&RunStatusUpdate>,
    ) -> StoreResult<Vec<ControlEventRow>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let update = run_update.map(|update| run_update_op(run_id, update));
        match self {
            Store::Sqlite(store) => store.append_events(run_id, events, update).await,
            Store::Postgres(store) => store.append_events(run_id, events, update).await,
        }
    }

    /// Reads up to `limit` events with a sequence id above `after_sequence`,
    /// in sequence order.
    pub async fn read_events(
        &self,
        run_id: &str,
        after_sequence: i64,
        limit: u32,
    ) -> StoreResult<Vec<ControlEventRow>> {
        let select = Select::from(&schema::RUN_CONTROL_EVENTS)
            .filter(Condition::eq("RUN_ID", run_id))
            .filter(Condition::gt("SEQUENCE_ID", after_sequence))
            .order("SEQUENCE_ID", Order::Asc)
            .page(Page { limit, offset: 0 });
        self.select(select).await
    }

    // Heartbeats and snapshots.

    /// Inserts or replaces heartbeats. `LAST_HEARTBEAT` and `UPDATED_AT`
    /// come from the store's clock.
    pub async fn upsert_heartbeats(&self, heartbeats: &[HeartbeatRow]) -> StoreResult<()> {
        self.write(vec![WriteOp::Upsert { table: &schema::WORKER_HEARTBEATS, rows: values_of(heartbeats) }])
            .await
            .map(drop)
    }

    pub async fn list_heartbeats(&self, run_id: &str) -> StoreResult<Vec<HeartbeatRow>> {
        let select = Select::from(&schema::WORKER_HEARTBEATS)
            .filter(Condition::eq("RUN_ID", run_id))
            .order("WORKER_GROUP_ID", Order::Asc)
            .order("WORKER_ID", Order::Asc);
        self.select(select).await
    }

    /// Writes a heartbeat and the snapshots a worker has not written yet,
    /// in one transaction.
    pub async fn record_worker_tick(&self, heartbeat: &HeartbeatRow, snapshots: &[SnapshotRow]) -> StoreResult<()> {
        self.write(vec![
            WriteOp::Upsert { table: &schema::WORKER_HEARTBEATS, rows: vec![heartbeat.to_values()] },
            WriteOp::Insert { table: &schema::WORKER_METRICS_SNAPSHOTS, rows: values_of(snapshots) },
        ])
        .await
        .map(drop)
    }

    /// Runs a worker's whole once-a-second exchange: writes its heartbeat and
    /// pending snapshots, and reads up to `limit` control events after
    /// `after_sequence`. One statement on PostgreSQL.
    pub async fn worker_tick(
        &self,
        heartbeat: &HeartbeatRow,
        snapshots: &[SnapshotRow],
        after_sequence: i64,
        limit: u32,
    ) -> StoreResult<Vec<ControlEventRow>> {
        match self {
            Store::Postgres(store) => {
                let statement = sql::render_postgres_worker_tick(
                    &[heartbeat.to_values()],
                    &values_of(snapshots),
                    &heartbeat.run_id,
                    after_sequence,
                    limit,
                );
                let rows = store.select_rendered(&schema::RUN_CONTROL_EVENTS, &statement).await?;
                rows.iter().map(ControlEventRow::from_values).collect()
            }
            Store::Sqlite(_) => {
                self.record_worker_tick(heartbeat, snapshots).await?;
                self.read_events(&heartbeat.run_id, after_sequence, limit).await
            }
        }
    }

    pub async fn insert_snapshots(&self, snapshots: &[SnapshotRow]) -> StoreResult<()> {
        self.write(vec![WriteOp::Insert { table: &schema::WORKER_METRICS_SNAPSHOTS, rows: values_of(snapshots) }])
            .await
            .map(drop)
    }

    /// Lists a run's snapshots, oldest first.
    pub async fn list_snapshots(&self, run_id: &str, filter: &SnapshotFilter) -> StoreResult<Vec<SnapshotRow>> {
        let select = Select::from(&schema::WORKER_METRICS_SNAPSHOTS)
            .filter(Condition::eq("RUN_ID", run_id))
            .filter_if("TEST_ID", filter.test_id.clone())
            .filter_if("WORKER_ID", filter.worker_id.clone())
            .filter_if("PHASE", filter.phase.map(|phase| phase.as_str()))
            .order("TIMESTAMP", Order::Asc)
            .order("WORKER_ID", Order::Asc)
            .page(filter.page);
        self.select(select).await
    }

    /// Reads the newest snapshot of each of the run's workers, in one
    /// statement.
    pub async fn latest_snapshots(&self, run_id: &str) -> StoreResult<Vec<SnapshotRow>> {
        let table = &schema::WORKER_METRICS_SNAPSHOTS;
        let dialect = match self {
            Store::Sqlite(_) => sql::Dialect::Sqlite,
            Store::Postgres(_) => sql::Dialect::Postgres,
        };
        let statement =
            sql::render_latest_per_group(dialect, table, Condition::eq("RUN_ID", run_id), "WORKER_ID", "TIMESTAMP");
        let rows = match self {
            Store::Sqlite(store) => store.select_rendered(table, statement).await?,
            Store::Postgres(store) => store.select_rendered(table, &statement).await?,
        };
        let mut latest: Vec<SnapshotRow> = rows.iter().map(SnapshotRow::from_values).collect::<StoreResult<_>>()?;
        // Two snapshots of one worker with the same timestamp would both
        // match; keep one.
        latest.dedup_by(|a, b| a.worker_id == b.worker_id);
        Ok(latest)
    }

    // Test results.

    /// Inserts or replaces parent and child result rows.
    pub async fn upsert_test_results(&self, results: &[TestResultRow]) -> StoreResult<()> {
        self.write(vec![WriteOp::Upsert { table: &schema::TEST_RESULTS, rows: values_of(results) }]).await.map(drop)
    }

    pub async fn get_test_result(&self, test_id: &str) -> StoreResult<Option<TestResultRow>> {
        self.select_one(Select::from(&schema::TEST_RESULTS).filter(Condition::eq("TEST_ID", test_id))).await
    }

    /// Reads the run's parent row and its children, parent first, children
    /// by worker group.
    pub async fn list_test_results(&self, run_id: &str) -> StoreResult<Vec<TestResultRow>> {
        let select = Select::from(&schema::TEST_RESULTS)
            .filter(Condition::eq("RUN_ID", run_id))
            .order("WORKER_GROUP_ID", Order::Asc)
            .order("TEST_ID", Order::Asc);
        let mut results: Vec<TestResultRow> = self.select(select).await?;
        results.sort_by_key(|result| !result.is_parent());
        Ok(results)
    }

    // Query executions.

    /// Writes executions in one batch: binary COPY on PostgreSQL, multi-row
    /// inserts elsewhere.
    pub async fn insert_executions(&self, executions: &[ExecutionRow]) -> StoreResult<()> {
        if executions.is_empty() {
            return Ok(());
        }
        let rows = values_of(executions);
        match self {
            Store::Postgres(store) => store.copy_in(&schema::QUERY_EXECUTIONS, &rows).await.map(drop),
            Store::Sqlite(_) => {
                self.write(vec![WriteOp::Insert { table: &schema::QUERY_EXECUTIONS, rows }]).await.map(drop)
            }
        }
    }

    /// Lists a run's executions in start-time order.
    pub async fn list_executions(&self, run_id: &str, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionRow>> {
        let select = execution_select(run_id, filter)
            .order("START_TIME", Order::Asc)
            .order("EXECUTION_ID", Order::Asc)
            .page(filter.page);
        self.select(select).await
    }

    pub async fn count_executions(&self, run_id: &str, filter: &ExecutionFilter) -> StoreResult<i64> {
        self.count(&schema::QUERY_EXECUTIONS, execution_select(run_id, filter).conditions).await
    }

    /// Returns `APP_ELAPSED_MS` of the execution at `rank` (from 1) in
    /// ascending latency order, or `None` past the last. The store sorts,
    /// so an exact percentile never reads every row back. `filter.page` is
    /// not used.
    pub async fn execution_latency_at_rank(
        &self,
        run_id: &str,
        filter: &ExecutionFilter,
        rank: u64,
    ) -> StoreResult<Option<f64>> {
        let Some(offset) = rank.checked_sub(1) else { return Ok(None) };
        let select = execution_select(run_id, filter)
            .order("APP_ELAPSED_MS", Order::Asc)
            .order("EXECUTION_ID", Order::Asc)
            .page(Page { limit: 1, offset });
        let rows: Vec<ExecutionRow> = self.select(select).await?;
        Ok(rows.first().map(|row| row.app_elapsed_ms))
    }

    // Logs.

    pub async fn insert_logs(&self, logs: &[LogRow]) -> StoreResult<()> {
        self.write(vec![WriteOp::Insert { table: &schema::TEST_LOGS, rows: values_of(logs) }]).await.map(drop)
    }

    /// Lists a run's logs, oldest first.
    pub async fn list_logs(&self, run_id: &str, filter: &LogFilter) -> StoreResult<Vec<LogRow>> {
        let select = Select::from(&schema::TEST_LOGS)
            .filter(Condition::eq("RUN_ID", run_id))
            .filter_if("TEST_ID", filter.test_id.clone())
            .filter_if("WORKER_ID", filter.worker_id.clone())
            .filter_if("LEVEL", filter.level.clone())
            .order("TIMESTAMP", Order::Asc)
            .order("LOG_ID", Order::Asc)
            .page(filter.page);
        self.select(select).await
    }

    // Warehouse polls and find-max steps.

    pub async fn insert_warehouse_polls(&self, polls: &[WarehousePollRow]) -> StoreResult<()> {
        self.write(vec![WriteOp::Insert { table: &schema::WAREHOUSE_POLL_SNAPSHOTS, rows: values_of(polls) }])
            .await
            .map(drop)
    }

    pub async fn list_warehouse_polls(&self, run_id: &str, page: Page) -> StoreResult<Vec<WarehousePollRow>> {
        let select = Select::from(&schema::WAREHOUSE_POLL_SNAPSHOTS)
            .filter(Condition::eq("RUN_ID", run_id))
            .order("TIMESTAMP", Order::Asc)
            .page(page);
        self.select(select).await
    }

    pub async fn insert_find_max_steps(&self, steps: &[FindMaxStepRow]) -> StoreResult<()> {
        self.write(vec![WriteOp::Upsert { table: &schema::FIND_MAX_STEP_HISTORY, rows: values_of(steps) }])
            .await
            .map(drop)
    }

    pub async fn list_find_max_steps(&self, run_id: &str) -> StoreResult<Vec<FindMaxStepRow>> {
        let select = Select::from(&schema::FIND_MAX_STEP_HISTORY)
            .filter(Condition::eq("RUN_ID", run_id))
            .order("STEP_NUMBER", Order::Asc);
        self.select(select).await
    }

    // Templates and value pools.

    /// Saves a template by name: a template with the same name keeps its id,
    /// creation time and usage, and takes the new description, config and
    /// tags. Returns the stored row.
    pub async fn save_template(&self, template: &TemplateRow) -> StoreResult<TemplateRow> {
        let existing: Option<TemplateRow> = self
            .select_one(
                Select::from(&schema::TEST_TEMPLATES)
                    .filter(Condition::eq("TEMPLATE_NAME", template.template_name.as_str())),
            )
            .await?;
        let row = match existing {
            Some(existing) => TemplateRow {
                template_id: existing.template_id,
                usage_count: existing.usage_count,
                last_used_at: existing.last_used_at,
                created_at: existing.created_at,
                created_by: template.created_by.clone().or(existing.created_by),
                ..template.clone()
            },
            None => template.clone(),
        };
        self.write(vec![WriteOp::Upsert { table: &schema::TEST_TEMPLATES, rows: vec![row.to_values()] }]).await?;
        self.get_template(&row.template_id).await?.ok_or_else(|| StoreError::Statement {
            backend: self.backend(),
            statement: "save template".to_owned(),
            code: None,
            message: format!("template `{}` vanished after it was saved", row.template_id),
        })
    }

    /// Finds a template by id, or else by name.
    pub async fn get_template(&self, id_or_name: &str) -> StoreResult<Option<TemplateRow>> {
        let by_id = self
            .select_one(Select::from(&schema::TEST_TEMPLATES).filter(Condition::eq("TEMPLATE_ID", id_or_name)))
            .await?;
        if by_id.is_some() {
            return Ok(by_id);
        }
        self.select_one(Select::from(&schema::TEST_TEMPLATES).filter(Condition::eq("TEMPLATE_NAME", id_or_name))).await
    }

    /// Lists templates by name.
    pub async fn list_templates(&self) -> StoreResult<Vec<TemplateRow>> {
        self.select(Select::from(&schema::TEST_TEMPLATES).order("TEMPLATE_NAME", Order::Asc)).await
    }

    /// Deletes a template and its value pools. Returns whether it existed.
    pub async fn delete_template(&self, template_id: &str) -> StoreResult<bool> {
        let counts = self
            .write(vec![
                WriteOp::Delete {
                    table: &schema::TEMPLATE_VALUE_POOLS,
                    conditions: vec![Condition::eq("TEMPLATE_ID", template_id)],
                },
                WriteOp::Delete {
                    table: &schema::TEST_TEMPLATES,
                    conditions: vec![Condition::eq("TEMPLATE_ID", template_id)],
                },
            ])
            .await?;
        Ok(counts.last().copied().unwrap_or(0) > 0)
    }

    /// Counts one more use of a template and stamps `LAST_USED_AT`.
    pub async fn record_template_use(&self, template_id: &str) -> StoreResult<()> {
        self.write(vec![WriteOp::Update {
            table: &schema::TEST_TEMPLATES,
            sets: vec![("USAGE_COUNT", Assign::AddInt(1)), ("LAST_USED_AT", Assign::Value(SqlValue::Now))],
            conditions: vec![Condition::eq("TEMPLATE_ID", template_id)],
        }])
        .await
        .map(drop)
    }

    /// Replaces every value pool of a template, atomically.
    pub async fn replace_value_pools(&self, template_id: &str, pools: &[ValuePoolRow]) -> StoreResult<()> {
        self.write(vec![
            WriteOp::Delete {
                table: &schema::TEMPLATE_VALUE_POOLS,
                conditions: vec![Condition::eq("TEMPLATE_ID", template_id)],
            },
            WriteOp::Insert { table: &schema::TEMPLATE_VALUE_POOLS, rows: values_of(pools) },
        ])
        .await
        .map(drop)
    }

    /// Reads a template's pool values, by kind, column and sequence.
    pub async fn list_value_pools(&self, template_id: &str) -> StoreResult<Vec<ValuePoolRow>> {
        let select = Select::from(&schema::TEMPLATE_VALUE_POOLS)
            .filter(Condition::eq("TEMPLATE_ID", template_id))
            .order("POOL_KIND", Order::Asc)
            .order("COLUMN_NAME", Order::Asc)
            .order("SEQ", Order::Asc);
        self.select(select).await
    }
}

fn is_empty_batch(op: &WriteOp) -> bool {
    matches!(op, WriteOp::Insert { rows, .. } | WriteOp::Upsert { rows, .. } if rows.is_empty())
}

fn execution_select(run_id: &str, filter: &ExecutionFilter) -> Select {
    Select::from(&schema::QUERY_EXECUTIONS)
        .filter(Condition::eq("RUN_ID", run_id))
        .filter_if("TEST_ID", filter.test_id.clone())
        .filter_if("WARMUP", filter.warmup)
}

/// Builds the `UPDATE` of `RUN_STATUS` for a partial update. It always
/// sets `UPDATED_AT`.
fn run_update_op(run_id: &str, update: &RunStatusUpdate) -> WriteOp {
    let mut sets: Vec<(&'static str, Assign)> = Vec::new();
    let mut set = |column: &'static str, value: SqlValue| sets.push((column, Assign::Value(value)));
    if let Some(status) = update.status {
        set("STATUS", status.as_str().into());
    }
    if let Some(phase) = update.phase {
        set("PHASE", phase.as_str().into());
    }
    if let Some(reason) = &update.status_reason {
        set("STATUS_REASON", reason.clone().into());
    }
    if let Some(time) = update.start_time {
        set("START_TIME", time.into());
    }
    if let Some(time) = update.warmup_end_time {
        set("WARMUP_END_TIME", time.into());
    }
    if let Some(time) = update.end_time {
        set("END_TIME", time.into());
    }
    let counters = [
        ("TOTAL_WORKERS_EXPECTED", update.total_workers_expected),
        ("WORKERS_REGISTERED", update.workers_registered),
        ("WORKERS_ACTIVE", update.workers_active),
        ("WORKERS_COMPLETED", update.workers_completed),
        ("TOTAL_OPS", update.total_ops),
        ("ERROR_COUNT", update.error_count),
    ];
    for (column, value) in counters {
        if let Some(value) = value {
            set(column, value.into());
        }
    }
    if let Some(qps) = update.current_qps {
        set("CURRENT_QPS", qps.into());
    }
    if let Some(targets) = &update.worker_targets {
        set("WORKER_TARGETS", targets.clone().into());
    }
    if let Some(state) = &update.find_max_state {
        set("FIND_MAX_STATE", state.clone().into());
    }
    set("UPDATED_AT", SqlValue::Now);

    let mut conditions = vec![Condition::eq("RUN_ID", run_id)];
    if !update.only_if_status.is_empty() {
        let statuses = update.only_if_status.iter().map(|status| status.as_str().into()).collect();
        conditions.push(Condition::one_of("STATUS", statuses));
    }
    WriteOp::Update { table: &schema::RUN_STATUS, sets, conditions }
}
