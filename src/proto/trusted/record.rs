//! A call as the trusted server records it, and every decision that changes the record: starting a
//! call, accepting, ending, the ring timeout. The shell loads a record, calls one of these, and
//! stores the result (record, log entries, missed calls, events to send) in one transaction.
//!
//! Invariants: `state` only moves forward (Ringing → Active → Ended, or Ringing → Ended); an ended
//! record never changes again; a missed call is produced only when a call ends with `no_answer` or
//! `cancelled` before anyone accepted; `server_seq` grows by one for every event the server sends.

use serde::{Deserialize, Serialize};

use crate::channel::{CallChannel, ChannelKind, InboxChannel};
use crate::event::{
    CallEvent, EndReason, EndedBody, EventBody, EventHeader, EventKind, Incoming, MediaSelection,
    Origin, Privacy, ProtocolVersion, RingTimeoutMs, Seq, StartedBody, Topology, UnixMillis,
};
use crate::ids::{CallId, PartyId, Scope, ScopeId, UserId};
use crate::trusted::Directory;
use crate::trusted::webhook::{WebhookEvent, WebhookKind};

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Ringing,
    Active,
    Ended,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Active => "active",
            CallState::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<CallState> {
        match s {
            "ringing" => Some(CallState::Ringing),
            "active" => Some(CallState::Active),
            "ended" => Some(CallState::Ended),
            _ => None,
        }
    }
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub call_id: CallId,
    pub channel: CallChannel,
    pub caller: UserId,
    pub callees: Vec<UserId>,
    pub media: MediaSelection,
    pub privacy: Privacy,
    pub topology: Topology,
    pub ring_timeout_ms: u64,
    pub created_at_ms: u64,
    pub state: CallState,
    pub accepted_by: Option<UserId>,
    pub accepted_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub end_reason: Option<EndReason>,
    /// Seq of the last event the server sent for this call.
    pub server_seq: u64,
}

impl CallRecord {
    /// When the call stops ringing if nobody accepts.
    pub fn ring_deadline_ms(&self) -> u64 {
        self.created_at_ms + self.ring_timeout_ms
    }

    /// Whether `user` may join the call channel: the caller, an invited callee, or with an empty
    /// callee list any member of the scope.
    pub fn may_join(&self, dir: &Directory, user: &UserId) -> bool {
        user == &self.caller
            || self.callees.contains(user)
            || (self.callees.is_empty()
                && dir.is_member(user, self.channel.scope(), self.channel.scope_id()))
    }

    /// Users who missed the call if it ended unanswered: the callees, or every other scope member.
    pub fn missed_by(&self, dir: &Directory) -> Vec<UserId> {
        if self.callees.is_empty() {
            dir.members(self.channel.scope(), self.channel.scope_id())
                .iter()
                .filter(|u| **u != self.caller)
                .cloned()
                .collect()
        } else {
            self.callees.clone()
        }
    }

    /// A server event for this call, taking the next server seq.
    fn server_event(&mut self, body: EventBody, now_ms: u64) -> CallEvent {
        self.server_seq += 1;
        let header = EventHeader {
            v: ProtocolVersion,
            call_id: self.call_id.clone(),
            party_id: PartyId::server(),
            user_id: self.caller.clone(),
            seq: Seq::new(self.server_seq).expect("server seq stays far below 2^53"),
            sent_at_ms: UnixMillis::new(now_ms).unwrap_or(UnixMillis::MAX),
        };
        CallEvent::new(Origin::Server, header, body).expect("server events are built valid")
    }

    fn end(&mut self, reason: EndReason, at_ms: u64, dir: &Directory) -> Vec<UserId> {
        let was_answered = self.accepted_by.is_some();
        self.state = CallState::Ended;
        self.end_reason = Some(reason);
        self.ended_at_ms = Some(at_ms);
        if reason.is_missed() && !was_answered {
            self.missed_by(dir)
        } else {
            Vec::new()
        }
    }
}

/// What a caller asks for in `POST /calls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    pub scope: Scope,
    pub scope_id: ScopeId,
    #[serde(default)]
    pub callees: Vec<UserId>,
    #[serde(default = "audio_only")]
    pub media: MediaSelection,
    #[serde(default = "standard")]
    pub privacy: Privacy,
    /// `presence` (default: verified identities and a member list) or `private`.
    #[serde(default = "presence")]
    pub kind: ChannelKind,
    #[serde(default)]
    pub ring_timeout_ms: Option<u64>,
    #[serde(default = "p2p")]
    pub topology: Topology,
}

