//! The node's TCP listeners (not in the simulation, whose network is not TCP): accepts
//! connections up to a limit, does the TLS handshake when TLS is on, and hands tonic the
//! ready streams.
//!
//! tonic's own listener cannot change its TLS certificates or cap its connections, so
//! the node accepts itself and serves with `serve_with_incoming_shutdown`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, Router};

use crate::node::TlsSource;

/// A client that connects and never finishes its handshake is dropped after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one "too many connections" line per this long.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `addr` until `stop`, with at most `max_connections` open at once.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    tls: Option<TlsSource>,
    max_connections: usize,
    stop: impl Future<Output = ()>,
) -> Result<(), String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
    let slots = Arc::new(Semaphore::new(max_connections));
    let served = match tls {
        None => {
            let plain = accept(listener, slots, |tcp, _| async move { Some(tcp) });
            router.serve_with_incoming_shutdown(plain, stop).await
        }
        Some(tls) => {
            let secured = accept(listener, slots, move |tcp, peer| handshake(tls(), tcp, peer));
            router.serve_with_incoming_shutdown(secured, stop).await
        }
    };
    served.map_err(|e| e.to_string())
}

/// Accepts connections while a slot is free (a connection over the limit is closed at
/// once, logged at most every 10 s), upgrades each in a task of its own (so a slow or
/// silent client never holds up the others) and yields the ones that made it. Ends when
/// the server stops.
fn accept<IO, F, Fut>(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    upgrade: F,
) -> impl futures::Stream<Item = io::Result<Counted<IO>>>
where
    IO: Send + 'static,
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = Option<IO>> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut last_refusal: Option<tokio::time::Instant> = None;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, most likely: let some connections close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                if last_refusal.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                    tracing::warn!(%peer, "too many connections (max_connections): closing new ones until some close");
                    last_refusal = Some(tokio::time::Instant::now());
                }
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (tx, ready) = (tx.clone(), upgrade(tcp, peer));
            tokio::spawn(async move {
                if let Some(io) = ready.await {
                    let _ = tx.send(Ok(Counted { io, _slot: permit })).await;
                }
            });
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The TLS handshake on `tcp`; None (connection closed) when it fails or takes too long.
async fn handshake(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let accepting = tokio_rustls::TlsAcceptor::from(config).accept(tcp).into_fallible();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err((error, mut tcp))) => {
            tracing::debug!(%peer, %error, "TLS handshake refused");
            // A lingering close: read what the client already sent (in TLS 1.3 its first
            // request follows its certificate at once), so that closing does not reset
            // the connection and destroy the alert that tells the client why before it
            // reads it.
            let mut sink = tokio::io::sink();
            let _ = tokio::time::timeout(Duration::from_secs(1), tokio::io::copy(&mut tcp, &mut sink)).await;
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// A connection holding one of the listener's slots until it closes.
pub struct Counted<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
}

impl<IO: Connected> Connected for Counted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    /// Passed on: HTTP/2 writes frames as several buffers at once.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
