//! Call sessions: the I/O shell that joins a [`CallMachine`] (decisions), a [`RealtimeClient`]
//! (signaling), a [`PrivacyGuard`] (sealing, replay and downgrade checks) and a [`MediaPeer`]
//! (WebRTC). Shaped like what app developers expect: place a call or wait for an invitation,
//! accept or decline, then run until media is up or the call ends.
//!
//! Events leave in the order the machine produced them (one sender task); incoming events pass the
//! channel checks, the privacy guard and chunk reassembly before the machine sees them. Local ICE
//! candidates are batched for a short window so a call setup takes a handful of events per side.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::call::{Action, CallMachine, Phase};
use crate::channel::{CallChannel, ChannelName};
use crate::client::{Auth, ClientConfig, ClientEvent, RealtimeClient};
use crate::envelope::{ChannelKey, PrivacyGuard, seal};
use crate::event::chunk::ChunkAssembler;
use crate::event::{
    CallEvent, EndReason, EventBody, Incoming, Privacy, Refusal, RingTimeoutMs, Sdp, parse_frame,
};
use crate::ids::{DevicePartyId, UserId};
use crate::media::{MediaPeer, PeerOptions, PeerSignal};
use crate::pusher::Frame;

/// How long local candidates are collected into one event.
const CANDIDATE_BATCH_WINDOW: Duration =
    Duration::from_millis(crate::limits::CANDIDATE_BATCH_WINDOW_MS);

/// One device of a user, with the endpoints it talks to.
#[derive(Debug, Clone)]
pub struct Device {
    /// `ws://host:port/app/{key}`.
    pub realtime_url: String,
    /// The trusted server's base URL, `http://host:port`.
    pub trusted_url: String,
    pub token: String,
    pub user: UserId,
    pub party: DevicePartyId,
}

impl Device {
    /// A device with a fresh random party id.
    pub fn new(
        realtime_url: &str,
        trusted_url: &str,
        token: &str,
        user: &str,
    ) -> Result<Device, String> {
        let party = format!("{user}-{:016x}", rand::random::<u64>());
        Ok(Device {
            realtime_url: realtime_url.to_owned(),
            trusted_url: trusted_url.to_owned(),
            token: token.to_owned(),
            user: UserId::parse(user).map_err(|e| format!("user id {user} {e}"))?,
            party: DevicePartyId::parse(&party).map_err(|e| e.to_string())?,
        })
    }

    async fn client(&self) -> Result<RealtimeClient, String> {
        RealtimeClient::connect(ClientConfig::new(
            self.realtime_url.clone(),
            Auth::Endpoint {
                url: format!("{}/realtime/auth", self.trusted_url),
                token: self.token.clone(),
            },
        ))
        .await
        .map_err(|e| e.to_string())
    }
}

impl Device {
    /// A request to the trusted server as this device's user; the JSON answer, or an error that
    /// names the request, the status and what the server said.
    async fn trusted(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = crate::net::http_client()
            .request(method.clone(), format!("{}{path}", self.trusted_url))
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = serde_json::from_str(&resp.text().await.map_err(|e| e.to_string())?)
            .unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {body}"));
        }
        Ok(body)
    }

    /// `GET /ice-servers`: STUN and fresh TURN credentials for this user.
    async fn ice_servers(&self) -> Result<Vec<(Vec<String>, String, String)>, String> {
        Ok(ice_servers(
            &self.trusted("GET", "/ice-servers", None).await?,
        ))
    }
}

/// How long a device keeps retrying a report of its user's action: longer than a trusted server
/// takes to restart, shorter than any ring timeout a report could still change.
const REPORT_RETRY_FOR: Duration = Duration::from_secs(60);

