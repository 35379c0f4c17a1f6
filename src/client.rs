//! The reference realtime client: one Pusher protocol 7 connection that reconnects by close-code
//! class with backoff, subscribes through a trusted server's auth endpoint (or a local signer),
//! and sends client events paced under the server's announced limit.
//!
//! Client events travel one at a time, each followed by a `pusher:ping` fence: the server answers
//! frames of one connection in order, so the next frame back is either a `pusher:error` about that
//! event (refused) or the `pong` (relayed). A refusal with 4301 puts the event back at the head of
//! the queue and backs off, so signaling is never silently dropped and never reordered; any other
//! refusal is reported to the caller of [`RealtimeClient::trigger`].
//!
//! Invariants: at most one client event is unconfirmed at any time; queued events keep their order
//! across refusals and reconnects; after every reconnect each subscription is restored (re-signed
//! for the new socket id) or, when its authorization keeps failing, reported as
//! [`ClientEvent::SubscriptionLost`], so nobody waits on a channel that is gone.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::ids::SocketId;
use crate::limits::CLIENT_EVENTS_PER_SECOND;
use crate::pusher::{ChannelType, Frame, FrameData, FrameLimits, PusherCode, Reconnect};
use crate::signing::{self, Secret};

/// How subscriptions to protected channels get their signature.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A trusted server's `POST /realtime/auth` with a bearer token (form-encoded, as pusher-js).
    Endpoint { url: String, token: String },
    /// Sign locally with the app secret (tools and tests; real clients never hold the secret).
    Signer {
        key: String,
        secret: Secret,
        /// Presence identity: user id and info.
        presence_user: Option<(String, Value)>,
    },
}

/// Which way a traced frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireDirection {
    Sent,
    Received,
    /// Not a frame: the connection opened or closed.
    Note,
}

/// What a [`WireTap`] calls for every frame.
pub type WireObserver = dyn Fn(WireDirection, &str) + Send + Sync;

/// Sees every frame a client sends and receives, e.g. for the conformance runner's wire trace.
#[derive(Clone)]
pub struct WireTap(pub std::sync::Arc<WireObserver>);

impl std::fmt::Debug for WireTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WireTap")
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port/app/{key}` or `wss://...`; `?protocol=7&client=...` is added.
    pub url: String,
    pub auth: Auth,
    /// Client events per second to pace at; by default 90% of the server's announced limit.
    pub events_per_second: Option<f64>,
    /// Sees every frame, if set.
    pub tap: Option<WireTap>,
}

impl ClientConfig {
    /// A client of `url` with `auth`, paced by the server's announced limit, untraced.
    pub fn new(url: impl Into<String>, auth: Auth) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            auth,
            events_per_second: None,
            tap: None,
        }
    }

    fn trace(&self, direction: WireDirection, text: &str) {
        if let Some(tap) = &self.tap {
            (tap.0)(direction, text);
        }
    }
}

/// What a subscription returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// `subscription_succeeded` data (presence: `{"presence": {...}}`).
    pub data: Value,
    /// The strong-privacy channel key from the auth endpoint, if any.
    pub shared_secret: Option<String>,
}

/// Something the connection reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Connected; `max_event_bytes` is the server's announced data limit (or the protocol's).
    Connected {
        socket_id: String,
        max_event_bytes: usize,
    },
    /// The connection closed; `reconnecting` tells whether the client tries again.
    Disconnected {
        code: Option<u16>,
        reconnecting: bool,
    },
    /// Any event on a subscribed channel (client events of others, server events, member events).
    Event {
        channel: Option<String>,
        event: String,
        data: Option<FrameData>,
        user_id: Option<String>,
    },
    /// A client event of ours was refused for the rate limit (4301) and will be sent again.
    Throttled { event: String },
    /// A `pusher:error` not tied to a client event of ours.
    Error { code: Option<u16>, message: String },
    /// After a reconnect, a subscription could not be restored (its authorization failed every
    /// try): the channel is no longer subscribed, and events on it will not arrive.
    SubscriptionLost { channel: String, reason: String },
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("authorization refused for {channel}: {message}")]
    AuthRefused { channel: String, message: String },
    #[error("subscription to {channel} refused: {data}")]
    SubscriptionRefused { channel: String, data: String },
    #[error("client event refused by the server: {message}")]
    EventRefused { code: Option<u16>, message: String },
    #[error("the connection was closed for good ({0:?})")]
    Closed(Option<u16>),
}

