//! Conversions between the row structs of [`crate::rows`] and the
//! column-ordered values of [`crate::sql`], one impl per table.

use unibench_model::scenario::QueryKind;

use crate::error::StoreResult;
use crate::rows::*;
use crate::schema::{self, TableSpec};
use crate::sql::{RowValues, SqlValue};

/// A row struct that maps onto one table.
pub trait TableRow: Sized {
    const TABLE: &'static TableSpec;

    /// Returns the row's values in the table's column order.
    fn to_values(&self) -> Vec<SqlValue>;

    /// Reads a row, failing on a missing or ill-typed value.
    fn from_values(row: &RowValues) -> StoreResult<Self>;
}

/// Builds a row by column name, so that a value can never land in the
/// wrong position; `finish` checks in debug builds that every column was
/// set exactly once.
struct RowBuilder {
    table: &'static TableSpec,
    values: Vec<Option<SqlValue>>,
}

impl RowBuilder {
    fn new(table: &'static TableSpec) -> Self {
        RowBuilder { table, values: vec![None; table.columns.len()] }
    }

    fn set(&mut self, column: &'static str, value: impl Into<SqlValue>) -> &mut Self {
        let slot = &mut self.values[self.table.index_of(column)];
        debug_assert!(slot.is_none(), "column {}.{column} set twice", self.table.name);
        *slot = Some(value.into());
        self
    }

    /// Sets a store-assigned timestamp: the given value when there is one,
    /// otherwise the store's clock.
    fn stamp(&mut self, column: &'static str, value: Option<chrono::DateTime<chrono::Utc>>) -> &mut Self {
        self.set(column, value.map_or(SqlValue::Now, SqlValue::Time))
    }

    fn finish(&mut self) -> Vec<SqlValue> {
        let table = self.table;
        std::mem::take(&mut self.values)
            .into_iter()
            .zip(table.columns)
            .map(|(value, column)| {
                debug_assert!(value.is_some(), "column {}.{} not set", table.name, column.name);
                value.unwrap_or(SqlValue::Null)
            })
            .collect()
    }
}

impl TableRow for RunStatusRow {
    const TABLE: &'static TableSpec = &schema::RUN_STATUS;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("RUN_ID", self.run_id.as_str())
            .set("TEST_ID", self.test_id.as_str())
            .set("TEMPLATE_ID", self.template_id.clone())
            .set("TEST_NAME", self.test_name.as_str())
            .set("SCENARIO_CONFIG", self.scenario_config.clone())
            .set("STATUS", self.status.as_str())
            .set("PHASE", self.phase.as_str())
            .set("STATUS_REASON", self.status_reason.clone())
            .set("START_TIME", self.start_time)
            .set("WARMUP_END_TIME", self.warmup_end_time)
            .set("END_TIME", self.end_time)
            .set("TOTAL_WORKERS_EXPECTED", self.total_workers_expected)
            .set("WORKERS_REGISTERED", self.workers_registered)
            .set("WORKERS_ACTIVE", self.workers_active)
            .set("WORKERS_COMPLETED", self.workers_completed)
            .set("TOTAL_OPS", self.total_ops)
            .set("ERROR_COUNT", self.error_count)
            .set("CURRENT_QPS", self.current_qps)
            .set("WORKER_TARGETS", self.worker_targets.clone())
            .set("NEXT_SEQUENCE_ID", self.next_sequence_id)
            .set("FIND_MAX_STATE", self.find_max_state.clone())
            .stamp("CREATED_AT", self.created_at)
            .stamp("UPDATED_AT", self.updated_at)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(RunStatusRow {
            run_id: row.text("RUN_ID")?,
            test_id: row.text("TEST_ID")?,
            template_id: row.opt_text("TEMPLATE_ID")?,
            test_name: row.text("TEST_NAME")?,
            scenario_config: row.json("SCENARIO_CONFIG")?,
            status: row.parse("STATUS")?,
            phase: row.parse("PHASE")?,
            status_reason: row.opt_text("STATUS_REASON")?,
            start_time: row.opt_time("START_TIME")?,
            warmup_end_time: row.opt_time("WARMUP_END_TIME")?,
            end_time: row.opt_time("END_TIME")?,
            total_workers_expected: row.int("TOTAL_WORKERS_EXPECTED")?,
            workers_registered: row.int("WORKERS_REGISTERED")?,
            workers_active: row.int("WORKERS_ACTIVE")?,
            workers_completed: row.int("WORKERS_COMPLETED")?,
            total_ops: row.int("TOTAL_OPS")?,
            error_count: row.int("ERROR_COUNT")?,
            current_qps: row.opt_float("CURRENT_QPS")?,
            worker_targets: row.json("WORKER_TARGETS")?,
            next_sequence_id: row.int("NEXT_SEQUENCE_ID")?,
            find_max_state: row.opt_json("FIND_MAX_STATE")?,
            created_at: row.opt_time("CREATED_AT")?,
            updated_at: row.opt_time("UPDATED_AT")?,
        })
    }
}

