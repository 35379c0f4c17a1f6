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
    CallEvent, EndReason, EventBody, Incoming, Privacy, RingTimeoutMs, Sdp, parse_frame,
};
use crate::ids::{DevicePartyId, UserId};
use crate::media::{MediaPeer, PeerOptions, PeerSignal};
use crate::pusher::Frame;

/// How long local candidates are collected into one event.
const CANDIDATE_BATCH_WINDOW: Duration = Duration::from_millis(30);

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
        RealtimeClient::connect(ClientConfig {
            url: self.realtime_url.clone(),
            auth: Auth::Endpoint {
                url: format!("{}/realtime/auth", self.trusted_url),
                token: self.token.clone(),
            },
            events_per_second: None,
        })
        .await
        .map_err(|e| e.to_string())
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

    /// Waits for an invitation, then joins its call channel as a callee device that is ringing.
    pub async fn next_call(
        mut self,
        peer_options: PeerOptions,
        within: Duration,
    ) -> Result<CallSession, String> {
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
        let mut session = CallSession::open(
            machine,
            self.client,
            privacy,
            peer_options,
            timeline,
            self.epoch,
        )
        .await?;
        let now = session.now_ms();
        session.machine.ring(now).map_err(|e| e.to_string())?;
        session.drain().await?;
        Ok(session)
    }
}

/// When [`CallSession::run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunUntil {
    /// Data channel open (and echoed, on the caller) and RTP received.
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

/// A call in progress on this device.
pub struct CallSession {
    machine: CallMachine,
    client: RealtimeClient,
    channel: CallChannel,
    guard: PrivacyGuard,
    key: Option<ChannelKey>,
    peer: MediaPeer,
    assembler: ChunkAssembler,
    outbox: mpsc::UnboundedSender<(String, Value)>,
    /// Signaling events the server refused (for a reason other than the rate).
    failures: mpsc::UnboundedReceiver<String>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub timeline: Timeline,
    epoch: Instant,
    pending_candidates: Vec<crate::event::IceCandidate>,
    candidates_due: Option<tokio::time::Instant>,
    media_flags: (bool, bool),
    throttled: usize,
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

impl CallSession {
    async fn open(
        machine: CallMachine,
        client: RealtimeClient,
        privacy: Privacy,
        peer_options: PeerOptions,
        mut timeline: Timeline,
        epoch: Instant,
    ) -> Result<CallSession, String> {
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
        let peer = MediaPeer::new(&peer_options).await?;
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
        Ok(CallSession {
            machine,
            client,
            channel,
            guard,
            key,
            peer,
            assembler: ChunkAssembler::new(),
            outbox,
            failures,
            sent,
            timeline,
            epoch,
            pending_candidates: Vec::new(),
            candidates_due: None,
            media_flags: (false, false),
            throttled: 0,
        })
    }

    /// Starts a call through the trusted server (`POST /calls`) and joins its channel.
    pub async fn place(
        device: &Device,
        request: Value,
        peer_options: PeerOptions,
    ) -> Result<(CallSession, PlacedCall), String> {
        let epoch = Instant::now();
        let mut timeline = Timeline::begin();
        let client = device.client().await?;
        let resp = reqwest::Client::new()
            .post(format!("{}/calls", device.trusted_url))
            .header("authorization", format!("Bearer {}", device.token))
            .header("content-type", "application/json")
            .body(request.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = serde_json::from_str(&resp.text().await.map_err(|e| e.to_string())?)
            .unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("POST /calls: {status} {body}"));
        }
        let placed = PlacedCall {
            call_id: body["call_id"].as_str().unwrap_or_default().to_owned(),
            channel: body["channel"].as_str().unwrap_or_default().to_owned(),
            response: body.clone(),
        };
        timeline.note(format!("call {} created; invitations sent", placed.call_id));
        let channel = CallChannel::parse(&placed.channel).map_err(|e| e.to_string())?;
        let privacy: Privacy =
            serde_json::from_value(body["privacy"].clone()).unwrap_or(Privacy::Standard);
        let mut options = peer_options;
        options.ice_servers.extend(ice_servers(&body));
        let machine = CallMachine::caller(channel, device.party.clone(), device.user.clone())
            .with_server_ring_timeout()
            .with_event_limit(client.max_event_bytes(), privacy == Privacy::Strong);
        let mut session =
            CallSession::open(machine, client, privacy, options, timeline, epoch).await?;
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
        let now = session.now_ms();
        session
            .machine
            .start(callees, media, ring, privacy, now)
            .map_err(|e| e.to_string())?;
        session.drain().await?;
        Ok((session, placed))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn phase(&self) -> Phase {
        self.machine.phase()
    }

