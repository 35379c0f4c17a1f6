//! The reference realtime server's I/O shell: WebSocket connections and the HTTP API on one port
//! (axum), a single task that owns the protocol [`Hub`] and carries out its outputs, and a webhook
//! sender. Every protocol decision is the hub's; this module moves bytes, time and deliveries.
//!
//! Invariants:
//! - only the hub task touches the hub; everything else talks to it over one bounded command
//!   channel, so inbound work is back-pressured instead of queued without limit;
//! - every connection's outbound queue is bounded in frames (`outbound_queue`) and in bytes
//!   (`outbound_queue_bytes`); when either is full the hub is told (`Hub::overflow`) and the
//!   connection is closed with 4100, so a reader that stopped costs at most that much memory;
//! - close frames travel on a separate one-shot channel so they get through a full queue;
//! - every listener (`bind` and `extra_binds`) feeds the same hub, so they are one server with
//!   several addresses: the stand-in for the nodes of a cluster that the conformance kit's cluster
//!   cases need. They are not a distributed deployment.

pub(crate) mod config;
pub mod listen;
pub mod tls;
mod webhooks;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::ServerConfig;

use crate::realtime::{ConnId, HttpRequest, HttpResponse, Hub, Output};

/// Largest WebSocket message read at all; bigger ones fail the socket. Below this, the hub answers
/// oversized frames with a typed error instead.
const MAX_WS_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest HTTP API body; bigger ones get 413 before any work.
const MAX_HTTP_BODY_BYTES: usize = 1024 * 1024;

