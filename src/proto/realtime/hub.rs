//! The realtime server's protocol state machine: every connection, channel and presence member of
//! every app, and the decisions Pusher protocol 7 asks for.
//!
//! How a shell drives it is documented once, on [`Hub`].
//!
//! Invariants:
//! - a connection id is in `conns` from a successful `open` until the hub emits `Output::Close`
//!   for it or the shell reports `closed`; nothing is sent to it afterwards;
//! - `channels` holds only occupied channels, and a channel's subscribers are exactly the
//!   connections whose `subscriptions` name it;
//! - a presence member exists while at least one of its user's connections is subscribed, so member
//!   events fire once per user, not per connection;
//! - `per_app`, `per_address` and `per_user` count exactly the open connections of an app, of a
//!   client address, and of a user (each connection once per user it has been verified as), so
//!   the connection caps are checked in constant time before any work for a new connection.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde_json::{Map, Value, json};

use crate::ids::SocketId;
use crate::limits::{
    MAX_CHANNEL_NAME_LEN, MAX_FRAME_BYTES, MAX_JSON_DEPTH, MAX_PRESENCE_USER_ID_LEN,
    MAX_PRESENCE_USER_INFO_BYTES,
};
use crate::pusher::webhook::WebhookEvent;
use crate::pusher::{
    ChannelType, Frame, FrameData, FrameError, FrameLimits, ProtocolEvent, PusherCode,
};
use crate::realtime::{AppConfig, Defect};
use crate::signing;

/// Identifies one WebSocket connection; chosen by the shell, unique for the hub's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send one text frame.
    Send { conn: ConnId, text: String },
    /// Send a close frame with this code and reason, then drop the connection.
    Close {
        conn: ConnId,
        code: PusherCode,
        reason: String,
    },
    /// Deliver one webhook event of the app with this index in the hub's app list.
    Webhook { app: usize, event: WebhookEvent },
}

/// A clock the hub sets from the time it is given, so rate limiters never read the system clock.
#[derive(Debug, Clone, Default)]
struct PassedClock(Arc<AtomicU64>);

impl PassedClock {
    fn set(&self, now_ms: u64) {
        // Monotonic even if a caller's time steps back.
        self.0.fetch_max(now_ms, Ordering::Relaxed);
    }
}

impl Clock for PassedClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, PassedClock, NoOpMiddleware<Duration>>;

struct Conn {
    app: usize,
    /// The client's address as the connection caps count it (see [`address_key`]).
    address: Option<IpAddr>,
    /// The users this connection was verified as: its sign-in, its presence memberships, the
    /// owner of a call inbox it subscribed to. Each counts towards that user's connection cap.
    users: BTreeSet<String>,
    socket_id: SocketId,
    limiter: Limiter,
    /// Channel name → the presence user id this connection joined as (None on other channels).
    subscriptions: BTreeMap<String, Option<String>>,
    last_seen_ms: u64,
    ping_sent_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct Member {
    info: Value,
    connections: usize,
}

#[derive(Default)]
struct Channel {
    subscribers: BTreeSet<ConnId>,
    members: BTreeMap<String, Member>,
}

/// An HTTP API request as received; the path is the raw (undecoded) request path.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
}

/// The answer to an HTTP API request: a status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Value,
}

impl HttpResponse {
    pub(super) fn ok(body: Value) -> Self {
        HttpResponse { status: 200, body }
    }
    pub(super) fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        HttpResponse {
            status,
            body: json!({ "error": message.into(), "code": code }),
        }
    }
}

/// Pusher's channel-name characters: `[A-Za-z0-9_\-=@,.;]`.
pub(crate) fn is_pusher_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

fn is_protected(channel: &str) -> bool {
    ChannelType::of(channel).is_protected()
}