    pub fn channel(&self) -> &CallChannel {
        &self.channel
    }

    /// The local user answers.
    pub async fn accept(&mut self) -> Result<(), String> {
        let now = self.now_ms();
        self.machine.accept(now).map_err(|e| e.to_string())?;
        self.timeline.note("accepted");
        self.drain().await
    }

    /// The local user declines (or is busy).
    pub async fn decline(&mut self, busy: bool) -> Result<(), String> {
        let now = self.now_ms();
        self.machine.decline(busy, now).map_err(|e| e.to_string())?;
        self.drain().await
    }

    /// Ends this device's outgoing call because a crossing call won the glare ([FLOW-008]).
    pub async fn replaced(&mut self) -> Result<(), String> {
        let now = self.now_ms();
        self.machine.fail(EndReason::Replaced, now);
        self.drain().await
    }

    /// The call's id.
    pub fn call_id(&self) -> &crate::ids::CallId {
        self.channel.call_id()
    }

    /// Hangs up (or cancels, before an answer).
    pub async fn hang_up(&mut self) -> Result<(), String> {
        let now = self.now_ms();
        self.machine.hang_up(now).map_err(|e| e.to_string())?;
        self.drain().await
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

    /// Carries out the machine's actions.
    async fn drain(&mut self) -> Result<(), String> {
        while let Some(action) = self.machine.poll_action() {
            let now = self.now_ms();
            match action {
                Action::Send(e) => self.send(e)?,
                Action::CreateOffer { to } => {
                    self.timeline.note(format!("accepted by {to}"));
                    let sdp = self.peer.create_offer().await?;
                    let sdp = Sdp::parse(&sdp).map_err(|e| e.to_string())?;
                    self.machine
                        .send_offer(sdp, false, now)
                        .map_err(|e| e.to_string())?;
                }
                Action::RemoteOffer {
                    sdp,
                    negotiation_id,
                    ..
                } => {
                    self.timeline.note("offer received");
                    let answer = self.peer.accept_offer(&sdp).await?;
                    let answer = Sdp::parse(&answer).map_err(|e| e.to_string())?;
                    self.machine
                        .send_answer(answer, negotiation_id, now)
                        .map_err(|e| e.to_string())?;
                }
                Action::RemoteAnswer { sdp } => {
                    self.timeline.note("answer received");
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
                        self.timeline.note("remote end of candidates");
                    }
                }
                Action::PeerRinging { .. } => self.timeline.note("ringing"),
                Action::PeerAccepted { .. } | Action::RemoteMediaState(_) => {}
                Action::Ended { reason, by_remote } => {
                    self.timeline.note(format!(
                        "ended: {reason:?}{}",
                        if by_remote { " (remote)" } else { "" }
                    ));
                    self.peer.close().await;
                }
            }
        }
        Ok(())
    }

