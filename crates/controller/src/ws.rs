//! `WS /ws/test/{run_id}`: the read-only live stream of one run. Each
//! client receives the run's `RUN_UPDATE` once per tick; after the final
//! update of a terminal run the server closes the connection.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use crate::error::ApiError;
use crate::live_feed::{ClientGuard, Subscription};
use crate::state::AppState;

/// A client that cannot take one message within this time is
/// disconnected, so that a stalled connection does not live forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// WebSocket close code for a normal closure.
const CLOSE_NORMAL: u16 = 1000;
/// Largest message accepted from a client. The stream is read-only, so
/// clients only send control frames.
const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// Upgrades to a WebSocket after checking that the run exists.
pub async fn live_stream(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    Path(run_id): Path<String>,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let upgrade =
        upgrade.map_err(|rejection| ApiError::new(rejection.status(), Some("Upgrade"), rejection.body_text()))?;
    if state.store().get_run(&run_id).await?.is_none() {
        return Err(ApiError::not_found("run_id", format!("run `{run_id}` not found")));
    }
    let updates = state.feeds.subscribe(&run_id, &state.service);
    let client = state.feeds.client_guard();
    let upgrade = upgrade.max_message_size(MAX_CLIENT_MESSAGE_BYTES);
    Ok(upgrade.on_upgrade(move |socket| forward_updates(socket, updates, run_id, client)))
}

/// Sends every update to one client until the run ends, the client
/// leaves, or a send stalls.
async fn forward_updates(socket: WebSocket, mut updates: Subscription, run_id: String, _client: ClientGuard) {
    let (mut sender, mut receiver) = socket.split();
    // Reading lets the WebSocket library reply to pings, and notices when
    // the client closes.
    let client_gone = async move {
        while let Some(Ok(message)) = receiver.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::pin!(client_gone);

    loop {
        tokio::select! {
            _ = &mut client_gone => break,
            changed = updates.changed() => {
                if changed.is_err() {
                    // The feed ended without a final update (the run was
                    // deleted, or the server is shutting down).
                    let close = CloseFrame { code: CLOSE_NORMAL, reason: "live feed ended".into() };
                    tokio::time::timeout(SEND_TIMEOUT, sender.send(Message::Close(Some(close)))).await.ok();
                    break;
                }
                let Some(update) = updates.borrow_and_update().clone() else { continue };
                match tokio::time::timeout(SEND_TIMEOUT, sender.send(Message::Text(update.text))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(run_id, %error, "live client disconnected");
                        break;
                    }
                    Err(_) => {
                        tracing::info!(run_id, "disconnected a live client that stopped reading");
                        break;
                    }
                }
                if update.terminal {
                    let close = CloseFrame { code: CLOSE_NORMAL, reason: "run ended".into() };
                    tokio::time::timeout(SEND_TIMEOUT, sender.send(Message::Close(Some(close)))).await.ok();
                    break;
                }
            }
        }
    }
}
