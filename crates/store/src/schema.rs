//! The tables and columns this binary needs, and the rerunnable DDL that
//! creates them. The DDL lives in `sql/schema/<dialect>/` at the top of the
//! repository and is compiled into the binary, so `unibench schema apply`
//! works from any directory. Only that command runs DDL.

/// Schema a table belongs to. SQLite keeps both in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// Run state, control events and results.
    Results,
    /// Templates and value pools.
    Config,
}

impl SchemaKind {
    /// Returns the PostgreSQL schema name.
    pub fn postgres_name(self) -> &'static str {
        match self {
            SchemaKind::Results => "test_results",
            SchemaKind::Config => "config",
        }
    }
}

/// Type of a column's values on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Text (`TEXT`).
    Text,
    /// Signed 64-bit integer (`BIGINT`; `INTEGER` in SQLite).
    Int,
    /// Double-precision float (`DOUBLE PRECISION`; `REAL` in SQLite).
    Float,
    /// Boolean (`BOOLEAN`; 0 or 1 in SQLite).
    Bool,
    /// JSON document (`JSONB`; text in SQLite).
    Json,
    /// UTC timestamp (`TIMESTAMPTZ`; ISO-8601 text in SQLite).
    Time,
}

/// A column the binary reads or writes.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
}

const fn c(name: &'static str, kind: ColumnType) -> Column {
    Column { name, kind }
}

/// A table and the columns the binary reads or writes.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub schema: SchemaKind,
    pub name: &'static str,
    /// The primary key, used by upserts.
    pub key: &'static [&'static str],
    pub columns: &'static [Column],
}

impl TableSpec {
    /// Returns the column with this name. Panics on a name the table lacks, which
    /// is a programming error caught by the tests.
    pub fn column(&self, name: &str) -> &Column {
        self.columns
            .iter()
            .find(|column| column.name == name)
            .unwrap_or_else(|| panic!("table {} has no column {name}", self.name))
    }

    /// Returns the position of a column in [`TableSpec::columns`].
    pub fn index_of(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|column| column.name == name)
            .unwrap_or_else(|| panic!("table {} has no column {name}", self.name))
    }
}

use ColumnType::{Bool, Float, Int, Json, Text, Time};

/// Every table and column the binary needs, in the order of the contract.
pub const REQUIRED_TABLES: &[&TableSpec] = &[
    &RUN_STATUS,
    &RUN_CONTROL_EVENTS,
    &WORKER_HEARTBEATS,
    &TEST_RESULTS,
    &WORKER_METRICS_SNAPSHOTS,
    &QUERY_EXECUTIONS,
    &TEST_LOGS,
    &WAREHOUSE_POLL_SNAPSHOTS,
    &FIND_MAX_STEP_HISTORY,
    &TEST_TEMPLATES,
    &TEMPLATE_VALUE_POOLS,
];

pub const RUN_STATUS: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "RUN_STATUS",
    key: &["RUN_ID"],
    columns: &[
        c("RUN_ID", Text),
        c("TEST_ID", Text),
        c("TEMPLATE_ID", Text),
        c("TEST_NAME", Text),
        c("SCENARIO_CONFIG", Json),
        c("STATUS", Text),
        c("PHASE", Text),
        c("STATUS_REASON", Text),
        c("START_TIME", Time),
        c("WARMUP_END_TIME", Time),
        c("END_TIME", Time),
        c("TOTAL_WORKERS_EXPECTED", Int),
        c("WORKERS_REGISTERED", Int),
        c("WORKERS_ACTIVE", Int),
        c("WORKERS_COMPLETED", Int),
        c("TOTAL_OPS", Int),
        c("ERROR_COUNT", Int),
        c("CURRENT_QPS", Float),
        c("WORKER_TARGETS", Json),
        c("NEXT_SEQUENCE_ID", Int),
        c("FIND_MAX_STATE", Json),
        c("CREATED_AT", Time),
        c("UPDATED_AT", Time),
    ],
};

