//! The call state machine of one device (`spec/09-call-states.md`): what a caller or callee sends
//! and when, decided from local commands, received events and time alone.
//!
//! How a shell drives it is documented once, on [`CallMachine`].
//!
//! Invariants:
//! - `Ended` is absorbing: once there, every input is ignored and nothing more is sent
//!   ([STATE-001]);
//! - the caller sends `call.offer` only after a `call.accepted`, and only to that party; no
//!   candidate or SDP ever goes to a party that did not accept ([FLOW-007], [SEC-005]);
//! - every event this device sends has a `seq` above the previous one; every event it accepts has
//!   a `seq` above the last one accepted from its sender ([EVT-015]);
//! - local candidates produced before the peer is known are queued, never dropped.

use std::collections::VecDeque;

use crate::channel::CallChannel;
use crate::event::chunk::split_sdp;
use crate::event::seq::SeqTracker;
use crate::event::{
    AnswerBody, CallEvent, EndReason, EndedBody, EventBody, EventHeader, IceCandidate,
    IceCandidateBody, MediaSelection, MediaStateBody, OfferBody, Origin, Privacy, ProtocolVersion,
    RingTimeoutMs, Sdp, Seq, StartedBody, Topology, UnixMillis,
};
use crate::ids::{CallId, ChunkId, DevicePartyId, PartyId, UserId};
use crate::limits::{MAX_CANDIDATES_PER_EVENT, MAX_EVENT_DATA_BYTES, MEDIA_CONNECT_TIMEOUT_MS};

/// Which side of the call this device is on. The callee is the polite peer of perfect negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Caller,
    Callee,
}

/// Where the call is, for this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    /// Caller: `call.started` sent, nobody ringing yet.
    Outgoing,
    /// Caller: at least one callee device rings.
    Ringing,
    /// Callee: invited, not yet alerting.
    Incoming,
    /// Callee: alerting the local user.
    Alerting,
    /// Accepted; negotiating media.
    Connecting,
    /// Media connected.
    Active,
    Ended(EndReason),
}

impl std::fmt::Display for Phase {
    /// How a person would say where the call is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Idle => f.write_str("not started"),
            Phase::Outgoing => f.write_str("calling (no device rings yet)"),
            Phase::Ringing => f.write_str("ringing"),
            Phase::Incoming => f.write_str("incoming"),
            Phase::Alerting => f.write_str("ringing here"),
            Phase::Connecting => f.write_str("answered, connecting media"),
            Phase::Active => f.write_str("in the call"),
            Phase::Ended(reason) => write!(f, "ended ({reason})"),
        }
    }
}

/// What the session must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this event on the call channel.
    Send(CallEvent),
    /// Caller: a callee accepted; create an offer for this party and give it to `send_offer`.
    CreateOffer {
        to: DevicePartyId,
    },
    /// A remote offer to answer (`rollback`: the local offer collided and must be rolled back
    /// first, as the polite peer does).
    RemoteOffer {
        from: DevicePartyId,
        sdp: String,
        negotiation_id: u32,
        ice_restart: bool,
        rollback: bool,
    },
    RemoteAnswer {
        sdp: String,
    },
    RemoteCandidates {
        candidates: Vec<IceCandidate>,
        end_of_candidates: bool,
    },
    RemoteMediaState(MediaStateBody),
    /// A callee device rings (caller side).
    PeerRinging {
        party: PartyId,
    },
    /// The call was accepted by this party (caller side).
    PeerAccepted {
        party: DevicePartyId,
        user: UserId,
    },
    /// The call is over for this device.
    Ended {
        reason: EndReason,
        by_remote: bool,
    },
}

/// A command that does not fit the current phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error("{action} is not possible while the call is {phase:?}")]
    WrongPhase { action: &'static str, phase: Phase },
    #[error("no peer has accepted yet")]
    NoPeer,
    #[error("the event is not valid: {0}")]
    Invalid(String),
}