    fn handle_frame(
        &mut self,
        channel: Option<String>,
        event: String,
        data: Option<crate::pusher::FrameData>,
        user_id: Option<String>,
    ) -> Result<(), String> {
        let frame = Frame {
            event,
            channel,
            data,
            user_id,
        };
        let Ok((ChannelName::Call(ch), incoming)) = parse_frame(&frame) else {
            return Ok(());
        };
        if ch != self.channel {
            return Ok(());
        }
        let event = match self.guard.receive(incoming) {
            Ok(e) => e,
            Err(e) => {
                self.timeline
                    .note(format!("dropped an event: [{}] {e}", e.code()));
                return Ok(());
            }
        };
        let now = self.now_ms();
        if let Ok(Some(whole)) = self.assembler.push(event, now) {
            self.machine.handle_event(&whole, now);
        }
        Ok(())
    }

    /// Runs the session until `until` (or the call ends), or fails after `within`.
    pub async fn run(&mut self, until: RunUntil, within: Duration) -> Result<Outcome, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if matches!(self.machine.phase(), Phase::Ended(_)) {
                break;
            }
            if until == RunUntil::MediaUp && self.media_flags == (true, true) {
                break;
            }
            let candidates_due = self.candidates_due;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if until == RunUntil::Elapsed {
                        break;
                    }
                    return Err(format!("timed out in {:?}: {:?}", self.machine.phase(), self.timeline.entries));
                }
                event = self.client.next_event() => match event {
                    Some(ClientEvent::Event { channel, event, data, user_id }) => self.handle_frame(channel, event, data, user_id)?,
                    Some(ClientEvent::Throttled { .. }) => self.throttled += 1,
                    Some(_) => {}
                    None => return Err("signaling connection ended".into()),
                },
                Some(failure) = self.failures.recv() => {
                    self.timeline.note(format!("signaling failed: {failure}"));
                    let now = self.now_ms();
                    self.machine.fail(EndReason::SignalingFailed, now);
                }
                signal = self.peer.next_signal() => match signal {
                    Some(PeerSignal::LocalCandidate(c)) => {
                        self.pending_candidates.push(c);
                        self.candidates_due.get_or_insert_with(|| tokio::time::Instant::now() + CANDIDATE_BATCH_WINDOW);
                    }
                    Some(PeerSignal::GatheringComplete) => {
                        let batch = std::mem::take(&mut self.pending_candidates);
                        self.candidates_due = None;
                        let now = self.now_ms();
                        self.machine.add_local_candidates(batch, true, now);
                    }
                    Some(PeerSignal::Connected) => {
                        self.timeline.note("ICE connected, DTLS up");
                        self.machine.media_connected();
                        self.peer.start_audio(Duration::from_secs(30));
                    }
                    Some(PeerSignal::DataChannelOpen) => {
                        self.timeline.note("data channel open");
                        if self.machine.role() == crate::call::Role::Callee {
                            self.media_flags.0 = true;
                        }
                    }
                    Some(PeerSignal::DataMessage(m)) => {
                        self.timeline.note(format!("data channel message {m:?}"));
                        if m.starts_with("echo:") {
                            self.media_flags.0 = true;
                        }
                    }
                    Some(PeerSignal::FirstRtp) => {
                        self.timeline.note("first RTP packet");
                        self.media_flags.1 = true;
                    }
                    Some(PeerSignal::Failed(e)) => {
                        self.timeline.note(format!("media failed: {e}"));
                        let now = self.now_ms();
                        self.machine.fail(EndReason::IceFailed, now);
                    }
                    None => return Err("media peer stopped".into()),
                },
                _ = async { tokio::time::sleep_until(candidates_due.unwrap_or(deadline)).await }, if candidates_due.is_some() => {
                    let batch = std::mem::take(&mut self.pending_candidates);
                    self.candidates_due = None;
                    let now = self.now_ms();
                    self.machine.add_local_candidates(batch, false, now);
                }
            }
            self.drain().await?;
        }
        Ok(Outcome {
            phase: self.machine.phase(),
            events_sent: self.sent.load(std::sync::atomic::Ordering::Relaxed),
            throttled: self.throttled,
        })
    }

    pub async fn close(self) {
        self.peer.close().await;
        self.client.close().await;
    }
}