impl TableRow for ControlEventRow {
    const TABLE: &'static TableSpec = &schema::RUN_CONTROL_EVENTS;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("EVENT_ID", self.event_id.as_str())
            .set("RUN_ID", self.run_id.as_str())
            .set("EVENT_TYPE", self.event_type.as_str())
            .set("EVENT_DATA", self.event_data.clone())
            .set("SEQUENCE_ID", self.sequence_id)
            .stamp("CREATED_AT", self.created_at)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(ControlEventRow {
            event_id: row.text("EVENT_ID")?,
            run_id: row.text("RUN_ID")?,
            event_type: row.parse("EVENT_TYPE")?,
            event_data: row.json("EVENT_DATA")?,
            sequence_id: row.int("SEQUENCE_ID")?,
            created_at: row.opt_time("CREATED_AT")?,
        })
    }
}

impl TableRow for HeartbeatRow {
    const TABLE: &'static TableSpec = &schema::WORKER_HEARTBEATS;

    fn to_values(&self) -> Vec<SqlValue> {
        let last_error = self.last_error.as_deref().map(|error| truncate_chars(error, LAST_ERROR_MAX_CHARS).to_owned());
        RowBuilder::new(Self::TABLE)
            .set("RUN_ID", self.run_id.as_str())
            .set("WORKER_ID", self.worker_id.as_str())
            .set("WORKER_GROUP_ID", self.worker_group_id)
            .set("STATUS", self.status.as_str())
            .set("PHASE", self.phase.map(|phase| phase.as_str()))
            // Health is judged on the store's clock, so the heartbeat time
            // always comes from the store, whatever the worker's clock reads.
            .set("LAST_HEARTBEAT", SqlValue::Now)
            .set("HEARTBEAT_COUNT", self.heartbeat_count)
            .set("ACTIVE_CONNECTIONS", self.active_connections)
            .set("TARGET_CONNECTIONS", self.target_connections)
            .set("LAST_ERROR", last_error)
            .set("ERROR_COUNT", self.error_count)
            .stamp("CREATED_AT", self.created_at)
            .set("UPDATED_AT", SqlValue::Now)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(HeartbeatRow {
            run_id: row.text("RUN_ID")?,
            worker_id: row.text("WORKER_ID")?,
            worker_group_id: row.int("WORKER_GROUP_ID")?,
            status: row.parse("STATUS")?,
            phase: row.opt_parse("PHASE")?,
            last_heartbeat: row.opt_time("LAST_HEARTBEAT")?,
            heartbeat_count: row.int("HEARTBEAT_COUNT")?,
            active_connections: row.int("ACTIVE_CONNECTIONS")?,
            target_connections: row.int("TARGET_CONNECTIONS")?,
            last_error: row.opt_text("LAST_ERROR")?,
            error_count: row.int("ERROR_COUNT")?,
            created_at: row.opt_time("CREATED_AT")?,
            updated_at: row.opt_time("UPDATED_AT")?,
        })
    }
}