/// One device's state of one call.
///
/// Driving rule (as in quinn-proto): feed local commands with the `start`/`accept`/... methods,
/// received events with [`CallMachine::handle_event`] and time with [`CallMachine::handle_timeout`];
/// then drain [`CallMachine::poll_action`] until it returns `None` and carry out each [`Action`]
/// in order (send the event, tell the app). The machine never blocks and reads no clock.
#[derive(Debug)]
pub struct CallMachine {
    role: Role,
    call_id: CallId,
    channel: CallChannel,
    party: DevicePartyId,
    user: UserId,
    phase: Phase,
    next_seq: u64,
    seen: SeqTracker,
    /// Caller: the user ids invited (empty: anyone in the scope). Callee: the caller's user id.
    caller: Option<UserId>,
    /// The one remote device media is negotiated with.
    peer: Option<DevicePartyId>,
    ring_deadline_ms: Option<u64>,
    /// The caller ends the call itself on ring timeout only when no trusted server does.
    own_ring_timeout: bool,
    /// How long Connecting may last before ICE counts as failed, and when that is.
    connect_timeout_ms: u64,
    connect_deadline_ms: Option<u64>,
    next_negotiation: u32,
    outstanding_offer: Option<u32>,
    pending_candidates: Vec<IceCandidate>,
    pending_end_of_candidates: bool,
    started: Option<StartedBody>,
    answered: bool,
    /// Callee: ringing or the acceptance was said again after the caller announced itself.
    reannounced: bool,
    /// Largest event data the server takes, and whether bodies are sealed (which grows them).
    event_limit: (usize, bool),
    out: VecDeque<Action>,
}

/// Of two crossing calls in one scope, the one with the lower call id (byte order) wins
/// ([FLOW-008]); the other ends with `replaced`.
pub fn glare_winner<'a>(a: &'a CallId, b: &'a CallId) -> &'a CallId {
    if a.as_str().as_bytes() <= b.as_str().as_bytes() {
        a
    } else {
        b
    }
}

/// What a device with a call of its own does with an invitation to another call ([FLOW-008]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// Not the two calls of a glare: the invitation is another call altogether.
    Unrelated,
    /// The calls cross and this device's call has the lower id: it goes on, and the invitation
    /// is set aside without ringing (its caller ends it with `replaced`).
    KeepMine,
    /// The calls cross and the invitation's call has the lower id: this device ends its own
    /// call with `replaced` and treats the invitation as an incoming call.
    YieldToTheirs,
}

impl CallMachine {
    /// Whether `invitation` crosses this call: this device placed a call that nobody accepted
    /// yet, and the invitation comes from one of the users it calls, in the same scope, to this
    /// device's user. The lower call id wins ([FLOW-008], [`glare_winner`]).
    pub fn crossing(&self, invitation: &StartedBody) -> Crossing {
        let Some(mine) = self.started.as_ref() else {
            return Crossing::Unrelated;
        };
        let theirs = &invitation.channel;
        let calling = self.role == Role::Caller
            && matches!(self.phase, Phase::Outgoing | Phase::Ringing)
            && theirs.scope() == self.channel.scope()
            && theirs.scope_id() == self.channel.scope_id()
            && theirs.call_id() != self.channel.call_id()
            && (mine.callees.is_empty() || mine.callees.contains(&invitation.caller))
            && (invitation.callees.is_empty() || invitation.callees.contains(&self.user));
        if !calling {
            Crossing::Unrelated
        } else if glare_winner(self.channel.call_id(), theirs.call_id()) == self.channel.call_id() {
            Crossing::KeepMine
        } else {
            Crossing::YieldToTheirs
        }
    }

    /// A caller device about to start `channel`'s call.
    pub fn caller(channel: CallChannel, party: DevicePartyId, user: UserId) -> Self {
        Self::new(Role::Caller, channel, party, user)
    }