enum Command {
    Open {
        conn: ConnId,
        path: String,
        query: String,
        peer: Option<std::net::IpAddr>,
        outbound: mpsc::Sender<String>,
        queued_bytes: Arc<AtomicUsize>,
        close: oneshot::Sender<(u16, String)>,
    },
    Message {
        conn: ConnId,
        bytes: Vec<u8>,
        binary: bool,
    },
    Closed {
        conn: ConnId,
    },
    Http {
        method: String,
        path: String,
        query: String,
        body: Bytes,
        reply: oneshot::Sender<HttpResponse>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

struct ConnHandle {
    outbound: mpsc::Sender<String>,
    /// Bytes queued and not yet written; the writer takes off what it sends.
    queued_bytes: Arc<AtomicUsize>,
    close: Option<oneshot::Sender<(u16, String)>>,
}

#[derive(Clone)]
struct Shared {
    commands: mpsc::Sender<Command>,
    next_conn: Arc<AtomicU64>,
    /// WebSocket connections that ended, for the memory trimmer.
    closed_conns: Arc<AtomicU64>,
    outbound_queue: usize,
}

/// Per-connection output limit in bytes, shared by every hub task.
#[derive(Clone, Copy)]
struct OutputLimit(usize);

/// A server running in the background.
pub struct RunningServer {
    addrs: Vec<SocketAddr>,
    webhook_stats: webhooks::SharedStats,
    commands: Vec<mpsc::Sender<Command>>,
    stop_accepting: watch::Sender<bool>,
    http: Vec<JoinHandle<io::Result<()>>>,
    hubs: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// The address the server listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// What webhook delivery did so far, per app (in the order of the configuration).
    pub fn webhook_stats(&self) -> Vec<crate::realtime::webhook_queue::WebhookStats> {
        self.webhook_stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Every listening address: `bind` first, then `extra_binds`.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Closes every connection with 4200, stops accepting, and waits for the tasks to end.
    pub async fn shutdown(self) {
        for commands in &self.commands {
            let (done, wait) = oneshot::channel();
            if commands.send(Command::Shutdown { done }).await.is_ok() {
                let _ = wait.await;
            }
        }
        let _ = self.stop_accepting.send(true);
        for http in self.http {
            let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
        }
        for hub in self.hubs {
            hub.abort();
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Binds and starts the server; returns once it accepts connections on every address.
pub async fn start(config: ServerConfig) -> io::Result<RunningServer> {
    config.validate().map_err(io::Error::other)?;
    let mut listeners = vec![TcpListener::bind(config.bind).await?];
    for bind in &config.extra_binds {
        listeners.push(TcpListener::bind(bind).await?);
    }
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key).map_err(io::Error::other)?),
        _ => None,
    };
    let (webhooks, webhook_stats) = webhooks::spawn(
        config.apps.clone(),
        config.webhook_batch_ms,
        crate::realtime::webhook_queue::QueueLimits::default(),
    );
    // One hub serves every listener, so all of them are one server. The test-only defect gives
    // each listener a hub of its own: nodes that do not share their state.
    let hub_count = if config
        .apps
        .iter()
        .any(|a| a.has_defect(crate::realtime::Defect::NodeLocalHubs))
    {
        listeners.len()
    } else {
        1
    };
    let (mut commands, mut hubs) = (Vec::new(), Vec::new());
    for _ in 0..hub_count {
        let (tx, rx) = mpsc::channel(4096);
        hubs.push(tokio::spawn(run_hub(
            Hub::new(config.apps.clone()),
            rx,
            webhooks.clone(),
            OutputLimit(config.outbound_queue_bytes),
        )));
        commands.push(tx);
    }
    let next_conn = Arc::new(AtomicU64::new(1));
    let closed_conns = Arc::new(AtomicU64::new(0));
    hubs.push(tokio::spawn(return_freed_memory(closed_conns.clone())));
    let (stop_accepting, stopped) = watch::channel(false);
    let mut http = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let shared = Shared {
            commands: commands[i.min(hub_count - 1)].clone(),
            next_conn: next_conn.clone(),
            closed_conns: closed_conns.clone(),
            outbound_queue: config.outbound_queue,
        };
        let router = Router::new()
            .route("/app/{key}", get(websocket))
            .route("/apps/{*rest}", any(http_api))
            .route("/ready", get(|| async { "ok" }))
            .layer(DefaultBodyLimit::max(MAX_HTTP_BODY_BYTES))
            .with_state(shared);
        let mut stopped = stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let limits = config.listen;
        http.push(match &tls {
            Some(tls) => {
                let listener = tls::TlsListener::new(listener, tls.clone())?;
                tokio::spawn(listen::serve(listener, router, limits, stop))
            }
            None => tokio::spawn(listen::serve(
                listen::no_delay(listener),
                router,
                limits,
                stop,
            )),
        });
    }
    tracing::info!(addrs = ?addrs, tls = tls.is_some(), "realtime server listening");
    Ok(RunningServer {
        addrs,
        webhook_stats,
        commands,
        stop_accepting,
        http,
        hubs,
    })
}

async fn run_hub(
    mut hub: Hub,
    mut commands: mpsc::Receiver<Command>,
    webhooks: mpsc::UnboundedSender<(usize, crate::pusher::webhook::WebhookEvent)>,
    limit: OutputLimit,
) {
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let mut conns: HashMap<ConnId, ConnHandle> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut shutdown_done = None;
        tokio::select! {
            _ = tick.tick() => hub.tick(now_ms()),
            command = commands.recv() => match command {
                None => return,
                Some(Command::Open { conn, path, query, peer, outbound, queued_bytes, close }) => {
                    conns.insert(conn, ConnHandle { outbound, queued_bytes, close: Some(close) });
                    hub.open(conn, &path, &query, peer, rand::random(), now_ms());
                }
                Some(Command::Message { conn, bytes, binary }) => hub.message(conn, &bytes, binary, now_ms()),
                Some(Command::Closed { conn }) => {
                    conns.remove(&conn);
                    hub.closed(conn, now_ms());
                }
                Some(Command::Http { method, path, query, body, reply }) => {
                    let req = HttpRequest { method: &method, path: &path, query: &query, body: &body };
                    let _ = reply.send(hub.http(req, unix_now()));
                }
                Some(Command::Shutdown { done }) => {
                    hub.shutdown();
                    shutdown_done = Some(done);
                }
            }
        }
        while let Some(output) = hub.poll_output() {
            match output {
                Output::Send { conn, text } => {
                    let full = conns.get(&conn).is_some_and(|c| {
                        let len = text.len();
                        let queued = c.queued_bytes.load(Ordering::Relaxed);
                        if queued.saturating_add(len) > limit.0 {
                            return true;
                        }
                        c.queued_bytes.fetch_add(len, Ordering::Relaxed);
                        if c.outbound.try_send(text).is_err() {
                            c.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                            return true;
                        }
                        false
                    });
                    if full {
                        hub.overflow(conn, now_ms());
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some(close) = conns.get_mut(&conn).and_then(|c| c.close.take()) {
                        let _ = close.send((code.0, reason));
                    }
                    conns.remove(&conn);
                }
                Output::Webhook { app, event } => {
                    // The sender's queue bounds and counts; it only stops when the server does.
                    let _ = webhooks.send((app, event));
                }
            }
        }
        if let Some(done) = shutdown_done {
            let _ = done.send(());
        }
    }
}

async fn websocket(
    ws: WebSocketUpgrade,
    State(shared): State<Shared>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let path = uri.path().to_owned();
    ws.max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let peer = peer.map(|axum::Extension(ConnectInfo(addr))| addr.ip());
            connection(socket, shared, path, query.unwrap_or_default(), peer)
        })
}