/// `pusher:error` text with a stable `type` besides Pusher's `code` and `message`.
fn error_frame(code: Option<PusherCode>, kind: &str, message: &str) -> String {
    let data = json!({
        "code": code.map(|c| c.0),
        "message": message,
        "type": kind,
    });
    Frame {
        event: ProtocolEvent::Error.name().into(),
        channel: None,
        data: Some(FrameData::json(&data)),
        user_id: None,
    }
    .to_json()
}

/// A frame whose `data` is a JSON string, as Pusher servers send their own events.
fn event_frame(event: &str, channel: Option<&str>, data: &Value) -> String {
    Frame {
        event: event.into(),
        channel: channel.map(str::to_owned),
        data: Some(FrameData::Text(data.to_string())),
        user_id: None,
    }
    .to_json()
}

/// The realtime server's state.
///
/// Driving rule (as in quinn-proto): the I/O shell feeds inputs with `open`, `message`, `closed`,
/// `overflow`, `tick` and `http`, each with the current time in milliseconds on a monotonic clock,
/// and after every input drains [`Hub::poll_output`] until it returns `None`, carrying out each
/// [`Output`] in order. The hub never blocks, never reads a clock and never touches a socket.
pub struct Hub {
    apps: Vec<AppConfig>,
    conns: HashMap<ConnId, Conn>,
    channels: HashMap<(usize, String), Channel>,
    clock: PassedClock,
    out: VecDeque<Output>,
    sockets_opened: u64,
    per_app: HashMap<usize, usize>,
    per_address: HashMap<(usize, IpAddr), usize>,
    per_user: HashMap<(usize, String), usize>,
}

/// The address a connection cap counts: an IPv4 address as it is (an IPv4-mapped IPv6 address as
/// its IPv4 address), an IPv6 address by its /64 prefix, the block one subscriber or host is
/// usually given, so that rotating through one's own /64 does not escape the cap.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// The user a signed subscription proves the connection belongs to, beyond presence: only the
/// owner's sign-in gets a call inbox (`private-call-inbox.{user}`) signed ([CHAN-021]). The
/// channel grammar decides what an inbox is, so a name it refuses proves nothing.
fn inbox_owner(channel: &str) -> Option<String> {
    match crate::channel::ChannelName::parse(channel) {
        Ok(crate::channel::ChannelName::Inbox(inbox)) => Some(inbox.user_id().to_string()),
        _ => None,
    }
}

impl Hub {
    pub fn new(apps: Vec<AppConfig>) -> Hub {
        Hub {
            apps,
            conns: HashMap::new(),
            channels: HashMap::new(),
            clock: PassedClock::default(),
            out: VecDeque::new(),
            sockets_opened: 0,
            per_app: HashMap::new(),
            per_address: HashMap::new(),
            per_user: HashMap::new(),
        }
    }