pub const RUN_CONTROL_EVENTS: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "RUN_CONTROL_EVENTS",
    key: &["EVENT_ID"],
    columns: &[
        c("EVENT_ID", Text),
        c("RUN_ID", Text),
        c("EVENT_TYPE", Text),
        c("EVENT_DATA", Json),
        c("SEQUENCE_ID", Int),
        c("CREATED_AT", Time),
    ],
};

pub const WORKER_HEARTBEATS: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "WORKER_HEARTBEATS",
    key: &["RUN_ID", "WORKER_ID"],
    columns: &[
        c("RUN_ID", Text),
        c("WORKER_ID", Text),
        c("WORKER_GROUP_ID", Int),
        c("STATUS", Text),
        c("PHASE", Text),
        c("LAST_HEARTBEAT", Time),
        c("HEARTBEAT_COUNT", Int),
        c("ACTIVE_CONNECTIONS", Int),
        c("TARGET_CONNECTIONS", Int),
        c("LAST_ERROR", Text),
        c("ERROR_COUNT", Int),
        c("CREATED_AT", Time),
        c("UPDATED_AT", Time),
    ],
};

pub const TEST_RESULTS: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "TEST_RESULTS",
    key: &["TEST_ID"],
    columns: &[
        c("TEST_ID", Text),
        c("RUN_ID", Text),
        c("WORKER_ID", Text),
        c("WORKER_GROUP_ID", Int),
        c("TEMPLATE_ID", Text),
        c("TEST_NAME", Text),
        c("TABLE_NAME", Text),
        c("TABLE_TYPE", Text),
        c("WAREHOUSE", Text),
        c("STATUS", Text),
        c("START_TIME", Time),
        c("END_TIME", Time),
        c("DURATION_SECONDS", Float),
        c("CONCURRENT_CONNECTIONS", Int),
        c("TEST_CONFIG", Json),
        c("TOTAL_OPERATIONS", Int),
        c("READ_OPERATIONS", Int),
        c("WRITE_OPERATIONS", Int),
        c("FAILED_OPERATIONS", Int),
        c("QPS", Float),
        c("ERROR_RATE", Float),
        c("AVG_LATENCY_MS", Float),
        c("MIN_LATENCY_MS", Float),
        c("MAX_LATENCY_MS", Float),
        c("P50_LATENCY_MS", Float),
        c("P90_LATENCY_MS", Float),
        c("P95_LATENCY_MS", Float),
        c("P99_LATENCY_MS", Float),
        c("P999_LATENCY_MS", Float),
        c("POINT_LOOKUP_P50_LATENCY_MS", Float),
        c("POINT_LOOKUP_P95_LATENCY_MS", Float),
        c("POINT_LOOKUP_P99_LATENCY_MS", Float),
        c("RANGE_SCAN_P50_LATENCY_MS", Float),
        c("RANGE_SCAN_P95_LATENCY_MS", Float),
        c("RANGE_SCAN_P99_LATENCY_MS", Float),
        c("INSERT_P50_LATENCY_MS", Float),
        c("INSERT_P95_LATENCY_MS", Float),
        c("INSERT_P99_LATENCY_MS", Float),
        c("UPDATE_P50_LATENCY_MS", Float),
        c("UPDATE_P95_LATENCY_MS", Float),
        c("UPDATE_P99_LATENCY_MS", Float),
        c("DELETE_P50_LATENCY_MS", Float),
        c("DELETE_P95_LATENCY_MS", Float),
        c("DELETE_P99_LATENCY_MS", Float),
        c("CUSTOM_P50_LATENCY_MS", Float),
        c("CUSTOM_P95_LATENCY_MS", Float),
        c("CUSTOM_P99_LATENCY_MS", Float),
        c("FIND_MAX_RESULT", Json),
        c("FAILURE_REASON", Text),
        c("ENRICHMENT_STATUS", Text),
        c("CREATED_AT", Time),
        c("UPDATED_AT", Time),
    ],
};

