//! The HTTP server under the router: one hyper connection per accepted
//! socket, with the limits that keep a flood of idle or slow clients from
//! taking the agent's file descriptors and, with them, its health checks
//! (which HAProxy and the other members depend on).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use raftgres_admission::Admission;
use tokio::net::TcpListener;

use crate::tls::ServerTls;

/// Bounds on what clients may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers, counted also
    /// from the end of one response to the next request on a kept-alive
    /// connection: a socket that sends nothing is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once; one more is closed at once.
    pub max_connections: usize,
    /// Connections from one address at once, so that one client cannot take
    /// every slot from the others.
    pub max_connections_per_address: usize,
    /// How long requests in flight may run on after shutdown is asked for.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_address: 64,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

pub(crate) async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
    tls: Option<ServerTls>,
) -> io::Result<()> {
    let admission = Admission::new(limits.max_connections, limits.max_connections_per_address);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors (or memory): back off instead of
                    // spinning; the connections in flight free some.
                    tracing::warn!(%err, "cannot accept a REST connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = admission.admit(peer) else {
            tracing::debug!(%peer, "REST connection refused: too many connections");
            continue;
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY on a REST connection");
        }
        // The client's address, for the login guard and the logs.
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, app, watcher, &limits, peer).await,
                // The handshake counts against the header-read bound: a
                // client that opens a socket and says nothing is closed.
                Some(tls) => {
                    match tokio::time::timeout(
                        limits.header_read_timeout,
                        tls.acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, app, watcher, &limits, peer).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, %err, "REST TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "REST TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "REST requests still running at shutdown were cut off");
    }
    Ok(())
}

async fn serve_connection<S>(
    io: S,
    app: Router,
    watcher: Watcher,
    limits: &ServeLimits,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    if let Err(err) = watcher.watch(connection).await {
        tracing::debug!(%peer, %err, "REST connection ended");
    }
}