fn audio_only() -> MediaSelection {
    MediaSelection {
        audio: true,
        video: false,
        screen: false,
    }
}
fn standard() -> Privacy {
    Privacy::Standard
}
fn presence() -> ChannelKind {
    ChannelKind::Presence
}
fn p2p() -> Topology {
    Topology::P2p
}

/// Why a call cannot be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallRequestError {
    #[error("you are not a member of {scope}.{scope_id}")]
    CallerNotMember { scope: String, scope_id: String },
    #[error("callee {user} is not a member of the scope")]
    CalleeNotMember { user: String },
    #[error("invalid call: {0}")]
    Invalid(String),
    #[error(
        "the call would invite {count} users, more than {}; name the callees",
        crate::limits::MAX_INVITEES
    )]
    TooManyInvitees { count: usize },
}

impl CallRequestError {
    pub fn code(&self) -> &'static str {
        match self {
            CallRequestError::CallerNotMember { .. } => "call.caller_not_member",
            CallRequestError::CalleeNotMember { .. } => "call.callee_not_member",
            CallRequestError::Invalid(_) => "call.invalid",
            CallRequestError::TooManyInvitees { .. } => "call.too_many_invitees",
        }
    }
}

/// A call ready to store, with the invitation to deliver to each callee's inbox.
#[derive(Debug, Clone)]
pub struct PlannedCall {
    pub record: CallRecord,
    pub invitation: CallEvent,
    pub inboxes: Vec<InboxChannel>,
}

/// Checks a call request and builds its record and invitation. `call_id` is fresh and random.
pub fn plan_call(
    dir: &Directory,
    caller: &UserId,
    req: CallRequest,
    call_id: CallId,
    now_ms: u64,
) -> Result<PlannedCall, CallRequestError> {
    if !dir.is_member(caller, &req.scope, &req.scope_id) {
        return Err(CallRequestError::CallerNotMember {
            scope: req.scope.to_string(),
            scope_id: req.scope_id.to_string(),
        });
    }
    if let Some(u) = req
        .callees
        .iter()
        .find(|u| !dir.is_member(u, &req.scope, &req.scope_id))
    {
        return Err(CallRequestError::CalleeNotMember {
            user: u.to_string(),
        });
    }
    let ring = match req.ring_timeout_ms {
        Some(ms) => RingTimeoutMs::new(ms).ok_or_else(|| {
            CallRequestError::Invalid(format!("ring_timeout_ms {ms} is outside 5000..=300000"))
        })?,
        None => RingTimeoutMs::default(),
    };
    let channel = CallChannel::new(req.kind, req.scope, req.scope_id, call_id.clone())
        .map_err(|e| CallRequestError::Invalid(e.to_string()))?;
    let mut record = CallRecord {
        call_id,
        channel: channel.clone(),
        caller: caller.clone(),
        callees: req.callees.clone(),
        media: req.media,
        privacy: req.privacy,
        topology: req.topology,
        ring_timeout_ms: ring.get(),
        created_at_ms: now_ms,
        state: CallState::Ringing,
        accepted_by: None,
        accepted_at_ms: None,
        ended_at_ms: None,
        end_reason: None,
        server_seq: 0,
    };
    let body = EventBody::Started(StartedBody {
        channel,
        caller: caller.clone(),
        callees: req.callees,
        media: req.media,
        ring_timeout_ms: ring,
        privacy: req.privacy,
        topology: req.topology,
    });
    // CallEvent::new checks the rest (caller not among callees, no duplicates, at most 32).
    record.server_seq += 1;
    let header = EventHeader {
        v: ProtocolVersion,
        call_id: record.call_id.clone(),
        party_id: PartyId::server(),
        user_id: caller.clone(),
        seq: Seq::new(record.server_seq).expect("1"),
        sent_at_ms: UnixMillis::new(now_ms).unwrap_or(UnixMillis::MAX),
    };
    let invitation = CallEvent::new(Origin::Server, header, body)
        .map_err(|e| CallRequestError::Invalid(format!("[{}] {e}", e.code())))?;
    let invitees = record.missed_by(dir);
    if invitees.len() > crate::limits::MAX_INVITEES {
        return Err(CallRequestError::TooManyInvitees {
            count: invitees.len(),
        });
    }
    let inboxes = invitees.into_iter().map(InboxChannel::new).collect();
    Ok(PlannedCall {
        record,
        invitation,
        inboxes,
    })
}