/// Posts one action report until the trusted server answers it: a 2xx (applied, or already
/// known) or a refusal other than 408/429 ends it; a connection failure, a 5xx, 408 or 429 is
/// retried with doubling pauses (250 ms up to 4 s) for [`REPORT_RETRY_FOR`]. The trusted server
/// applies a repeated report once ([SRV-025]), so a retry after a lost answer is harmless.
async fn report_until_acknowledged(device: &Device, path: &str, body: Option<Value>) {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let mut req = crate::net::http_client()
            .post(format!("{}{path}", device.trusted_url))
            .header("authorization", format!("Bearer {}", device.token))
            .timeout(Duration::from_secs(10));
        if let Some(body) = &body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let retry = match req.send().await {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retryable = status >= 500 || status == 408 || status == 429;
                if !retryable {
                    tracing::warn!(
                        status,
                        path,
                        "the trusted server refused a call action report"
                    );
                    return;
                }
                format!("status {status}")
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() + pause > REPORT_RETRY_FOR {
            tracing::warn!(path, error = %retry, "gave up reporting a call action to the trusted server");
            return;
        }
        tracing::debug!(path, error = %retry, "call action report not acknowledged; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(4));
    }
}

/// A timeline of what happened, with times since the session began.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    start: Option<Instant>,
    pub entries: Vec<(Duration, String)>,
}

impl Timeline {
    fn begin() -> Timeline {
        Timeline {
            start: Some(Instant::now()),
            entries: Vec::new(),
        }
    }
    fn note(&mut self, what: impl Into<String>) {
        let at = self.start.map_or(Duration::ZERO, |s| s.elapsed());
        self.entries.push((at, what.into()));
    }
    /// When this timeline began (its entries are times since then).
    pub fn began(&self) -> Option<Instant> {
        self.start
    }

    /// When the first entry starting with `prefix` happened.
    pub fn at(&self, prefix: &str) -> Option<Duration> {
        self.entries
            .iter()
            .find(|(_, e)| e.starts_with(prefix))
            .map(|(t, _)| *t)
    }
}

/// A device's invitation inbox, subscribed and waiting.
pub struct Inbox {
    device: Device,
    client: RealtimeClient,
    epoch: Instant,
}

impl Inbox {
    /// Connects and subscribes to `private-call-inbox.{user}`.
    pub async fn open(device: &Device) -> Result<Inbox, String> {
        let client = device.client().await?;
        client
            .subscribe(&format!("private-call-inbox.{}", device.user))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Inbox {
            device: device.clone(),
            client,
            epoch: Instant::now(),
        })
    }
}

/// When [`CallSession::run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunUntil {
    /// The data channel carried the ping and its echo, and RTP arrived.
    MediaUp,
    /// The call ended.
    Ended,
    /// Keep handling events until the time given to `run` is up (an in-call pause).
    Elapsed,
}

/// How a run finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub phase: Phase,
    pub events_sent: usize,
    pub throttled: usize,
}

/// The signaling half of a call on this device: the call machine on a subscribed call channel,
/// with sealing, replay and downgrade checks, chunk reassembly and ordered sending. It is the API
/// for apps with their own WebRTC stack: read [`Signaling::next_event`] for ringing, accepted,
/// offers, answers, candidates, media state and the end, and answer with `send_offer`,
/// `send_answer`, `add_local_candidates`, `send_media_state`, `hang_up`, ...
///
/// [`Action::Send`] never surfaces: sending is this type's job. Commands queue their events and
/// send them at once; notices for the app wait in order until `next_event` returns them.
pub struct Signaling {
    machine: CallMachine,
    client: RealtimeClient,
    channel: CallChannel,
    guard: PrivacyGuard,
    key: Option<ChannelKey>,
    assembler: ChunkAssembler,
    outbox: mpsc::UnboundedSender<(String, Value)>,
    /// Signaling events the server refused (for a reason other than the rate).
    failures: mpsc::UnboundedReceiver<String>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub timeline: Timeline,
    epoch: Instant,
    throttled: usize,
    notices: std::collections::VecDeque<Action>,
    /// Events on the call channel this device refused, in order, with the rule each broke.
    refusals: Vec<Refusal>,
    /// The device, when the call goes through a trusted server: accept, decline and hang-up are
    /// also reported to it directly ([SRV-016], [SRV-025]).
    reporter: Option<Device>,
}