pub const WORKER_METRICS_SNAPSHOTS: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "WORKER_METRICS_SNAPSHOTS",
    key: &["SNAPSHOT_ID"],
    columns: &[
        c("SNAPSHOT_ID", Text),
        c("RUN_ID", Text),
        c("TEST_ID", Text),
        c("WORKER_ID", Text),
        c("WORKER_GROUP_ID", Int),
        c("WORKER_GROUP_COUNT", Int),
        c("TIMESTAMP", Time),
        c("ELAPSED_SECONDS", Float),
        c("PHASE", Text),
        c("TOTAL_QUERIES", Int),
        c("READ_COUNT", Int),
        c("WRITE_COUNT", Int),
        c("ERROR_COUNT", Int),
        c("QPS", Float),
        c("P50_LATENCY_MS", Float),
        c("P95_LATENCY_MS", Float),
        c("P99_LATENCY_MS", Float),
        c("AVG_LATENCY_MS", Float),
        c("MIN_LATENCY_MS", Float),
        c("MAX_LATENCY_MS", Float),
        c("ACTIVE_CONNECTIONS", Int),
        c("TARGET_CONNECTIONS", Int),
        c("CPU_PERCENT", Float),
        c("MEMORY_PERCENT", Float),
        c("LATENCY_HISTOGRAM", Text),
        c("CUSTOM_METRICS", Json),
        c("CREATED_AT", Time),
    ],
};

pub const QUERY_EXECUTIONS: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "QUERY_EXECUTIONS",
    key: &["EXECUTION_ID"],
    columns: &[
        c("EXECUTION_ID", Text),
        c("RUN_ID", Text),
        c("TEST_ID", Text),
        c("WORKER_ID", Text),
        c("QUERY_KIND", Text),
        c("QUERY_ID", Text),
        c("START_TIME", Time),
        c("END_TIME", Time),
        c("APP_ELAPSED_MS", Float),
        c("SUCCESS", Bool),
        c("ERROR", Text),
        c("ROWS_AFFECTED", Int),
        c("CONNECTION_ID", Int),
        c("WARMUP", Bool),
        c("SF_TOTAL_ELAPSED_MS", Float),
        c("SF_EXECUTION_MS", Float),
        c("SF_COMPILATION_MS", Float),
        c("SF_QUEUED_OVERLOAD_MS", Float),
        c("SF_QUEUED_PROVISIONING_MS", Float),
        c("SF_TX_BLOCKED_MS", Float),
        c("APP_OVERHEAD_MS", Float),
        c("CREATED_AT", Time),
    ],
};

pub const TEST_LOGS: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "TEST_LOGS",
    key: &["LOG_ID"],
    columns: &[
        c("LOG_ID", Text),
        c("RUN_ID", Text),
        c("TEST_ID", Text),
        c("WORKER_ID", Text),
        c("LEVEL", Text),
        c("MESSAGE", Text),
        c("DETAILS", Json),
        c("TIMESTAMP", Time),
        c("CREATED_AT", Time),
    ],
};

pub const WAREHOUSE_POLL_SNAPSHOTS: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "WAREHOUSE_POLL_SNAPSHOTS",
    key: &["SNAPSHOT_ID"],
    columns: &[
        c("SNAPSHOT_ID", Text),
        c("RUN_ID", Text),
        c("TIMESTAMP", Time),
        c("ELAPSED_SECONDS", Float),
        c("WAREHOUSE_NAME", Text),
        c("STARTED_CLUSTERS", Int),
        c("RUNNING", Int),
        c("QUEUED", Int),
        c("MIN_CLUSTER_COUNT", Int),
        c("MAX_CLUSTER_COUNT", Int),
        c("SCALING_POLICY", Text),
        c("RAW_RESULT", Json),
        c("CREATED_AT", Time),
    ],
};

