//! The workload's statements on PostgreSQL, sent and read by unibench
//! itself over the session's socket.
//!
//! tokio-postgres logs the session in, runs the set-up queries and prepares
//! each statement once to learn its parameter types. The wire then prepares
//! it again under a name of its own, and each execution is one Bind,
//! Execute and Sync written into a reused buffer and one read of the
//! response, parsed in place. There is no channel between a client and a
//! connection future, and a query allocates only to copy its text, numeric
//! and UUID parameters. The two take turns on one socket, because
//! tokio-postgres is only polled while it runs a request of its own, and
//! the wire only between them.
//!
//! The wire needs a socket unibench opened itself, so it is used when the
//! connection names one host (TCP or Unix socket) and accepts any server;
//! other settings (several hosts, `target_session_attrs`,
//! `load_balance_hosts`) use tokio-postgres for every query.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use postgres_protocol::message::backend::{ErrorFields, ErrorResponseBody, Header, Message};
use postgres_protocol::message::frontend;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, LoadBalanceHosts, TargetSessionAttrs};
use tokio_postgres::fallible_iterator::FallibleIterator;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_util::io::poll_read_buf;

use crate::connections::DEFAULT_POSTGRES_PORT;
use crate::postgres_params::PgValue;

/// Free space the input buffer has before each read from the socket.
const READ_SPACE: usize = 8192;

/// Message tags of the responses read on the wire.
const DATA_ROW: u8 = b'D';
const COMMAND_COMPLETE: u8 = b'C';
const ERROR_RESPONSE: u8 = b'E';
const READY_FOR_QUERY: u8 = b'Z';

/// Tags of messages that need no action: ParseComplete, BindComplete,
/// CloseComplete, NoData, EmptyQueryResponse, PortalSuspended,
/// NoticeResponse, ParameterStatus and NotificationResponse.
const SKIPPED: [u8; 9] = [b'1', b'2', b'3', b'n', b'I', b's', b'N', b'S', b'A'];

/// Result format code of the Bind message: binary for every column. The
/// rows are counted, never decoded, so the format only has to be valid.
const BINARY: i16 = 1;

/// Where the session's socket connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl Address {
    /// The single address of `config`, or `None` when tokio-postgres must
    /// choose: several hosts or ports, or a `target_session_attrs` that
    /// needs a check after login.
    pub(crate) fn of(config: &tokio_postgres::Config) -> Option<Address> {
        if config.get_target_session_attrs() != TargetSessionAttrs::Any
            || config.get_load_balance_hosts() != LoadBalanceHosts::Disable
        {
            return None;
        }
        let port = match config.get_ports() {
            [] => DEFAULT_POSTGRES_PORT,
            [port] => *port,
            _ => return None,
        };
        match (config.get_hosts(), config.get_hostaddrs()) {
            (_, [address]) if config.get_hosts().len() <= 1 => Some(Address::Tcp { host: address.to_string(), port }),
            ([Host::Tcp(host)], []) => Some(Address::Tcp { host: host.clone(), port }),
            ([Host::Unix(directory)], []) => Some(Address::Unix(directory.join(format!(".s.PGSQL.{port}")))),
            _ => None,
        }
    }
}

