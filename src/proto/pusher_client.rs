//! The reference realtime client's protocol as a pure state machine: one Pusher protocol 7
//! connection that reconnects by close-code class with backoff, restores its subscriptions on
//! every new socket, and sends client events paced under the server's announced limit, one at a
//! time, each fenced by a `pusher:ping`.
//!
//! The fence: a server answers the frames of one connection in order, so the next frame back
//! after a client event and its ping is either a `pusher:error` about that event (refused) or the
//! `pong` (relayed). A refusal with 4301 puts the event back at the head of the queue and pauses
//! sending for a second, so signaling is never silently dropped and never reordered; any other
//! refusal is the event's result.
//!
//! Invariants: at most one client event is unconfirmed at any time; queued events keep their
//! order across refusals and reconnects; after every new socket each subscription is restored
//! (re-signed for the socket id) or, when its authorization keeps failing, reported as
//! [`ClientEvent::SubscriptionLost`], so nobody waits on a channel that is gone; a grant signed
//! for an earlier socket is never sent.
//!
//! Time is milliseconds on the shell's monotonic clock; the machine reads no clock, opens no
//! socket and makes no HTTP request (signatures come back through [`PusherClient::handle_grant`]).
//! [`crate::client`] is the tokio driver around it.

use std::collections::{HashMap, VecDeque};

use serde_json::{Value, json};

use crate::limits::{CLIENT_EVENTS_PER_SECOND, MAX_EVENT_DATA_BYTES};
use crate::pusher::{
    ChannelType, ConnectionEstablished, ErrorData, Frame, FrameData, FrameLimits, ProtocolEvent,
    PusherCode, Reconnect,
};

/// The share of the server's announced client-event rate the client paces at: under the limit
/// with room for clock drift between the two ends.
pub const PACING_SAFETY: f64 = 0.9;
/// How long sending pauses after a refusal for the rate (4301).
pub const THROTTLE_PAUSE_MS: u64 = 1_000;
/// Pauses between the tries of restoring a subscription on a new socket: a trusted server that
/// restarts, or is briefly overloaded, does not cost a call its channel.
pub const RESTORE_PAUSES_MS: [u64; 3] = [250, 1_000, 2_000];
/// The first reconnect backoff; it doubles up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: u64 = 1_000;
pub const MAX_BACKOFF_MS: u64 = 30_000;

/// What the client is, as the server sees it in the query string.
const CLIENT_QUERY: &str = "protocol=7&client=domvia-calls&version=1";

/// What a subscription returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// `subscription_succeeded` data (presence: `{"presence": {...}}`).
    pub data: Value,
    /// The strong-privacy channel key from the auth endpoint, if any.
    pub shared_secret: Option<String>,
}

/// A signature for one protected channel, as an auth endpoint (or a local signer) gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelGrant {
    pub auth: String,
    /// Presence channels: the member data that was signed, as a JSON string.
    pub channel_data: Option<String>,
    /// Strong-privacy calls: the channel key the trusted server hands members.
    pub shared_secret: Option<String>,
}

/// Why a channel could not be signed: what the auth endpoint (or local signer) answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GrantRefused(pub String);

impl From<String> for GrantRefused {
    fn from(message: String) -> GrantRefused {
        GrantRefused(message)
    }
}

impl From<&str> for GrantRefused {
    fn from(message: &str) -> GrantRefused {
        GrantRefused(message.to_owned())
    }
}

/// Something the connection reports to the app.
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
    /// On a new socket, a subscription could not be restored (its authorization failed every
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

/// Names one [`PusherClient::trigger`] so its result can be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TriggerId(pub u64);

/// What the shell must do, besides sending [`PusherClient::poll_transmit`]'s frames.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOutput {
    /// Open a WebSocket to `url` now, then report `handle_connected` or `handle_closed`.
    Connect { url: String },
    /// Close the WebSocket (the app closed the client), then report `handle_closed`.
    Disconnect,
    /// Sign `channel` for `socket_id` and answer with [`PusherClient::handle_grant`].
    Authorize { socket_id: String, channel: String },
    /// The answer to [`PusherClient::subscribe`].
    Subscribed {
        channel: String,
        result: Result<Subscription, ClientError>,
    },
    /// The result of [`PusherClient::trigger`]: relayed, or refused for a reason other than rate.
    Triggered {
        id: TriggerId,
        result: Result<(), ClientError>,
    },
    /// For the app.
    Event(ClientEvent),
}