    /// A callee device that received the invitation `started` (from the inbox or the channel).
    pub fn callee(
        started: &CallEvent,
        party: DevicePartyId,
        user: UserId,
        now_ms: u64,
    ) -> Result<Self, CallError> {
        let EventBody::Started(body) = started.body() else {
            return Err(CallError::Invalid("not a call.started".into()));
        };
        let mut m = Self::new(Role::Callee, body.channel.clone(), party, user);
        m.caller = Some(body.caller.clone());
        m.started = Some(body.clone());
        m.phase = Phase::Incoming;
        m.ring_deadline_ms = Some(now_ms + body.ring_timeout_ms.get());
        let _ = m
            .seen
            .accept(&started.header().party_id, started.header().seq);
        Ok(m)
    }

    fn new(role: Role, channel: CallChannel, party: DevicePartyId, user: UserId) -> Self {
        CallMachine {
            role,
            call_id: channel.call_id().clone(),
            channel,
            party,
            user,
            phase: Phase::Idle,
            next_seq: 1,
            seen: SeqTracker::new(),
            caller: None,
            peer: None,
            ring_deadline_ms: None,
            own_ring_timeout: true,
            connect_timeout_ms: MEDIA_CONNECT_TIMEOUT_MS,
            connect_deadline_ms: None,
            next_negotiation: 1,
            outstanding_offer: None,
            pending_candidates: Vec::new(),
            pending_end_of_candidates: false,
            started: None,
            answered: false,
            reannounced: false,
            event_limit: (MAX_EVENT_DATA_BYTES, false),
            out: VecDeque::new(),
        }
    }

    /// The server's announced event data limit, and whether sensitive bodies are sealed; offers
    /// and answers larger than that are sent as chunks with consecutive `seq` numbers.
    pub fn with_event_limit(mut self, max_event_bytes: usize, sealed: bool) -> Self {
        self.event_limit = (max_event_bytes, sealed);
        self
    }

    /// Leave ring timeouts to the trusted server (it sends `call.ended {no_answer}` itself).
    pub fn with_server_ring_timeout(mut self) -> Self {
        self.own_ring_timeout = false;
        self
    }

    /// How long media may take to connect after the call was accepted before the call ends with
    /// `ice_failed` ([MEDIA-007]); [`MEDIA_CONNECT_TIMEOUT_MS`] by default.
    pub fn set_connect_timeout(&mut self, timeout_ms: u64) {
        self.connect_timeout_ms = timeout_ms;
    }

    fn enter_connecting(&mut self, now_ms: u64) {
        self.phase = Phase::Connecting;
        self.connect_deadline_ms = Some(now_ms.saturating_add(self.connect_timeout_ms));
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn peer(&self) -> Option<&DevicePartyId> {
        self.peer.as_ref()
    }
    pub fn channel(&self) -> &CallChannel {
        &self.channel
    }
    pub fn party(&self) -> &DevicePartyId {
        &self.party
    }
    /// The `call.started` body of this call, once known.
    pub fn started(&self) -> Option<&StartedBody> {
        self.started.as_ref()
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When [`CallMachine::handle_timeout`] should run next, if ever.
    pub fn next_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Outgoing | Phase::Ringing if self.own_ring_timeout => self.ring_deadline_ms,
            Phase::Incoming | Phase::Alerting => self.ring_deadline_ms,
            Phase::Connecting => self.connect_deadline_ms,
            _ => None,
        }
    }