async fn connection(
    socket: WebSocket,
    shared: Shared,
    path: String,
    query: String,
    peer: Option<std::net::IpAddr>,
) {
    let conn = ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
    let (outbound, mut outbound_rx) = mpsc::channel::<String>(shared.outbound_queue);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let (close, mut close_rx) = oneshot::channel();
    let open = Command::Open {
        conn,
        path,
        query,
        peer,
        outbound,
        queued_bytes: queued_bytes.clone(),
        close,
    };
    if shared.commands.send(open).await.is_err() {
        return;
    }
    let (mut sink, mut stream) = socket.split();
    let writer = async {
        loop {
            tokio::select! {
                biased;
                closing = &mut close_rx => {
                    // Frames the hub queued before deciding to close go out first (bounded by
                    // the queue size), so e.g. the `pusher:error` explaining the close arrives.
                    while let Ok(text) = outbound_rx.try_recv() {
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                    if let Ok((code, reason)) = closing {
                        let frame = CloseFrame { code, reason: reason.into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                    }
                    return;
                }
                text = outbound_rx.recv() => match text {
                    Some(text) => {
                        let len = text.len();
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                        queued_bytes.fetch_sub(len, Ordering::Relaxed);
                    }
                    None => return,
                },
            }
        }
    };
    let commands = shared.commands.clone();
    let reader = async {
        while let Some(message) = stream.next().await {
            let message = match message {
                Ok(m) => m,
                // The peer broke the WebSocket protocol: say which way before hanging up.
                Err(e) => return Some(protocol_close(e)),
            };
            let (bytes, binary) = match message {
                Message::Text(t) => (t.as_bytes().to_vec(), false),
                Message::Binary(b) => (b.to_vec(), true),
                Message::Close(_) => return None,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if commands
                .send(Command::Message {
                    conn,
                    bytes,
                    binary,
                })
                .await
                .is_err()
            {
                return None;
            }
        }
        None
    };
    let broken = tokio::select! {
        _ = writer => None,
        r = reader => r,
    };
    if let Some((code, reason)) = broken {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
    let _ = shared.commands.send(Command::Closed { conn }).await;
    shared.closed_conns.fetch_add(1, Ordering::Relaxed);
}

/// Gives memory freed by closed connections back to the operating system. The allocator keeps
/// freed blocks for reuse, so after a burst of connections with full outbound queues (a flood of
/// slow consumers, say) the process would otherwise stay at its peak size for ever. Every 5 s, if
/// any connection closed since the last look, glibc is asked to release its free pages
/// (`malloc_trim`, on a blocking thread: it walks every arena). Other platforms' allocators
/// return memory on their own terms; there this does nothing.
async fn return_freed_memory(closed_conns: Arc<AtomicU64>) {
    let mut seen = 0;
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let closed = closed_conns.load(Ordering::Relaxed);
        if closed != seen {
            seen = closed;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim only releases free memory; it has no preconditions.
                unsafe { libc::malloc_trim(0) }
            })
            .await;
        }
    }
}

/// The WebSocket close code for a frame the peer got wrong (RFC 6455 section 7.4.1): 1007 for a
/// text frame that is not UTF-8, 1009 for a message over the size limit, 1002 otherwise.
fn protocol_close(e: axum::Error) -> (u16, String) {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = e.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Utf8(_)) => (1007, "text frame is not valid UTF-8".into()),
        Some(WsError::Capacity(c)) => (1009, format!("message too big: {c}")),
        Some(WsError::Protocol(p)) => (1002, format!("WebSocket protocol error: {p}")),
        _ => (1002, format!("WebSocket error: {inner}")),
    }
}

async fn http_api(State(shared): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let (reply, answer) = oneshot::channel();
    let command = Command::Http {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        body,
        reply,
    };
    if shared.commands.send(command).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server shutting down").into_response();
    }
    match answer.await {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                [("content-type", "application/json")],
                resp.body.to_string(),
            )
                .into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "server shutting down").into_response(),
    }
}
