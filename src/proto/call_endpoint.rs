//! One device's end of a call as a pure state machine: frames of the call channel in, client
//! events to send and actions for the app and its WebRTC peer out. It owns the receive pipeline
//! (parse, channel filter, privacy guard, chunk reassembly, then the [`CallMachine`]), sealing of
//! sensitive events in strong-privacy calls (the nonce is an argument), batching of local ICE
//! candidates over [`CANDIDATE_BATCH_WINDOW_MS`], and which user actions are reported to the
//! trusted server ([SRV-025]).
//!
//! Invariants: events leave in the order the machine produced them; an event that fails a check
//! never reaches the machine and is kept as a [`Refusal`] naming the rule it broke; only call
//! events on this call's channel can be refusals (other traffic of a shared connection is
//! ignored); a local candidate waits at most one batching window.
//!
//! [`crate::session`] is the tokio driver around it, with the reference client and WebRTC peer.

use std::collections::VecDeque;

use serde_json::{Map, Value, json};

use crate::call::{Action, CallError, CallMachine, Phase, Role};
use crate::channel::{CallChannel, ChannelName};
use crate::envelope::{ChannelKey, EnvelopeError, PrivacyGuard, seal};
use crate::event::chunk::ChunkAssembler;
use crate::event::{
    CallEvent, EndReason, IceCandidate, MediaSelection, MediaStateBody, Privacy, Refusal,
    RingTimeoutMs, Sdp, is_call_event_name, parse_frame,
};
use crate::ids::{CallId, UserId};
use crate::limits::CANDIDATE_BATCH_WINDOW_MS;
use crate::pusher::Frame;

/// A client event to send on the call channel, as the client's `trigger` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub event: String,
    pub data: Value,
}

/// What the local user did, for the trusted server's record ([SRV-025]): on a private channel
/// the only identity the record may use ([SRV-016]), on a presence channel the second path beside
/// the realtime server's webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionReport {
    Accept,
    Decline { busy: bool },
    End { reason: EndReason },
}

impl ActionReport {
    /// The trusted server's path for this report of call `call_id`.
    pub fn path(&self, call_id: &CallId) -> String {
        let action = match self {
            ActionReport::Accept => "accept",
            ActionReport::Decline { .. } => "decline",
            ActionReport::End { .. } => "end",
        };
        format!("/calls/{call_id}/{action}")
    }

    /// The JSON body, if the report has one.
    pub fn body(&self) -> Option<Value> {
        match self {
            ActionReport::Accept => None,
            ActionReport::Decline { busy } => Some(json!({ "busy": busy })),
            ActionReport::End { reason } => Some(json!({ "reason": reason })),
        }
    }
}

/// How long a device keeps retrying a report of its user's action: longer than a trusted server
/// takes to restart, shorter than any ring timeout a report could still change.
pub const REPORT_RETRY_FOR_MS: u64 = 60_000;
/// The pause after a report's first failed attempt; it doubles up to [`MAX_REPORT_PAUSE_MS`].
pub const FIRST_REPORT_PAUSE_MS: u64 = 250;
pub const MAX_REPORT_PAUSE_MS: u64 = 4_000;

/// What to do after one attempt at sending an [`ActionReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportNext {
    /// Answered with 2xx: applied, or already known (a repeat changes nothing, [SRV-025]).
    Done,
    /// Refused for good (a 4xx other than 408 and 429): sending it again would not help.
    Refused,
    /// Not answered, or answered 5xx, 408 or 429: try again after this many milliseconds.
    RetryAfter(u64),
    /// Still not answered after [`REPORT_RETRY_FOR_MS`]: stop.
    GiveUp,
}

impl ActionReport {
    /// After attempt number `attempt` (1 for the first) got `status` (`None`: no answer),
    /// `elapsed_ms` after the first attempt began.
    pub fn after_attempt(status: Option<u16>, attempt: u32, elapsed_ms: u64) -> ReportNext {
        match status {
            Some(s) if (200..300).contains(&s) => return ReportNext::Done,
            Some(s) if s < 500 && s != 408 && s != 429 => return ReportNext::Refused,
            _ => {}
        }
        let doublings = attempt.saturating_sub(1).min(16);
        let pause = (FIRST_REPORT_PAUSE_MS << doublings).min(MAX_REPORT_PAUSE_MS);
        if elapsed_ms + pause > REPORT_RETRY_FOR_MS {
            ReportNext::GiveUp
        } else {
            ReportNext::RetryAfter(pause)
        }
    }
}