/// A call in progress on this device: [`Signaling`] plus the reference WebRTC peer.
pub struct CallSession {
    sig: Signaling,
    peer: MediaPeer,
    pending_candidates: Vec<crate::event::IceCandidate>,
    candidates_due: Option<tokio::time::Instant>,
    media_flags: (bool, bool),
}

/// The answer of `POST /calls`.
#[derive(Debug, Clone)]
pub struct PlacedCall {
    pub call_id: String,
    pub channel: String,
    pub response: Value,
}

fn ice_servers(response: &Value) -> Vec<(Vec<String>, String, String)> {
    response["ice_servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let urls = s["urls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect();
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
            (urls, text("username"), text("credential"))
        })
        .collect()
}

impl Signaling {
    /// Joins the call channel of `machine` over `client` (already connected, with the auth it
    /// needs): the way to run a call without a trusted server in the loop, or with one of your
    /// own. `privacy` must match the call; a strong call needs `shared_secret` from the auth.
    pub async fn join(
        machine: CallMachine,
        client: RealtimeClient,
        privacy: Privacy,
    ) -> Result<Signaling, String> {
        let epoch = Instant::now();
        Signaling::open(machine, client, privacy, Timeline::begin(), epoch).await
    }

    /// Caller: starts the call by sending `call.started` on the channel. Without a trusted server
    /// to invite the callees' inboxes, callee devices must already be on the channel (or learn of
    /// it from the app).
    pub fn start(
        &mut self,
        callees: Vec<UserId>,
        media: crate::event::MediaSelection,
        ring: RingTimeoutMs,
        privacy: Privacy,
    ) -> Result<(), String> {
        let now = self.now_ms();
        self.machine
            .start(callees, media, ring, privacy, now)
            .map_err(|e| e.to_string())?;
        self.flush()
    }