    pub fn apps(&self) -> &[AppConfig] {
        &self.apps
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The next thing the shell must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn send(&mut self, conn: ConnId, text: String) {
        self.out.push_back(Output::Send { conn, text });
    }

    fn webhook(&mut self, app: usize, event: WebhookEvent) {
        if self.apps[app].webhook_url.is_some() {
            self.out.push_back(Output::Webhook { app, event });
        }
    }

    /// Refuses a connection attempt: a `pusher:error` then the close.
    fn refuse(&mut self, conn: ConnId, code: PusherCode, message: String) {
        let name = code.name().unwrap_or("error");
        self.send(conn, error_frame(Some(code), name, &message));
        self.out.push_back(Output::Close {
            conn,
            code,
            reason: message,
        });
    }

    /// A WebSocket connection from `peer` (if the shell knows it) was accepted at `path?query`.
    /// `random` is a fresh random number from the shell; it makes socket ids unpredictable.
    pub fn open(
        &mut self,
        conn: ConnId,
        path: &str,
        query: &str,
        peer: Option<IpAddr>,
        random: u64,
        now_ms: u64,
    ) {
        self.clock.set(now_ms);
        let Some(key) = path.strip_prefix("/app/").filter(|k| !k.contains('/')) else {
            return self.refuse(
                conn,
                PusherCode::PATH_NOT_FOUND,
                format!("path {path} is not /app/{{key}}"),
            );
        };
        let Some(app) = self.apps.iter().position(|a| a.key == key) else {
            return self.refuse(
                conn,
                PusherCode::APP_NOT_FOUND,
                format!("app key {key} does not exist"),
            );
        };
        let protocol = query.split('&').find_map(|p| p.strip_prefix("protocol="));
        match protocol.map(str::parse::<u32>) {
            None => {
                return self.refuse(
                    conn,
                    PusherCode::NO_PROTOCOL_VERSION,
                    "no protocol version supplied (add ?protocol=7)".into(),
                );
            }
            Some(Err(_)) => {
                return self.refuse(
                    conn,
                    PusherCode::INVALID_VERSION_FORMAT,
                    format!(
                        "protocol version {:?} is not a number",
                        protocol.unwrap_or("")
                    ),
                );
            }
            Some(Ok(v)) if !(5..=7).contains(&v) => {
                return self.refuse(
                    conn,
                    PusherCode::UNSUPPORTED_PROTOCOL_VERSION,
                    format!("protocol version {v} is not supported (5 to 7 are)"),
                );
            }
            Some(Ok(_)) => {}
        }
        let cfg = &self.apps[app];
        if self.per_app.get(&app).copied().unwrap_or(0) >= cfg.max_connections {
            return self.refuse(
                conn,
                PusherCode::OVER_CAPACITY,
                format!(
                    "app {} is at its limit of {} connections",
                    cfg.id, cfg.max_connections
                ),
            );
        }
        let address = peer.map(address_key);
        if let Some(a) = address
            && self.per_address.get(&(app, a)).copied().unwrap_or(0)
                >= cfg.max_connections_per_address
        {
            return self.refuse(
                conn,
                PusherCode::OVER_CAPACITY,
                format!(
                    "this address has {} connections to app {}, the most it may have",
                    cfg.max_connections_per_address, cfg.id
                ),
            );
        }
        self.sockets_opened += 1;
        let socket_id = SocketId::parse(&format!(
            "{}.{}",
            random % 1_000_000_000,
            self.sockets_opened
        ))
        .expect("digits.digits");
        let quota = Quota::per_second(
            NonZeroU32::new(cfg.client_events_per_second).unwrap_or(NonZeroU32::MIN),
        )
        .allow_burst(NonZeroU32::new(cfg.client_event_burst).unwrap_or(NonZeroU32::MIN));
        let established = json!({
            "socket_id": socket_id.as_str(),
            "activity_timeout": cfg.activity_timeout_secs,
            "limits": {
                "client_events_per_second": cfg.client_events_per_second,
                "max_event_bytes": cfg.max_event_bytes,
            },
        });
        *self.per_app.entry(app).or_default() += 1;
        if let Some(a) = address {
            *self.per_address.entry((app, a)).or_default() += 1;
        }
        self.conns.insert(
            conn,
            Conn {
                app,
                address,
                users: BTreeSet::new(),
                socket_id,
                limiter: RateLimiter::direct_with_clock(quota, self.clock.clone()),
                subscriptions: BTreeMap::new(),
                last_seen_ms: now_ms,
                ping_sent_ms: None,
            },
        );
        self.send(
            conn,
            event_frame(
                ProtocolEvent::ConnectionEstablished.name(),
                None,
                &established,
            ),
        );
    }

    /// The socket of `conn` is gone (closed by the peer or failed).
    pub fn closed(&mut self, conn: ConnId, _now_ms: u64) {
        self.remove(conn);
    }

    /// The shell could not queue output for `conn`: the consumer is too slow. It is closed with
    /// 4100 (over capacity) rather than allowed to grow memory without bound.
    pub fn overflow(&mut self, conn: ConnId, _now_ms: u64) {
        let never_closes = self
            .conns
            .get(&conn)
            .is_some_and(|c| self.apps[c.app].has_defect(Defect::NeverCloseSlowConsumer));
        if self.conns.contains_key(&conn) && !never_closes {
            self.out.push_back(Output::Close {
                conn,
                code: PusherCode::OVER_CAPACITY,
                reason: "client is not reading fast enough; outbound queue full".into(),
            });
            self.remove(conn);
        }
    }

    /// Closes every connection with 4200 so clients reconnect (to another node, or after restart).
    pub fn shutdown(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            self.out.push_back(Output::Close {
                conn,
                code: PusherCode::GENERIC_RECONNECT,
                reason: "server shutting down".into(),
            });
            self.remove(conn);
        }
    }