/// Opens the socket with the TCP settings tokio-postgres would apply:
/// no Nagle delay, and the configured keepalives and user timeout.
pub(crate) async fn connect(address: &Address, config: &tokio_postgres::Config) -> io::Result<SharedStream> {
    let stream = match address {
        Address::Tcp { host, port } => {
            let stream = TcpStream::connect((host.as_str(), *port)).await?;
            stream.set_nodelay(true)?;
            let socket = SockRef::from(&stream);
            if let Some(timeout) = config.get_tcp_user_timeout() {
                socket.set_tcp_user_timeout(Some(*timeout))?;
            }
            if config.get_keepalives() {
                let mut keepalive = TcpKeepalive::new().with_time(config.get_keepalives_idle());
                if let Some(interval) = config.get_keepalives_interval() {
                    keepalive = keepalive.with_interval(interval);
                }
                if let Some(retries) = config.get_keepalives_retries() {
                    keepalive = keepalive.with_retries(retries);
                }
                socket.set_tcp_keepalive(&keepalive)?;
            }
            Stream::Tcp(stream)
        }
        Address::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
    };
    Ok(SharedStream(Arc::new(Mutex::new(stream))))
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The session's socket, shared by tokio-postgres and the [`Wire`]. They
/// never run at the same time, and each holds the lock only within one
/// poll, so the lock is never contended.
#[derive(Clone)]
pub(crate) struct SharedStream(Arc<Mutex<Stream>>);

impl SharedStream {
    fn lock(&self) -> MutexGuard<'_, Stream> {
        // The lock guards no invariant of its own; a socket behind a
        // poisoned lock is as usable as before.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn poll_write_from(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut *self.lock() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_from(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Stream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// Why an execution on the wire failed.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The server returned an error. With `session_ended` (a FATAL or
    /// PANIC error, or the server closed the socket after it) the session
    /// is gone; otherwise it is still usable.
    Server { code: String, message: String, session_ended: bool },
    /// A parameter could not be encoded; nothing was sent.
    Encode(String),
    /// The socket failed, closed, or carried something unexpected: the
    /// session is gone.
    Lost(String),
}

/// Executes prepared statements over the session's socket.
pub(crate) struct Wire {
    stream: SharedStream,
    out: BytesMut,
    input: BytesMut,
    lost: bool,
}

impl Wire {
    pub(crate) fn new(stream: SharedStream) -> Self {
        Wire { stream, out: BytesMut::new(), input: BytesMut::new(), lost: false }
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }

    /// Whether tokio-postgres may use the socket again: the wire must not
    /// hold the start of a message that tokio-postgres would then miss.
    pub(crate) fn is_idle(&self) -> bool {
        self.input.is_empty() && !self.lost
    }

    /// Prepares each `(name, sql, types)` under one Sync.
    pub(crate) async fn prepare_all(&mut self, statements: &[(String, &str, Vec<Type>)]) -> Result<(), WireError> {
        self.out.clear();
        for (name, sql, types) in statements {
            frontend::parse(name, sql, types.iter().map(Type::oid), &mut self.out)
                .map_err(|error| WireError::Encode(error.to_string()))?;
        }
        frontend::sync(&mut self.out);
        self.exchange().await.map(drop)
    }

    /// Closes the prepared statements `names`.
    pub(crate) async fn close_statements(&mut self, names: &[&str]) -> Result<(), WireError> {
        if names.is_empty() {
            return Ok(());
        }
        self.out.clear();
        for name in names {
            frontend::close(b'S', name, &mut self.out).map_err(|error| WireError::Encode(error.to_string()))?;
        }
        frontend::sync(&mut self.out);
        self.exchange().await.map(drop)
    }

    /// Runs prepared statement `name`, whose parameter types are `types`,
    /// with `values`. Returns the number of rows it returned, or the row
    /// count of its command tag when it has one.
    pub(crate) async fn execute(&mut self, name: &str, types: &[Type], values: &[PgValue]) -> Result<u64, WireError> {
        self.out.clear();
        encode(name, types, values, &mut self.out)?;
        self.exchange().await
    }

    /// Sends the request in `out` and reads the response.
    async fn exchange(&mut self) -> Result<u64, WireError> {
        if self.lost {
            return Err(WireError::Lost("the session was lost earlier".to_owned()));
        }
        // Stays set if the caller drops this future before the response is
        // read: the unread response would answer the next request.
        self.lost = true;
        let result = match self.write_request().await {
            Ok(()) => self.read_response().await,
            Err(error) => Err(error),
        };
        self.lost = matches!(result, Err(WireError::Lost(_) | WireError::Server { session_ended: true, .. }));
        result
    }

    async fn write_request(&mut self) -> Result<(), WireError> {
        let mut written = 0;
        while written < self.out.len() {
            let pending = &self.out[written..];
            let count = std::future::poll_fn(|cx| self.stream.poll_write_from(cx, pending))
                .await
                .map_err(|error| WireError::Lost(error.to_string()))?;
            if count == 0 {
                return Err(WireError::Lost("the server closed the connection".to_owned()));
            }
            written += count;
        }
        Ok(())
    }

    /// Reads messages up to ReadyForQuery, which ends the response to Sync.
    /// Only CommandComplete and ErrorResponse are decoded; the others are
    /// counted or skipped by their header.
    async fn read_response(&mut self) -> Result<u64, WireError> {
        let mut returned: u64 = 0;
        let mut tagged: Option<u64> = None;
        let mut failure: Option<WireError> = None;
        loop {
            while let Some(header) = Header::parse(&self.input).map_err(|error| WireError::Lost(error.to_string()))? {
                let length = header.len() as usize + 1;
                if self.input.len() < length {
                    break;
                }
                match header.tag() {
                    DATA_ROW => returned += 1,
                    READY_FOR_QUERY => {
                        self.input.advance(length);
                        return match failure {
                            Some(error) => Err(error),
                            None => Ok(tagged.unwrap_or(returned)),
                        };
                    }
                    COMMAND_COMPLETE | ERROR_RESPONSE => {
                        match Message::parse(&mut self.input).map_err(|error| WireError::Lost(error.to_string()))? {
                            Some(Message::CommandComplete(body)) => {
                                tagged = body.tag().ok().and_then(rows_of_tag);
                            }
                            Some(Message::ErrorResponse(body)) => failure = Some(server_error(&body)),
                            _ => return Err(WireError::Lost("a message from the server could not be read".to_owned())),
                        }
                        continue;
                    }
                    tag if SKIPPED.contains(&tag) => {}
                    _ => {
                        return Err(WireError::Lost(
                            "the server responded to a statement with a message unibench does not handle \
                             (COPY is not supported in a workload)"
                                .to_owned(),
                        ));
                    }
                }
                self.input.advance(length);
            }
            // Once the messages read so far are consumed, the buffer reuses
            // its space instead of growing.
            self.input.reserve(READ_SPACE);
            let read = std::future::poll_fn(|cx| poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.input)).await;
            let count = read.map_err(|error| WireError::Lost(error.to_string()))?;
            if count == 0 {
                // A server that ends the session (an administrator's
                // terminate, a shutdown) sends a FATAL error first.
                return Err(match failure {
                    Some(WireError::Server { code, message, .. }) => {
                        WireError::Server { code, message, session_ended: true }
                    }
                    _ => WireError::Lost("the server closed the connection".to_owned()),
                });
            }
        }
    }
}