/// Returns the per-kind latency columns of `TEST_RESULTS`, as (p50, p95,
/// p99).
pub(crate) fn kind_latency_columns(kind: QueryKind) -> [&'static str; 3] {
    match kind {
        QueryKind::PointLookup => {
            ["POINT_LOOKUP_P50_LATENCY_MS", "POINT_LOOKUP_P95_LATENCY_MS", "POINT_LOOKUP_P99_LATENCY_MS"]
        }
        QueryKind::RangeScan => ["RANGE_SCAN_P50_LATENCY_MS", "RANGE_SCAN_P95_LATENCY_MS", "RANGE_SCAN_P99_LATENCY_MS"],
        QueryKind::Insert => ["INSERT_P50_LATENCY_MS", "INSERT_P95_LATENCY_MS", "INSERT_P99_LATENCY_MS"],
        QueryKind::Update => ["UPDATE_P50_LATENCY_MS", "UPDATE_P95_LATENCY_MS", "UPDATE_P99_LATENCY_MS"],
        QueryKind::Delete => ["DELETE_P50_LATENCY_MS", "DELETE_P95_LATENCY_MS", "DELETE_P99_LATENCY_MS"],
        QueryKind::Custom => ["CUSTOM_P50_LATENCY_MS", "CUSTOM_P95_LATENCY_MS", "CUSTOM_P99_LATENCY_MS"],
    }
}

impl TableRow for TestResultRow {
    const TABLE: &'static TableSpec = &schema::TEST_RESULTS;

    fn to_values(&self) -> Vec<SqlValue> {
        let mut builder = RowBuilder::new(Self::TABLE);
        builder
            .set("TEST_ID", self.test_id.as_str())
            .set("RUN_ID", self.run_id.as_str())
            .set("WORKER_ID", self.worker_id.clone())
            .set("WORKER_GROUP_ID", self.worker_group_id)
            .set("TEMPLATE_ID", self.template_id.clone())
            .set("TEST_NAME", self.test_name.as_str())
            .set("TABLE_NAME", self.table_name.clone())
            .set("TABLE_TYPE", self.table_type.clone())
            .set("WAREHOUSE", self.warehouse.clone())
            .set("STATUS", self.status.as_str())
            .set("START_TIME", self.start_time)
            .set("END_TIME", self.end_time)
            .set("DURATION_SECONDS", self.duration_seconds)
            .set("CONCURRENT_CONNECTIONS", self.concurrent_connections)
            .set("TEST_CONFIG", self.test_config.clone())
            .set("TOTAL_OPERATIONS", self.total_operations)
            .set("READ_OPERATIONS", self.read_operations)
            .set("WRITE_OPERATIONS", self.write_operations)
            .set("FAILED_OPERATIONS", self.failed_operations)
            .set("QPS", self.qps)
            .set("ERROR_RATE", self.error_rate)
            .set("AVG_LATENCY_MS", self.avg_latency_ms)
            .set("MIN_LATENCY_MS", self.min_latency_ms)
            .set("MAX_LATENCY_MS", self.max_latency_ms)
            .set("P50_LATENCY_MS", self.p50_latency_ms)
            .set("P90_LATENCY_MS", self.p90_latency_ms)
            .set("P95_LATENCY_MS", self.p95_latency_ms)
            .set("P99_LATENCY_MS", self.p99_latency_ms)
            .set("P999_LATENCY_MS", self.p999_latency_ms)
            .set("FIND_MAX_RESULT", self.find_max_result.clone())
            .set("FAILURE_REASON", self.failure_reason.clone())
            .set("ENRICHMENT_STATUS", self.enrichment_status.clone())
            .stamp("CREATED_AT", self.created_at)
            .set("UPDATED_AT", SqlValue::Now);
        for kind in QueryKind::ALL {
            let latency = self.kind_latencies.get(kind).copied().unwrap_or_default();
            let [p50, p95, p99] = kind_latency_columns(*kind);
            builder.set(p50, latency.p50_ms).set(p95, latency.p95_ms).set(p99, latency.p99_ms);
        }
        builder.finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        let mut kind_latencies = std::collections::BTreeMap::new();
        for kind in QueryKind::ALL {
            let [p50, p95, p99] = kind_latency_columns(*kind);
            let latency =
                KindLatency { p50_ms: row.opt_float(p50)?, p95_ms: row.opt_float(p95)?, p99_ms: row.opt_float(p99)? };
            if latency != KindLatency::default() {
                kind_latencies.insert(*kind, latency);
            }
        }
        Ok(TestResultRow {
            test_id: row.text("TEST_ID")?,
            run_id: row.text("RUN_ID")?,
            worker_id: row.opt_text("WORKER_ID")?,
            worker_group_id: row.opt_int("WORKER_GROUP_ID")?,
            template_id: row.opt_text("TEMPLATE_ID")?,
            test_name: row.text("TEST_NAME")?,
            table_name: row.opt_text("TABLE_NAME")?,
            table_type: row.opt_text("TABLE_TYPE")?,
            warehouse: row.opt_text("WAREHOUSE")?,
            status: row.text("STATUS")?,
            start_time: row.opt_time("START_TIME")?,
            end_time: row.opt_time("END_TIME")?,
            duration_seconds: row.opt_float("DURATION_SECONDS")?,
            concurrent_connections: row.opt_int("CONCURRENT_CONNECTIONS")?,
            test_config: row.opt_json("TEST_CONFIG")?,
            total_operations: row.int("TOTAL_OPERATIONS")?,
            read_operations: row.int("READ_OPERATIONS")?,
            write_operations: row.int("WRITE_OPERATIONS")?,
            failed_operations: row.int("FAILED_OPERATIONS")?,
            qps: row.opt_float("QPS")?,
            error_rate: row.opt_float("ERROR_RATE")?,
            avg_latency_ms: row.opt_float("AVG_LATENCY_MS")?,
            min_latency_ms: row.opt_float("MIN_LATENCY_MS")?,
            max_latency_ms: row.opt_float("MAX_LATENCY_MS")?,
            p50_latency_ms: row.opt_float("P50_LATENCY_MS")?,
            p90_latency_ms: row.opt_float("P90_LATENCY_MS")?,
            p95_latency_ms: row.opt_float("P95_LATENCY_MS")?,
            p99_latency_ms: row.opt_float("P99_LATENCY_MS")?,
            p999_latency_ms: row.opt_float("P999_LATENCY_MS")?,
            kind_latencies,
            find_max_result: row.opt_json("FIND_MAX_RESULT")?,
            failure_reason: row.opt_text("FAILURE_REASON")?,
            enrichment_status: row.opt_text("ENRICHMENT_STATUS")?,
            created_at: row.opt_time("CREATED_AT")?,
            updated_at: row.opt_time("UPDATED_AT")?,
        })
    }
}

