//! The controller: the HTTP API, live WebSocket stream and web UI, with the
//! orchestrator embedded.