/// A token bucket just under the server's limit: a few events may leave at once (most servers
/// allow a burst of the per-second rate), then they are spaced at the sustained rate.
#[derive(Debug, Clone)]
struct Pacer {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at_ms: u64,
    paused_until_ms: u64,
}

impl Pacer {
    fn new(rate: f64, now_ms: u64) -> Pacer {
        let mut p = Pacer {
            rate: 1.0,
            capacity: 1.0,
            tokens: 0.0,
            at_ms: now_ms,
            paused_until_ms: now_ms,
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

    fn tokens_at(&self, now_ms: u64) -> f64 {
        let elapsed_s = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        (self.tokens + elapsed_s * self.rate).min(self.capacity)
    }

    /// When the next event may leave.
    fn ready_at(&self, now_ms: u64) -> u64 {
        let tokens = self.tokens_at(now_ms);
        let wait = if tokens >= 1.0 {
            0
        } else {
            ((1.0 - tokens) / self.rate * 1000.0).ceil() as u64
        };
        (now_ms + wait).max(self.paused_until_ms)
    }

    fn take(&mut self, now_ms: u64) {
        self.tokens = self.tokens_at(now_ms) - 1.0;
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// After a refusal for the rate: nothing for `pause_ms`, then start from an empty bucket.
    fn pause(&mut self, now_ms: u64, pause_ms: u64) {
        self.paused_until_ms = now_ms + pause_ms;
        self.tokens = 0.0;
        self.at_ms = now_ms + pause_ms;
    }
}

#[derive(Debug, Clone)]
struct Outgoing {
    id: TriggerId,
    channel: String,
    event: String,
    data: Value,
}

/// The WebSocket's state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    /// No socket; open one at this time.
    Waiting { connect_at_ms: u64 },
    /// `Connect` was emitted; the shell is opening the socket.
    Connecting,
    /// The socket is open; `socket_id` is set once `connection_established` arrived.
    Open { socket_id: Option<String> },
    /// Closed for good (the app closed the client, or the close code says never to reconnect).
    Ended,
}

/// A protected channel waiting for its signature.
#[derive(Debug, Clone)]
struct Authorizing {
    socket_id: String,
    /// Restoring on a new socket (failures are retried) rather than the app's first subscribe.
    restore: bool,
    /// Failed tries so far.
    failures: usize,
    /// When to ask again after a failure; `None` while a request is out.
    retry_at_ms: Option<u64>,
}

/// One Pusher client connection, across reconnects.
///
/// Driving rule (quinn-proto's): after creating the machine and after every input (`handle_*`,
/// `subscribe`, `trigger`, `close`), the shell drains, in this order, [`PusherClient::poll_transmit`]
/// until `None` (sending each frame in order on the open socket), then
/// [`PusherClient::poll_output`] until `None` (carrying out each output), then sleeps until
/// [`PusherClient::poll_timeout`] or the next input, calling [`PusherClient::handle_timeout`] when
/// the time comes.
#[derive(Debug)]
pub struct PusherClient {
    url: String,
    events_per_second: Option<f64>,
    link: Link,
    backoff_ms: u64,
    closing: bool,
    next_trigger: u64,
    queue: VecDeque<Outgoing>,
    in_flight: Option<Outgoing>,
    /// Pongs still to come for fences whose event a `pusher:error` already settled.
    fences_to_skip: usize,
    pacer: Pacer,
    /// Channels to keep subscribed, in the order the app asked for them.
    subscribed: Vec<String>,
    /// Channels whose subscribe the app still waits to hear about, with the grant's channel key.
    awaiting_answer: HashMap<String, Option<String>>,
    authorizing: HashMap<String, Authorizing>,
    transmit: VecDeque<String>,
    outputs: VecDeque<ClientOutput>,
    /// Test-only: one deliberate protocol violation.
    #[cfg(feature = "defects")]
    defect: Option<crate::client_defect::ClientDefect>,
}

impl PusherClient {
    /// A client of `url` (`ws://host:port/app/{key}` or `wss://...`); it asks to connect at once.
    /// `events_per_second` overrides the pacing rate (by default [`PACING_SAFETY`] of the
    /// server's announced limit).
    pub fn new(url: &str, events_per_second: Option<f64>, now_ms: u64) -> PusherClient {
        PusherClient {
            url: connect_url(url),
            events_per_second,
            link: Link::Waiting {
                connect_at_ms: now_ms,
            },
            backoff_ms: FIRST_BACKOFF_MS,
            closing: false,
            next_trigger: 0,
            queue: VecDeque::new(),
            in_flight: None,
            fences_to_skip: 0,
            pacer: Pacer::new(f64::from(CLIENT_EVENTS_PER_SECOND) * PACING_SAFETY, now_ms),
            subscribed: Vec::new(),
            awaiting_answer: HashMap::new(),
            authorizing: HashMap::new(),
            transmit: VecDeque::new(),
            outputs: VecDeque::new(),
            #[cfg(feature = "defects")]
            defect: None,
        }
        .with_connect_due(now_ms)
    }

    /// Test-only: breaks one rule on purpose (see [`crate::client_defect`]).
    #[cfg(feature = "defects")]
    pub fn with_defect(mut self, defect: Option<crate::client_defect::ClientDefect>) -> Self {
        self.defect = defect;
        self
    }

    #[cfg(feature = "defects")]
    fn has_defect(&self, d: crate::client_defect::ClientDefect) -> bool {
        self.defect == Some(d)
    }

    #[cfg(not(feature = "defects"))]
    fn has_defect(&self, _: crate::client_defect::ClientDefect) -> bool {
        false
    }

    fn with_connect_due(mut self, now_ms: u64) -> PusherClient {
        self.handle_timeout(now_ms);
        self
    }

    /// The URL the client connects to, query included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current socket id, once the server sent one.
    pub fn socket_id(&self) -> Option<&str> {
        match &self.link {
            Link::Open { socket_id } => socket_id.as_deref(),
            _ => None,
        }
    }

    /// Whether the client is closed for good.
    pub fn is_ended(&self) -> bool {
        self.link == Link::Ended
    }

    // ---- inputs -------------------------------------------------------------------------------

    /// The socket the last [`ClientOutput::Connect`] asked for is open.
    pub fn handle_connected(&mut self, _now_ms: u64) {
        if self.link == Link::Connecting {
            self.link = Link::Open { socket_id: None };
            // Pongs for the old socket's fences will never come.
            self.fences_to_skip = 0;
        }
    }

    /// The socket closed (or could not be opened: `code` is `None` for a network failure).
    pub fn handle_closed(&mut self, code: Option<u16>, now_ms: u64) {
        if self.link == Link::Ended {
            return;
        }
        self.transmit.clear();
        // Signatures asked for the old socket are useless now; the new socket asks again. An
        // app's first subscribe that was being signed joins the channels to restore.
        for (channel, auth) in self.authorizing.drain() {
            if !auth.restore && !self.subscribed.contains(&channel) {
                self.subscribed.push(channel);
            }
        }
        if self.closing {
            self.end(None);
            return;
        }
        // What the close code's range says (no code: a network failure, back off).
        let mut advice = code.map_or(Reconnect::AfterBackoff, |c| PusherCode(c).reconnect());
        if advice == Reconnect::Never
            && self.has_defect(crate::client_defect::ClientDefect::ReconnectAfterFinalCode)
        {
            advice = Reconnect::AfterBackoff;
        }
        let reconnecting = advice != Reconnect::Never;
        self.outputs
            .push_back(ClientOutput::Event(ClientEvent::Disconnected {
                code,
                reconnecting,
            }));
        if !reconnecting {
            self.end(code);
            return;
        }
        // Whatever was unconfirmed is sent again first (receivers drop a duplicate by its seq).
        if let Some(o) = self.in_flight.take() {
            self.queue.push_front(o);
        }
        let wait = match advice {
            Reconnect::Immediately => 0,
            _ => {
                let w = self.backoff_ms;
                self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
                w
            }
        };
        self.link = Link::Waiting {
            connect_at_ms: now_ms + wait,
        };
    }

    /// Closed for good: everything still waiting gets `Closed(code)`.
    fn end(&mut self, code: Option<u16>) {
        self.link = Link::Ended;
        for o in self
            .in_flight
            .take()
            .into_iter()
            .chain(self.queue.drain(..))
        {
            self.outputs.push_back(ClientOutput::Triggered {
                id: o.id,
                result: Err(ClientError::Closed(code)),
            });
        }
        let mut waiting: Vec<String> = self.awaiting_answer.drain().map(|(c, _)| c).collect();
        waiting.sort();
        for channel in waiting {
            self.outputs.push_back(ClientOutput::Subscribed {
                channel,
                result: Err(ClientError::Closed(code)),
            });
        }
        self.authorizing.clear();
    }

    /// One text message from the server.
    pub fn handle_text(&mut self, text: &str, now_ms: u64) {
        let Ok(frame) = Frame::parse(text.as_bytes(), &FrameLimits::default()) else {
            return;
        };
        match ProtocolEvent::of(&frame.event) {
            Some(ProtocolEvent::ConnectionEstablished) => self.established(&frame, now_ms),
            Some(ProtocolEvent::Ping) => {
                self.send_frame(ProtocolEvent::Pong.name(), None, json!({}))
            }
            Some(ProtocolEvent::Pong) => {
                if self.fences_to_skip > 0 {
                    self.fences_to_skip -= 1;
                } else if let Some(o) = self.in_flight.take() {
                    // The fence after our in-flight event, with no error before it: relayed.
                    self.outputs.push_back(ClientOutput::Triggered {
                        id: o.id,
                        result: Ok(()),
                    });
                }
            }
            Some(ProtocolEvent::Error) => self.refused(ErrorData::from_frame(&frame), now_ms),
            Some(ProtocolEvent::SubscriptionSucceeded | ProtocolEvent::SubscriptionError) => {
                let channel = frame.channel.clone().unwrap_or_default();
                let data = frame
                    .data
                    .as_ref()
                    .and_then(|d| d.to_object().ok())
                    .map_or(Value::Null, Value::Object);
                let Some(shared_secret) = self.awaiting_answer.remove(&channel) else {
                    return;
                };
                let result = if frame.event == ProtocolEvent::SubscriptionError.name() {
                    self.subscribed.retain(|c| c != &channel);
                    Err(ClientError::SubscriptionRefused {
                        channel: channel.clone(),
                        data: data.to_string(),
                    })
                } else {
                    Ok(Subscription {
                        data,
                        shared_secret,
                    })
                };
                self.outputs
                    .push_back(ClientOutput::Subscribed { channel, result });
            }
            _ => self
                .outputs
                .push_back(ClientOutput::Event(ClientEvent::Event {
                    channel: frame.channel,
                    event: frame.event,
                    data: frame.data,
                    user_id: frame.user_id,
                })),
        }
    }

    fn established(&mut self, frame: &Frame, now_ms: u64) {
        let Ok(established) = ConnectionEstablished::from_frame(frame) else {
            return;
        };
        if !matches!(self.link, Link::Open { .. }) {
            return;
        }
        self.backoff_ms = FIRST_BACKOFF_MS;
        let socket_id = established.socket_id.clone();
        self.link = Link::Open {
            socket_id: Some(socket_id.clone()),
        };
        let rate = self
            .events_per_second
            .or(established
                .client_events_per_second
                .map(|r| r * PACING_SAFETY))
            .unwrap_or(f64::from(CLIENT_EVENTS_PER_SECOND) * PACING_SAFETY);
        self.pacer.set_rate(rate);
        self.outputs
            .push_back(ClientOutput::Event(ClientEvent::Connected {
                socket_id: socket_id.clone(),
                max_event_bytes: established.max_event_bytes.unwrap_or(MAX_EVENT_DATA_BYTES),
            }));
        // Restore every subscription on this socket, signed for it.
        for channel in self.subscribed.clone() {
            self.request_subscription(channel, &socket_id, true, now_ms);
        }
    }

    /// A `pusher:error`: about our in-flight client event if one is unconfirmed, else general.
    fn refused(&mut self, error: ErrorData, now_ms: u64) {
        match self.in_flight.take() {
            Some(o)
                if error.code == Some(PusherCode::CLIENT_EVENT_RATE_LIMIT.0)
                    && self.has_defect(crate::client_defect::ClientDefect::DropRateRefused) =>
            {
                self.outputs.push_back(ClientOutput::Triggered {
                    id: o.id,
                    result: Ok(()),
                });
                self.fences_to_skip += 1;
            }
            Some(o) if error.code == Some(PusherCode::CLIENT_EVENT_RATE_LIMIT.0) => {
                // Refused for the rate: back to the head of the queue, then wait.
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::Throttled {
                        event: o.event.clone(),
                    }));
                self.queue.push_front(o);
                self.fences_to_skip += 1;
                self.pacer.pause(now_ms, THROTTLE_PAUSE_MS);
            }
            Some(o) => {
                self.outputs.push_back(ClientOutput::Triggered {
                    id: o.id,
                    result: Err(ClientError::EventRefused {
                        code: error.code,
                        message: error.message,
                    }),
                });
                self.fences_to_skip += 1;
            }
            None => self
                .outputs
                .push_back(ClientOutput::Event(ClientEvent::Error {
                    code: error.code,
                    message: error.message,
                })),
        }
    }

