//! The signaling half of a call: an invitation inbox, and [`Signaling`], the driver loop around
//! a [`CallEndpoint`] on a subscribed call channel.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use super::device::report_until_acknowledged;
use super::{Device, Outcome, SessionError, Timeline};
use crate::call::{Action, CallMachine, Phase, Role};
use crate::call_endpoint::{ActionReport, CallEndpoint, EndpointError, EndpointOutput, Transmit};
use crate::channel::{CallChannel, ChannelName, InboxChannel};
use crate::client::{ClientEvent, RealtimeClient};
use crate::event::{
    CallEvent, EndReason, EventBody, IceCandidate, Incoming, MediaSelection, MediaStateBody,
    Privacy, Refusal, RingTimeoutMs, parse_frame,
};
use crate::ids::{CallId, UserId};
use crate::pusher::Frame;
use crate::trusted::CallRequest;
use crate::trusted::api::PlacedCall;

/// How long closing waits for queued events to leave: longer than a few paced events take, short
/// enough that closing a session never hangs on a dead connection.
const CLOSE_FLUSH: Duration = Duration::from_secs(3);

/// A device's invitation inbox, subscribed and waiting.
pub struct Inbox {
    pub(super) device: Device,
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

/// The signaling half of a call on this device: a [`CallEndpoint`] on a subscribed call channel.
/// It is the API for apps with their own WebRTC stack: read [`Signaling::next_event`] for
/// ringing, accepted, offers, answers, candidates, media state and the end, and answer with
/// `send_offer`, `send_answer`, `add_local_candidates`, `send_media_state`, `hang_up`, ...
///
/// [`Action::Send`] never surfaces: sending is this type's job. Commands queue their events and
/// send them at once; notices for the app wait in order until `next_event` returns them.
pub struct Signaling {
    /// Sends the queued events one at a time; ends when `outbox` is dropped and drained.
    sender_task: tokio::task::JoinHandle<()>,
    pub(super) endpoint: CallEndpoint,
    client: RealtimeClient,
    outbox: mpsc::UnboundedSender<Transmit>,
    /// Signaling events the server refused (for a reason other than the rate): name and reason.
    failures: mpsc::UnboundedReceiver<(String, String)>,
    sent: Arc<AtomicUsize>,
    pub timeline: Timeline,
    epoch: Instant,
    throttled: usize,
    pub(super) notices: VecDeque<Action>,
    /// The device, when the call goes through a trusted server: the endpoint's reports of the
    /// user's actions go to it ([SRV-016], [SRV-025]).
    reporter: Option<Device>,
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
        #[cfg(feature = "defects")]
        let endpoint = endpoint.with_defect(client.defect());
        // Events leave one at a time, in order; each waits for the server's confirmation.
        let (outbox, mut queue) = mpsc::unbounded_channel::<Transmit>();
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let sender = client.sender();
        let (failures_tx, failures) = mpsc::unbounded_channel();
        let sender_task = tokio::spawn(async move {
            while let Some(t) = queue.recv().await {
                if let Err(e) = sender.trigger(&channel, &t.event, t.data).await {
                    let _ = failures_tx.send((t.event, e.to_string()));
                    return;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Signaling {
            sender_task,
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
        // Read before anything is created: a request this client cannot start from must not
        // leave a call ringing on the server. Its defaults are the protocol's (`CallRequest`).
        let asked: CallRequest = serde_json::from_value(request.clone())
            .map_err(|e| SessionError::InvalidRequest(e.to_string()))?;
        let client = device.client().await?;
        let placed: PlacedCall = device
            .trusted(reqwest::Method::POST, "/calls", Some(&request))
            .await?;
        timeline.note(format!("call {} created; invitations sent", placed.call_id));
        let machine = CallMachine::caller(
            placed.channel.clone(),
            device.new_party(),
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

    /// The call's invitation, once known (who calls whom, with which media and privacy).
    pub fn started(&self) -> Option<&crate::event::StartedBody> {
        self.endpoint.started()
    }

    /// Whether `invitation` crosses this call, and which of the two goes on ([FLOW-008]).
    pub fn crossing(&self, invitation: &Invitation) -> crate::call::Crossing {
        self.endpoint.crossing(invitation.started())
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

    /// Sends what is still queued (a hang-up said just before closing must reach the peer),
    /// waiting at most [`CLOSE_FLUSH`], then closes the connection.
    pub async fn close(self) {
        let Signaling {
            outbox,
            sender_task,
            client,
            ..
        } = self;
        drop(outbox);
        let _ = tokio::time::timeout(CLOSE_FLUSH, sender_task).await;
        client.close().await;
    }
}

impl Inbox {
    /// Waits for an invitation, then joins its call channel as a callee device that is ringing;
    /// signaling only (see [`Inbox::next_call`] for the reference media peer too).
    pub async fn next_invitation(mut self, within: Duration) -> Result<Signaling, SessionError> {
        let invitation = self.wait_for_invitation(within).await?;
        self.join(invitation).await
    }

    /// Waits for the next invitation without answering it, so that a device already in a call
    /// can first ask that call whether the two cross ([`Signaling::crossing`]).
    pub async fn wait_for_invitation(
        &mut self,
        within: Duration,
    ) -> Result<Invitation, SessionError> {
        let mut timeline = Timeline::begin();
        let client = &mut self.client;
        let event = tokio::time::timeout(within, async {
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
        Ok(Invitation { event, timeline })
    }

    /// Joins the call `invitation` names on this inbox's connection and rings.
    pub async fn join(self, invitation: Invitation) -> Result<Signaling, SessionError> {
        let Invitation { event, timeline } = invitation;
        let EventBody::Started(started) = event.body() else {
            unreachable!("the inbox carries call.started only")
        };
        let privacy = started.privacy;
        let now = self.epoch.elapsed().as_millis() as u64;
        let machine = CallMachine::callee(
            &event,
            self.device.new_party(),
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

    /// Stops listening: closes this inbox's connection.
    pub async fn close(self) {
        self.client.close().await;
    }
}

/// An invitation read from an inbox and not answered yet ([`Inbox::wait_for_invitation`]).
pub struct Invitation {
    event: CallEvent,
    timeline: Timeline,
}

impl Invitation {
    /// The call it invites to: who calls whom, on which channel, with which media and privacy.
    pub fn started(&self) -> &crate::event::StartedBody {
        let EventBody::Started(started) = self.event.body() else {
            unreachable!("the inbox carries call.started only")
        };
        started
    }
}
