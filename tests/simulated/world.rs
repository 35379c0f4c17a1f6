//! The simulated world: one pure hub, any number of pure clients, a signer standing in for the
//! trusted server's auth endpoint, and faults a test can inject (refused connects, failing
//! signatures, a dropped network, a server restart).

use std::collections::VecDeque;

use serde_json::Value;

use domvia_calls::call::Action;
use domvia_calls::call_endpoint::{ActionReport, CallEndpoint, EndpointOutput};
use domvia_calls::channel::CallChannel;
use domvia_calls::envelope::ChannelKey;
use domvia_calls::ids::SocketId;
use domvia_calls::pusher::ChannelType;
use domvia_calls::pusher::Frame;
use domvia_calls::pusher_client::{
    ChannelGrant, ClientError, ClientEvent, ClientOutput, GrantRefused, PusherClient, Subscription,
    TriggerId,
};
use domvia_calls::realtime::{AppConfig, ConnId, Hub, Output};
use domvia_calls::signing::{self, Secret};

pub const KEY: &str = "sim-key";
pub const SECRET: &str = "sim-secret";

/// What one client showed its app, in order, with the time it happened.
#[derive(Debug, Default)]
pub struct Seen {
    pub events: Vec<(u64, ClientEvent)>,
    pub subscribed: Vec<(u64, String, Result<Subscription, ClientError>)>,
    pub triggered: Vec<(u64, TriggerId, Result<(), ClientError>)>,
    /// Every frame the client sent, with its time.
    pub sent: Vec<(u64, String)>,
    /// Times the client asked to connect.
    pub connects: Vec<u64>,
    /// Times the client asked for a signature, with the socket id and channel.
    pub authorizations: Vec<(u64, String, String)>,
}