    /// The answer to a [`ClientOutput::Authorize`]: a grant, or why signing failed.
    pub fn handle_grant(
        &mut self,
        socket_id: &str,
        channel: &str,
        grant: Result<ChannelGrant, GrantRefused>,
        now_ms: u64,
    ) {
        // A grant for an earlier socket is useless: the current socket asked for its own.
        if self.socket_id() != Some(socket_id) {
            return;
        }
        let Some(auth) = self.authorizing.get_mut(channel) else {
            return;
        };
        if auth.socket_id != socket_id || auth.retry_at_ms.is_some() {
            return;
        }
        match grant {
            Ok(grant) => {
                self.authorizing.remove(channel);
                if !self.subscribed.iter().any(|c| c == channel) {
                    self.subscribed.push(channel.to_owned());
                }
                if let Some(secret) = self.awaiting_answer.get_mut(channel) {
                    *secret = grant.shared_secret.clone();
                }
                let mut data = json!({ "channel": channel, "auth": grant.auth });
                if let Some(cd) = grant.channel_data {
                    data["channel_data"] = json!(cd);
                }
                self.send_frame(ProtocolEvent::Subscribe.name(), None, data);
            }
            Err(GrantRefused(message)) => {
                auth.failures += 1;
                if auth.restore && auth.failures <= RESTORE_PAUSES_MS.len() {
                    auth.retry_at_ms = Some(now_ms + RESTORE_PAUSES_MS[auth.failures - 1]);
                    return;
                }
                let restore = auth.restore;
                self.authorizing.remove(channel);
                self.subscribed.retain(|c| c != channel);
                let error = ClientError::AuthRefused {
                    channel: channel.to_owned(),
                    message,
                };
                if self.awaiting_answer.remove(channel).is_some() {
                    self.outputs.push_back(ClientOutput::Subscribed {
                        channel: channel.to_owned(),
                        result: Err(error.clone()),
                    });
                }
                // Given up, and said so, never dropped silently: an app waiting on the channel
                // would wait for ever.
                if restore {
                    self.outputs
                        .push_back(ClientOutput::Event(ClientEvent::SubscriptionLost {
                            channel: channel.to_owned(),
                            reason: error.to_string(),
                        }));
                }
            }
        }
    }

