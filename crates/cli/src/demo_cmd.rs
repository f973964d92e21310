//! `unibench demo`: a complete benchmark with no services and no
//! configuration. It creates the embedded SQLite store (and applies its
//! schema), an SQLite target database with a realistic `demo_orders`
//! table, and runs a short two-worker read/write mix against it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use unibench_model::RunStatus;
use unibench_orchestrator::Overrides;
use unibench_store::Store;

use crate::{run_cmd, store_arg, summary};

/// Rows in the demo table: enough that the key pool and caches behave as
/// on a real table, small enough to create in a few seconds.
const DEMO_ROWS: u32 = 200_000;

const DEMO_TEMPLATE: &str = r#"
name: demo orders mix
description: Point lookups, a range scan, updates and inserts on an SQLite orders table.
target:
  kind: sqlite
  connection: demo
  table: demo_orders
  table_type: SQLITE
  key_column: order_id
workload:
  load_mode: CONCURRENCY
  concurrent_connections: 8
  warmup_seconds: 2
  duration_seconds: 10
  operations:
    - kind: POINT_LOOKUP
      weight_pct: 70
      sql: SELECT order_id, customer_id, status, amount FROM {table} WHERE order_id = $1
      params: [key]
    - kind: RANGE_SCAN
      weight_pct: 10
      sql: SELECT order_id, amount FROM {table} WHERE customer_id = $1 ORDER BY order_id LIMIT 20
      params: ["random_int(1, 20000)"]
    - kind: UPDATE
      weight_pct: 15
      sql: UPDATE {table} SET status = $1, updated_at = $2 WHERE order_id = $3
      params: [random_string(8), now, key]
    - kind: INSERT
      weight_pct: 5
      sql: INSERT INTO {table} (order_id, customer_id, status, amount, note, updated_at) VALUES ($1, $2, 'NEW', $3, $4, $5)
      params: [new_key, "random_int(1, 20000)", "random_float(1, 500)", "random_string(32)", now]
  key_distribution: zipfian
  query_log: all
scaling:
  worker_count: 2
"#;

#[derive(Debug, Args)]
pub struct DemoCommand {
    /// Store URL (default: $UNIBENCH_STORE, else the embedded SQLite file).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Measurement duration in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    duration: f64,
}

pub async fn run(command: DemoCommand) -> ExitCode {
    match execute(command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: DemoCommand) -> anyhow::Result<ExitCode> {
    let store_choice = store_arg::resolve(command.store.as_deref())?;
    let store = Arc::new(Store::connect(&store_choice.url).await?);
    store.apply_schema().await?;
    eprintln!("store: {} (schema applied)", store_choice.url);

    let demo_dir = unibench_store::url::unibench_home()?.join("demo");
    std::fs::create_dir_all(&demo_dir)?;
    let target = demo_dir.join("demo-target.db");
    let rows = tokio::task::spawn_blocking({
        let target = target.clone();
        move || create_demo_table(&target)
    })
    .await??;
    eprintln!("target: {} (demo_orders, {rows} rows)", target.display());
    let connections_file = write_connections_file(&demo_dir, &target)?;

    let template = serde_norway::from_str(DEMO_TEMPLATE)?;
    let service = run_cmd::service(Arc::clone(&store), &store_choice.raw, Some(connections_file)).await?;
    let overrides = Overrides { duration_seconds: Some(command.duration), ..Default::default() };
    let (run_id, status) = run_cmd::run_template(&service, template, None, overrides, false).await?;
    summary::print(&store, &run_id, &store_choice.url).await?;
    eprintln!("see the run again with: unibench runs show {run_id}");
    Ok(if status == RunStatus::Completed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Creates `demo_orders` with [`DEMO_ROWS`] rows unless it already has
/// rows. Returns the row count.
fn create_demo_table(path: &Path) -> anyhow::Result<i64> {
    let connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS demo_orders (
             order_id INTEGER PRIMARY KEY,
             customer_id INTEGER NOT NULL,
             status TEXT NOT NULL,
             amount REAL NOT NULL,
             note TEXT,
             updated_at TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS demo_orders_customer ON demo_orders (customer_id);",
    )?;
    let existing: i64 = connection.query_row("SELECT count(*) FROM demo_orders", [], |row| row.get(0))?;
    if existing > 0 {
        return Ok(existing);
    }
    connection.execute(
        "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)
         INSERT INTO demo_orders (order_id, customer_id, status, amount, note, updated_at)
         SELECT x, 1 + (x * 7919) % 20000,
                CASE x % 4 WHEN 0 THEN 'NEW' WHEN 1 THEN 'PAID' WHEN 2 THEN 'SHIPPED' ELSE 'DELIVERED' END,
                round(((x * 104729) % 50000) / 100.0, 2), 'order ' || x, datetime('now')
         FROM seq",
        [DEMO_ROWS],
    )?;
    Ok(i64::from(DEMO_ROWS))
}

fn write_connections_file(dir: &Path, target: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("connections.toml");
    let text = format!("[connections.demo]\nkind = \"sqlite\"\npath = {:?}\n", target.display().to_string());
    std::fs::write(&path, text)?;
    Ok(path)
}