/// What the shell must do besides sending [`CallEndpoint::poll_transmit`]'s events.
// Outputs live briefly in a short queue; boxing the common variant would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointOutput {
    /// For the app and its WebRTC peer; never [`Action::Send`] (sending is the endpoint's job).
    Action(Action),
    /// Tell the trusted server, retrying until it answers (it applies a repeat once).
    Report(ActionReport),
    /// What happened, for a timeline or a log.
    Note(String),
}

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The command does not fit the call's phase (the caller misused the API).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The SDP given is not valid for the protocol.
    #[error("the SDP is not valid: {0}")]
    InvalidSdp(String),
    /// A strong-privacy call needs the channel key from the auth endpoint.
    #[error("a strong-privacy call needs shared_secret from the auth endpoint")]
    MissingChannelKey,
    /// The channel key the auth endpoint gave is not a valid key.
    #[error("the channel key is not valid: {0}")]
    BadChannelKey(EnvelopeError),
}

/// One device's end of one call.
///
/// Driving rule: after creating the endpoint and after every input (`handle_frame`,
/// `handle_timeout`, `handle_send_refused`, `handle_channel_lost`) or command, the shell drains,
/// in this order, [`CallEndpoint::poll_transmit`] until `None` (triggering each event in order,
/// with a fresh random nonce per call), then [`CallEndpoint::poll_output`] until `None`, then
/// waits for the next input or [`CallEndpoint::poll_timeout`], calling `handle_timeout` then.
#[derive(Debug)]
pub struct CallEndpoint {
    machine: CallMachine,
    channel: CallChannel,
    channel_name: String,
    guard: PrivacyGuard,
    key: Option<ChannelKey>,
    assembler: ChunkAssembler,
    pending_candidates: Vec<IceCandidate>,
    candidates_due_ms: Option<u64>,
    to_send: VecDeque<CallEvent>,
    outputs: VecDeque<EndpointOutput>,
    refusals: Vec<Refusal>,
    #[cfg(feature = "defects")]
    defect: Option<crate::client_defect::ClientDefect>,
}

impl CallEndpoint {
    /// The endpoint of `machine`'s call with `privacy`; a strong call needs the channel key
    /// (`shared_secret`, base64) the auth endpoint gave with the subscription.
    pub fn new(
        machine: CallMachine,
        privacy: Privacy,
        shared_secret: Option<&str>,
    ) -> Result<CallEndpoint, EndpointError> {
        let channel = machine.channel().clone();
        let key = match (privacy, shared_secret) {
            (Privacy::Strong, Some(secret)) => {
                Some(ChannelKey::from_shared_secret(secret).map_err(EndpointError::BadChannelKey)?)
            }
            (Privacy::Strong, None) => return Err(EndpointError::MissingChannelKey),
            _ => None,
        };
        let mut guard = PrivacyGuard::new(channel.clone(), privacy);
        if let Some(k) = &key {
            guard.install_key(k.clone());
        }
        Ok(CallEndpoint {
            channel_name: channel.to_string(),
            machine,
            channel,
            guard,
            key,
            assembler: ChunkAssembler::new(),
            pending_candidates: Vec::new(),
            candidates_due_ms: None,
            to_send: VecDeque::new(),
            outputs: VecDeque::new(),
            refusals: Vec::new(),
            #[cfg(feature = "defects")]
            defect: None,
        })
    }

    /// Test-only: break one rule of receiving, so the client-role cases can be seen to catch it.
    #[cfg(feature = "defects")]
    pub fn with_defect(mut self, defect: Option<crate::client_defect::ClientDefect>) -> Self {
        self.defect = defect;
        self
    }

    /// The frame as a client with the configured defect reads it.
    #[cfg(feature = "defects")]
    fn misread(&self, frame: &Frame) -> Option<Frame> {
        use crate::client_defect::ClientDefect;
        let mut data = frame.data.as_ref()?.to_object().ok()?;
        let mut frame = frame.clone();
        match self.defect? {
            ClientDefect::ActOnOtherCall => {
                data.insert("call_id".into(), self.channel.call_id().to_string().into());
            }
            ClientDefect::TrustUnverifiedUser if frame.user_id.is_none() => {
                frame.user_id = data.get("user_id")?.as_str().map(str::to_owned);
            }
            _ => return None,
        }
        frame.data = Some(crate::pusher::FrameData::Text(
            serde_json::Value::Object(data).to_string(),
        ));
        Some(frame)
    }

    pub fn phase(&self) -> Phase {
        self.machine.phase()
    }

