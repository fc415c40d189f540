//! The HTTP server under the router: one hyper connection per accepted
//! socket, with the limits that keep a flood of idle or slow clients from
//! taking the agent's file descriptors and, with them, its health checks
//! (which HAProxy and the other members depend on).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
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

/// Counts connections in total and per address.
#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A counted connection; dropping it frees its slot.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

fn admit(counts: &Arc<Mutex<Counts>>, limits: &ServeLimits, peer: SocketAddr) -> Option<Slot> {
    let address = peer.ip().to_canonical();
    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
    let mine = c.by_address.get(&address).copied().unwrap_or(0);
    if c.total >= limits.max_connections || mine >= limits.max_connections_per_address {
        return None;
    }
    c.total += 1;
    *c.by_address.entry(address).or_insert(0) += 1;
    Some(Slot {
        counts: counts.clone(),
        address,
    })
}

pub(crate) async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
    tls: Option<ServerTls>,
) -> io::Result<()> {
    let counts = Arc::new(Mutex::new(Counts::default()));
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
        let Some(slot) = admit(&counts, &limits, peer) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_freed_on_drop() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let limits = ServeLimits {
            max_connections: 3,
            max_connections_per_address: 2,
            ..ServeLimits::default()
        };
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let a1 = admit(&counts, &limits, a).expect("first from a");
        let _a2 = admit(&counts, &limits, a).expect("second from a");
        assert!(admit(&counts, &limits, a).is_none(), "a's share is used");
        let _b1 = admit(&counts, &limits, b).expect("b has its own share");
        assert!(admit(&counts, &limits, b).is_none(), "the total is used");
        drop(a1);
        assert!(admit(&counts, &limits, b).is_some(), "a freed a slot");
        // An IPv4 client seen through an IPv6 socket is the same address.
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:1".parse().unwrap();
        assert_eq!(mapped.ip().to_canonical(), a.ip());
    }
}