    async fn open(
        machine: CallMachine,
        client: RealtimeClient,
        privacy: Privacy,
        mut timeline: Timeline,
        epoch: Instant,
    ) -> Result<Signaling, String> {
        let channel = machine.channel().clone();
        let sub = client
            .subscribe(&channel.to_string())
            .await
            .map_err(|e| e.to_string())?;
        timeline.note(format!("subscribed to {channel}"));
        let key = match (privacy, &sub.shared_secret) {
            (Privacy::Strong, Some(secret)) => {
                Some(ChannelKey::from_shared_secret(secret).map_err(|e| e.to_string())?)
            }
            (Privacy::Strong, None) => {
                return Err(
                    "a strong-privacy call needs shared_secret from the auth endpoint".into(),
                );
            }
            _ => None,
        };
        let mut guard = PrivacyGuard::new(channel.clone(), privacy);
        if let Some(k) = &key {
            guard.install_key(k.clone());
        }
        // Events leave one at a time, in order; each waits for the server's confirmation.
        let (outbox, mut queue) = mpsc::unbounded_channel::<(String, Value)>();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = sent.clone();
        let channel_name = channel.to_string();
        let client_for_send = client.sender();
        let (failures_tx, failures) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some((name, data)) = queue.recv().await {
                if let Err(e) = client_for_send.trigger(&channel_name, &name, data).await {
                    // A refused signaling event cannot be skipped: the call cannot go on.
                    let _ = failures_tx.send(format!("{name} refused: {e}"));
                    return;
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Ok(Signaling {
            machine,
            client,
            channel,
            guard,
            key,
            assembler: ChunkAssembler::new(),
            outbox,
            failures,
            sent,
            timeline,
            epoch,
            throttled: 0,
            notices: std::collections::VecDeque::new(),
            refusals: Vec::new(),
            reporter: None,
        })
    }

    /// Starts a call through the trusted server (`POST /calls`) and joins its channel.
    pub async fn place(device: &Device, request: Value) -> Result<(Signaling, PlacedCall), String> {
        let epoch = Instant::now();
        let mut timeline = Timeline::begin();
        let client = device.client().await?;
        let body = device.trusted("POST", "/calls", Some(&request)).await?;
        let placed = PlacedCall {
            call_id: body["call_id"].as_str().unwrap_or_default().to_owned(),
            channel: body["channel"].as_str().unwrap_or_default().to_owned(),
            response: body.clone(),
        };
        timeline.note(format!("call {} created; invitations sent", placed.call_id));
        let channel = CallChannel::parse(&placed.channel).map_err(|e| e.to_string())?;
        let privacy: Privacy =
            serde_json::from_value(body["privacy"].clone()).unwrap_or(Privacy::Standard);
        let machine = CallMachine::caller(channel, device.party.clone(), device.user.clone())
            .with_server_ring_timeout()
            .with_event_limit(client.max_event_bytes(), privacy == Privacy::Strong);
        let mut sig = Signaling::open(machine, client, privacy, timeline, epoch).await?;
        sig.reporter = Some(device.clone());
        let callees: Vec<UserId> =
            serde_json::from_value(request["callees"].clone()).unwrap_or_default();
        let ring = RingTimeoutMs::new(body["ring_timeout_ms"].as_u64().unwrap_or(60_000))
            .unwrap_or_default();
        let media: crate::event::MediaSelection = serde_json::from_value(request["media"].clone())
            .unwrap_or(crate::event::MediaSelection {
                audio: true,
                video: false,
                screen: false,
            });
        let now = sig.now_ms();
        sig.machine
            .start(callees, media, ring, privacy, now)
            .map_err(|e| e.to_string())?;
        sig.flush()?;
        Ok((sig, placed))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn phase(&self) -> Phase {
        self.machine.phase()
    }

    pub fn role(&self) -> crate::call::Role {
        self.machine.role()
    }

    pub fn channel(&self) -> &CallChannel {
        &self.channel
    }

    /// The call's id.
    pub fn call_id(&self) -> &crate::ids::CallId {
        self.channel.call_id()
    }

    /// Counts so far.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            phase: self.machine.phase(),
            events_sent: self.sent.load(std::sync::atomic::Ordering::Relaxed),
            throttled: self.throttled,
        }
    }

    fn send(&mut self, event: CallEvent) -> Result<(), String> {
        // The machine already chunked large SDP; sensitive events are sealed here.
        let (name, data) = match (&self.key, event.kind().is_sensitive()) {
            (Some(k), true) => {
                let sealed =
                    seal(k, &self.channel, &event, rand::random()).map_err(|e| e.to_string())?;
                (sealed.wire_name(), Value::Object(sealed.to_data()))
            }
            _ => (event.wire_name(), Value::Object(event.to_data())),
        };
        self.timeline.note(format!("sent {name}"));
        self.outbox
            .send((name, data))
            .map_err(|_| "sender stopped".to_owned())
    }

    /// Sends what the machine wants sent; keeps everything else for `next_event`.
    fn flush(&mut self) -> Result<(), String> {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Send(e) => self.send(e)?,
                Action::PeerRinging { .. } => {
                    self.timeline.note("ringing");
                    self.notices.push_back(action);
                }
                Action::Ended { reason, by_remote } => {
                    self.timeline.note(format!(
                        "ended: {reason:?}{}",
                        if by_remote { " (remote)" } else { "" }
                    ));
                    self.notices.push_back(action);
                }
                other => self.notices.push_back(other),
            }
        }
        Ok(())
    }

    fn handle_frame(&mut self, frame: Frame) {
        let on_this_channel = frame
            .channel
            .as_deref()
            .is_some_and(|c| c == self.channel.to_string());
        let incoming = match parse_frame(&frame) {
            Ok((ChannelName::Call(ch), incoming)) if ch == self.channel => incoming,
            Ok(_) => return,
            // Only call events on this call's channel concern it; other events of a shared
            // connection (member events, other channels) are not refusals.
            Err(e) if on_this_channel && crate::event::is_call_event_name(&frame.event) => {
                self.refuse(Refusal::of_event(&frame.event, &e));
                return;
            }
            Err(_) => return,
        };
        let event = match self.guard.receive(incoming) {
            Ok(e) => e,
            Err(e) => {
                self.refuse(Refusal::new(&frame.event, e.code(), e.requirement(), &e));
                return;
            }
        };
        let now = self.now_ms();
        match self.assembler.push(event, now) {
            Ok(Some(whole)) => {
                self.machine.handle_event(&whole, now);
            }
            Ok(None) => {}
            Err(e) => self.refuse(Refusal::new(&frame.event, e.code(), e.requirement(), &e)),
        }
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.timeline.note(format!("{refusal} ({})", refusal.code));
        self.refusals.push(refusal);
    }

    /// Events on the call channel this device refused so far, in order, each with the rule it
    /// broke: the first one usually explains why a call did not go on.
    pub fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }

    /// The next thing the app must act on (never [`Action::Send`]), or `None` at `deadline`.
    /// Cancel-safe: it only awaits channel receives, so it can sit in a `select!`.
    pub async fn next_event(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Action>, String> {
        loop {
            self.flush()?;
            if let Some(a) = self.notices.pop_front() {
                return Ok(Some(a));
            }
            // The machine's own deadlines (ring and connect timeouts) come before the caller's.
            let timeout = self
                .machine
                .next_timeout()
                .map(|ms| tokio::time::Instant::from_std(self.epoch + Duration::from_millis(ms)));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
                _ = async { tokio::time::sleep_until(timeout.unwrap_or(deadline)).await }, if timeout.is_some_and(|t| t < deadline) => {
                    let now = self.now_ms();
                    self.machine.handle_timeout(now);
                }
                event = self.client.next_event() => match event {
                    Some(ClientEvent::Event { channel, event, data, user_id }) => {
                        self.handle_frame(Frame { event, channel, data, user_id });
                    }
                    Some(ClientEvent::Throttled { .. }) => self.throttled += 1,
                    Some(ClientEvent::SubscriptionLost { channel, reason }) if channel == self.channel.to_string() => {
                        // Nothing more can be heard on the call channel: the call cannot go on.
                        self.timeline.note(format!("lost the call channel: {reason}"));
                        let now = self.now_ms();
                        self.machine.fail(EndReason::SignalingFailed, now);
                    }
                    Some(_) => {}
                    None => return Err("signaling connection ended".into()),
                },
                Some(failure) = self.failures.recv() => {
                    self.timeline.note(format!("signaling failed: {failure}"));
                    let now = self.now_ms();
                    self.machine.fail(EndReason::SignalingFailed, now);
                }
            }
        }
    }

    /// Tells the trusted server what this user did ([SRV-025]), in the background, on every
    /// channel kind: on a private channel this is the only identity the record may use
    /// ([SRV-016]); on a presence channel it is the second path beside the realtime server's
    /// webhook, which a realtime server that dies with a queue in memory loses. The call goes on
    /// whatever the report's fate; see [`report_until_acknowledged`].
    fn report(&mut self, action: &'static str, body: Option<Value>) {
        let Some(device) = self.reporter.clone() else {
            return;
        };
        let path = format!("/calls/{}/{action}", self.channel.call_id());
        self.timeline
            .note(format!("reported {action} to the trusted server"));
        tokio::spawn(async move { report_until_acknowledged(&device, &path, body).await });
    }

    /// The local user answers.
    pub fn accept(&mut self) -> Result<(), String> {
        let now = self.now_ms();
        self.machine.accept(now).map_err(|e| e.to_string())?;
        self.timeline.note("accepted");
        self.report("accept", None);
        self.flush()
    }

    /// The local user declines (or is busy).
    pub fn decline(&mut self, busy: bool) -> Result<(), String> {
        let now = self.now_ms();
        self.machine.decline(busy, now).map_err(|e| e.to_string())?;
        self.report("decline", Some(serde_json::json!({ "busy": busy })));
        self.flush()
    }

    /// Hangs up (or cancels, before an answer).
    pub fn hang_up(&mut self) -> Result<(), String> {
        let now = self.now_ms();
        self.machine.hang_up(now).map_err(|e| e.to_string())?;
        // The machine decided the reason (hang-up, or cancelled before an answer).
        if let Phase::Ended(reason) = self.machine.phase() {
            self.report("end", Some(serde_json::json!({ "reason": reason })));
        }
        self.flush()
    }

    /// Ends the call for a local reason (`replaced` after glare, `ice_failed`, ...).
    pub fn fail(&mut self, reason: EndReason) -> Result<(), String> {
        let now = self.now_ms();
        self.machine.fail(reason, now);
        self.flush()
    }

    pub fn send_offer(&mut self, sdp: &str, ice_restart: bool) -> Result<u32, String> {
        let now = self.now_ms();
        let sdp = Sdp::parse(sdp).map_err(|e| e.to_string())?;
        let id = self
            .machine
            .send_offer(sdp, ice_restart, now)
            .map_err(|e| e.to_string())?;
        self.flush()?;
        Ok(id)
    }

    pub fn send_answer(&mut self, sdp: &str, negotiation_id: u32) -> Result<(), String> {
        let now = self.now_ms();
        let sdp = Sdp::parse(sdp).map_err(|e| e.to_string())?;
        self.machine
            .send_answer(sdp, negotiation_id, now)
            .map_err(|e| e.to_string())?;
        self.flush()
    }

    /// Local candidates (batched into as few events as the rules allow).
    pub fn add_local_candidates(
        &mut self,
        candidates: Vec<crate::event::IceCandidate>,
        end_of_candidates: bool,
    ) -> Result<(), String> {
        let now = self.now_ms();
        self.machine
            .add_local_candidates(candidates, end_of_candidates, now);
        self.flush()
    }

    pub fn send_media_state(&mut self, state: crate::event::MediaStateBody) -> Result<(), String> {
        let now = self.now_ms();
        self.machine
            .send_media_state(state, now)
            .map_err(|e| e.to_string())?;
        self.flush()
    }

    /// Media connected (ICE and DTLS up).
    pub fn media_connected(&mut self) {
        self.machine.media_connected();
    }

    pub async fn close(self) {
        self.client.close().await;
    }
}