/// Encodes Bind (unnamed portal), Execute (all rows) and Sync.
fn encode(name: &str, types: &[Type], values: &[PgValue], out: &mut BytesMut) -> Result<(), WireError> {
    let formats = values.iter().zip(types).map(|(value, ty)| value.encode_format(ty) as i16);
    let mut failed_at = 0;
    let bound = frontend::bind(
        "",
        name,
        formats,
        values.iter().zip(types).enumerate(),
        |(position, (value, ty)), buf| match value.to_sql_checked(ty, buf) {
            Ok(IsNull::No) => Ok(postgres_protocol::IsNull::No),
            Ok(IsNull::Yes) => Ok(postgres_protocol::IsNull::Yes),
            Err(error) => {
                failed_at = position;
                Err(error)
            }
        },
        Some(BINARY),
        out,
    );
    match bound {
        Ok(()) => {}
        Err(frontend::BindError::Conversion(error)) => {
            return Err(WireError::Encode(format!("parameter ${}: {error}", failed_at + 1)));
        }
        Err(frontend::BindError::Serialization(error)) => return Err(WireError::Encode(error.to_string())),
    }
    frontend::execute("", 0, out).map_err(|error| WireError::Encode(error.to_string()))?;
    frontend::sync(out);
    Ok(())
}

/// The row count at the end of a command tag such as `SELECT 5`,
/// `INSERT 0 1` or `UPDATE 3`; `None` for tags without one.
fn rows_of_tag(tag: &str) -> Option<u64> {
    let (_, last) = tag.rsplit_once(' ')?;
    last.parse().ok()
}

fn server_error(body: &ErrorResponseBody) -> WireError {
    let mut code = String::new();
    let mut message = String::new();
    let mut session_ended = false;
    let mut fields: ErrorFields<'_> = body.fields();
    while let Ok(Some(field)) = fields.next() {
        match field.type_() {
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            // The severity, never translated: the server ends the session
            // after a FATAL or PANIC error.
            b'V' => session_ended = matches!(field.value_bytes(), b"FATAL" | b"PANIC"),
            _ => {}
        }
    }
    WireError::Server { code, message, session_ended }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn address(url: &str) -> Option<Address> {
        Address::of(&tokio_postgres::Config::from_str(url).unwrap())
    }

    #[test]
    fn one_host_uses_the_wire() {
        assert_eq!(
            address("postgres://u@db.example:6543/d"),
            Some(Address::Tcp { host: "db.example".into(), port: 6543 })
        );
        assert_eq!(address("host=/run/pg user=u"), Some(Address::Unix("/run/pg/.s.PGSQL.5432".into())));
        assert_eq!(
            address("host=db.example hostaddr=127.0.0.1 port=7000 user=u"),
            Some(Address::Tcp { host: "127.0.0.1".into(), port: 7000 })
        );
    }

    #[test]
    fn several_hosts_or_session_checks_use_tokio_postgres() {
        assert_eq!(address("host=a,b user=u"), None);
        assert_eq!(address("host=a user=u load_balance_hosts=random"), None);
        assert_eq!(address("host=a port=1,2 user=u"), None);
        assert_eq!(address("host=a user=u target_session_attrs=read-write"), None);
    }

    #[test]
    fn command_tags_give_row_counts() {
        assert_eq!(rows_of_tag("SELECT 5"), Some(5));
        assert_eq!(rows_of_tag("INSERT 0 1"), Some(1));
        assert_eq!(rows_of_tag("UPDATE 3"), Some(3));
        assert_eq!(rows_of_tag("CALL"), None);
        assert_eq!(rows_of_tag("SET"), None);
    }
}