    fn ended(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    fn send(&mut self, body: EventBody, now_ms: u64) {
        let header = EventHeader {
            v: ProtocolVersion,
            call_id: self.call_id.clone(),
            party_id: self.party.as_party(),
            user_id: self.user.clone(),
            seq: Seq::new(self.next_seq).expect("a device sends far fewer than 2^53 events"),
            sent_at_ms: UnixMillis::new(now_ms).unwrap_or(UnixMillis::MAX),
        };
        let event = match CallEvent::new(Origin::Client, header, body) {
            Ok(e) => e,
            // The machine only builds bodies that satisfy the event rules.
            Err(e) => unreachable!("call machine built an invalid event: {e}"),
        };
        let pieces = if matches!(event.body(), EventBody::Offer(_) | EventBody::Answer(_)) {
            let (limit, sealed) = self.event_limit;
            // Sealing turns the body into base64url and adds the envelope members: budget for it.
            let measure = |e: &CallEvent| {
                let clear = serde_json::Value::Object(e.to_data()).to_string().len();
                if sealed { clear * 4 / 3 + 256 } else { clear }
            };
            let id = ChunkId::parse(&format!("{}-{}", self.party, self.next_seq))
                .expect("party ids fit chunk ids");
            split_sdp(&event, &id, limit, measure).unwrap_or_else(|_| vec![event])
        } else {
            vec![event]
        };
        // Every chunk took its own seq.
        self.next_seq += pieces.len() as u64;
        for piece in pieces {
            self.out.push_back(Action::Send(piece));
        }
    }

    fn end(&mut self, reason: EndReason, send: bool, by_remote: bool, now_ms: u64) {
        if self.ended() {
            return;
        }
        if send {
            self.send(
                EventBody::Ended(EndedBody {
                    reason,
                    to_party_id: None,
                }),
                now_ms,
            );
        }
        self.phase = Phase::Ended(reason);
        self.out.push_back(Action::Ended { reason, by_remote });
    }

    fn wrong(&self, action: &'static str) -> CallError {
        CallError::WrongPhase {
            action,
            phase: self.phase,
        }
    }

    /// Caller: start the call.
    pub fn start(
        &mut self,
        callees: Vec<UserId>,
        media: MediaSelection,
        ring_timeout: RingTimeoutMs,
        privacy: Privacy,
        now_ms: u64,
    ) -> Result<(), CallError> {
        if self.role != Role::Caller || self.phase != Phase::Idle {
            return Err(self.wrong("start"));
        }
        let body = StartedBody {
            channel: self.channel.clone(),
            caller: self.user.clone(),
            callees,
            media,
            ring_timeout_ms: ring_timeout,
            privacy,
            topology: Topology::P2p,
        };
        // Validate before committing to the phase change.
        let probe = EventHeader {
            v: ProtocolVersion,
            call_id: self.call_id.clone(),
            party_id: self.party.as_party(),
            user_id: self.user.clone(),
            seq: Seq::new(self.next_seq).expect("small"),
            sent_at_ms: UnixMillis::new(0).expect("0"),
        };
        CallEvent::new(Origin::Client, probe, EventBody::Started(body.clone()))
            .map_err(|e| CallError::Invalid(format!("[{}] {e}", e.code())))?;
        self.started = Some(body.clone());
        self.caller = Some(self.user.clone());
        self.ring_deadline_ms = Some(now_ms + ring_timeout.get());
        self.phase = Phase::Outgoing;
        self.send(EventBody::Started(body), now_ms);
        Ok(())
    }

    /// Callee: the device is alerting its user.
    pub fn ring(&mut self, now_ms: u64) -> Result<(), CallError> {
        if self.phase != Phase::Incoming {
            return Err(self.wrong("ring"));
        }
        self.phase = Phase::Alerting;
        self.send(EventBody::Ringing, now_ms);
        Ok(())
    }

    /// Callee: the local user answers.
    pub fn accept(&mut self, now_ms: u64) -> Result<(), CallError> {
        if !matches!(self.phase, Phase::Incoming | Phase::Alerting) {
            return Err(self.wrong("accept"));
        }
        self.enter_connecting(now_ms);
        self.send(EventBody::Accepted, now_ms);
        Ok(())
    }

    /// Callee: the local user declines (or is `busy`).
    pub fn decline(&mut self, busy: bool, now_ms: u64) -> Result<(), CallError> {
        if !matches!(self.phase, Phase::Incoming | Phase::Alerting) {
            return Err(self.wrong("decline"));
        }
        let reason = if busy {
            EndReason::Busy
        } else {
            EndReason::Declined
        };
        self.end(reason, true, false, now_ms);
        Ok(())
    }

    /// Either side hangs up; before an answer the caller's hang-up is `cancelled`.
    pub fn hang_up(&mut self, now_ms: u64) -> Result<(), CallError> {
        if self.ended() || self.phase == Phase::Idle {
            return Err(self.wrong("hang_up"));
        }
        let reason = match (self.role, self.phase) {
            (Role::Caller, Phase::Outgoing | Phase::Ringing) => EndReason::Cancelled,
            (Role::Callee, Phase::Incoming | Phase::Alerting) => EndReason::Declined,
            _ => EndReason::Hangup,
        };
        self.end(reason, true, false, now_ms);
        Ok(())
    }

    /// Ends the call for a local failure (`ice_failed`, `media_failed`, `signaling_failed`,
    /// `incompatible`).
    pub fn fail(&mut self, reason: EndReason, now_ms: u64) {
        if !self.ended() && self.phase != Phase::Idle {
            self.end(reason, true, false, now_ms);
        }
    }

    /// ICE connected and DTLS up.
    pub fn media_connected(&mut self) {
        if self.phase == Phase::Connecting {
            self.phase = Phase::Active;
        }
    }

    /// Sends an offer to the peer (first offer after acceptance, or a renegotiation).
    pub fn send_offer(
        &mut self,
        sdp: Sdp,
        ice_restart: bool,
        now_ms: u64,
    ) -> Result<u32, CallError> {
        if !matches!(self.phase, Phase::Connecting | Phase::Active) {
            return Err(self.wrong("send_offer"));
        }
        let to = self.peer.clone().ok_or(CallError::NoPeer)?;
        let negotiation_id = self.next_negotiation;
        self.next_negotiation += 1;
        self.outstanding_offer = Some(negotiation_id);
        self.send(
            EventBody::Offer(OfferBody {
                to_party_id: to,
                sdp,
                negotiation_id,
                ice_restart,
                chunk: None,
            }),
            now_ms,
        );
        self.flush_candidates(now_ms);
        Ok(negotiation_id)
    }

    /// Answers the offer `negotiation_id` of the peer.
    pub fn send_answer(
        &mut self,
        sdp: Sdp,
        negotiation_id: u32,
        now_ms: u64,
    ) -> Result<(), CallError> {
        if !matches!(self.phase, Phase::Connecting | Phase::Active) {
            return Err(self.wrong("send_answer"));
        }
        let to = self.peer.clone().ok_or(CallError::NoPeer)?;
        self.send(
            EventBody::Answer(AnswerBody {
                to_party_id: to,
                sdp,
                negotiation_id,
                chunk: None,
            }),
            now_ms,
        );
        self.answered = true;
        self.flush_candidates(now_ms);
        Ok(())
    }

    /// Local ICE candidates (a batch, possibly the last of this generation). They go out only once
    /// the peer is known and SDP has been exchanged in the local direction; until then they wait.
    pub fn add_local_candidates(
        &mut self,
        candidates: Vec<IceCandidate>,
        end_of_candidates: bool,
        now_ms: u64,
    ) {
        if self.ended() {
            return;
        }
        self.pending_candidates.extend(candidates);
        self.pending_end_of_candidates |= end_of_candidates;
        self.flush_candidates(now_ms);
    }

    fn may_send_candidates(&self) -> bool {
        // The caller's candidates follow its offer; the callee's follow its answer (the offer
        // names the callee's party, so by then the callee knows its peer too).
        self.peer.is_some()
            && matches!(self.phase, Phase::Connecting | Phase::Active)
            && (self.role == Role::Callee || self.next_negotiation > 1)
            && (self.role == Role::Caller || self.answered)
    }

    fn flush_candidates(&mut self, now_ms: u64) {
        if !self.may_send_candidates() {
            return;
        }
        let Some(to) = self.peer.clone() else { return };
        while !self.pending_candidates.is_empty() || self.pending_end_of_candidates {
            let take = self.pending_candidates.len().min(MAX_CANDIDATES_PER_EVENT);
            let batch: Vec<IceCandidate> = self.pending_candidates.drain(..take).collect();
            let last = self.pending_candidates.is_empty() && self.pending_end_of_candidates;
            if batch.is_empty() && !last {
                break;
            }
            self.send(
                EventBody::IceCandidate(IceCandidateBody {
                    to_party_id: to.clone(),
                    candidates: batch,
                    end_of_candidates: last,
                }),
                now_ms,
            );
            if last {
                self.pending_end_of_candidates = false;
            }
        }
    }

    /// Tells the peer about local media.
    pub fn send_media_state(
        &mut self,
        state: MediaStateBody,
        now_ms: u64,
    ) -> Result<(), CallError> {
        if self.ended() || self.phase == Phase::Idle {
            return Err(self.wrong("send_media_state"));
        }
        self.send(EventBody::MediaState(state), now_ms);
        Ok(())
    }

    /// Ring timeout: the caller gives up with `no_answer` (unless the server does it); a callee
    /// device stops ringing without sending anything. Connect timeout: media did not come up in
    /// time, so ICE failed and either side ends the call with `ice_failed`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let Some(deadline) = self.next_timeout() else {
            return;
        };
        if now_ms < deadline {
            return;
        }
        match (self.phase, self.role) {
            (Phase::Connecting, _) => self.end(EndReason::IceFailed, true, false, now_ms),
            (_, Role::Caller) => self.end(EndReason::NoAnswer, true, false, now_ms),
            (_, Role::Callee) => self.end(EndReason::NoAnswer, false, false, now_ms),
        }
    }

    /// A call event received on the call channel (already parsed, opened and checked against the
    /// channel). Returns false when the event was ignored (not for this device, a replay, or not
    /// allowed in the current phase).
    pub fn handle_event(&mut self, event: &CallEvent, now_ms: u64) -> bool {
        let h = event.header();
        if self.ended() || h.call_id != self.call_id || h.party_id == self.party.as_party() {
            return false;
        }
        if let Some(to) = event.body().to_party_id()
            && to != &self.party
        {
            return false;
        }
        if self.seen.accept(&h.party_id, h.seq).is_err() {
            return false;
        }
        let from = h.party_id.as_device();
        match (event.body(), self.role) {
            (EventBody::Started(_), Role::Callee) => self.on_caller_announced(h, now_ms),
            (EventBody::Started(_), Role::Caller) => false,
            (EventBody::Ringing, Role::Caller)
                if matches!(self.phase, Phase::Outgoing | Phase::Ringing) =>
            {
                if self.phase == Phase::Outgoing {
                    self.phase = Phase::Ringing;
                }
                self.out.push_back(Action::PeerRinging {
                    party: h.party_id.clone(),
                });
                true
            }
            (EventBody::Accepted, Role::Caller) => {
                self.on_accepted_as_caller(from, &h.user_id, now_ms)
            }
            (EventBody::Accepted, Role::Callee) => {
                // Another device of the same user answered: stop ringing, send nothing.
                if matches!(self.phase, Phase::Incoming | Phase::Alerting) && h.user_id == self.user
                {
                    self.end(EndReason::AnsweredElsewhere, false, true, now_ms);
                    return true;
                }
                false
            }
            (EventBody::Offer(o), _) => self.on_offer(from, o),
            (EventBody::Answer(a), _) => {
                if self.peer.is_none()
                    || from.as_ref() != self.peer.as_ref()
                    || self.outstanding_offer != Some(a.negotiation_id)
                {
                    return false;
                }
                self.outstanding_offer = None;
                self.out.push_back(Action::RemoteAnswer {
                    sdp: a.sdp.to_string(),
                });
                true
            }
            (EventBody::IceCandidate(c), _) => {
                if from.is_none() || from.as_ref() != self.peer.as_ref() {
                    return false;
                }
                self.out.push_back(Action::RemoteCandidates {
                    candidates: c.candidates.clone(),
                    end_of_candidates: c.end_of_candidates,
                });
                true
            }
            (EventBody::MediaState(m), _) => {
                if from.is_none() || from.as_ref() != self.peer.as_ref() {
                    return false;
                }
                self.out.push_back(Action::RemoteMediaState(*m));
                true
            }
            (EventBody::Ended(e), _) => self.on_ended(from, &h.user_id, e, now_ms),
            _ => false,
        }
    }

    /// The ringing race ([FLOW-012]): the caller sends `call.started` on the call channel once
    /// it is subscribed, and what this device sent before that (ringing, or an acceptance the
    /// caller never heard) may have reached nobody, so it is said once more.
    fn on_caller_announced(&mut self, h: &EventHeader, now_ms: u64) -> bool {
        if h.party_id.is_server() || self.reannounced || Some(&h.user_id) != self.caller.as_ref() {
            return false;
        }
        match self.phase {
            Phase::Alerting => {
                self.reannounced = true;
                self.send(EventBody::Ringing, now_ms);
                true
            }
            // Accepted, and the caller has not answered with an offer yet.
            Phase::Connecting if self.peer.is_none() => {
                self.reannounced = true;
                self.send(EventBody::Accepted, now_ms);
                true
            }
            _ => false,
        }
    }

    fn on_accepted_as_caller(
        &mut self,
        from: Option<DevicePartyId>,
        user: &UserId,
        now_ms: u64,
    ) -> bool {
        let Some(from) = from else { return false };
        let invited = self
            .started
            .as_ref()
            .is_some_and(|s| s.callees.is_empty() || s.callees.contains(user));
        if !invited || user == &self.user {
            return false;
        }
        match self.phase {
            Phase::Outgoing | Phase::Ringing => {
                self.peer = Some(from.clone());
                self.enter_connecting(now_ms);
                self.out.push_back(Action::PeerAccepted {
                    party: from.clone(),
                    user: user.clone(),
                });
                self.out.push_back(Action::CreateOffer { to: from });
                true
            }
            Phase::Connecting | Phase::Active if self.peer.as_ref() != Some(&from) => {
                // A second acceptance: keep the first, end the other device's part.
                self.send(
                    EventBody::Ended(EndedBody {
                        reason: EndReason::AnsweredElsewhere,
                        to_party_id: Some(from),
                    }),
                    now_ms,
                );
                true
            }
            _ => false,
        }
    }

    fn on_offer(&mut self, from: Option<DevicePartyId>, o: &OfferBody) -> bool {
        let Some(from) = from else { return false };
        match (self.role, self.phase) {
            // The callee learns its peer from the first offer: the caller's device.
            (Role::Callee, Phase::Connecting) if self.peer.is_none() => {
                self.peer = Some(from.clone())
            }
            (_, Phase::Connecting | Phase::Active) if self.peer.as_ref() == Some(&from) => {}
            _ => return false,
        }
        let collision = self.outstanding_offer.is_some();
        if collision && self.role == Role::Caller {
            // Impolite peer: ignore the colliding offer; ours stands.
            return false;
        }
        self.outstanding_offer = None;
        self.out.push_back(Action::RemoteOffer {
            from,
            sdp: o.sdp.to_string(),
            negotiation_id: o.negotiation_id,
            ice_restart: o.ice_restart,
            rollback: collision,
        });
        true
    }

    fn on_ended(
        &mut self,
        from: Option<DevicePartyId>,
        user: &UserId,
        e: &EndedBody,
        now_ms: u64,
    ) -> bool {
        let from_server = from.is_none();
        let relevant = match self.role {
            // After an answer only the peer (or the server) ends the call. Before it, a decline or
            // busy of the only invited callee ends it; with several callees the others still ring.
            Role::Caller => match &self.peer {
                Some(peer) => from_server || from.as_ref() == Some(peer),
                None => {
                    from_server
                        || (matches!(e.reason, EndReason::Declined | EndReason::Busy)
                            && self.started.as_ref().is_some_and(|s| s.callees.len() == 1))
                }
            },
            // Only the caller's devices (or the server) end the call for a callee.
            Role::Callee => {
                from_server
                    || (self.caller.as_ref() == Some(user)
                        && (self.peer.is_none() || from.as_ref() == self.peer.as_ref()))
            }
        };
        if !relevant {
            return false;
        }
        self.end(e.reason, false, true, now_ms);
        true
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod chunk_tests;