impl TableRow for SnapshotRow {
    const TABLE: &'static TableSpec = &schema::WORKER_METRICS_SNAPSHOTS;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("SNAPSHOT_ID", self.snapshot_id.as_str())
            .set("RUN_ID", self.run_id.as_str())
            .set("TEST_ID", self.test_id.as_str())
            .set("WORKER_ID", self.worker_id.as_str())
            .set("WORKER_GROUP_ID", self.worker_group_id)
            .set("WORKER_GROUP_COUNT", self.worker_group_count)
            .set("TIMESTAMP", self.timestamp)
            .set("ELAPSED_SECONDS", self.elapsed_seconds)
            .set("PHASE", self.phase.as_str())
            .set("TOTAL_QUERIES", self.total_queries)
            .set("READ_COUNT", self.read_count)
            .set("WRITE_COUNT", self.write_count)
            .set("ERROR_COUNT", self.error_count)
            .set("QPS", self.qps)
            .set("P50_LATENCY_MS", self.p50_latency_ms)
            .set("P95_LATENCY_MS", self.p95_latency_ms)
            .set("P99_LATENCY_MS", self.p99_latency_ms)
            .set("AVG_LATENCY_MS", self.avg_latency_ms)
            .set("MIN_LATENCY_MS", self.min_latency_ms)
            .set("MAX_LATENCY_MS", self.max_latency_ms)
            .set("ACTIVE_CONNECTIONS", self.active_connections)
            .set("TARGET_CONNECTIONS", self.target_connections)
            .set("CPU_PERCENT", self.cpu_percent)
            .set("MEMORY_PERCENT", self.memory_percent)
            .set("LATENCY_HISTOGRAM", self.latency_histogram.clone())
            .set("CUSTOM_METRICS", self.custom_metrics.clone())
            .stamp("CREATED_AT", self.created_at)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(SnapshotRow {
            snapshot_id: row.text("SNAPSHOT_ID")?,
            run_id: row.text("RUN_ID")?,
            test_id: row.text("TEST_ID")?,
            worker_id: row.text("WORKER_ID")?,
            worker_group_id: row.int("WORKER_GROUP_ID")?,
            worker_group_count: row.int("WORKER_GROUP_COUNT")?,
            timestamp: row.time("TIMESTAMP")?,
            elapsed_seconds: row.float("ELAPSED_SECONDS")?,
            phase: row.text("PHASE")?,
            total_queries: row.int("TOTAL_QUERIES")?,
            read_count: row.int("READ_COUNT")?,
            write_count: row.int("WRITE_COUNT")?,
            error_count: row.int("ERROR_COUNT")?,
            qps: row.float("QPS")?,
            p50_latency_ms: row.opt_float("P50_LATENCY_MS")?,
            p95_latency_ms: row.opt_float("P95_LATENCY_MS")?,
            p99_latency_ms: row.opt_float("P99_LATENCY_MS")?,
            avg_latency_ms: row.opt_float("AVG_LATENCY_MS")?,
            min_latency_ms: row.opt_float("MIN_LATENCY_MS")?,
            max_latency_ms: row.opt_float("MAX_LATENCY_MS")?,
            active_connections: row.int("ACTIVE_CONNECTIONS")?,
            target_connections: row.int("TARGET_CONNECTIONS")?,
            cpu_percent: row.opt_float("CPU_PERCENT")?,
            memory_percent: row.opt_float("MEMORY_PERCENT")?,
            latency_histogram: row.opt_text("LATENCY_HISTOGRAM")?,
            custom_metrics: row.opt_json("CUSTOM_METRICS")?,
            created_at: row.opt_time("CREATED_AT")?,
        })
    }
}