    /// Time passed: reconnects and authorization retries that are due.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Link::Waiting { connect_at_ms } = self.link
            && connect_at_ms <= now_ms
        {
            self.link = Link::Connecting;
            self.outputs.push_back(ClientOutput::Connect {
                url: self.url.clone(),
            });
        }
        let mut due: Vec<String> = self
            .authorizing
            .iter()
            .filter(|(_, a)| a.retry_at_ms.is_some_and(|t| t <= now_ms))
            .map(|(c, _)| c.clone())
            .collect();
        due.sort();
        for channel in due {
            if let Some(auth) = self.authorizing.get_mut(&channel) {
                auth.retry_at_ms = None;
                self.outputs.push_back(ClientOutput::Authorize {
                    socket_id: auth.socket_id.clone(),
                    channel,
                });
            }
        }
    }

    // ---- commands -----------------------------------------------------------------------------

    /// Subscribes to `channel`; the answer comes as [`ClientOutput::Subscribed`]. A protected
    /// channel is signed first ([`ClientOutput::Authorize`]).
    pub fn subscribe(&mut self, channel: &str, now_ms: u64) {
        if self.link == Link::Ended {
            self.outputs.push_back(ClientOutput::Subscribed {
                channel: channel.to_owned(),
                result: Err(ClientError::Closed(None)),
            });
            return;
        }
        self.awaiting_answer.insert(channel.to_owned(), None);
        match self.socket_id().map(str::to_owned) {
            Some(socket_id) => {
                self.request_subscription(channel.to_owned(), &socket_id, false, now_ms)
            }
            // Not connected yet: the channel is subscribed on the next socket.
            None => {
                if !self.subscribed.iter().any(|c| c == channel) {
                    self.subscribed.push(channel.to_owned());
                }
            }
        }
    }

    fn request_subscription(
        &mut self,
        channel: String,
        socket_id: &str,
        restore: bool,
        _now_ms: u64,
    ) {
        if !ChannelType::of(&channel).is_protected() {
            if !self.subscribed.contains(&channel) {
                self.subscribed.push(channel.clone());
            }
            self.send_frame(
                ProtocolEvent::Subscribe.name(),
                None,
                json!({ "channel": channel }),
            );
            return;
        }
        self.authorizing.insert(
            channel.clone(),
            Authorizing {
                socket_id: socket_id.to_owned(),
                restore,
                failures: 0,
                retry_at_ms: None,
            },
        );
        self.outputs.push_back(ClientOutput::Authorize {
            socket_id: socket_id.to_owned(),
            channel,
        });
    }

    /// Queues a client event; its result comes as [`ClientOutput::Triggered`] once the server
    /// relayed it or refused it for a reason other than the rate (which is retried).
    pub fn trigger(&mut self, channel: &str, event: &str, data: Value) -> TriggerId {
        let id = TriggerId(self.next_trigger);
        self.next_trigger += 1;
        let outgoing = Outgoing {
            id,
            channel: channel.to_owned(),
            event: event.to_owned(),
            data,
        };
        if self.link == Link::Ended {
            self.outputs.push_back(ClientOutput::Triggered {
                id,
                result: Err(ClientError::Closed(None)),
            });
        } else {
            self.queue.push_back(outgoing);
        }
        id
    }

    /// Closes the client for good.
    pub fn close(&mut self) {
        if self.closing || self.link == Link::Ended {
            return;
        }
        self.closing = true;
        match self.link {
            Link::Open { .. } | Link::Connecting => {
                self.outputs.push_back(ClientOutput::Disconnect)
            }
            _ => self.end(None),
        }
    }

    // ---- outputs ------------------------------------------------------------------------------

    /// The next text frame to send on the open socket. A queued client event leaves when the
    /// socket is established, nothing is unconfirmed and the pacer allows it at `now_ms`; it is
    /// followed by its fence.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<String> {
        if let Some(text) = self.transmit.pop_front() {
            return Some(text);
        }
        let paced = !self.has_defect(crate::client_defect::ClientDefect::NoPacing);
        if self.can_send_event() && (!paced || self.pacer.ready_at(now_ms) <= now_ms) {
            let o = self.queue.pop_front()?;
            self.pacer.take(now_ms);
            let text = event_frame(&o.event, Some(&o.channel), &o.data);
            self.transmit
                .push_back(event_frame(ProtocolEvent::Ping.name(), None, &json!({})));
            self.in_flight = Some(o);
            return Some(text);
        }
        None
    }

    /// The next thing the shell must do.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// When [`PusherClient::handle_timeout`] (or, for a paced event, `poll_transmit`) has work.
    pub fn poll_timeout(&self, now_ms: u64) -> Option<u64> {
        let reconnect = match self.link {
            Link::Waiting { connect_at_ms } => Some(connect_at_ms),
            _ => None,
        };
        let paced = self.can_send_event().then(|| self.pacer.ready_at(now_ms));
        let retries = self.authorizing.values().filter_map(|a| a.retry_at_ms);
        reconnect.into_iter().chain(paced).chain(retries).min()
    }

    /// Whether the head of the queue may leave (pacing aside). An event waits while its
    /// channel is being signed on this socket: sent before the subscription it would be refused,
    /// and the events behind it wait too, so order is kept.
    fn can_send_event(&self) -> bool {
        self.socket_id().is_some()
            && self.in_flight.is_none()
            && self.fences_to_skip == 0
            && self
                .queue
                .front()
                .is_some_and(|o| !self.authorizing.contains_key(&o.channel))
    }

    fn send_frame(&mut self, event: &str, channel: Option<&str>, data: Value) {
        if self.socket_id().is_some() {
            self.transmit.push_back(event_frame(event, channel, &data));
        }
    }
}

/// `url` with the protocol version and client name the server expects in the query.
pub fn connect_url(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{CLIENT_QUERY}")
}

fn event_frame(event: &str, channel: Option<&str>, data: &Value) -> String {
    Frame {
        event: event.to_owned(),
        channel: channel.map(str::to_owned),
        data: Some(FrameData::json(data)),
        user_id: None,
    }
    .to_json()
}