pub const FIND_MAX_STEP_HISTORY: TableSpec = TableSpec {
    schema: SchemaKind::Results,
    name: "FIND_MAX_STEP_HISTORY",
    key: &["STEP_ID"],
    columns: &[
        c("STEP_ID", Text),
        c("RUN_ID", Text),
        c("STEP_NUMBER", Int),
        c("TOTAL_TARGET_CONNECTIONS", Int),
        c("STEP_START_TIME", Time),
        c("STEP_END_TIME", Time),
        c("STEP_DURATION_SECONDS", Float),
        c("TOTAL_QUERIES", Int),
        c("QPS", Float),
        c("P50_LATENCY_MS", Float),
        c("P95_LATENCY_MS", Float),
        c("P99_LATENCY_MS", Float),
        c("ERROR_COUNT", Int),
        c("ERROR_RATE", Float),
        c("QPS_VS_PRIOR_PCT", Float),
        c("P95_VS_BASELINE_PCT", Float),
        c("QUEUE_DETECTED", Bool),
        c("OUTCOME", Text),
        c("STOP_REASON", Text),
        c("CREATED_AT", Time),
    ],
};

pub const TEST_TEMPLATES: TableSpec = TableSpec {
    schema: SchemaKind::Config,
    name: "TEST_TEMPLATES",
    key: &["TEMPLATE_ID"],
    columns: &[
        c("TEMPLATE_ID", Text),
        c("TEMPLATE_NAME", Text),
        c("DESCRIPTION", Text),
        c("CONFIG", Json),
        c("TAGS", Json),
        c("CREATED_BY", Text),
        c("USAGE_COUNT", Int),
        c("LAST_USED_AT", Time),
        c("CREATED_AT", Time),
        c("UPDATED_AT", Time),
    ],
};

pub const TEMPLATE_VALUE_POOLS: TableSpec = TableSpec {
    schema: SchemaKind::Config,
    name: "TEMPLATE_VALUE_POOLS",
    key: &["POOL_ID"],
    columns: &[
        c("POOL_ID", Text),
        c("TEMPLATE_ID", Text),
        c("POOL_KIND", Text),
        c("COLUMN_NAME", Text),
        c("SEQ", Int),
        c("VALUE", Json),
        c("CREATED_AT", Time),
    ],
};

/// The PostgreSQL DDL, in the order it must run.
pub const POSTGRES_DDL: &[(&str, &str)] = &[
    ("sql/schema/postgres/001_results.sql", include_str!("../../../sql/schema/postgres/001_results.sql")),
    ("sql/schema/postgres/002_config.sql", include_str!("../../../sql/schema/postgres/002_config.sql")),
];

/// The SQLite DDL, in the order it must run.
pub const SQLITE_DDL: &[(&str, &str)] = &[
    ("sql/schema/sqlite/001_results.sql", include_str!("../../../sql/schema/sqlite/001_results.sql")),
    ("sql/schema/sqlite/002_config.sql", include_str!("../../../sql/schema/sqlite/002_config.sql")),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every required column appears in both dialects' DDL, so the files
    /// and this list cannot drift apart unnoticed.
    #[test]
    fn ddl_mentions_every_required_column() {
        for (dialect, files) in [("postgres", POSTGRES_DDL), ("sqlite", SQLITE_DDL)] {
            let ddl: String = files.iter().map(|(_, text)| text.to_ascii_uppercase()).collect();
            for table in REQUIRED_TABLES {
                let start = ddl
                    .find(&format!("{} (", table.name))
                    .unwrap_or_else(|| panic!("{dialect} DDL has no CREATE TABLE for {}", table.name));
                let body = &ddl[start..start + ddl[start..].find(");").unwrap()];
                for column in table.columns.iter().map(|column| column.name) {
                    let declared = body.lines().any(|line| line.trim_start().starts_with(&format!("{column} ")));
                    assert!(declared, "{dialect} DDL of {} lacks column {column}", table.name);
                }
            }
        }
    }
}
