//! `unibench schema apply` and `unibench schema check`: the only commands
//! that run DDL against a store, and the check every other command relies
//! on.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use unibench_store::{Store, StoreUrl};

/// Which store to address.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Store URL: sqlite://PATH or postgres://USER@HOST:PORT/DATABASE.
    /// Defaults to $UNIBENCH_STORE, else sqlite://$UNIBENCH_HOME/unibench.db
    /// (UNIBENCH_HOME defaults to ~/.unibench).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SchemaAction {
    /// Create every missing table and index; applying twice changes nothing.
    Apply(StoreArgs),
    /// Exit 0 when every table and column unibench needs is present;
    /// otherwise list what is missing and exit 1.
    Check(StoreArgs),
}

pub async fn run(action: SchemaAction) -> ExitCode {
    let result = match action {
        SchemaAction::Apply(args) => apply(args).await,
        SchemaAction::Check(args) => check(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(args: &StoreArgs) -> Result<(Store, StoreUrl), unibench_store::StoreError> {
    let url = StoreUrl::resolve(args.store.as_deref())?;
    let store = Store::connect(&url).await?;
    Ok((store, url))
}

async fn apply(args: StoreArgs) -> Result<ExitCode, unibench_store::StoreError> {
    let (store, url) = connect(&args).await?;
    store.apply_schema().await?;
    let missing = store.check_schema().await?;
    if !missing.is_empty() {
        // The DDL ran but the store still lacks columns: an older table was
        // created without them, and CREATE TABLE IF NOT EXISTS leaves it.
        print_missing(&url, &missing);
        return Ok(ExitCode::FAILURE);
    }
    println!("schema applied to {url}");
    Ok(ExitCode::SUCCESS)
}

async fn check(args: StoreArgs) -> Result<ExitCode, unibench_store::StoreError> {
    let (store, url) = connect(&args).await?;
    let missing = store.check_schema().await?;
    if missing.is_empty() {
        println!("schema complete in {url}");
        return Ok(ExitCode::SUCCESS);
    }
    print_missing(&url, &missing);
    Ok(ExitCode::FAILURE)
}

fn print_missing(url: &StoreUrl, missing: &[unibench_store::MissingColumn]) {
    eprintln!("schema incomplete in {url}: {} missing", missing.len());
    for item in missing {
        eprintln!("  missing {item}");
    }
    eprintln!("run `unibench schema apply --store URL` to create what is missing");
}
