//! The client under test's view of the realtime server: a WebSocket proxy in front of the
//! reference server that records every frame either way and injects the faults a case asks for
//! (a 4301 refusal instead of relaying, lower announced limits, a close with a chosen code, a forged
//! frame delivered as if the server sent it).
//! The client cannot tell it from a server; the case sees everything the client sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::pusher::{Frame, FrameLimits, ProtocolEvent, PusherCode};

/// Which way a recorded frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the client under test.
    FromClient,
    /// To the client under test (as the proxy delivered it, faults included).
    ToClient,
}

/// One recorded frame.
#[derive(Debug, Clone)]
pub struct Tapped {
    pub at: Instant,
    /// The client connection, numbered from 1 in the order they opened over the whole run (a
    /// case tells its own connections by when they opened: [`Proxy::opened_since`]).
    pub conn: u64,
    pub way: Way,
    pub text: String,
}

impl Tapped {
    /// The frame parsed, if it is one.
    pub fn frame(&self) -> Option<Frame> {
        Frame::parse(self.text.as_bytes(), &FrameLimits::default()).ok()
    }
}

#[derive(Default)]
struct State {
    frames: Vec<Tapped>,
    /// When each client connection opened.
    opened: Vec<(u64, Instant)>,
    next_conn: u64,
    /// Client events still to refuse with 4301 instead of relaying.
    refuse: usize,
    /// The client-event rate to announce instead of the server's.
    announce_rate: Option<f64>,
    /// The event size limit to announce instead of the server's.
    announce_max_event_bytes: Option<usize>,
    /// Client events with this name are held back instead of relayed, until released.
    hold: Option<String>,
    /// What is held: `(connection, frame)`, in order.
    held: Vec<(u64, String)>,
    controls: HashMap<u64, mpsc::UnboundedSender<Control>>,
}

/// What a case asks of an open connection.
enum Control {
    /// Close it with this code, as the server would.
    Close(u16),
    /// Deliver this frame to the client as if the server had sent it.
    Inject(String),
    /// Relay this held frame of the client's to the server now.
    Release(String),
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on an ephemeral loopback port and relays to `upstream` (`host:port`).
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(relay(stream, upstream, shared.clone()));
            }
        });
        Ok(Proxy { addr, state, task })
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://` URL of app `key` through the proxy.
    pub fn url(&self, key: &str) -> String {
        format!("ws://{}/app/{key}", self.addr)
    }

    /// Every frame so far.
    pub fn frames(&self) -> Vec<Tapped> {
        self.state
            .lock()
            .map(|s| s.frames.clone())
            .unwrap_or_default()
    }

    /// When each client connection opened, in order.
    pub fn openings(&self) -> Vec<Instant> {
        self.state
            .lock()
            .map(|s| s.opened.iter().map(|(_, t)| *t).collect())
            .unwrap_or_default()
    }

    /// The connections opened at or after `t`.
    pub fn opened_since(&self, t: Instant) -> Vec<u64> {
        self.state
            .lock()
            .map(|s| {
                s.opened
                    .iter()
                    .filter(|(_, at)| *at >= t)
                    .map(|(c, _)| *c)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Back to a plain relay with nothing recorded, for the next case.
    pub fn reset(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.frames.clear();
            s.opened.clear();
            s.refuse = 0;
            s.announce_rate = None;
            s.announce_max_event_bytes = None;
            s.hold = None;
            s.held.clear();
        }
    }

    /// Refuses the client's next `n` client events with `pusher:error` 4301, as a server over
    /// its rate limit does, instead of relaying them.
    pub fn refuse_client_events(&self, n: usize) {
        if let Ok(mut s) = self.state.lock() {
            s.refuse = n;
        }
    }

    /// Announces `rate` client events per second in `connection_established` from now on.
    pub fn announce_rate(&self, rate: f64) {
        if let Ok(mut s) = self.state.lock() {
            s.announce_rate = Some(rate);
        }
    }

    /// Announces `bytes` as the largest event data in `connection_established` from now on.
    pub fn announce_max_event_bytes(&self, bytes: usize) {
        if let Ok(mut s) = self.state.lock() {
            s.announce_max_event_bytes = Some(bytes);
        }
    }

    /// Holds back the client events named `event` from now on instead of relaying them.
    pub fn hold(&self, event: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.hold = Some(event.to_owned());
        }
    }

    /// How many client events are held back.
    pub fn held(&self) -> usize {
        self.state.lock().map(|s| s.held.len()).unwrap_or(0)
    }

    /// Relays everything held, in order, and holds nothing more.
    pub fn release(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.hold = None;
            for (conn, text) in std::mem::take(&mut s.held) {
                if let Some(control) = s.controls.get(&conn) {
                    let _ = control.send(Control::Release(text));
                }
            }
        }
    }

    /// Closes every open client connection with `code`, as the server would.
    pub fn close_all(&self, code: u16) {
        self.control(|| Control::Close(code));
    }

    /// Delivers `frame` on every open client connection as if the server had sent it (a forged
    /// or replayed event the client must not act on). Recorded like any frame to the client.
    pub fn inject(&self, frame: &Value) {
        let text = frame.to_string();
        self.control(|| Control::Inject(text.clone()));
    }

    fn control(&self, what: impl Fn() -> Control) {
        if let Ok(s) = self.state.lock() {
            for control in s.controls.values() {
                let _ = control.send(what());
            }
        }
    }
}

