//! Call sessions: the tokio driver around a [`CallEndpoint`] (every protocol decision: the
//! receive pipeline, sealing, candidate batching, what to report), a [`RealtimeClient`]
//! (signaling) and a [`MediaPeer`] (WebRTC). Shaped like what app developers expect: place a call
//! or wait for an invitation, accept or decline, then run until media is up or the call ends.
//!
//! This module only moves things: frames from the client into the endpoint, the endpoint's
//! events to one sender task (so they leave in order, each confirmed by the server), its reports
//! to the trusted server, its actions to the app or the media peer, and the clock and random
//! nonces into it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::call::{Action, CallMachine, Phase, Role};
use crate::call_endpoint::{ActionReport, CallEndpoint, EndpointError, EndpointOutput, Transmit};
use crate::channel::{CallChannel, ChannelName, InboxChannel};
use crate::client::{Auth, ClientConfig, ClientError, ClientEvent, RealtimeClient};
use crate::event::{
    EndReason, EventBody, IceCandidate, Incoming, MediaSelection, MediaStateBody, Privacy, Refusal,
    RingTimeoutMs, parse_frame,
};
use crate::ids::{CallId, DevicePartyId, UserId};
use crate::media::{MediaError, MediaPeer, PeerOptions, PeerSignal};
use crate::pusher::Frame;
use crate::trusted::CallRequest;
use crate::trusted::api::IceServerList;
pub use crate::trusted::api::PlacedCall;

/// Why a session operation failed, by whose doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The app asked for something the call's state or the protocol does not allow, or gave
    /// input that is not valid (an SDP, an id).
    #[error(transparent)]
    Misuse(#[from] EndpointError),
    /// An id given to build a device is not valid.
    #[error("{what} {value:?} is not valid: {reason}")]
    InvalidId {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// The realtime connection failed or the realtime server refused a request.
    #[error(transparent)]
    Realtime(#[from] ClientError),
    /// The trusted server refused a request or could not be reached (`status` is `None` then).
    #[error("{request}: {status_text}{detail}", status_text = status.map(|s| format!("{s} ")).unwrap_or_default())]
    Trusted {
        request: String,
        status: Option<u16>,
        detail: String,
    },
    /// A peer or server sent something that breaks the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The WebRTC stack refused an operation.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// What was awaited did not happen in time; the text says what was last seen.
    #[error("{0}")]
    TimedOut(String),
    /// The realtime connection ended for good.
    #[error("the signaling connection ended")]
    ConnectionEnded,
}

/// For tools that report every error as text.
impl From<SessionError> for String {
    fn from(e: SessionError) -> String {
        e.to_string()
    }
}

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
    ) -> Result<Device, SessionError> {
        let invalid = |what, value: &str, e: &dyn std::fmt::Display| SessionError::InvalidId {
            what,
            value: value.to_owned(),
            reason: e.to_string(),
        };
        let party = format!("{user}-{:016x}", rand::random::<u64>());
        Ok(Device {
            realtime_url: realtime_url.to_owned(),
            trusted_url: trusted_url.to_owned(),
            token: token.to_owned(),
            user: UserId::parse(user).map_err(|e| invalid("user id", user, &e))?,
            party: DevicePartyId::parse(&party).map_err(|e| invalid("party id", &party, &e))?,
        })
    }

    async fn client(&self) -> Result<RealtimeClient, SessionError> {
        RealtimeClient::connect(ClientConfig::new(
            self.realtime_url.clone(),
            Auth::Endpoint {
                url: format!("{}/realtime/auth", self.trusted_url),
                token: self.token.clone(),
            },
        ))
        .await
        .map_err(SessionError::Realtime)
    }
}

impl Device {
    /// A request to the trusted server as this device's user; its answer read as `T`, or an
    /// error that names the request, the status and what the server said.
    async fn trusted<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, SessionError> {
        let failed = |status: Option<u16>, detail: String| SessionError::Trusted {
            request: format!("{method} {path}"),
            status,
            detail,
        };
        let mut req = crate::net::http_client()
            .request(method.clone(), format!("{}{path}", self.trusted_url))
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| failed(None, e.to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| failed(Some(status.as_u16()), e.to_string()))?;
        if !status.is_success() {
            return Err(failed(Some(status.as_u16()), text));
        }
        serde_json::from_str(&text).map_err(|e| {
            SessionError::Protocol(format!(
                "the trusted server's answer to {method} {path}: {e}"
            ))
        })
    }