enum Cmd {
    Subscribe {
        channel: String,
        reply: oneshot::Sender<Result<Subscription, ClientError>>,
    },
    Trigger {
        channel: String,
        event: String,
        data: Value,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Close,
}

/// A cloneable handle that only sends client events (for a sender task beside the reader).
#[derive(Clone)]
pub struct ClientSender {
    commands: mpsc::Sender<Cmd>,
}

impl ClientSender {
    /// Same as [`RealtimeClient::trigger`].
    pub async fn trigger(
        &self,
        channel: &str,
        event: &str,
        data: Value,
    ) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Cmd::Trigger {
                channel: channel.to_owned(),
                event: event.to_owned(),
                data,
                reply,
            })
            .await
            .map_err(|_| ClientError::Closed(None))?;
        answer.await.map_err(|_| ClientError::Closed(None))?
    }
}

/// A handle to the connection task.
pub struct RealtimeClient {
    commands: mpsc::Sender<Cmd>,
    events: mpsc::Receiver<ClientEvent>,
    socket_id: String,
    max_event_bytes: usize,
}

impl RealtimeClient {
    /// Connects and waits for `connection_established`.
    pub async fn connect(config: ClientConfig) -> Result<RealtimeClient, ClientError> {
        let (commands, command_rx) = mpsc::channel(256);
        let (event_tx, mut events) = mpsc::channel(4096);
        tokio::spawn(run(config, command_rx, event_tx));
        loop {
            match events.recv().await {
                Some(ClientEvent::Connected {
                    socket_id,
                    max_event_bytes,
                }) => {
                    return Ok(RealtimeClient {
                        commands,
                        events,
                        socket_id,
                        max_event_bytes,
                    });
                }
                Some(ClientEvent::Disconnected {
                    code,
                    reconnecting: false,
                }) => {
                    return Err(ClientError::Closed(code));
                }
                Some(_) => continue,
                None => return Err(ClientError::Connect("connection task ended".into())),
            }
        }
    }

    /// The largest event data the server accepts, as it announced (10 KiB if it did not).
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The socket id of the first connection (it changes on reconnect; see `Connected` events).
    pub fn socket_id(&self) -> &str {
        &self.socket_id
    }

    /// Subscribes (signing through the configured auth) and waits for the server's answer.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Cmd::Subscribe {
                channel: channel.to_owned(),
                reply,
            })
            .await
            .map_err(|_| ClientError::Closed(None))?;
        answer.await.map_err(|_| ClientError::Closed(None))?
    }

    /// Queues a client event; resolves once the server relayed it (or refused it for a reason
    /// other than the rate limit, which is retried).
    pub async fn trigger(
        &self,
        channel: &str,
        event: &str,
        data: Value,
    ) -> Result<(), ClientError> {
        self.sender().trigger(channel, event, data).await
    }

    /// A handle for sending from another task.
    pub fn sender(&self) -> ClientSender {
        ClientSender {
            commands: self.commands.clone(),
        }
    }

    /// The next thing the connection reports.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    pub async fn close(self) {
        let _ = self.commands.send(Cmd::Close).await;
    }
}

struct Outgoing {
    channel: String,
    event: String,
    data: Value,
    reply: Option<oneshot::Sender<Result<(), ClientError>>>,
}

struct PendingSub {
    reply: Option<oneshot::Sender<Result<Subscription, ClientError>>>,
    shared_secret: Option<String>,
}

/// A token bucket just under the server's limit: a few events may leave at once (most servers allow
/// a burst of the per-second rate), then they are spaced at the sustained rate.
struct Pacer {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
    paused_until: Instant,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        let now = Instant::now();
        let mut p = Pacer {
            rate: 1.0,
            capacity: 1.0,
            tokens: 0.0,
            at: now,
            paused_until: now,
        };
        p.set_rate(rate);
        p.tokens = p.capacity;
        p
    }

    fn set_rate(&mut self, rate: f64) {
        self.rate = rate.max(0.1);
        self.capacity = (self.rate / 2.0).clamp(1.0, 5.0);
        self.tokens = self.tokens.min(self.capacity);
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.capacity);
        self.at = now;
    }

    /// When the next event may leave.
    fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        let wait = if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        };
        (now + wait).max(self.paused_until)
    }

    fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// After a refusal for the rate: nothing for `d`, then start from an empty bucket.
    fn pause(&mut self, now: Instant, d: Duration) {
        self.paused_until = now + d;
        self.tokens = 0.0;
        self.at = now + d;
    }
}