impl Inbox {
    /// Waits for an invitation, then joins its call channel as a callee device that is ringing;
    /// signaling only (see [`Inbox::next_call`] for the reference media peer too).
    pub async fn next_invitation(mut self, within: Duration) -> Result<Signaling, String> {
        let mut timeline = Timeline::begin();
        let client = &mut self.client;
        let invitation = tokio::time::timeout(within, async {
            loop {
                match client.next_event().await {
                    Some(ClientEvent::Event {
                        channel,
                        event,
                        data,
                        user_id,
                    }) => {
                        let frame = Frame {
                            event,
                            channel,
                            data,
                            user_id,
                        };
                        if let Ok((ChannelName::Inbox(_), Incoming::Clear(e))) = parse_frame(&frame)
                        {
                            return Ok(e);
                        }
                    }
                    Some(ClientEvent::SubscriptionLost { reason, .. }) => {
                        return Err(format!("the inbox subscription was lost: {reason}"));
                    }
                    Some(_) => continue,
                    None => return Err("connection ended".to_owned()),
                }
            }
        })
        .await
        .map_err(|_| "no invitation arrived".to_owned())??;
        timeline.note("invitation received");
        let EventBody::Started(started) = invitation.body() else {
            unreachable!("the inbox carries call.started only")
        };
        let privacy = started.privacy;
        let now = self.epoch.elapsed().as_millis() as u64;
        let machine = CallMachine::callee(
            &invitation,
            self.device.party.clone(),
            self.device.user.clone(),
            now,
        )
        .map_err(|e| e.to_string())?
        .with_event_limit(self.client.max_event_bytes(), privacy == Privacy::Strong);
        let mut sig = Signaling::open(machine, self.client, privacy, timeline, self.epoch).await?;
        sig.reporter = Some(self.device.clone());
        let now = sig.now_ms();
        sig.machine.ring(now).map_err(|e| e.to_string())?;
        sig.flush()?;
        Ok(sig)
    }