    pub fn role(&self) -> Role {
        self.machine.role()
    }

    pub fn channel(&self) -> &CallChannel {
        &self.channel
    }

    /// The call's invitation, once known (the caller's own after `start`).
    pub fn started(&self) -> Option<&crate::event::StartedBody> {
        self.machine.started()
    }

    /// See [`CallMachine::crossing`].
    pub fn crossing(&self, invitation: &crate::event::StartedBody) -> crate::call::Crossing {
        let crossing = self.machine.crossing(invitation);
        #[cfg(feature = "defects")]
        {
            use crate::call::Crossing;
            use crate::client_defect::ClientDefect;
            match (self.defect, crossing) {
                (Some(ClientDefect::IgnoreGlare), _) => return Crossing::Unrelated,
                (Some(ClientDefect::AlwaysYieldGlare), Crossing::KeepMine) => {
                    return Crossing::YieldToTheirs;
                }
                _ => {}
            }
        }
        crossing
    }

    /// The channel's name, as the client subscribes to it and triggers on it.
    pub fn channel_name(&self) -> &str {
        &self.channel_name
    }

    /// Events on the call channel this device refused so far, in order, each with the rule it
    /// broke: the first one usually explains why a call did not go on.
    pub fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }

    // ---- inputs -------------------------------------------------------------------------------

    /// One frame of the connection: a call event on this call's channel passes the privacy guard
    /// and chunk reassembly before the machine sees it; anything else is not this call's.
    pub fn handle_frame(&mut self, frame: &Frame, now_ms: u64) {
        #[cfg(feature = "defects")]
        let misread = self.misread(frame);
        #[cfg(feature = "defects")]
        let frame = misread.as_ref().unwrap_or(frame);
        let on_this_channel = frame.channel.as_deref() == Some(self.channel_name.as_str());
        let incoming = match parse_frame(frame) {
            Ok((ChannelName::Call(ch), incoming)) if ch == self.channel => incoming,
            Ok(_) => return,
            // Only call events on this call's channel concern it; other events of a shared
            // connection (member events, other channels) are not refusals.
            Err(e) if on_this_channel && is_call_event_name(&frame.event) => {
                return self.refuse(Refusal::of_event(&frame.event, &e));
            }
            Err(_) => return,
        };
        #[cfg(feature = "defects")]
        let incoming = match incoming {
            crate::event::Incoming::Clear(e)
                if self.defect == Some(crate::client_defect::ClientDefect::AcceptDowngrade)
                    && e.kind().is_sensitive() =>
            {
                // Taken as it came, as if the call were standard.
                let whole = self.assembler.push(e, now_ms);
                if let Ok(Some(whole)) = whole {
                    self.machine.handle_event(&whole, now_ms);
                    self.collect();
                }
                return;
            }
            other => other,
        };
        let event = match self.guard.receive(incoming) {
            Ok(e) => e,
            Err(e) => {
                return self.refuse(Refusal::new(&frame.event, e.code(), e.requirement(), &e));
            }
        };
        match self.assembler.push(event, now_ms) {
            Ok(Some(whole)) => {
                self.machine.handle_event(&whole, now_ms);
            }
            Ok(None) => {}
            Err(e) => self.refuse(Refusal::new(&frame.event, e.code(), e.requirement(), &e)),
        }
        self.collect();
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.outputs.push_back(EndpointOutput::Note(format!(
            "{refusal} ({})",
            refusal.code
        )));
        self.refusals.push(refusal);
    }

    /// Time passed: the machine's ring and connect timeouts, and a candidate batch that is due.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.candidates_due_ms.is_some_and(|t| t <= now_ms) {
            self.flush_candidates(false, now_ms);
        }
        self.machine.handle_timeout(now_ms);
        self.collect();
    }

    /// The server refused one of our signaling events for a reason other than the rate: a
    /// signaling event cannot be skipped, so the call cannot go on.
    pub fn handle_send_refused(&mut self, event: &str, reason: &str, now_ms: u64) {
        self.outputs.push_back(EndpointOutput::Note(format!(
            "signaling failed: {event} refused: {reason}"
        )));
        self.machine.fail(EndReason::SignalingFailed, now_ms);
        self.collect();
    }

    /// The call channel's subscription is gone for good: nothing more can be heard on it.
    pub fn handle_channel_lost(&mut self, reason: &str, now_ms: u64) {
        self.outputs.push_back(EndpointOutput::Note(format!(
            "lost the call channel: {reason}"
        )));
        self.machine.fail(EndReason::SignalingFailed, now_ms);
        self.collect();
    }

    // ---- commands -----------------------------------------------------------------------------

    /// Caller: starts the call by sending `call.started` on the channel.
    pub fn start(
        &mut self,
        callees: Vec<UserId>,
        media: MediaSelection,
        ring: RingTimeoutMs,
        privacy: Privacy,
        now_ms: u64,
    ) -> Result<(), EndpointError> {
        self.machine.start(callees, media, ring, privacy, now_ms)?;
        self.collect();
        Ok(())
    }

    /// Callee: this device rings.
    pub fn ring(&mut self, now_ms: u64) -> Result<(), EndpointError> {
        self.machine.ring(now_ms)?;
        self.collect();
        Ok(())
    }

    /// The local user answers.
    pub fn accept(&mut self, now_ms: u64) -> Result<(), EndpointError> {
        self.machine.accept(now_ms)?;
        self.outputs
            .push_back(EndpointOutput::Note("accepted".into()));
        self.outputs
            .push_back(EndpointOutput::Report(ActionReport::Accept));
        self.collect();
        Ok(())
    }

    /// The local user declines (or is busy).
    pub fn decline(&mut self, busy: bool, now_ms: u64) -> Result<(), EndpointError> {
        self.machine.decline(busy, now_ms)?;
        self.outputs
            .push_back(EndpointOutput::Report(ActionReport::Decline { busy }));
        self.collect();
        Ok(())
    }

    /// Hangs up (or cancels, before an answer).
    pub fn hang_up(&mut self, now_ms: u64) -> Result<(), EndpointError> {
        self.machine.hang_up(now_ms)?;
        // The machine decided the reason (hang-up, or cancelled before an answer).
        if let Phase::Ended(reason) = self.machine.phase() {
            self.outputs
                .push_back(EndpointOutput::Report(ActionReport::End { reason }));
        }
        self.collect();
        Ok(())
    }

    /// Ends the call for a local reason (`replaced` after glare, `ice_failed`, ...).
    pub fn fail(&mut self, reason: EndReason, now_ms: u64) {
        self.machine.fail(reason, now_ms);
        self.collect();
    }

    /// Sends a local offer; returns its negotiation id.
    pub fn send_offer(
        &mut self,
        sdp: &str,
        ice_restart: bool,
        now_ms: u64,
    ) -> Result<u32, EndpointError> {
        let sdp = Sdp::parse(sdp).map_err(|e| EndpointError::InvalidSdp(e.to_string()))?;
        let id = self.machine.send_offer(sdp, ice_restart, now_ms)?;
        self.collect();
        Ok(id)
    }

    /// Answers the remote offer with `negotiation_id`.
    pub fn send_answer(
        &mut self,
        sdp: &str,
        negotiation_id: u32,
        now_ms: u64,
    ) -> Result<(), EndpointError> {
        let sdp = Sdp::parse(sdp).map_err(|e| EndpointError::InvalidSdp(e.to_string()))?;
        self.machine.send_answer(sdp, negotiation_id, now_ms)?;
        self.collect();
        Ok(())
    }

    /// One local candidate: it waits for more over [`CANDIDATE_BATCH_WINDOW_MS`] so a call setup
    /// takes a handful of events per side.
    pub fn add_local_candidate(&mut self, candidate: IceCandidate, now_ms: u64) {
        self.pending_candidates.push(candidate);
        self.candidates_due_ms
            .get_or_insert(now_ms + CANDIDATE_BATCH_WINDOW_MS);
    }

    /// Gathering is complete: what is pending leaves now, marked as the last.
    pub fn local_candidates_complete(&mut self, now_ms: u64) {
        self.flush_candidates(true, now_ms);
        self.collect();
    }

    /// Candidates of the app's own batching, sent now (batched into as few events as the rules
    /// allow).
    pub fn add_local_candidates(
        &mut self,
        candidates: Vec<IceCandidate>,
        end_of_candidates: bool,
        now_ms: u64,
    ) {
        self.machine
            .add_local_candidates(candidates, end_of_candidates, now_ms);
        self.collect();
    }

    fn flush_candidates(&mut self, end_of_candidates: bool, now_ms: u64) {
        let batch = std::mem::take(&mut self.pending_candidates);
        self.candidates_due_ms = None;
        self.machine
            .add_local_candidates(batch, end_of_candidates, now_ms);
        #[cfg(feature = "defects")]
        if end_of_candidates
            && self.defect == Some(crate::client_defect::ClientDefect::EndCandidatesTwice)
        {
            self.machine.add_local_candidates(Vec::new(), true, now_ms);
        }
    }

    pub fn send_media_state(
        &mut self,
        state: MediaStateBody,
        now_ms: u64,
    ) -> Result<(), EndpointError> {
        self.machine.send_media_state(state, now_ms)?;
        self.collect();
        Ok(())
    }

    /// Media connected (ICE and DTLS up).
    pub fn media_connected(&mut self) {
        self.machine.media_connected();
        self.outputs
            .push_back(EndpointOutput::Note("DTLS up: media can flow".into()));
    }

    /// How long media may take to connect after the answer.
    pub fn set_connect_timeout(&mut self, timeout_ms: u64) {
        self.machine.set_connect_timeout(timeout_ms);
    }

    // ---- outputs ------------------------------------------------------------------------------

    /// Moves what the machine produced into the endpoint's queues, in order.
    fn collect(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Send(event) => self.to_send.push_back(event),
                Action::PeerRinging { .. } => {
                    self.outputs
                        .push_back(EndpointOutput::Note("ringing".into()));
                    self.outputs.push_back(EndpointOutput::Action(action));
                }
                Action::Ended { reason, by_remote } => {
                    self.outputs.push_back(EndpointOutput::Note(format!(
                        "ended: {reason:?}{}",
                        if by_remote { " (remote)" } else { "" }
                    )));
                    self.outputs.push_back(EndpointOutput::Action(action));
                }
                other => self.outputs.push_back(EndpointOutput::Action(other)),
            }
        }
    }

    /// The next event to trigger on the call channel. `nonce` must be fresh and random: a
    /// sensitive event of a strong-privacy call is sealed with it (the machine already chunked
    /// large SDP).
    pub fn poll_transmit(&mut self, nonce: [u8; 24], now_ms: u64) -> Option<Transmit> {
        let event = self.to_send.pop_front()?;
        let (name, data): (String, Map<String, Value>) =
            match (&self.key, event.kind().is_sensitive()) {
                (Some(k), true) => match seal(k, &self.channel, &event, nonce) {
                    Ok(sealed) => (sealed.wire_name(), sealed.to_data()),
                    Err(e) => {
                        // Sending it in the clear would downgrade the call; not sending it
                        // leaves the peer waiting: the call cannot go on.
                        self.outputs.push_back(EndpointOutput::Note(format!(
                            "cannot seal {}: {e}",
                            event.wire_name()
                        )));
                        self.to_send.clear();
                        self.machine.fail(EndReason::SignalingFailed, now_ms);
                        self.collect();
                        return None;
                    }
                },
                _ => (event.wire_name(), event.to_data()),
            };
        self.outputs
            .push_back(EndpointOutput::Note(format!("sent {name}")));
        Some(Transmit {
            event: name,
            data: Value::Object(data),
        })
    }

    /// The next thing for the app, its WebRTC peer or the trusted server.
    pub fn poll_output(&mut self) -> Option<EndpointOutput> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` has work: the machine's next deadline or a candidate batch.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.machine
            .next_timeout()
            .into_iter()
            .chain(self.candidates_due_ms)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_retry_what_a_restart_or_overload_explains_and_stop_on_the_rest() {
        assert_eq!(
            ActionReport::after_attempt(Some(200), 1, 0),
            ReportNext::Done
        );
        assert_eq!(
            ActionReport::after_attempt(Some(204), 3, 900),
            ReportNext::Done
        );
        for refused in [400, 401, 403, 404, 409, 422] {
            assert_eq!(
                ActionReport::after_attempt(Some(refused), 1, 0),
                ReportNext::Refused
            );
        }
        for retried in [None, Some(408), Some(429), Some(500), Some(503)] {
            assert_eq!(
                ActionReport::after_attempt(retried, 1, 0),
                ReportNext::RetryAfter(FIRST_REPORT_PAUSE_MS)
            );
        }
        // Doubling pauses, capped.
        let pauses: Vec<_> = (1..=7)
            .map(|a| ActionReport::after_attempt(None, a, 0))
            .collect();
        assert_eq!(
            pauses,
            [250, 500, 1_000, 2_000, 4_000, 4_000, 4_000].map(ReportNext::RetryAfter)
        );
        // Not past the retry window.
        assert_eq!(
            ActionReport::after_attempt(None, 9, REPORT_RETRY_FOR_MS - 1_000),
            ReportNext::GiveUp
        );
        assert_eq!(
            ActionReport::after_attempt(None, 9, REPORT_RETRY_FOR_MS - 4_000),
            ReportNext::RetryAfter(4_000)
        );
    }
}
