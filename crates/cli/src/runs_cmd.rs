//! `unibench runs list` and `unibench runs show`: run history from the
//! store, as text or JSON.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use unibench_model::RunStatus;
use unibench_store::{Page, RunFilter, Store};

use crate::{store_arg, summary};

#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// List runs, newest first.
    List(ListArgs),
    /// Show one run's final numbers and workers.
    Show(ShowArgs),
    /// Compare up to five runs side by side.
    Compare(CompareArgs),
}

/// Parses a run status written in any case, such as `failed`.
fn parse_status(text: &str) -> Result<RunStatus, String> {
    text.to_ascii_uppercase().parse().map_err(|error: unibench_model::ParseEnumError| error.to_string())
}

/// Most runs `runs compare` puts side by side.
const MAX_COMPARED: usize = 5;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// One to five run ids, each given once.
    #[arg(required = true, num_args = 1..)]
    run_ids: Vec<String>,
    /// Store URL (default: $UNIBENCH_STORE, else the embedded SQLite file).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Store URL (default: $UNIBENCH_STORE, else the embedded SQLite file).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Only runs with this status (COMPLETED, FAILED, ...), in any case.
    #[arg(long, value_parser = parse_status)]
    status: Option<RunStatus>,
    /// Maximum number of runs to list.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run id.
    run_id: String,
    /// Store URL (default: $UNIBENCH_STORE, else the embedded SQLite file).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(action: RunsAction) -> ExitCode {
    let result = match action {
        RunsAction::List(args) => list(args).await,
        RunsAction::Show(args) => show(args).await,
        RunsAction::Compare(args) => compare(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opens an existing store. A missing SQLite file is an error here rather
/// than created, so that a mistyped path leaves nothing behind.
async fn connect(store: Option<&str>) -> anyhow::Result<(Store, unibench_store::StoreUrl)> {
    let choice = store_arg::resolve(store)?;
    if let unibench_store::StoreUrl::Sqlite { path } = &choice.url {
        if !path.exists() {
            anyhow::bail!(
                "no SQLite store at {}: check the path, or create it with `unibench demo` or `unibench schema apply`",
                path.display()
            );
        }
    }
    let store = Store::connect(&choice.url).await?;
    store.require_schema().await?;
    Ok((store, choice.url))
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let (store, _) = connect(args.store.as_deref()).await?;
    let filter = RunFilter { status: args.status, page: Page { limit: args.limit, offset: 0 }, ..Default::default() };
    let runs = store.list_runs(&filter).await?;
    if args.json {
        let mut rows = Vec::new();
        for run in &runs {
            let parent = store.get_test_result(&run.run_id).await?;
            rows.push(json!({
                "run_id": run.run_id, "template": run.test_name, "status": run.status.as_str(),
                "reason": run.status_reason, "created_at": run.created_at, "start_time": run.start_time,
                "end_time": run.end_time, "workers": run.total_workers_expected,
                "total_operations": parent.as_ref().map(|p| p.total_operations),
                "qps": parent.as_ref().and_then(|p| p.qps),
                "p95_ms": parent.as_ref().and_then(|p| p.p95_latency_ms),
            }));
        }
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<34} {:<11} {:<20} {:>8} {:>10} {:>9}  template",
        "run", "status", "created", "workers", "qps", "p95 ms"
    );
    for run in &runs {
        let parent = store.get_test_result(&run.run_id).await?;
        let created = run.created_at.map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
        println!(
            "{:<34} {:<11} {:<20} {:>8} {:>10} {:>9}  {}",
            run.run_id,
            run.status.as_str(),
            created,
            run.total_workers_expected,
            parent.as_ref().and_then(|p| p.qps).map_or("-".to_owned(), |qps| format!("{qps:.1}")),
            parent.as_ref().and_then(|p| p.p95_latency_ms).map_or("-".to_owned(), |p95| format!("{p95:.2}")),
            run.test_name
        );
    }
    Ok(())
}

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let (store, url) = connect(args.store.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary::json(&store, &args.run_id).await?)?);
    } else {
        summary::print(&store, &args.run_id, &url).await?;
    }
    Ok(())
}

async fn compare(args: CompareArgs) -> anyhow::Result<()> {
    if args.run_ids.len() > MAX_COMPARED {
        anyhow::bail!("runs compare takes at most {MAX_COMPARED} run ids, got {}", args.run_ids.len());
    }
    let ids = &args.run_ids;
    if let Some(repeated) = ids.iter().enumerate().find_map(|(index, id)| ids[..index].contains(id).then_some(id)) {
        anyhow::bail!("runs compare: run `{repeated}` is given more than once");
    }
    let (store, _) = connect(args.store.as_deref()).await?;
    let mut summaries = Vec::new();
    for run_id in &args.run_ids {
        summaries.push(summary::json(&store, run_id).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"runs": summaries}))?);
        return Ok(());
    }
    let rows: [(&str, &[&str]); 11] = [
        ("template", &["template"]),
        ("status", &["status"]),
        ("measured s", &["duration_seconds"]),
        ("queries", &["totals", "operations"]),
        ("failed", &["totals", "failed"]),
        ("qps", &["qps"]),
        ("avg ms", &["latency", "avg_ms"]),
        ("p50 ms", &["latency", "p50_ms"]),
        ("p95 ms", &["latency", "p95_ms"]),
        ("p99 ms", &["latency", "p99_ms"]),
        ("p99.9 ms", &["latency", "p999_ms"]),
    ];
    print!("{:<12}", "");
    for summary in &summaries {
        print!(" {:>30}", summary["run_id"].as_str().unwrap_or("-"));
    }
    println!();
    for (label, path) in rows {
        print!("{label:<12}");
        for summary in &summaries {
            let value = path.iter().fold(summary, |value, key| &value[*key]);
            print!(" {:>30}", cell(value));
        }
        println!();
    }
    Ok(())
}

fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => format!("{:.2}", number.as_f64().unwrap_or_default()),
        serde_json::Value::Number(number) => number.to_string(),
        serde_json::Value::String(text) => text.chars().take(30).collect(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