impl TableRow for ExecutionRow {
    const TABLE: &'static TableSpec = &schema::QUERY_EXECUTIONS;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("EXECUTION_ID", self.execution_id.as_str())
            .set("RUN_ID", self.run_id.as_str())
            .set("TEST_ID", self.test_id.as_str())
            .set("WORKER_ID", self.worker_id.as_str())
            .set("QUERY_KIND", self.query_kind.as_str())
            .set("QUERY_ID", self.query_id.clone())
            .set("START_TIME", self.start_time)
            .set("END_TIME", self.end_time)
            .set("APP_ELAPSED_MS", self.app_elapsed_ms)
            .set("SUCCESS", self.success)
            .set("ERROR", self.error.clone())
            .set("ROWS_AFFECTED", self.rows_affected)
            .set("CONNECTION_ID", self.connection_id)
            .set("WARMUP", self.warmup)
            .set("SF_TOTAL_ELAPSED_MS", self.sf_total_elapsed_ms)
            .set("SF_EXECUTION_MS", self.sf_execution_ms)
            .set("SF_COMPILATION_MS", self.sf_compilation_ms)
            .set("SF_QUEUED_OVERLOAD_MS", self.sf_queued_overload_ms)
            .set("SF_QUEUED_PROVISIONING_MS", self.sf_queued_provisioning_ms)
            .set("SF_TX_BLOCKED_MS", self.sf_tx_blocked_ms)
            .set("APP_OVERHEAD_MS", self.app_overhead_ms)
            .stamp("CREATED_AT", self.created_at)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(ExecutionRow {
            execution_id: row.text("EXECUTION_ID")?,
            run_id: row.text("RUN_ID")?,
            test_id: row.text("TEST_ID")?,
            worker_id: row.text("WORKER_ID")?,
            query_kind: row.text("QUERY_KIND")?,
            query_id: row.opt_text("QUERY_ID")?,
            start_time: row.time("START_TIME")?,
            end_time: row.time("END_TIME")?,
            app_elapsed_ms: row.float("APP_ELAPSED_MS")?,
            success: row.bool("SUCCESS")?,
            error: row.opt_text("ERROR")?,
            rows_affected: row.opt_int("ROWS_AFFECTED")?,
            connection_id: row.opt_int("CONNECTION_ID")?,
            warmup: row.bool("WARMUP")?,
            sf_total_elapsed_ms: row.opt_float("SF_TOTAL_ELAPSED_MS")?,
            sf_execution_ms: row.opt_float("SF_EXECUTION_MS")?,
            sf_compilation_ms: row.opt_float("SF_COMPILATION_MS")?,
            sf_queued_overload_ms: row.opt_float("SF_QUEUED_OVERLOAD_MS")?,
            sf_queued_provisioning_ms: row.opt_float("SF_QUEUED_PROVISIONING_MS")?,
            sf_tx_blocked_ms: row.opt_float("SF_TX_BLOCKED_MS")?,
            app_overhead_ms: row.opt_float("APP_OVERHEAD_MS")?,
            created_at: row.opt_time("CREATED_AT")?,
        })
    }
}