    /// Waits for an invitation and joins it with the reference WebRTC peer, adding the ICE
    /// servers (TURN credentials included) the trusted server gives this user.
    pub async fn next_call(
        self,
        peer_options: PeerOptions,
        within: Duration,
    ) -> Result<CallSession, String> {
        let device = self.device.clone();
        let mut sig = self.next_invitation(within).await?;
        let mut options = peer_options;
        match device.ice_servers().await {
            Ok(servers) => options.ice_servers.extend(servers),
            Err(e) => sig.timeline.note(format!("no ICE servers: {e}")),
        }
        CallSession::new(sig, options).await
    }
}

impl CallSession {
    /// A call session around signaling joined by the app (see [`Signaling::join`]), with the
    /// reference WebRTC peer.
    pub async fn with_signaling(
        sig: Signaling,
        peer_options: PeerOptions,
    ) -> Result<CallSession, String> {
        CallSession::new(sig, peer_options).await
    }

    async fn new(mut sig: Signaling, peer_options: PeerOptions) -> Result<CallSession, String> {
        sig.machine
            .set_connect_timeout(peer_options.connect_timeout.as_millis() as u64);
        Ok(CallSession {
            sig,
            peer: MediaPeer::new(&peer_options).await?,
            pending_candidates: Vec::new(),
            candidates_due: None,
            media_flags: (false, false),
        })
    }