/// A log line about a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub at_ms: u64,
    pub kind: String,
    pub user_id: Option<String>,
    pub detail: String,
}

/// What applying an input changed besides the record itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub log: Vec<LogEntry>,
    /// Users for whom a missed-call record is written.
    pub missed: Vec<UserId>,
    /// Server events to send to the call channel.
    pub send: Vec<CallEvent>,
}

/// Applies one webhook event about the call.
///
/// Identity rule ([SRV-016]): acceptance, decline and hang-up change the record only when the
/// realtime server verified who sent them, i.e. the event carries the server-added `user_id` of a
/// presence channel and the event's own header names the same user. A `user_id` written inside a
/// private-channel client event is the sender's claim and is never enough; such calls are
/// recorded from the users' own authenticated requests ([`apply_user_action`]). Client events are
/// parsed with the protocol's own parser, so an invalid event changes nothing.
pub fn apply_webhook(
    record: &mut CallRecord,
    dir: &Directory,
    event: &WebhookEvent,
    at_ms: u64,
) -> Outcome {
    let mut out = Outcome::default();
    let verified = event.user_id.clone();
    let log = |kind: &str, detail: String| LogEntry {
        at_ms,
        kind: kind.to_owned(),
        user_id: verified.clone(),
        detail,
    };
    match event.name {
        WebhookKind::ClientEvent => {
            let Some(name) = event.event.as_deref() else {
                return out;
            };
            if !crate::event::is_call_event_name(name) {
                return out;
            }
            let parsed = event
                .data_object()
                .ok_or_else(|| "data is not a JSON object".to_owned())
                .and_then(|d| crate::event::parse_event(name, &d).map_err(|e| e.to_string()));
            let call_event = match parsed {
                Ok(Incoming::Clear(e)) => e,
                // Sealed bodies are for the parties; the server never sees them clear.
                Ok(Incoming::Sealed(_)) => return out,
                Err(e) => {
                    out.log.push(log("event_invalid", format!("{name}: {e}")));
                    return out;
                }
            };
            let kind = call_event.kind();
            let decides = matches!(kind, EventKind::Accepted | EventKind::Ended);
            let user = match (&verified, decides) {
                (_, false) => None,
                (Some(v), true) if call_event.header().user_id.as_str() == v => {
                    UserId::parse(v).ok()
                }
                (Some(_), true) => {
                    out.log.push(log(
                        "identity_mismatch",
                        format!("{name} claims {}", call_event.header().user_id),
                    ));
                    return out;
                }
                (None, true) => {
                    out.log.push(log(
                        "unverified",
                        format!(
                            "{name} on a private channel names {} but the realtime server verified nobody; the record changes only on the user's own request",
                            call_event.header().user_id
                        ),
                    ));
                    return out;
                }
            };
            match (call_event.body(), user) {
                (EventBody::Accepted, Some(u)) => accept(record, dir, &u, at_ms, &mut out),
                (EventBody::Ended(body), Some(u)) => end_by(record, dir, &u, body, at_ms, &mut out),
                (EventBody::Ringing, _) => out.log.push(log("ringing", String::new())),
                _ => {}
            }
        }
        WebhookKind::MemberAdded => out.log.push(log("joined", String::new())),
        WebhookKind::MemberRemoved => out.log.push(log("left", String::new())),
        WebhookKind::ChannelVacated => return end_vacated(record, dir, "channel vacated", at_ms),
        WebhookKind::ChannelOccupied | WebhookKind::Other => {}
    }
    out
}

/// Everybody left an answered call without a `call.ended` (a `channel_vacated` webhook, or the
/// realtime server reporting the channel empty when the record is reconciled with it): the record
/// is closed, as answered, never as missed. A ringing call is left to the ring timeout.
pub fn end_vacated(record: &mut CallRecord, dir: &Directory, how: &str, at_ms: u64) -> Outcome {
    let mut out = Outcome::default();
    if record.state == CallState::Active {
        record.end(EndReason::Unknown, at_ms, dir);
        out.log.push(LogEntry {
            at_ms,
            kind: "ended".into(),
            user_id: None,
            detail: format!("unknown ({how})"),
        });
    }
    out
}