impl Seen {
    /// The data of the app events named `name` on any channel, in arrival order.
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                ClientEvent::Event { event, data, .. } if event == name => Some(
                    data.as_ref()
                        .and_then(|d| d.to_object().ok())
                        .map_or(Value::Null, Value::Object),
                ),
                _ => None,
            })
            .collect()
    }

    /// Times of the client events named `name` this client sent.
    pub fn sent_times(&self, name: &str) -> Vec<u64> {
        let needle = format!("\"event\":\"{name}\"");
        self.sent
            .iter()
            .filter(|(_, f)| f.contains(&needle))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn count(&self, f: impl Fn(&ClientEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }
}

pub struct SimClient {
    pub machine: PusherClient,
    pub conn: Option<ConnId>,
    pub seen: Seen,
    /// Signatures to refuse before signing again.
    pub failing_grants: usize,
    /// Grants held back instead of answered (to deliver late, e.g. after a reconnect).
    pub hold_grants: bool,
    pub held: Vec<(String, String, Result<ChannelGrant, GrantRefused>)>,
    /// Connects to refuse before accepting again (the server is unreachable).
    pub refused_connects: usize,
    /// The call endpoint this client carries, if it is in a call: frames go to it, its events
    /// are triggered through the client, its timers run with the world's.
    pub endpoint: Option<CallEndpoint>,
    /// What the endpoint gave the app, the trusted server and the log, with times.
    pub actions: Vec<(u64, Action)>,
    pub reports: Vec<(u64, ActionReport)>,
    pub notes: Vec<(u64, String)>,
    nonces: u64,
}

impl SimClient {
    /// The earliest timer of the client and its endpoint.
    fn next_timeout(&self, now: u64) -> Option<u64> {
        let endpoint = self.endpoint.as_ref().and_then(CallEndpoint::poll_timeout);
        self.machine
            .poll_timeout(now)
            .into_iter()
            .chain(endpoint)
            .min()
    }

    fn handle_timeout(&mut self, now: u64) {
        self.machine.handle_timeout(now);
        if let Some(endpoint) = self.endpoint.as_mut() {
            endpoint.handle_timeout(now);
        }
    }

    /// The app actions of the endpoint so far, without their times.
    pub fn actions(&self) -> Vec<&Action> {
        self.actions.iter().map(|(_, a)| a).collect()
    }
}

pub struct World {
    pub hub: Hub,
    pub now: u64,
    pub clients: Vec<SimClient>,
    next_conn: u64,
    /// Frames sent to each connection, for the hub side of a scenario.
    pub wire: VecDeque<(ConnId, String)>,
    /// The trusted server's master key for strong-privacy channel keys, if calls are strong.
    pub channel_master: Option<[u8; 32]>,
}

impl World {
    pub fn new() -> World {
        World::with_app(AppConfig::new("sim-app", KEY, SECRET))
    }

    pub fn with_app(app: AppConfig) -> World {
        World {
            hub: Hub::new(vec![app]),
            now: 1_000,
            clients: Vec::new(),
            next_conn: 1,
            wire: VecDeque::new(),
            channel_master: None,
        }
    }

    /// A new client; it connects on the next `settle`.
    pub fn client(&mut self, events_per_second: Option<f64>) -> usize {
        self.client_of(KEY, events_per_second)
    }

    /// A new client of the app with `key` (which may not exist).
    pub fn client_of(&mut self, key: &str, events_per_second: Option<f64>) -> usize {
        let url = format!("ws://sim/app/{key}");
        self.clients.push(SimClient {
            machine: PusherClient::new(&url, events_per_second, self.now),
            conn: None,
            seen: Seen::default(),
            failing_grants: 0,
            hold_grants: false,
            held: Vec::new(),
            refused_connects: 0,
            endpoint: None,
            actions: Vec::new(),
            reports: Vec::new(),
            notes: Vec::new(),
            nonces: 0,
        });
        self.clients.len() - 1
    }

    /// Two clients subscribed to `private-chat`, the first paced at `rate` (default: announced).
    pub fn subscribed_pair(rate: Option<f64>) -> (World, usize, usize) {
        let mut w = World::new();
        let (a, b) = (w.client(rate), w.client(None));
        w.settle();
        let now = w.now;
        for c in [a, b] {
            w.clients[c].machine.subscribe("private-chat", now);
        }
        w.settle();
        (w, a, b)
    }

    /// Delivers everything that can be delivered at `now`, until nothing moves.
    pub fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.clients.len() {
                moved |= self.drive_client(i);
            }
            while let Some(output) = self.hub.poll_output() {
                moved = true;
                self.deliver(output);
            }
            if !moved {
                return;
            }
        }
    }

    /// Carries out what client `i` asks for at `now` (frames to the hub, outputs); true if any.
    pub fn drive_client(&mut self, i: usize) -> bool {
        let now = self.now;
        let master = self.channel_master;
        let mut moved = false;
        while let Some(text) = self.clients[i].machine.poll_transmit(now) {
            moved = true;
            self.clients[i].seen.sent.push((now, text.clone()));
            if let Some(conn) = self.clients[i].conn {
                self.hub.message(conn, text.as_bytes(), false, now);
            }
        }
        while let Some(output) = self.clients[i].machine.poll_output() {
            moved = true;
            let c = &mut self.clients[i];
            match output {
                ClientOutput::Connect { url } => {
                    c.seen.connects.push(now);
                    if c.refused_connects > 0 {
                        c.refused_connects -= 1;
                        c.machine.handle_closed(None, now);
                        continue;
                    }
                    let conn = ConnId(self.next_conn);
                    self.next_conn += 1;
                    c.conn = Some(conn);
                    c.machine.handle_connected(now);
                    let (path, query) = url
                        .strip_prefix("ws://sim")
                        .and_then(|u| u.split_once('?'))
                        .expect("the client's URL");
                    self.hub.open(conn, path, query, None, conn.0 * 7919, now);
                }
                ClientOutput::Disconnect => {
                    if let Some(conn) = c.conn.take() {
                        self.hub.closed(conn, now);
                    }
                    c.machine.handle_closed(Some(1000), now);
                }
                ClientOutput::Authorize { socket_id, channel } => {
                    c.seen
                        .authorizations
                        .push((now, socket_id.clone(), channel.clone()));
                    let grant = if c.failing_grants > 0 {
                        c.failing_grants -= 1;
                        Err(GrantRefused("503 Service Unavailable: restarting".into()))
                    } else {
                        Ok(sign(&socket_id, &channel, master))
                    };
                    if c.hold_grants {
                        c.held.push((socket_id, channel, grant));
                    } else {
                        c.machine.handle_grant(&socket_id, &channel, grant, now);
                    }
                }
                ClientOutput::Subscribed { channel, result } => {
                    c.seen.subscribed.push((now, channel, result))
                }
                ClientOutput::Triggered { id, result } => {
                    if let (Some(endpoint), Err(e)) = (c.endpoint.as_mut(), &result) {
                        endpoint.handle_send_refused(&format!("{id:?}"), &e.to_string(), now);
                    }
                    c.seen.triggered.push((now, id, result))
                }
                ClientOutput::Event(e) => {
                    if let Some(endpoint) = c.endpoint.as_mut() {
                        match &e {
                            ClientEvent::Event {
                                channel,
                                event,
                                data,
                                user_id,
                            } => endpoint.handle_frame(
                                &Frame {
                                    event: event.clone(),
                                    channel: channel.clone(),
                                    data: data.clone(),
                                    user_id: user_id.clone(),
                                },
                                now,
                            ),
                            ClientEvent::SubscriptionLost { channel, reason }
                                if channel == endpoint.channel_name() =>
                            {
                                endpoint.handle_channel_lost(reason, now)
                            }
                            _ => {}
                        }
                    }
                    c.seen.events.push((now, e))
                }
            }
        }
        moved | self.drive_endpoint(i)
    }

    /// Carries out what client `i`'s call endpoint produced, per its driving rule.
    fn drive_endpoint(&mut self, i: usize) -> bool {
        let now = self.now;
        let c = &mut self.clients[i];
        let Some(endpoint) = c.endpoint.as_mut() else {
            return false;
        };
        let mut moved = false;
        loop {
            c.nonces += 1;
            let mut nonce = [0u8; 24];
            nonce[..8].copy_from_slice(&c.nonces.to_be_bytes());
            let Some(t) = endpoint.poll_transmit(nonce, now) else {
                break;
            };
            moved = true;
            c.machine.trigger(endpoint.channel_name(), &t.event, t.data);
        }
        while let Some(output) = endpoint.poll_output() {
            moved = true;
            match output {
                EndpointOutput::Action(a) => c.actions.push((now, a)),
                EndpointOutput::Report(r) => c.reports.push((now, r)),
                EndpointOutput::Note(n) => c.notes.push((now, n)),
            }
        }
        moved
    }

    /// Carries out one hub output.
    pub fn deliver(&mut self, output: Output) {
        let now = self.now;
        match output {
            Output::Send { conn, text } => {
                self.wire.push_back((conn, text.clone()));
                if let Some(c) = self.clients.iter_mut().find(|c| c.conn == Some(conn)) {
                    c.machine.handle_text(&text, now);
                }
            }
            Output::Close { conn, code, .. } => {
                if let Some(c) = self.clients.iter_mut().find(|c| c.conn == Some(conn)) {
                    c.conn = None;
                    c.machine.handle_closed(Some(code.0), now);
                }
            }
            Output::Webhook { .. } => {}
        }
    }

    /// Runs until `until_ms`, jumping from timer to timer; the hub's own timers tick each jump.
    pub fn run_until(&mut self, until_ms: u64) {
        loop {
            // Everything due now, including timers that what is due now sets for now.
            for _ in 0..100 {
                self.settle();
                let now = self.now;
                if !self
                    .clients
                    .iter()
                    .any(|c| c.next_timeout(now).is_some_and(|t| t <= now))
                {
                    break;
                }
                for c in &mut self.clients {
                    c.handle_timeout(now);
                }
            }
            if self.now >= until_ms {
                return;
            }
            let now = self.now;
            self.now = self
                .clients
                .iter()
                .filter_map(|c| c.next_timeout(now))
                .filter(|&t| t > now)
                .min()
                .unwrap_or(until_ms)
                .min(until_ms);
            self.hub.tick(self.now);
            for c in &mut self.clients {
                c.handle_timeout(self.now);
            }
        }
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        self.run_until(until);
    }

    /// The network under a client fails: neither side hears a close frame.
    pub fn drop_network(&mut self, i: usize) {
        let now = self.now;
        if let Some(conn) = self.clients[i].conn.take() {
            self.hub.closed(conn, now);
        }
        self.clients[i].machine.handle_closed(None, now);
    }

    /// Releases every held grant of client `i`, in order.
    pub fn release_grants(&mut self, i: usize) {
        let now = self.now;
        let c = &mut self.clients[i];
        c.hold_grants = false;
        for (socket_id, channel, grant) in std::mem::take(&mut c.held) {
            c.machine.handle_grant(&socket_id, &channel, grant, now);
        }
    }
}

/// What the trusted server's auth endpoint would answer (private channels only here), with the
/// channel key of a call channel when calls are strong.
pub fn sign(socket_id: &str, channel: &str, master: Option<[u8; 32]>) -> ChannelGrant {
    assert_eq!(ChannelType::of(channel), ChannelType::Private);
    let socket = SocketId::parse(socket_id).expect("the hub's socket id");
    let shared_secret = match (master, CallChannel::parse(channel)) {
        (Some(master), Ok(call)) => Some(ChannelKey::derive(&master, &call).shared_secret()),
        _ => None,
    };
    ChannelGrant {
        auth: signing::sign_channel(KEY, &Secret::new(SECRET), &socket, channel, None),
        channel_data: None,
        shared_secret,
    }
}
