//! A loopback TCP proxy in front of a PostgreSQL server, so that a test can
//! cut a process off from its store: `shut_down` closes the listener and
//! every open connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub struct TcpProxy {
    address: SocketAddr,
    upstream_url: String,
    upstream: String,
    stop: Arc<Notify>,
}

impl TcpProxy {
    /// Proxies to the host and port of a `postgres://` URL.
    pub async fn start(upstream_url: &str) -> TcpProxy {
        let authority = upstream_url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap();
        let host_port = authority.rsplit('@').next().unwrap().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(Notify::new());
        let upstream = host_port.clone();
        let stop_accepting = Arc::clone(&stop);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { return };
                        let upstream = upstream.clone();
                        let stop = Arc::clone(&stop_accepting);
                        tokio::spawn(async move {
                            let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                            let mut client = client;
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = stop.notified() => {}
                            }
                        });
                    }
                    _ = stop_accepting.notified() => return,
                }
            }
        });
        TcpProxy { address, upstream_url: upstream_url.to_owned(), upstream: host_port, stop }
    }

    /// The upstream URL with the proxy's address in place of the server's.
    pub fn url(&self) -> String {
        self.upstream_url.replacen(&self.upstream, &self.address.to_string(), 1)
    }

    /// Closes the listener and every proxied connection.
    pub fn shut_down(&self) {
        // notify_waiters wakes every task waiting now; later connections
        // cannot be accepted because the accept loop itself has ended.
        self.stop.notify_waiters();
    }
}
