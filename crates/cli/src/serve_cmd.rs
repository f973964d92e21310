//! `unibench serve`: the controller (HTTP API and live stream) with the
//! orchestrator embedded. It checks the bind address against the token
//! policy before touching the store, and prints the address it listens
//! on. On Ctrl-C or SIGTERM it stops accepting requests, stops the runs it
//! started and waits for them, and a second signal kills their workers.
//! Live streams close after the final update of each stopped run.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use unibench_controller::{check_bind, Controller, TOKEN_ENV};
use unibench_store::Store;

use crate::{run_cmd, store_arg};

/// Address the controller listens on by default: loopback only.
const DEFAULT_BIND: &str = "127.0.0.1:8080";

#[derive(Debug, Args)]
pub struct ServeCommand {
    /// Store URL (default: $UNIBENCH_STORE, else the embedded SQLite file).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Address and port to listen on. Any address other than loopback
    /// requires the UNIBENCH_API_TOKEN environment variable. Port 0 picks
    /// a free port; the address is printed on start.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_BIND)]
    bind: String,
    /// The named-connections file (default: $UNIBENCH_HOME/connections.toml).
    #[arg(long, value_name = "PATH")]
    connections_file: Option<PathBuf>,
}

pub async fn run(command: ServeCommand) -> ExitCode {
    match execute(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: ServeCommand) -> anyhow::Result<()> {
    let addr = parse_bind(&command.bind)?;
    let token = std::env::var(TOKEN_ENV).ok().filter(|token| !token.trim().is_empty());
    check_bind(addr, token.as_deref())?;

    let store_choice = store_arg::resolve(command.store.as_deref())?;
    let store = Arc::new(Store::connect(&store_choice.url).await?);
    store.require_schema().await?;
    let service = run_cmd::service(Arc::clone(&store), &store_choice.raw, command.connections_file.clone()).await?;
    let controller = Controller::new(Arc::new(service), token);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {addr}: {error}"))?;
    let local = listener.local_addr()?;
    eprintln!("unibench serve listening on http://{local} (store {})", store_choice.url);

    controller.serve(listener, shutdown_signal()).await?;
    let active = controller.active_runs();
    if !active.is_empty() {
        let runs = if active.len() == 1 { "run" } else { "runs" };
        eprintln!(
            "stopping {} active {runs} (send the signal again to kill their workers): {}",
            active.len(),
            active.join(", ")
        );
        controller.stop_runs(shutdown_signal()).await;
    }
    controller.close_live_streams(&active).await;
    eprintln!("unibench serve stopped");
    Ok(())
}

/// Parses `HOST:PORT`, where HOST is an IP address or `localhost`.
fn parse_bind(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
    }
    anyhow::bail!("invalid --bind `{text}`: expected IP:PORT, such as 127.0.0.1:8080 or [::1]:8080")
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the controller");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_accepts_addresses_and_localhost() {
        assert_eq!(parse_bind("127.0.0.1:8080").unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(parse_bind("localhost:9000").unwrap(), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(parse_bind("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert!(parse_bind("example.com:80").is_err());
        assert!(parse_bind("127.0.0.1").is_err());
    }
}