    /// `GET /ice-servers`: STUN and fresh TURN credentials for this user.
    async fn ice_servers(&self) -> Result<IceServerList, SessionError> {
        self.trusted(reqwest::Method::GET, "/ice-servers", None)
            .await
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
    /// Connects and subscribes to the user's inbox, `private-call-inbox.{user}`.
    pub async fn open(device: &Device) -> Result<Inbox, SessionError> {
        let client = device.client().await?;
        client
            .subscribe(&InboxChannel::new(device.user.clone()).to_string())
            .await?;
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

/// The signaling half of a call on this device: a [`CallEndpoint`] on a subscribed call channel.
/// It is the API for apps with their own WebRTC stack: read [`Signaling::next_event`] for
/// ringing, accepted, offers, answers, candidates, media state and the end, and answer with
/// `send_offer`, `send_answer`, `add_local_candidates`, `send_media_state`, `hang_up`, ...
///
/// [`Action::Send`] never surfaces: sending is this type's job. Commands queue their events and
/// send them at once; notices for the app wait in order until `next_event` returns them.
pub struct Signaling {
    endpoint: CallEndpoint,
    client: RealtimeClient,
    outbox: mpsc::UnboundedSender<Transmit>,
    /// Signaling events the server refused (for a reason other than the rate): name and reason.
    failures: mpsc::UnboundedReceiver<(String, String)>,
    sent: Arc<AtomicUsize>,
    pub timeline: Timeline,
    epoch: Instant,
    throttled: usize,
    notices: VecDeque<Action>,
    /// The device, when the call goes through a trusted server: the endpoint's reports of the
    /// user's actions go to it ([SRV-016], [SRV-025]).
    reporter: Option<Device>,
}

/// A call in progress on this device: [`Signaling`] plus the reference WebRTC peer.
pub struct CallSession {
    sig: Signaling,
    peer: MediaPeer,
    media_flags: (bool, bool),
}

impl Signaling {
    /// Joins the call channel of `machine` over `client` (already connected, with the auth it
    /// needs): the way to run a call without a trusted server in the loop, or with one of your
    /// own. `privacy` must match the call; a strong call needs `shared_secret` from the auth.
    pub async fn join(
        machine: CallMachine,
        client: RealtimeClient,
        privacy: Privacy,
    ) -> Result<Signaling, SessionError> {
        let epoch = Instant::now();
        Signaling::open(machine, client, privacy, Timeline::begin(), epoch).await
    }

    /// Caller: starts the call by sending `call.started` on the channel. Without a trusted server
    /// to invite the callees' inboxes, callee devices must already be on the channel (or learn of
    /// it from the app).
    pub fn start(
        &mut self,
        callees: Vec<UserId>,
        media: MediaSelection,
        ring: RingTimeoutMs,
        privacy: Privacy,
    ) -> Result<(), SessionError> {
        let now = self.now_ms();
        self.endpoint.start(callees, media, ring, privacy, now)?;
        self.flush();
        Ok(())
    }

    async fn open(
        machine: CallMachine,
        client: RealtimeClient,
        privacy: Privacy,
        mut timeline: Timeline,
        epoch: Instant,
    ) -> Result<Signaling, SessionError> {
        let channel = machine.channel().to_string();
        let sub = client.subscribe(&channel).await?;
        timeline.note(format!("subscribed to {channel}"));
        let endpoint = CallEndpoint::new(machine, privacy, sub.shared_secret.as_deref())?;
        // Events leave one at a time, in order; each waits for the server's confirmation.
        let (outbox, mut queue) = mpsc::unbounded_channel::<Transmit>();
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let sender = client.sender();
        let (failures_tx, failures) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(t) = queue.recv().await {
                if let Err(e) = sender.trigger(&channel, &t.event, t.data).await {
                    let _ = failures_tx.send((t.event, e.to_string()));
                    return;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Signaling {
            endpoint,
            client,
            outbox,
            failures,
            sent,
            timeline,
            epoch,
            throttled: 0,
            notices: VecDeque::new(),
            reporter: None,
        })
    }

    /// Starts a call through the trusted server (`POST /calls` with `request`, whose members and
    /// defaults are those of [`CallRequest`]) and joins its channel.
    pub async fn place(
        device: &Device,
        request: Value,
    ) -> Result<(Signaling, PlacedCall), SessionError> {
        let epoch = Instant::now();
        let mut timeline = Timeline::begin();
        let client = device.client().await?;
        let placed: PlacedCall = device
            .trusted(reqwest::Method::POST, "/calls", Some(&request))
            .await?;
        timeline.note(format!("call {} created; invitations sent", placed.call_id));
        // The server accepted the request, so it reads as one; its defaults are the protocol's.
        let asked: CallRequest = serde_json::from_value(request).map_err(|e| {
            SessionError::Protocol(format!("the call request the server accepted: {e}"))
        })?;
        let machine = CallMachine::caller(
            placed.channel.clone(),
            device.party.clone(),
            device.user.clone(),
        )
        .with_server_ring_timeout()
        .with_event_limit(client.max_event_bytes(), placed.privacy == Privacy::Strong);
        let mut sig = Signaling::open(machine, client, placed.privacy, timeline, epoch).await?;
        sig.reporter = Some(device.clone());
        let ring = RingTimeoutMs::new(placed.ring_timeout_ms).ok_or_else(|| {
            SessionError::Protocol(format!(
                "the server's ring_timeout_ms {} is out of range",
                placed.ring_timeout_ms
            ))
        })?;
        sig.start(asked.callees, asked.media, ring, placed.privacy)?;
        Ok((sig, placed))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn phase(&self) -> Phase {
        self.endpoint.phase()
    }

    pub fn role(&self) -> Role {
        self.endpoint.role()
    }

    pub fn channel(&self) -> &CallChannel {
        self.endpoint.channel()
    }

    /// The call's id.
    pub fn call_id(&self) -> &CallId {
        self.endpoint.channel().call_id()
    }

    /// Counts so far.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            phase: self.endpoint.phase(),
            events_sent: self.sent.load(Ordering::Relaxed),
            throttled: self.throttled,
        }
    }

    /// Carries out what the endpoint produced: events to the sender task (sealed with fresh
    /// nonces), reports to the trusted server, notes to the timeline, actions for the app.
    fn flush(&mut self) {
        loop {
            let now = self.now_ms();
            while let Some(t) = self.endpoint.poll_transmit(rand::random(), now) {
                // The sender task ends only after a refusal, which `failures` reports.
                let _ = self.outbox.send(t);
            }
            let Some(output) = self.endpoint.poll_output() else {
                return;
            };
            match output {
                EndpointOutput::Action(action) => self.notices.push_back(action),
                EndpointOutput::Report(report) => self.report(report),
                EndpointOutput::Note(note) => self.timeline.note(note),
            }
        }
    }

    /// Events on the call channel this device refused so far, in order, each with the rule it
    /// broke: the first one usually explains why a call did not go on.
    pub fn refusals(&self) -> &[Refusal] {
        self.endpoint.refusals()
    }

    /// The next thing the app must act on (never [`Action::Send`]), or `None` at `deadline`.
    /// Cancel-safe: it only awaits channel receives, so it can sit in a `select!`.
    pub async fn next_event(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Action>, SessionError> {
        loop {
            self.flush();
            if let Some(a) = self.notices.pop_front() {
                return Ok(Some(a));
            }
            // The endpoint's own deadlines (ring, connect, candidate batch) come before the
            // caller's.
            let timeout = self
                .endpoint
                .poll_timeout()
                .map(|ms| tokio::time::Instant::from_std(self.epoch + Duration::from_millis(ms)));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
                _ = async { tokio::time::sleep_until(timeout.unwrap_or(deadline)).await }, if timeout.is_some_and(|t| t < deadline) => {
                    let now = self.now_ms();
                    self.endpoint.handle_timeout(now);
                }
                event = self.client.next_event() => match event {
                    Some(ClientEvent::Event { channel, event, data, user_id }) => {
                        let now = self.now_ms();
                        self.endpoint.handle_frame(&Frame { event, channel, data, user_id }, now);
                    }
                    Some(ClientEvent::Throttled { .. }) => self.throttled += 1,
                    Some(ClientEvent::SubscriptionLost { channel, reason }) if channel == self.endpoint.channel_name() => {
                        let now = self.now_ms();
                        self.endpoint.handle_channel_lost(&reason, now);
                    }
                    Some(_) => {}
                    None => return Err(SessionError::ConnectionEnded),
                },
                Some((event, reason)) = self.failures.recv() => {
                    let now = self.now_ms();
                    self.endpoint.handle_send_refused(&event, &reason, now);
                }
            }
        }
    }

    /// Sends one of the endpoint's reports to the trusted server in the background; the call
    /// goes on whatever its fate (see [`report_until_acknowledged`]).
    fn report(&mut self, report: ActionReport) {
        let Some(device) = self.reporter.clone() else {
            return;
        };
        let path = report.path(self.call_id());
        self.timeline
            .note(format!("reported {path} to the trusted server"));
        tokio::spawn(async move { report_until_acknowledged(&device, &path, report.body()).await });
    }

    /// The local user answers.
    pub fn accept(&mut self) -> Result<(), SessionError> {
        let now = self.now_ms();
        self.endpoint.accept(now)?;
        self.flush();
        Ok(())
    }

    /// The local user declines (or is busy).
    pub fn decline(&mut self, busy: bool) -> Result<(), SessionError> {
        let now = self.now_ms();
        self.endpoint.decline(busy, now)?;
        self.flush();
        Ok(())
    }

    /// Hangs up (or cancels, before an answer).
    pub fn hang_up(&mut self) -> Result<(), SessionError> {
        let now = self.now_ms();
        self.endpoint.hang_up(now)?;
        self.flush();
        Ok(())
    }

    /// Ends the call for a local reason (`replaced` after glare, `ice_failed`, ...).
    pub fn fail(&mut self, reason: EndReason) {
        let now = self.now_ms();
        self.endpoint.fail(reason, now);
        self.flush();
    }

    pub fn send_offer(&mut self, sdp: &str, ice_restart: bool) -> Result<u32, SessionError> {
        let now = self.now_ms();
        let id = self.endpoint.send_offer(sdp, ice_restart, now)?;
        self.flush();
        Ok(id)
    }

    pub fn send_answer(&mut self, sdp: &str, negotiation_id: u32) -> Result<(), SessionError> {
        let now = self.now_ms();
        self.endpoint.send_answer(sdp, negotiation_id, now)?;
        self.flush();
        Ok(())
    }

    /// Local candidates of the app's own batching, sent now (in as few events as the rules
    /// allow).
    pub fn add_local_candidates(&mut self, candidates: Vec<IceCandidate>, end_of_candidates: bool) {
        let now = self.now_ms();
        self.endpoint
            .add_local_candidates(candidates, end_of_candidates, now);
        self.flush();
    }

    /// One local candidate as WebRTC gathers it: the endpoint batches them over a short window.
    pub fn add_local_candidate(&mut self, candidate: IceCandidate) {
        let now = self.now_ms();
        self.endpoint.add_local_candidate(candidate, now);
        self.flush();
    }

    /// Gathering finished: pending candidates leave now, marked as the last.
    pub fn local_candidates_complete(&mut self) {
        let now = self.now_ms();
        self.endpoint.local_candidates_complete(now);
        self.flush();
    }

    pub fn send_media_state(&mut self, state: MediaStateBody) -> Result<(), SessionError> {
        let now = self.now_ms();
        self.endpoint.send_media_state(state, now)?;
        self.flush();
        Ok(())
    }

    /// Media connected (ICE and DTLS up).
    pub fn media_connected(&mut self) {
        self.endpoint.media_connected();
        self.flush();
    }

    pub async fn close(self) {
        self.client.close().await;
    }
}

impl Inbox {
    /// Waits for an invitation, then joins its call channel as a callee device that is ringing;
    /// signaling only (see [`Inbox::next_call`] for the reference media peer too).
    pub async fn next_invitation(mut self, within: Duration) -> Result<Signaling, SessionError> {
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
                        return Err(SessionError::Protocol(format!(
                            "the inbox subscription was lost: {reason}"
                        )));
                    }
                    Some(_) => continue,
                    None => return Err(SessionError::ConnectionEnded),
                }
            }
        })
        .await
        .map_err(|_| SessionError::TimedOut("no invitation arrived".into()))??;
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
        .map_err(EndpointError::from)?
        .with_event_limit(self.client.max_event_bytes(), privacy == Privacy::Strong);
        let mut sig = Signaling::open(machine, self.client, privacy, timeline, self.epoch).await?;
        sig.reporter = Some(self.device.clone());
        let now = sig.now_ms();
        sig.endpoint.ring(now)?;
        sig.flush();
        Ok(sig)
    }

    /// Waits for an invitation and joins it with the reference WebRTC peer, adding the ICE
    /// servers (TURN credentials included) the trusted server gives this user.
    pub async fn next_call(
        self,
        peer_options: PeerOptions,
        within: Duration,
    ) -> Result<CallSession, SessionError> {
        let device = self.device.clone();
        let mut sig = self.next_invitation(within).await?;
        let mut options = peer_options;
        match device.ice_servers().await {
            Ok(list) => options.ice_servers.extend(list.ice_servers),
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
    ) -> Result<CallSession, SessionError> {
        CallSession::new(sig, peer_options).await
    }

    async fn new(
        mut sig: Signaling,
        peer_options: PeerOptions,
    ) -> Result<CallSession, SessionError> {
        sig.endpoint
            .set_connect_timeout(peer_options.connect_timeout.as_millis() as u64);
        Ok(CallSession {
            sig,
            peer: MediaPeer::new(&peer_options).await?,
            media_flags: (false, false),
        })
    }

    /// Starts a call through the trusted server (`POST /calls`) and joins its channel with the
    /// reference WebRTC peer, using the ICE servers the trusted server returned.
    pub async fn place(
        device: &Device,
        request: Value,
        peer_options: PeerOptions,
    ) -> Result<(CallSession, PlacedCall), SessionError> {
        let (sig, placed) = Signaling::place(device, request).await?;
        let mut options = peer_options;
        options
            .ice_servers
            .extend(placed.ice_servers.iter().cloned());
        Ok((CallSession::new(sig, options).await?, placed))
    }

    pub fn phase(&self) -> Phase {
        self.sig.phase()
    }
    pub fn channel(&self) -> &CallChannel {
        self.sig.channel()
    }
    pub fn call_id(&self) -> &CallId {
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

    pub async fn accept(&mut self) -> Result<(), SessionError> {
        self.sig.accept()
    }
    pub async fn decline(&mut self, busy: bool) -> Result<(), SessionError> {
        self.sig.decline(busy)
    }
    pub async fn hang_up(&mut self) -> Result<(), SessionError> {
        self.sig.hang_up()
    }
    /// Ends this device's outgoing call because a crossing call won the glare ([FLOW-008]).
    pub async fn replaced(&mut self) -> Result<(), SessionError> {
        self.sig.fail(EndReason::Replaced);
        Ok(())
    }

    /// Acts on one signaling notice with the media peer.
    async fn act(&mut self, action: Action) -> Result<(), SessionError> {
        match action {
            Action::CreateOffer { to } => {
                self.sig.timeline.note(format!("accepted by {to}"));
                let sdp = self.peer.create_offer().await?;
                self.sig.send_offer(&sdp, false)?;
            }
            Action::RemoteOffer {
                sdp,
                negotiation_id,
                ice_restart,
                rollback,
                ..
            } => {
                self.sig.timeline.note(format!(
                    "offer received{}{}",
                    if ice_restart { " (ICE restart)" } else { "" },
                    if rollback { "; rolling back ours" } else { "" }
                ));
                let answer = self.peer.accept_offer(&sdp, rollback).await?;
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

    fn on_signal(&mut self, signal: PeerSignal) {
        match signal {
            PeerSignal::LocalCandidate(c) => self.sig.add_local_candidate(c),
            PeerSignal::GatheringComplete => self.sig.local_candidates_complete(),
            PeerSignal::Connected => {
                self.sig.media_connected();
                self.peer.start_audio(Duration::from_secs(30));
            }
            PeerSignal::DataChannelOpen => self.sig.timeline.note("data channel open"),
            PeerSignal::DataMessage(m) => {
                self.sig
                    .timeline
                    .note(format!("data channel message {m:?}"));
                // The caller is done when its ping came back; the callee once it echoed it.
                let caller = self.sig.role() == Role::Caller;
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
                self.sig.fail(EndReason::IceFailed);
            }
        }
    }

    /// Runs the session until `until` (or the call ends), or fails after `within`.
    pub async fn run(
        &mut self,
        until: RunUntil,
        within: Duration,
    ) -> Result<Outcome, SessionError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if matches!(self.sig.phase(), Phase::Ended(_)) && self.sig.notices.is_empty() {
                break;
            }
            if until == RunUntil::MediaUp && self.media_flags == (true, true) {
                break;
            }
            tokio::select! {
                action = self.sig.next_event(deadline) => match action? {
                    Some(a) => self.act(a).await?,
                    None if until == RunUntil::Elapsed => break,
                    None => {
                        let last = self.sig.timeline.entries.last().map_or_else(String::new, |(at, what)| {
                            format!("; the last thing that happened: {what} ({} ms in)", at.as_millis())
                        });
                        return Err(SessionError::TimedOut(format!(
                            "gave up after {} s: the call was {}{last}",
                            within.as_secs(),
                            self.sig.phase()
                        )));
                    }
                },
                signal = self.peer.next_signal() => match signal {
                    Some(s) => self.on_signal(s),
                    None => return Err(SessionError::Protocol("media peer stopped".into())),
                },
            }
        }
        Ok(self.sig.outcome())
    }

    pub async fn close(self) {
        self.peer.close().await;
        self.sig.close().await;
    }
}