fn tap(state: &Mutex<State>, conn: u64, way: Way, text: &str) {
    if let Ok(mut s) = state.lock() {
        s.frames.push(Tapped {
            at: Instant::now(),
            conn,
            way,
            text: text.to_owned(),
        });
    }
}

/// `connection_established` with the announced limits replaced where the case set them.
fn with_limits(text: &str, rate: Option<f64>, max_event_bytes: Option<usize>) -> Option<String> {
    let mut frame: Value = serde_json::from_str(text).ok()?;
    let mut data: Value = serde_json::from_str(frame["data"].as_str()?).ok()?;
    if let Some(rate) = rate {
        data["limits"]["client_events_per_second"] = json!(rate);
    }
    if let Some(bytes) = max_event_bytes {
        data["limits"]["max_event_bytes"] = json!(bytes);
    }
    frame["data"] = Value::String(data.to_string());
    Some(frame.to_string())
}

async fn relay(stream: tokio::net::TcpStream, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    let mut path = String::new();
    // The handshake callback's error type is tungstenite's; it never errs here.
    #[allow(clippy::result_large_err)]
    let callback =
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            Ok(resp)
        };
    let Ok(mut client) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let Ok((mut server, _)) =
        tokio_tungstenite::connect_async(format!("ws://{upstream}{path}")).await
    else {
        let _ = client.close(None).await;
        return;
    };
    let (control, mut controls) = mpsc::unbounded_channel();
    let conn = {
        let Ok(mut s) = state.lock() else { return };
        s.next_conn += 1;
        let conn = s.next_conn;
        s.opened.push((conn, Instant::now()));
        s.controls.insert(conn, control);
        conn
    };
    loop {
        tokio::select! {
            from_client = client.next() => match from_client {
                Some(Ok(Message::Text(text))) => {
                    tap(&state, conn, Way::FromClient, &text);
                    let refuse = text.contains("\"client-") && state.lock().is_ok_and(|mut s| {
                        let refuse = s.refuse > 0;
                        s.refuse = s.refuse.saturating_sub(1);
                        refuse
                    });
                    let held = state.lock().is_ok_and(|mut s| {
                        let hold = s.hold.as_ref().is_some_and(|name| {
                            Frame::parse(text.as_bytes(), &FrameLimits::default())
                                .is_ok_and(|f| &f.event == name)
                        });
                        if hold {
                            s.held.push((conn, text.to_string()));
                        }
                        hold
                    });
                    if held {
                        continue;
                    }
                    if refuse {
                        let error = json!({"event": ProtocolEvent::Error.name(), "data": {
                            "code": PusherCode::CLIENT_EVENT_RATE_LIMIT.0,
                            "message": "client event rate limit reached (injected by the conformance runner)"}});
                        tap(&state, conn, Way::ToClient, &error.to_string());
                        if client.send(Message::Text(error.to_string().into())).await.is_err() {
                            break;
                        }
                    } else if server.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = server.close(None).await;
                    break;
                }
                Some(Ok(other)) => {
                    if server.send(other).await.is_err() {
                        break;
                    }
                }
            },
            from_server = server.next() => match from_server {
                Some(Ok(Message::Text(text))) => {
                    let (rate, bytes) = state
                        .lock()
                        .map(|s| (s.announce_rate, s.announce_max_event_bytes))
                        .unwrap_or_default();
                    let text = if (rate.is_some() || bytes.is_some())
                        && text.contains(ProtocolEvent::ConnectionEstablished.name())
                    {
                        with_limits(&text, rate, bytes).unwrap_or_else(|| text.to_string())
                    } else {
                        text.to_string()
                    };
                    tap(&state, conn, Way::ToClient, &text);
                    if client.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = client.send(Message::Close(frame)).await;
                    break;
                }
                None | Some(Err(_)) => {
                    let _ = client.close(None).await;
                    break;
                }
                Some(Ok(other)) => {
                    if client.send(other).await.is_err() {
                        break;
                    }
                }
            },
            Some(request) = controls.recv() => match request {
                Control::Close(code) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: "closed by the conformance runner".into() };
                    let _ = client.send(Message::Close(Some(frame))).await;
                    let _ = server.close(None).await;
                    break;
                }
                Control::Inject(text) => {
                    tap(&state, conn, Way::ToClient, &text);
                    if client.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Control::Release(text) => {
                    if server.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    if let Ok(mut s) = state.lock() {
        s.controls.remove(&conn);
    }
}
