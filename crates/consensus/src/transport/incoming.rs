//! The Raft port's accept loop. tonic's own completes TLS handshakes with
//! no time bound and takes any number of connections, so sockets that
//! connect and say nothing would pile up until the agent runs out of file
//! descriptors, and the members' own connections with them. Here every
//! connection takes a slot (a total and a per-address share) for its whole
//! life, and a handshake that does not finish in time is closed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use raftgres_admission::{Admission, Slot};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// Bounds on what callers may hold on the Raft port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a caller may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Connections served at once; one more is closed at once. A member
    /// holds one to each peer, plus the tools' short calls.
    pub max_connections: usize,
    /// Connections from one address at once, so that one host cannot take
    /// every slot from the members.
    pub max_connections_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(5),
            max_connections: 512,
            max_connections_per_address: 32,
        }
    }
}

/// A connection that holds its slot until it is dropped. To tonic it is the
/// stream it wraps: a TLS one still shows the caller's certificate.
pub struct Counted<IO> {
    io: IO,
    _slot: Slot,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Counted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The connections `listener` accepts, in clear, within `limits`.
pub fn plain(
    listener: TcpListener,
    limits: Limits,
) -> ReceiverStream<io::Result<Counted<TcpStream>>> {
    accept_loop(
        listener,
        limits,
        |stream, _limits| async move { Some(stream) },
    )
}

/// The connections `listener` accepts whose TLS handshake (with `acceptor`,
/// which asks for the caller's certificate) completes within `limits`.
pub fn tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: Limits,
) -> ReceiverStream<io::Result<Counted<TlsStream<TcpStream>>>> {
    accept_loop(listener, limits, move |stream, limits| {
        let acceptor = acceptor.clone();
        async move {
            let peer = stream.peer_addr().ok();
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(err)) => {
                    tracing::debug!(?peer, %err, "Raft port: TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(?peer, "Raft port: TLS handshake timed out");
                    None
                }
            }
        }
    })
}

/// Accepts until the receiving side is dropped; each admitted connection
/// is set up (`setup`, e.g. a handshake) on a task of its own, so one slow
/// caller never holds up the next.
fn accept_loop<IO, F, Fut>(
    listener: TcpListener,
    limits: Limits,
    setup: F,
) -> ReceiverStream<io::Result<Counted<IO>>>
where
    IO: Send + 'static,
    F: Fn(TcpStream, Limits) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<IO>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let admission = Admission::new(limits.max_connections, limits.max_connections_per_address);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of descriptors (or memory): back off instead
                        // of spinning; closing connections free some.
                        tracing::warn!(%err, "cannot accept a connection on the Raft port");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let Some(slot) = admission.admit(peer) else {
                tracing::debug!(%peer, "Raft port: connection refused, too many connections");
                continue;
            };
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%err, "cannot set TCP_NODELAY on a Raft connection");
            }
            let ready = setup(stream, limits);
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(io) = ready.await {
                    let _ = tx.send(Ok(Counted { io, _slot: slot })).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