    /// Starts a call through the trusted server (`POST /calls`) and joins its channel with the
    /// reference WebRTC peer, using the ICE servers the trusted server returned.
    pub async fn place(
        device: &Device,
        request: Value,
        peer_options: PeerOptions,
    ) -> Result<(CallSession, PlacedCall), String> {
        let (sig, placed) = Signaling::place(device, request).await?;
        let mut options = peer_options;
        options.ice_servers.extend(ice_servers(&placed.response));
        Ok((CallSession::new(sig, options).await?, placed))
    }

    pub fn phase(&self) -> Phase {
        self.sig.phase()
    }
    pub fn channel(&self) -> &CallChannel {
        self.sig.channel()
    }
    pub fn call_id(&self) -> &crate::ids::CallId {
        self.sig.call_id()
    }
    pub fn timeline(&self) -> &Timeline {
        &self.sig.timeline
    }
    /// See [`Signaling::refusals`].
    pub fn refusals(&self) -> &[Refusal] {
        self.sig.refusals()
    }
    /// The candidate pair the media flows over, once ICE selected one.
    pub async fn selected_pair(&self) -> Option<crate::media::SelectedPair> {
        self.peer.selected_pair().await
    }
    /// The local ICE candidates gathered so far.
    pub async fn local_candidates(&self) -> Vec<crate::media::CandidateAddress> {
        self.peer.local_candidates().await
    }

    pub async fn accept(&mut self) -> Result<(), String> {
        self.sig.accept()
    }
    pub async fn decline(&mut self, busy: bool) -> Result<(), String> {
        self.sig.decline(busy)
    }
    pub async fn hang_up(&mut self) -> Result<(), String> {
        self.sig.hang_up()
    }
    /// Ends this device's outgoing call because a crossing call won the glare ([FLOW-008]).
    pub async fn replaced(&mut self) -> Result<(), String> {
        self.sig.fail(EndReason::Replaced)
    }

