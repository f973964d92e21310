//! The end-of-run summary: totals, QPS and latency percentiles overall and
//! per query kind, and one row per worker, read back from the store, as a
//! table or as one JSON document.

use serde_json::{json, Value};
use unibench_model::scenario::QueryKind;
use unibench_store::{Store, StoreUrl, TestResultRow};

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"))
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.1}"))
}

async fn rows(
    store: &Store,
    run_id: &str,
) -> anyhow::Result<(unibench_store::RunStatusRow, TestResultRow, Vec<TestResultRow>)> {
    let run = store.get_run(run_id).await?.ok_or_else(|| anyhow::anyhow!("run `{run_id}` not found"))?;
    let results = store.list_test_results(run_id).await?;
    let parent = results
        .iter()
        .find(|row| row.is_parent())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("run `{run_id}` has no parent result row"))?;
    let children = results.into_iter().filter(|row| !row.is_parent()).collect();
    Ok((run, parent, children))
}

/// Prints the summary table of a run.
pub async fn print(store: &Store, run_id: &str, url: &StoreUrl) -> anyhow::Result<()> {
    let (run, parent, children) = rows(store, run_id).await?;
    println!();
    println!("run        {run_id}");
    println!("template   {}", run.test_name);
    println!(
        "status     {}{}",
        run.status,
        run.status_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    match parent.duration_seconds {
        Some(seconds) => println!("duration   {seconds:.1} s measured"),
        None => println!("duration   nothing measured"),
    }
    println!(
        "totals     {} queries ({} reads, {} writes), {} failed, error rate {}",
        parent.total_operations,
        parent.read_operations,
        parent.write_operations,
        parent.failed_operations,
        parent.error_rate.map_or("-".to_owned(), |rate| format!("{:.4} %", rate * 100.0))
    );
    println!("throughput {} qps", number(parent.qps));
    println!();
    println!("{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", "latency (ms)", "avg", "p50", "p90", "p95", "p99", "p99.9");
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "all",
        ms(parent.avg_latency_ms),
        ms(parent.p50_latency_ms),
        ms(parent.p90_latency_ms),
        ms(parent.p95_latency_ms),
        ms(parent.p99_latency_ms),
        ms(parent.p999_latency_ms)
    );
    for (kind, latency) in &parent.kind_latencies {
        println!(
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            kind.as_str(),
            "",
            ms(latency.p50_ms),
            "",
            ms(latency.p95_ms),
            ms(latency.p99_ms),
            ""
        );
    }
    println!();
    println!(
        "{:<10} {:<10} {:>12} {:>10} {:>8} {:>9} {:>9}",
        "worker", "status", "queries", "qps", "errors", "p95 ms", "p99 ms"
    );
    for child in &children {
        println!(
            "{:<10} {:<10} {:>12} {:>10} {:>8} {:>9} {:>9}",
            child.worker_id.as_deref().unwrap_or("-"),
            child.status,
            child.total_operations,
            number(child.qps),
            child.failed_operations,
            ms(child.p95_latency_ms),
            ms(child.p99_latency_ms)
        );
    }
    let errors = last_errors(store, run_id).await?;
    if !errors.is_empty() {
        println!();
        println!("last error of each worker");
        for (worker, message) in &errors {
            println!("{worker:<10} {message}");
        }
    }
    println!();
    println!("results stored in {url} (run id {run_id})");
    Ok(())
}

/// Reads the last error each worker reported in its heartbeat, by worker id.
async fn last_errors(store: &Store, run_id: &str) -> anyhow::Result<Vec<(String, String)>> {
    let heartbeats = store.list_heartbeats(run_id).await?;
    Ok(heartbeats.into_iter().filter_map(|beat| Some((beat.worker_id, beat.last_error?))).collect())
}

fn latency_json(row: &TestResultRow) -> Value {
    json!({
        "avg_ms": row.avg_latency_ms, "min_ms": row.min_latency_ms, "max_ms": row.max_latency_ms,
        "p50_ms": row.p50_latency_ms, "p90_ms": row.p90_latency_ms, "p95_ms": row.p95_latency_ms,
        "p99_ms": row.p99_latency_ms, "p999_ms": row.p999_latency_ms,
    })
}

/// Builds the summary of a run as one JSON document.
pub async fn json(store: &Store, run_id: &str) -> anyhow::Result<Value> {
    let (run, parent, children) = rows(store, run_id).await?;
    let kinds: serde_json::Map<String, Value> = QueryKind::ALL
        .iter()
        .filter_map(|kind| {
            let latency = parent.kind_latencies.get(kind)?;
            Some((
                kind.as_str().to_owned(),
                json!({"p50_ms": latency.p50_ms, "p95_ms": latency.p95_ms, "p99_ms": latency.p99_ms}),
            ))
        })
        .collect();
    let errors = last_errors(store, run_id).await?;
    let workers: Vec<Value> = children
        .iter()
        .map(|child| {
            let last_error = errors.iter().find(|(worker, _)| Some(worker) == child.worker_id.as_ref()).map(|(_, e)| e);
            json!({
                "worker_id": child.worker_id, "test_id": child.test_id, "status": child.status,
                "total_operations": child.total_operations, "failed_operations": child.failed_operations,
                "qps": child.qps, "latency": latency_json(child), "last_error": last_error,
            })
        })
        .collect();
    Ok(json!({
        "run_id": run.run_id,
        "template": run.test_name,
        "template_id": run.template_id,
        "status": run.status.as_str(),
        "reason": run.status_reason,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "duration_seconds": parent.duration_seconds,
        "totals": {
            "operations": parent.total_operations, "reads": parent.read_operations,
            "writes": parent.write_operations, "failed": parent.failed_operations,
            "error_rate": parent.error_rate,
        },
        "qps": parent.qps,
        "latency": latency_json(&parent),
        "latency_by_kind": kinds,
        "workers": workers,
    }))
}