/// State that survives reconnects.
struct State {
    config: ClientConfig,
    queue: VecDeque<Outgoing>,
    in_flight: Option<Outgoing>,
    subscribed: Vec<String>,
    pending_subs: HashMap<String, PendingSub>,
    events: mpsc::Sender<ClientEvent>,
    http: reqwest::Client,
    pacer: Pacer,
    /// Pongs still to come for fences whose event was already settled by a `pusher:error`.
    fences_to_skip: usize,
    closing: bool,
}

fn text_frame(event: &str, channel: Option<&str>, data: &Value) -> String {
    Frame {
        event: event.to_owned(),
        channel: channel.map(str::to_owned),
        data: Some(FrameData::json(data)),
        user_id: None,
    }
    .to_json()
}

/// How long one authorization request may take.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Pauses between the tries of restoring a subscription after a reconnect: a trusted server that
/// restarts, or is briefly overloaded, does not cost a call its channel.
const RESTORE_PAUSES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// [`authorize`], tried again after each of [`RESTORE_PAUSES`] while it fails.
async fn authorize_with_retries(
    state: &State,
    socket_id: &str,
    channel: &str,
) -> Result<(Value, Option<String>), ClientError> {
    let mut result = authorize(state, socket_id, channel).await;
    for pause in RESTORE_PAUSES {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(pause).await;
        result = authorize(state, socket_id, channel).await;
    }
    result
}

async fn authorize(
    state: &State,
    socket_id: &str,
    channel: &str,
) -> Result<(Value, Option<String>), ClientError> {
    let refused = |message: String| ClientError::AuthRefused {
        channel: channel.to_owned(),
        message,
    };
    let mut data = json!({ "channel": channel });
    let protected = ChannelType::of(channel).is_protected();
    if !protected {
        return Ok((data, None));
    }
    match &state.config.auth {
        Auth::Endpoint { url, token } => {
            let body = format!("socket_id={socket_id}&channel_name={channel}");
            let resp = state
                .http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("Bearer {token}"))
                .timeout(AUTH_TIMEOUT)
                .body(body)
                .send()
                .await
                .map_err(|e| refused(e.to_string()))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| refused(e.to_string()))?;
            if !status.is_success() {
                return Err(refused(format!("{status}: {text}")));
            }
            let grant: Value = serde_json::from_str(&text).map_err(|e| refused(e.to_string()))?;
            data["auth"] = grant["auth"].clone();
            if let Some(cd) = grant.get("channel_data") {
                data["channel_data"] = cd.clone();
            }
            Ok((data, grant["shared_secret"].as_str().map(str::to_owned)))
        }
        Auth::Signer {
            key,
            secret,
            presence_user,
        } => {
            let socket = SocketId::parse(socket_id).map_err(|e| refused(e.to_string()))?;
            let channel_data = match (
                ChannelType::of(channel) == ChannelType::Presence,
                presence_user,
            ) {
                (true, Some((id, info))) => {
                    Some(json!({ "user_id": id, "user_info": info }).to_string())
                }
                (true, None) => {
                    return Err(refused("presence channels need a presence user".into()));
                }
                _ => None,
            };
            data["auth"] = json!(signing::sign_channel(
                key,
                secret,
                &socket,
                channel,
                channel_data.as_deref()
            ));
            if let Some(cd) = channel_data {
                data["channel_data"] = json!(cd);
            }
            Ok((data, None))
        }
    }
}