/// What a signed-in user tells the trusted server about a call directly (`POST
/// /calls/{id}/accept|decline|end`): the identity is the bearer token's, so this is how calls on
/// private channels are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAction {
    Accept,
    Decline { busy: bool },
    End { reason: EndReason },
}

/// Applies a user's own request about a call. `user` is authenticated by the shell.
pub fn apply_user_action(
    record: &mut CallRecord,
    dir: &Directory,
    user: &UserId,
    action: &UserAction,
    at_ms: u64,
) -> Outcome {
    let mut out = Outcome::default();
    if !record.may_join(dir, user) {
        out.log.push(LogEntry {
            at_ms,
            kind: "action_refused".into(),
            user_id: Some(user.to_string()),
            detail: "not a party of the call".into(),
        });
        return out;
    }
    match action {
        UserAction::Accept => accept(record, dir, user, at_ms, &mut out),
        UserAction::Decline { busy } => {
            let body = EndedBody {
                reason: if *busy {
                    EndReason::Busy
                } else {
                    EndReason::Declined
                },
                to_party_id: None,
            };
            end_by(record, dir, user, &body, at_ms, &mut out)
        }
        UserAction::End { reason } => {
            let body = EndedBody {
                reason: *reason,
                to_party_id: None,
            };
            end_by(record, dir, user, &body, at_ms, &mut out)
        }
    }
    out
}

fn accept(record: &mut CallRecord, dir: &Directory, user: &UserId, at_ms: u64, out: &mut Outcome) {
    let entry = |kind: &str, detail: String| LogEntry {
        at_ms,
        kind: kind.to_owned(),
        user_id: Some(user.to_string()),
        detail,
    };
    match record.state {
        CallState::Ringing if record.may_join(dir, user) && *user != record.caller => {
            record.state = CallState::Active;
            record.accepted_by = Some(user.clone());
            record.accepted_at_ms = Some(at_ms);
            out.log.push(entry("accepted", String::new()));
        }
        state => out.log.push(entry(
            "accept_ignored",
            format!(
                "call was {} or the accepting user is not a callee",
                state.as_str()
            ),
        )),
    }
}

fn end_by(
    record: &mut CallRecord,
    dir: &Directory,
    user: &UserId,
    body: &EndedBody,
    at_ms: u64,
    out: &mut Outcome,
) {
    let entry = |kind: &str, detail: String| LogEntry {
        at_ms,
        kind: kind.to_owned(),
        user_id: Some(user.to_string()),
        detail,
    };
    let reason = body.reason;
    let reason_text = serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if body.to_party_id.is_some() {
        // Ends one party's part (answered elsewhere), not the call.
        out.log.push(entry("party_ended", reason_text));
    } else if record.state != CallState::Ended {
        out.missed = record.end(reason, at_ms, dir);
        out.log.push(entry("ended", reason_text));
    } else {
        out.log
            .push(entry("end_ignored", "call already ended".into()));
    }
}