    /// Acts on one signaling notice with the media peer.
    async fn act(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::CreateOffer { to } => {
                self.sig.timeline.note(format!("accepted by {to}"));
                let sdp = self.peer.create_offer().await?;
                self.sig.send_offer(&sdp, false)?;
            }
            Action::RemoteOffer {
                sdp,
                negotiation_id,
                ..
            } => {
                self.sig.timeline.note("offer received");
                let answer = self.peer.accept_offer(&sdp).await?;
                self.sig.send_answer(&answer, negotiation_id)?;
            }
            Action::RemoteAnswer { sdp } => {
                self.sig.timeline.note("answer received");
                self.peer.accept_answer(&sdp).await?;
            }
            Action::RemoteCandidates {
                candidates,
                end_of_candidates,
            } => {
                for c in &candidates {
                    self.peer.add_remote_candidate(c).await?;
                }
                if end_of_candidates {
                    self.sig.timeline.note("remote end of candidates");
                }
            }
            Action::Ended { .. } => self.peer.close().await,
            Action::Send(_)
            | Action::PeerRinging { .. }
            | Action::PeerAccepted { .. }
            | Action::RemoteMediaState(_) => {}
        }
        Ok(())
    }

    fn on_signal(&mut self, signal: PeerSignal) -> Result<(), String> {
        match signal {
            PeerSignal::LocalCandidate(c) => {
                self.pending_candidates.push(c);
                self.candidates_due
                    .get_or_insert_with(|| tokio::time::Instant::now() + CANDIDATE_BATCH_WINDOW);
            }
            PeerSignal::GatheringComplete => {
                let batch = std::mem::take(&mut self.pending_candidates);
                self.candidates_due = None;
                self.sig.add_local_candidates(batch, true)?;
            }
            PeerSignal::Connected => {
                self.sig.timeline.note("ICE connected, DTLS up");
                self.sig.media_connected();
                self.peer.start_audio(Duration::from_secs(30));
            }
            PeerSignal::DataChannelOpen => self.sig.timeline.note("data channel open"),
            PeerSignal::DataMessage(m) => {
                self.sig
                    .timeline
                    .note(format!("data channel message {m:?}"));
                // The caller is done when its ping came back; the callee once it echoed it.
                let caller = self.sig.role() == crate::call::Role::Caller;
                if caller == m.starts_with("echo:") {
                    self.media_flags.0 = true;
                }
            }
            PeerSignal::FirstRtp => {
                self.sig.timeline.note("first RTP packet");
                self.media_flags.1 = true;
            }
            PeerSignal::Failed(e) => {
                self.sig.timeline.note(format!("media failed: {e}"));
                self.sig.fail(EndReason::IceFailed)?;
            }
        }
        Ok(())
    }

    /// Runs the session until `until` (or the call ends), or fails after `within`.
    pub async fn run(&mut self, until: RunUntil, within: Duration) -> Result<Outcome, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if matches!(self.sig.phase(), Phase::Ended(_)) && self.sig.notices.is_empty() {
                break;
            }
            if until == RunUntil::MediaUp && self.media_flags == (true, true) {
                break;
            }
            let candidates_due = self.candidates_due;
            tokio::select! {
                action = self.sig.next_event(deadline) => match action? {
                    Some(a) => self.act(a).await?,
                    None if until == RunUntil::Elapsed => break,
                    None => {
                        let last = self.sig.timeline.entries.last().map_or_else(String::new, |(at, what)| {
                            format!("; the last thing that happened: {what} ({} ms in)", at.as_millis())
                        });
                        return Err(format!(
                            "gave up after {} s: the call was {}{last}",
                            within.as_secs(),
                            self.sig.phase()
                        ));
                    }
                },
                signal = self.peer.next_signal() => match signal {
                    Some(s) => self.on_signal(s)?,
                    None => return Err("media peer stopped".into()),
                },
                _ = async { tokio::time::sleep_until(candidates_due.unwrap_or(deadline)).await }, if candidates_due.is_some() => {
                    let batch = std::mem::take(&mut self.pending_candidates);
                    self.candidates_due = None;
                    self.sig.add_local_candidates(batch, false)?;
                }
            }
        }
        Ok(self.sig.outcome())
    }

    pub async fn close(self) {
        self.peer.close().await;
        self.sig.close().await;
    }
}
