//! The HTTP listeners' accept loop, shared by the realtime and the trusted server: what
//! `axum::serve` does, plus the limits that keep a slow or idle client from holding a server's
//! resources: a cap on concurrent HTTP connections and a deadline for every request's headers.
//!
//! Invariants: a connection that has not sent a whole request head within
//! [`ListenLimits::header_read_timeout`] (a first request, or the next one on a kept-alive
//! connection) is closed; beyond [`ListenLimits::max_connections`] concurrent HTTP connections a
//! new one is closed at once. A connection upgraded to a WebSocket leaves this count: WebSocket
//! connections are counted and limited by the protocol layer (per app, per address, per user).
//! Every request carries its peer's address as `axum::extract::ConnectInfo<SocketAddr>`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// A TCP listener whose connections have Nagle's algorithm off: a response written in two
/// pieces must not wait for the peer's delayed ACK (40 ms on Linux), which would slow every
/// signed subscription and every call placement.
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}

/// Serves `router` on `listener` until `shutdown` resolves; connections already open finish on
/// their own.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: closing at once costs nothing; queueing would cost memory.
            drop(io);
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req)
        });
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            let _ = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
                .await;
            drop(permit);
        });
    }
}