impl TableRow for LogRow {
    const TABLE: &'static TableSpec = &schema::TEST_LOGS;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("LOG_ID", self.log_id.as_str())
            .set("RUN_ID", self.run_id.as_str())
            .set("TEST_ID", self.test_id.as_str())
            .set("WORKER_ID", self.worker_id.clone())
            .set("LEVEL", self.level.as_str())
            .set("MESSAGE", self.message.as_str())
            .set("DETAILS", self.details.clone())
            .set("TIMESTAMP", self.timestamp)
            .stamp("CREATED_AT", self.created_at)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(LogRow {
            log_id: row.text("LOG_ID")?,
            run_id: row.text("RUN_ID")?,
            test_id: row.text("TEST_ID")?,
            worker_id: row.opt_text("WORKER_ID")?,
            level: row.text("LEVEL")?,
            message: row.text("MESSAGE")?,
            details: row.opt_json("DETAILS")?,
            timestamp: row.time("TIMESTAMP")?,
            created_at: row.opt_time("CREATED_AT")?,
        })
    }
}

impl TableRow for WarehousePollRow {
    const TABLE: &'static TableSpec = &schema::WAREHOUSE_POLL_SNAPSHOTS;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("SNAPSHOT_ID", self.snapshot_id.as_str())
            .set("RUN_ID", self.run_id.as_str())
            .set("TIMESTAMP", self.timestamp)
            .set("ELAPSED_SECONDS", self.elapsed_seconds)
            .set("WAREHOUSE_NAME", self.warehouse_name.as_str())
            .set("STARTED_CLUSTERS", self.started_clusters)
            .set("RUNNING", self.running)
            .set("QUEUED", self.queued)
            .set("MIN_CLUSTER_COUNT", self.min_cluster_count)
            .set("MAX_CLUSTER_COUNT", self.max_cluster_count)
            .set("SCALING_POLICY", self.scaling_policy.clone())
            .set("RAW_RESULT", self.raw_result.clone())
            .stamp("CREATED_AT", self.created_at)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(WarehousePollRow {
            snapshot_id: row.text("SNAPSHOT_ID")?,
            run_id: row.text("RUN_ID")?,
            timestamp: row.time("TIMESTAMP")?,
            elapsed_seconds: row.float("ELAPSED_SECONDS")?,
            warehouse_name: row.text("WAREHOUSE_NAME")?,
            started_clusters: row.opt_int("STARTED_CLUSTERS")?,
            running: row.opt_int("RUNNING")?,
            queued: row.opt_int("QUEUED")?,
            min_cluster_count: row.opt_int("MIN_CLUSTER_COUNT")?,
            max_cluster_count: row.opt_int("MAX_CLUSTER_COUNT")?,
            scaling_policy: row.opt_text("SCALING_POLICY")?,
            raw_result: row.opt_json("RAW_RESULT")?,
            created_at: row.opt_time("CREATED_AT")?,
        })
    }
}