/// The ring-timeout watchdog's decision for one record: a ringing call past its deadline ends with
/// `no_answer`, every callee gets a missed call, and `call.ended` goes to the channel.
pub fn expire_if_due(record: &mut CallRecord, dir: &Directory, now_ms: u64) -> Option<Outcome> {
    if record.state != CallState::Ringing || now_ms < record.ring_deadline_ms() {
        return None;
    }
    let missed = record.end(EndReason::NoAnswer, now_ms, dir);
    let ended = record.server_event(
        EventBody::Ended(EndedBody {
            reason: EndReason::NoAnswer,
            to_party_id: None,
        }),
        now_ms,
    );
    Some(Outcome {
        log: vec![LogEntry {
            at_ms: now_ms,
            kind: "ended".into(),
            user_id: None,
            detail: "no_answer (ring timeout)".into(),
        }],
        missed,
        send: vec![ended],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir() -> Directory {
        Directory::demo()
    }
    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn request(callees: &[&str]) -> CallRequest {
        serde_json::from_value(json!({
            "scope": "room", "scope_id": "chat-room-42",
            "callees": callees, "ring_timeout_ms": 30000
        }))
        .unwrap()
    }

    /// A client event as the realtime server reports it; `verified` is the server-added user id
    /// (presence channels only), `sender` the user the event's own header names.
    fn hook(
        event: &str,
        verified: Option<&str>,
        sender: &str,
        body: serde_json::Value,
    ) -> WebhookEvent {
        let mut data = json!({"v": 1, "call_id": "call-1", "party_id": format!("{sender}-phone-1"),
            "user_id": sender, "seq": 1, "sent_at_ms": 0});
        if let (Some(d), Some(b)) = (data.as_object_mut(), body.as_object()) {
            d.extend(b.clone());
        }
        WebhookEvent::client_event(
            "presence-call.room.chat-room-42.call-1",
            event,
            data.to_string(),
            "1.2",
            verified.map(str::to_owned),
        )
    }

    fn planned(callees: &[&str]) -> PlannedCall {
        plan_call(
            &dir(),
            &uid("alice"),
            request(callees),
            CallId::parse("call-1").unwrap(),
            1_000,
        )
        .unwrap()
    }

    #[test]
    fn planning_checks_membership_and_builds_the_invitation() {
        let p = planned(&["bob"]);
        assert_eq!(
            p.record.channel.to_string(),
            "presence-call.room.chat-room-42.call-1"
        );
        assert_eq!(p.inboxes.len(), 1);
        assert_eq!(p.invitation.wire_name(), "call.started");
        assert!(p.invitation.header().party_id.is_server());
        let err = plan_call(
            &dir(),
            &uid("dave"),
            request(&["bob"]),
            CallId::parse("c").unwrap(),
            0,
        );
        assert_eq!(err.unwrap_err().code(), "call.caller_not_member");
        let err = plan_call(
            &dir(),
            &uid("alice"),
            request(&["dave"]),
            CallId::parse("c").unwrap(),
            0,
        );
        assert_eq!(err.unwrap_err().code(), "call.callee_not_member");
        let err = plan_call(
            &dir(),
            &uid("alice"),
            request(&["alice"]),
            CallId::parse("c").unwrap(),
            0,
        );
        assert_eq!(err.unwrap_err().code(), "call.invalid");
        // Empty callees: everybody else in the scope is invited.
        assert_eq!(planned(&[]).inboxes.len(), 2);
    }

    #[test]
    fn accepted_then_hangup_is_not_missed() {
        let mut r = planned(&["bob"]).record;
        let out = apply_webhook(
            &mut r,
            &dir(),
            &hook("client-call.accepted", Some("bob"), "bob", json!({})),
            2_000,
        );
        assert_eq!(out.log[0].kind, "accepted");
        assert_eq!(r.state, CallState::Active);
        let out = apply_webhook(
            &mut r,
            &dir(),
            &hook(
                "client-call.ended",
                Some("alice"),
                "alice",
                json!({"reason": "hangup"}),
            ),
            9_000,
        );
        assert!(out.missed.is_empty());
        assert_eq!(
            (r.state, r.end_reason),
            (CallState::Ended, Some(EndReason::Hangup))
        );
        assert!(
            expire_if_due(&mut r, &dir(), 99_000).is_none(),
            "an ended call never changes"
        );
    }

    #[test]
    fn cancelled_before_answer_is_missed_by_the_callees() {
        let mut r = planned(&["bob", "carol"]).record;
        let out = apply_webhook(
            &mut r,
            &dir(),
            &hook(
                "client-call.ended",
                Some("alice"),
                "alice",
                json!({"reason": "cancelled"}),
            ),
            3_000,
        );
        assert_eq!(out.missed, vec![uid("bob"), uid("carol")]);
    }

    #[test]
    fn ring_timeout_ends_with_no_answer_and_sends_call_ended() {
        let mut r = planned(&["bob"]).record;
        assert!(expire_if_due(&mut r, &dir(), 30_999).is_none());
        let out = expire_if_due(&mut r, &dir(), 31_000).unwrap();
        assert_eq!(out.missed, vec![uid("bob")]);
        assert_eq!(out.send[0].wire_name(), "call.ended");
        assert_eq!(
            out.send[0].header().seq.get(),
            2,
            "the invitation used seq 1"
        );
        assert_eq!(r.end_reason, Some(EndReason::NoAnswer));
    }

    #[test]
    fn acceptance_by_strangers_or_the_caller_is_ignored() {
        let mut r = planned(&["bob"]).record;
        for who in ["carol", "alice", "mallory"] {
            let out = apply_webhook(
                &mut r,
                &dir(),
                &hook("client-call.accepted", Some(who), who, json!({})),
                2_000,
            );
            assert_eq!(out.log[0].kind, "accept_ignored", "{who}");
        }
        assert_eq!(r.state, CallState::Ringing);
    }

    #[test]
    fn answered_elsewhere_ends_only_a_party() {
        let mut r = planned(&["bob"]).record;
        apply_webhook(
            &mut r,
            &dir(),
            &hook("client-call.accepted", Some("bob"), "bob", json!({})),
            2_000,
        );
        let out = apply_webhook(
            &mut r,
            &dir(),
            &hook(
                "client-call.ended",
                Some("alice"),
                "alice",
                json!({"reason": "answered_elsewhere", "to_party_id": "bob-phone-2"}),
            ),
            2_500,
        );
        assert_eq!(out.log[0].kind, "party_ended");
        assert_eq!(r.state, CallState::Active);
    }

    #[test]
    fn a_forged_acceptance_on_a_private_channel_changes_nothing() {
        // The caller claims bob accepted: on a private channel nobody verified the sender.
        let mut r = planned(&["bob"]).record;
        let forged = hook("client-call.accepted", None, "bob", json!({}));
        let out = apply_webhook(&mut r, &dir(), &forged, 2_000);
        assert_eq!(out.log[0].kind, "unverified");
        assert_eq!((r.state, r.accepted_by.clone()), (CallState::Ringing, None));
        // A verified sender whose event names someone else is not believed either.
        let claimed = hook("client-call.accepted", Some("alice"), "bob", json!({}));
        let out = apply_webhook(&mut r, &dir(), &claimed, 2_100);
        assert_eq!(out.log[0].kind, "identity_mismatch");
        assert_eq!(r.state, CallState::Ringing);
        // So the ring timeout still makes it a missed call for bob.
        let out = expire_if_due(&mut r, &dir(), 99_000).unwrap();
        assert_eq!(out.missed, vec![uid("bob")]);
    }

    #[test]
    fn users_record_private_channel_calls_with_their_own_requests() {
        let mut r = planned(&["bob"]).record;
        let out = apply_user_action(&mut r, &dir(), &uid("dave"), &UserAction::Accept, 2_000);
        assert_eq!(out.log[0].kind, "action_refused");
        let out = apply_user_action(&mut r, &dir(), &uid("bob"), &UserAction::Accept, 2_000);
        assert_eq!(out.log[0].kind, "accepted");
        assert_eq!(r.accepted_by, Some(uid("bob")));
        let end = UserAction::End {
            reason: EndReason::Hangup,
        };
        let out = apply_user_action(&mut r, &dir(), &uid("alice"), &end, 5_000);
        assert!(out.missed.is_empty());
        assert_eq!(r.end_reason, Some(EndReason::Hangup));
        let mut declined = planned(&["bob"]).record;
        let out = apply_user_action(
            &mut declined,
            &dir(),
            &uid("bob"),
            &UserAction::Decline { busy: true },
            2_000,
        );
        assert_eq!(declined.end_reason, Some(EndReason::Busy));
        assert!(out.missed.is_empty(), "busy is not a missed call");
    }

    #[test]
    fn invalid_client_events_change_nothing() {
        let mut r = planned(&["bob"]).record;
        let mut bad = hook("client-call.accepted", Some("bob"), "bob", json!({}));
        bad.data = Some(serde_json::Value::String("{\"v\": 1}".into()));
        let out = apply_webhook(&mut r, &dir(), &bad, 2_000);
        assert_eq!(out.log[0].kind, "event_invalid");
        assert_eq!(r.state, CallState::Ringing);
        // The object form some servers send is read as well.
        let mut object = hook("client-call.accepted", Some("bob"), "bob", json!({}));
        let text = object.data.take().unwrap();
        object.data = serde_json::from_str(text.as_str().unwrap()).ok();
        let out = apply_webhook(&mut r, &dir(), &object, 2_000);
        assert_eq!(out.log[0].kind, "accepted");
    }
}