    /// Pings silent connections and closes those that did not answer in time.
    pub fn tick(&mut self, now_ms: u64) {
        self.clock.set(now_ms);
        let mut pings = Vec::new();
        let mut dead = Vec::new();
        for (&id, c) in &mut self.conns {
            let cfg = &self.apps[c.app];
            match c.ping_sent_ms {
                Some(sent) if now_ms.saturating_sub(sent) >= cfg.pong_timeout_secs * 1000 => {
                    dead.push(id)
                }
                None if now_ms.saturating_sub(c.last_seen_ms)
                    >= cfg.activity_timeout_secs * 1000 =>
                {
                    c.ping_sent_ms = Some(now_ms);
                    pings.push(id);
                }
                _ => {}
            }
        }
        pings.sort();
        dead.sort();
        for id in pings {
            self.send(
                id,
                event_frame(ProtocolEvent::Ping.name(), None, &json!({})),
            );
        }
        for id in dead {
            self.out.push_back(Output::Close {
                conn: id,
                code: PusherCode::PONG_NOT_RECEIVED,
                reason: "pong reply not received".into(),
            });
            self.remove(id);
        }
    }

    /// One WebSocket message from `conn`. `binary` is true for binary messages, which are not part
    /// of the Pusher protocol.
    pub fn message(&mut self, conn: ConnId, bytes: &[u8], binary: bool, now_ms: u64) {
        self.clock.set(now_ms);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen_ms = now_ms;
        c.ping_sent_ms = None;
        let app = c.app;
        if binary {
            return self.send(
                conn,
                error_frame(
                    None,
                    "frame.binary",
                    "binary messages are not part of the Pusher protocol; send JSON text",
                ),
            );
        }
        let cfg = &self.apps[app];
        let limits = FrameLimits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_depth: MAX_JSON_DEPTH,
            max_event_data_bytes: if cfg.has_defect(Defect::IgnoreEventSizeLimit) {
                MAX_FRAME_BYTES
            } else {
                cfg.max_event_bytes
            },
        };
        let frame = match Frame::parse(bytes, &limits) {
            Ok(f) => f,
            Err(e) if self.apps[app].has_defect(Defect::CloseOnMalformedJson) => {
                return self.out.push_back(Output::Close {
                    conn,
                    code: PusherCode::GENERIC_RECONNECT,
                    reason: e.to_string(),
                });
            }
            Err(e) => return self.send(conn, error_frame(None, e.code(), &e.to_string())),
        };
        match ProtocolEvent::of(&frame.event) {
            Some(ProtocolEvent::Ping) if self.apps[app].has_defect(Defect::NoPong) => {}
            Some(ProtocolEvent::Ping) => self.send(
                conn,
                event_frame(ProtocolEvent::Pong.name(), None, &json!({})),
            ),
            Some(ProtocolEvent::Pong) => {}
            Some(ProtocolEvent::Subscribe) => self.subscribe(conn, &frame),
            Some(ProtocolEvent::Unsubscribe) => self.unsubscribe_frame(conn, &frame),
            Some(ProtocolEvent::Signin) => self.signin(conn, &frame),
            None if frame.event.starts_with("client-") => self.client_event(conn, frame),
            // Server-to-client events and unknown names are not for a client to send.
            _ => {
                let message = format!(
                    "event {:?} is not a protocol event or a client- event",
                    frame.event
                );
                self.send(conn, error_frame(None, "event.unsupported", &message));
            }
        }
    }

    fn data_object(&mut self, conn: ConnId, frame: &Frame) -> Option<Map<String, Value>> {
        let result = frame
            .data
            .as_ref()
            .ok_or(FrameError::DataNotObject)
            .and_then(FrameData::to_object);
        match result {
            Ok(m) => Some(m),
            Err(e) => {
                let message = format!("{}: {e}", frame.event);
                self.send(conn, error_frame(None, e.code(), &message));
                None
            }
        }
    }

    fn remove(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let channels: Vec<String> = c.subscriptions.keys().cloned().collect();
        for channel in channels {
            self.unsubscribe(conn, &channel);
        }
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: K) {
            if let Some(n) = counts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&key);
                }
            }
        }
        release(&mut self.per_app, c.app);
        if let Some(a) = c.address {
            release(&mut self.per_address, (c.app, a));
        }
        for user in c.users {
            release(&mut self.per_user, (c.app, user));
        }
    }

    /// Counts `conn` as a connection of `user` (once per user), or says why it may not be: the
    /// user already has `max_connections_per_user` connections.
    fn claim_user(&mut self, conn: ConnId, user: &str) -> Result<(), String> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if c.users.contains(user) {
            return Ok(());
        }
        let cfg = &self.apps[c.app];
        let count = self.per_user.entry((c.app, user.to_owned())).or_default();
        if *count >= cfg.max_connections_per_user {
            let most = cfg.max_connections_per_user;
            if *count == 0 {
                self.per_user.remove(&(c.app, user.to_owned()));
            }
            return Err(format!(
                "user {user} has {most} connections, the most one user may have"
            ));
        }
        *count += 1;
        c.users.insert(user.to_owned());
        Ok(())
    }

    /// Sends `text` to every subscriber of the channel except `except`.
    fn broadcast(&mut self, app: usize, channel: &str, except: Option<ConnId>, text: &str) {
        let Some(ch) = self.channels.get(&(app, channel.to_owned())) else {
            return;
        };
        let targets: Vec<ConnId> = ch
            .subscribers
            .iter()
            .copied()
            .filter(|&s| Some(s) != except)
            .collect();
        for target in targets {
            self.send(target, text.to_owned());
        }
    }

    /// Sends a server event to a channel's subscribers (HTTP API).
    pub(super) fn deliver(
        &mut self,
        app: usize,
        channel: &str,
        except: Option<ConnId>,
        text: &str,
    ) {
        self.broadcast(app, channel, except, text);
    }

    pub(super) fn conn_by_socket(&self, app: usize, socket_id: &str) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.app == app && c.socket_id.as_str() == socket_id)
            .map(|(&id, _)| id)
    }

    /// Occupied channels of an app with their presence user counts, sorted by name.
    pub(super) fn occupied(&self, app: usize) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .channels
            .iter()
            .filter(|((a, _), _)| *a == app)
            .map(|((_, name), ch)| (name.clone(), ch.members.len()))
            .collect();
        out.sort();
        out
    }

    /// Subscriber and presence user counts of one channel (zeros when vacant).
    pub fn channel_counts(&self, app: usize, channel: &str) -> (usize, usize) {
        self.channels
            .get(&(app, channel.to_owned()))
            .map_or((0, 0), |ch| (ch.subscribers.len(), ch.members.len()))
    }

    /// User ids present on a presence channel, sorted.
    pub fn presence_ids(&self, app: usize, channel: &str) -> Vec<String> {
        self.channels
            .get(&(app, channel.to_owned()))
            .map(|ch| ch.members.keys().cloned().collect())
            .unwrap_or_default()
    }
}

mod client_events;
mod subscriptions;
#[cfg(test)]
mod tests;