impl TableRow for FindMaxStepRow {
    const TABLE: &'static TableSpec = &schema::FIND_MAX_STEP_HISTORY;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("STEP_ID", self.step_id.as_str())
            .set("RUN_ID", self.run_id.as_str())
            .set("STEP_NUMBER", self.step_number)
            .set("TOTAL_TARGET_CONNECTIONS", self.total_target_connections)
            .set("STEP_START_TIME", self.step_start_time)
            .set("STEP_END_TIME", self.step_end_time)
            .set("STEP_DURATION_SECONDS", self.step_duration_seconds)
            .set("TOTAL_QUERIES", self.total_queries)
            .set("QPS", self.qps)
            .set("P50_LATENCY_MS", self.p50_latency_ms)
            .set("P95_LATENCY_MS", self.p95_latency_ms)
            .set("P99_LATENCY_MS", self.p99_latency_ms)
            .set("ERROR_COUNT", self.error_count)
            .set("ERROR_RATE", self.error_rate)
            .set("QPS_VS_PRIOR_PCT", self.qps_vs_prior_pct)
            .set("P95_VS_BASELINE_PCT", self.p95_vs_baseline_pct)
            .set("QUEUE_DETECTED", self.queue_detected)
            .set("OUTCOME", self.outcome.as_str())
            .set("STOP_REASON", self.stop_reason.clone())
            .stamp("CREATED_AT", self.created_at)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(FindMaxStepRow {
            step_id: row.text("STEP_ID")?,
            run_id: row.text("RUN_ID")?,
            step_number: row.int("STEP_NUMBER")?,
            total_target_connections: row.int("TOTAL_TARGET_CONNECTIONS")?,
            step_start_time: row.opt_time("STEP_START_TIME")?,
            step_end_time: row.opt_time("STEP_END_TIME")?,
            step_duration_seconds: row.opt_float("STEP_DURATION_SECONDS")?,
            total_queries: row.int("TOTAL_QUERIES")?,
            qps: row.opt_float("QPS")?,
            p50_latency_ms: row.opt_float("P50_LATENCY_MS")?,
            p95_latency_ms: row.opt_float("P95_LATENCY_MS")?,
            p99_latency_ms: row.opt_float("P99_LATENCY_MS")?,
            error_count: row.int("ERROR_COUNT")?,
            error_rate: row.opt_float("ERROR_RATE")?,
            qps_vs_prior_pct: row.opt_float("QPS_VS_PRIOR_PCT")?,
            p95_vs_baseline_pct: row.opt_float("P95_VS_BASELINE_PCT")?,
            queue_detected: row.bool("QUEUE_DETECTED")?,
            outcome: row.text("OUTCOME")?,
            stop_reason: row.opt_text("STOP_REASON")?,
            created_at: row.opt_time("CREATED_AT")?,
        })
    }
}

impl TableRow for TemplateRow {
    const TABLE: &'static TableSpec = &schema::TEST_TEMPLATES;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("TEMPLATE_ID", self.template_id.as_str())
            .set("TEMPLATE_NAME", self.template_name.as_str())
            .set("DESCRIPTION", self.description.clone())
            .set("CONFIG", self.config.clone())
            .set("TAGS", self.tags.clone())
            .set("CREATED_BY", self.created_by.clone())
            .set("USAGE_COUNT", self.usage_count)
            .set("LAST_USED_AT", self.last_used_at)
            .stamp("CREATED_AT", self.created_at)
            .set("UPDATED_AT", SqlValue::Now)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(TemplateRow {
            template_id: row.text("TEMPLATE_ID")?,
            template_name: row.text("TEMPLATE_NAME")?,
            description: row.opt_text("DESCRIPTION")?,
            config: row.json("CONFIG")?,
            tags: row.opt_json("TAGS")?,
            created_by: row.opt_text("CREATED_BY")?,
            usage_count: row.int("USAGE_COUNT")?,
            last_used_at: row.opt_time("LAST_USED_AT")?,
            created_at: row.opt_time("CREATED_AT")?,
            updated_at: row.opt_time("UPDATED_AT")?,
        })
    }
}

impl TableRow for ValuePoolRow {
    const TABLE: &'static TableSpec = &schema::TEMPLATE_VALUE_POOLS;

    fn to_values(&self) -> Vec<SqlValue> {
        RowBuilder::new(Self::TABLE)
            .set("POOL_ID", self.pool_id.as_str())
            .set("TEMPLATE_ID", self.template_id.as_str())
            .set("POOL_KIND", self.pool_kind.as_str())
            .set("COLUMN_NAME", self.column_name.clone())
            .set("SEQ", self.seq)
            .set("VALUE", self.value.clone())
            .stamp("CREATED_AT", self.created_at)
            .finish()
    }

    fn from_values(row: &RowValues) -> StoreResult<Self> {
        Ok(ValuePoolRow {
            pool_id: row.text("POOL_ID")?,
            template_id: row.text("TEMPLATE_ID")?,
            pool_kind: row.text("POOL_KIND")?,
            column_name: row.opt_text("COLUMN_NAME")?,
            seq: row.int("SEQ")?,
            value: row.json("VALUE")?,
            created_at: row.opt_time("CREATED_AT")?,
        })
    }
}

/// Converts many rows to values for a batch write.
pub fn values_of<T: TableRow>(rows: &[T]) -> Vec<Vec<SqlValue>> {
    rows.iter().map(TableRow::to_values).collect()
}