async fn run(
    config: ClientConfig,
    mut commands: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<ClientEvent>,
) {
    let mut state = State {
        config,
        queue: VecDeque::new(),
        in_flight: None,
        subscribed: Vec::new(),
        pending_subs: HashMap::new(),
        events,
        http: crate::net::http_client(),
        pacer: Pacer::new(f64::from(CLIENT_EVENTS_PER_SECOND) * 0.9),
        fences_to_skip: 0,
        closing: false,
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let code = session(&mut state, &mut commands).await;
        if state.closing {
            return;
        }
        // What the close code's range says (no code: a network failure, back off).
        let advice = code.map_or(Reconnect::AfterBackoff, |c| PusherCode(c).reconnect());
        let reconnecting = advice != Reconnect::Never;
        let _ = state
            .events
            .send(ClientEvent::Disconnected { code, reconnecting })
            .await;
        if !reconnecting {
            for o in state
                .in_flight
                .take()
                .into_iter()
                .chain(state.queue.drain(..))
            {
                if let Some(r) = o.reply {
                    let _ = r.send(Err(ClientError::Closed(code)));
                }
            }
            return;
        }
        // Whatever was unconfirmed is sent again first (receivers drop a duplicate by its seq).
        if let Some(o) = state.in_flight.take() {
            state.queue.push_front(o);
        }
        let wait = match advice {
            Reconnect::Immediately => Duration::ZERO,
            _ => {
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                w
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Sends one text frame, traced.
async fn send_text<S>(sink: &mut S, config: &ClientConfig, text: String) -> Result<(), S::Error>
where
    S: futures_util::Sink<Message> + Unpin,
{
    config.trace(WireDirection::Sent, &text);
    sink.send(Message::Text(text.into())).await
}

/// One connection, until it closes; returns the close code.
async fn session(state: &mut State, commands: &mut mpsc::Receiver<Cmd>) -> Option<u16> {
    let url = if state.config.url.contains('?') {
        format!(
            "{}&protocol=7&client=domvia-calls&version=1",
            state.config.url
        )
    } else {
        format!(
            "{}?protocol=7&client=domvia-calls&version=1",
            state.config.url
        )
    };
    state
        .config
        .trace(WireDirection::Note, &format!("connect {url}"));
    let ws = match crate::net::connect_websocket(&url).await {
        Ok(ws) => ws,
        Err(e) => {
            state
                .config
                .trace(WireDirection::Note, &format!("cannot connect: {e}"));
            return None;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let mut socket_id = String::new();
    loop {
        let ready = !socket_id.is_empty()
            && state.in_flight.is_none()
            && state.fences_to_skip == 0
            && !state.queue.is_empty();
        let wake = if ready {
            state.pacer.ready_at(Instant::now())
        } else {
            Instant::now() + Duration::from_secs(3600)
        };
        tokio::select! {
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map(|f| u16::from(f.code));
                        state.config.trace(WireDirection::Note, &format!("closed by the server: {code:?}"));
                        return code;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        state.config.trace(WireDirection::Note, &format!("connection failed: {e}"));
                        return None;
                    }
                    None => {
                        state.config.trace(WireDirection::Note, "connection ended without a close frame");
                        return None;
                    }
                };
                state.config.trace(WireDirection::Received, &text);
                let Ok(frame) = Frame::parse(text.as_bytes(), &FrameLimits::default()) else { continue };
                match frame.event.as_str() {
                    "pusher:connection_established" => {
                        let data = frame.data.as_ref().and_then(|d| d.to_object().ok()).unwrap_or_default();
                        socket_id = data.get("socket_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                        let announced = data.get("limits").and_then(|l| l["client_events_per_second"].as_f64());
                        let rate = state.config.events_per_second.or(announced.map(|r| r * 0.9)).unwrap_or(f64::from(CLIENT_EVENTS_PER_SECOND) * 0.9);
                        state.pacer.set_rate(rate);
                        let max_event_bytes = data
                            .get("limits")
                            .and_then(|l| l["max_event_bytes"].as_u64())
                            .map_or(crate::limits::MAX_EVENT_DATA_BYTES, |b| b as usize);
                        let _ = state.events.send(ClientEvent::Connected { socket_id: socket_id.clone(), max_event_bytes }).await;
                        // Restore subscriptions, signed for this socket. One whose authorization
                        // keeps failing is given up and said so, never dropped silently: an app
                        // waiting on it would wait for ever.
                        for channel in state.subscribed.clone() {
                            match authorize_with_retries(state, &socket_id, &channel).await {
                                Ok((data, _)) => {
                                    let _ = send_text(&mut sink, &state.config, text_frame("pusher:subscribe", None, &data)).await;
                                }
                                Err(e) => {
                                    state.subscribed.retain(|c| c != &channel);
                                    if let Some(mut pending) = state.pending_subs.remove(&channel)
                                        && let Some(reply) = pending.reply.take()
                                    {
                                        let _ = reply.send(Err(e.clone()));
                                    }
                                    let _ = state.events.send(ClientEvent::SubscriptionLost { channel, reason: e.to_string() }).await;
                                }
                            }
                        }
                    }
                    "pusher:ping" => {
                        let _ = send_text(&mut sink, &state.config, text_frame("pusher:pong", None, &json!({}))).await;
                    }
                    "pusher:pong" => {
                        if state.fences_to_skip > 0 {
                            state.fences_to_skip -= 1;
                        } else if let Some(o) = state.in_flight.take()
                            && let Some(r) = o.reply
                        {
                            // The fence after our in-flight event, with no error before it: relayed.
                            let _ = r.send(Ok(()));
                        }
                    }
                    "pusher:error" => {
                        let data = frame.data.as_ref().and_then(|d| d.to_object().ok()).unwrap_or_default();
                        let code = data.get("code").and_then(Value::as_u64).map(|c| c as u16);
                        let message = data.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
                        match state.in_flight.take() {
                            Some(o) if code == Some(PusherCode::CLIENT_EVENT_RATE_LIMIT.0) => {
                                // Refused for the rate: back to the head of the queue, then wait.
                                let _ = state.events.send(ClientEvent::Throttled { event: o.event.clone() }).await;
                                state.queue.push_front(o);
                                state.fences_to_skip += 1;
                                state.pacer.pause(Instant::now(), Duration::from_secs(1));
                            }
                            Some(o) => {
                                if let Some(r) = o.reply {
                                    let _ = r.send(Err(ClientError::EventRefused { code, message }));
                                }
                                state.fences_to_skip += 1;
                            }
                            None => {
                                let _ = state.events.send(ClientEvent::Error { code, message }).await;
                            }
                        }
                    }
                    "pusher_internal:subscription_succeeded" | "pusher:subscription_error" => {
                        let channel = frame.channel.clone().unwrap_or_default();
                        let data = frame.data.as_ref().and_then(|d| d.to_object().ok()).map(Value::Object).unwrap_or(Value::Null);
                        if let Some(mut pending) = state.pending_subs.remove(&channel)
                            && let Some(reply) = pending.reply.take()
                        {
                            let result = if frame.event == "pusher:subscription_error" {
                                state.subscribed.retain(|c| c != &channel);
                                Err(ClientError::SubscriptionRefused { channel: channel.clone(), data: data.to_string() })
                            } else {
                                Ok(Subscription { data, shared_secret: pending.shared_secret })
                            };
                            let _ = reply.send(result);
                        }
                    }
                    _ => {
                        let _ = state.events.send(ClientEvent::Event {
                            channel: frame.channel,
                            event: frame.event,
                            data: frame.data,
                            user_id: frame.user_id,
                        }).await;
                    }
                }
            }
            command = commands.recv() => match command {
                None | Some(Cmd::Close) => {
                    state.closing = true;
                    let _ = sink.send(Message::Close(None)).await;
                    return Some(1000);
                }
                Some(Cmd::Subscribe { channel, reply }) => {
                    match authorize(state, &socket_id, &channel).await {
                        Ok((data, shared_secret)) => {
                            if !state.subscribed.contains(&channel) {
                                state.subscribed.push(channel.clone());
                            }
                            state.pending_subs.insert(channel, PendingSub { reply: Some(reply), shared_secret });
                            if send_text(&mut sink, &state.config, text_frame("pusher:subscribe", None, &data)).await.is_err() {
                                return None;
                            }
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Some(Cmd::Trigger { channel, event, data, reply }) => {
                    state.queue.push_back(Outgoing { channel, event, data, reply: Some(reply) });
                }
            },
            _ = tokio::time::sleep_until(wake), if ready => {
                let o = state.queue.pop_front().expect("ready means queued");
                let text = text_frame(&o.event, Some(&o.channel), &o.data);
                let fence = text_frame("pusher:ping", None, &json!({}));
                state.in_flight = Some(o);
                state.pacer.take(Instant::now());
                if send_text(&mut sink, &state.config, text).await.is_err()
                    || send_text(&mut sink, &state.config, fence).await.is_err()
                {
                    return None;
                }
            }
        }
    }
}
