//! Call events (`spec/04-events.md`): names, header, bodies, parsing from the wire and the rules that tie
//! fields together.
//!
//! Invariant: a [`CallEvent`] satisfies every rule that can be checked from the event alone
//! (field grammars, `seq` range, candidate batch rules, `caller` = `user_id`, who may use the
//! `server` party). It can only be made by [`CallEvent::new`] or [`parse_event`], which share one
//! check. Rules that need the channel the event arrived on are checked by
//! [`CallEvent::check_delivery`]; rules that need history (`seq` strictly increasing, chunk sets)
//! live in [`seq`] and [`chunk`].
//!
//! Unknown data members are ignored, so adding an optional field is a compatible change.

pub mod chunk;
pub mod sealed;
pub mod seq;
pub mod types;

use sealed::SealedEvent;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::channel::{ChannelKind, ChannelName};
use crate::ids::{CallId, DevicePartyId, PartyId, UserId};
use crate::limits::{
    MAX_CALLEES, MAX_CANDIDATES_PER_EVENT, MAX_EVENT_DATA_BYTES, PROTOCOL_VERSION,
};
use crate::pusher::{Frame, FrameError};
pub use types::*;

/// The eight call events, by logical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Started,
    Ringing,
    Accepted,
    Offer,
    Answer,
    IceCandidate,
    MediaState,
    Ended,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Started,
        EventKind::Ringing,
        EventKind::Accepted,
        EventKind::Offer,
        EventKind::Answer,
        EventKind::IceCandidate,
        EventKind::MediaState,
        EventKind::Ended,
    ];

    /// `call.started`, `call.offer`, ...: the logical name, also what the trusted server sends.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Started => "call.started",
            EventKind::Ringing => "call.ringing",
            EventKind::Accepted => "call.accepted",
            EventKind::Offer => "call.offer",
            EventKind::Answer => "call.answer",
            EventKind::IceCandidate => "call.ice_candidate",
            EventKind::MediaState => "call.media_state",
            EventKind::Ended => "call.ended",
        }
    }

    /// The name under which `origin` sends this event.
    pub fn wire_name(self, origin: Origin) -> String {
        match origin {
            Origin::Server => self.name().to_owned(),
            Origin::Client => format!("client-{}", self.name()),
        }
    }

    /// Events whose body is sealed in a strong-privacy call.
    pub fn is_sensitive(self) -> bool {
        matches!(
            self,
            EventKind::Offer | EventKind::Answer | EventKind::IceCandidate | EventKind::MediaState
        )
    }

    /// Events that always name one addressee in `to_party_id`.
    pub fn is_directed(self) -> bool {
        matches!(
            self,
            EventKind::Offer | EventKind::Answer | EventKind::IceCandidate
        )
    }

    /// Whether the event may carry `to_party_id` at all (`call.ended` may, for one reason).
    pub fn may_address(self) -> bool {
        self.is_directed() || self == EventKind::Ended
    }

    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who put the event on the channel: a client (`client-call.*`) or the trusted server through the
/// HTTP API (`call.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Client,
    Server,
}

/// Splits a wire event name into kind and origin; `None` for anything that is not a call event.
pub fn classify_event_name(name: &str) -> Option<(EventKind, Origin)> {
    match name.strip_prefix("client-") {
        Some(rest) => EventKind::from_name(rest).map(|k| (k, Origin::Client)),
        None => EventKind::from_name(name).map(|k| (k, Origin::Server)),
    }
}

/// The header every call event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EventHeader {
    /// Protocol version.
    pub v: ProtocolVersion,
    /// The call's id; equals the call id in the channel name.
    pub call_id: CallId,
    /// The sending device's random id for this call, or `server`.
    pub party_id: PartyId,
    /// The sending user (on server events: the user on whose behalf the server sent it).
    pub user_id: UserId,
    /// Strictly increasing per party.
    pub seq: Seq,
    /// Sender's clock, informational.
    pub sent_at_ms: UnixMillis,
}

/// The body of a call event, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    Started(StartedBody),
    Ringing,
    Accepted,
    Offer(OfferBody),
    Answer(AnswerBody),
    IceCandidate(IceCandidateBody),
    MediaState(MediaStateBody),
    Ended(EndedBody),
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Started(_) => EventKind::Started,
            EventBody::Ringing => EventKind::Ringing,
            EventBody::Accepted => EventKind::Accepted,
            EventBody::Offer(_) => EventKind::Offer,
            EventBody::Answer(_) => EventKind::Answer,
            EventBody::IceCandidate(_) => EventKind::IceCandidate,
            EventBody::MediaState(_) => EventKind::MediaState,
            EventBody::Ended(_) => EventKind::Ended,
        }
    }

    /// The addressee, for events that have one.
    pub fn to_party_id(&self) -> Option<&DevicePartyId> {
        match self {
            EventBody::Offer(b) => Some(&b.to_party_id),
            EventBody::Answer(b) => Some(&b.to_party_id),
            EventBody::IceCandidate(b) => Some(&b.to_party_id),
            EventBody::Ended(b) => b.to_party_id.as_ref(),
            _ => None,
        }
    }

    /// The body members as a JSON object (no header members).
    pub fn to_map(&self) -> Map<String, Value> {
        let value = match self {
            EventBody::Started(b) => serde_json::to_value(b),
            EventBody::Ringing | EventBody::Accepted => serde_json::to_value(NoBody {}),
            EventBody::Offer(b) => serde_json::to_value(b),
            EventBody::Answer(b) => serde_json::to_value(b),
            EventBody::IceCandidate(b) => serde_json::to_value(b),
            EventBody::MediaState(b) => serde_json::to_value(b),
            EventBody::Ended(b) => serde_json::to_value(b),
        };
        match value {
            Ok(Value::Object(m)) => m,
            // Every body type derives Serialize as a struct with string keys.
            _ => unreachable!("event bodies serialize to JSON objects"),
        }
    }
}

/// The flat wire form of an event: header members and body members side by side. Also the type
/// the JSON Schemas are generated from.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WireEvent<B> {
    #[serde(flatten)]
    pub header: EventHeader,
    #[serde(flatten)]
    pub body: B,
}

/// A call event that satisfies every rule checkable from the event alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    origin: Origin,
    header: EventHeader,
    body: EventBody,
}

/// A call event that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The frame or its data is unusable before any call rule applies.
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("`{name}` is not a call event name")]
    UnknownName { name: String },
    #[error("event has no channel")]
    MissingChannel,
    #[error("channel `{name}` is not a call or inbox channel: {reason}")]
    BadChannel {
        name: String,
        reason: crate::channel::ChannelNameError,
    },
    #[error("event data is missing")]
    MissingData,
    #[error(
        "protocol version {found} is not supported (this implementation speaks {PROTOCOL_VERSION})"
    )]
    UnsupportedVersion { found: String },
    #[error("field `{path}` is missing")]
    MissingField { path: String },
    #[error("field `{path}` is invalid: {reason}")]
    InvalidField { path: String, reason: String },
    #[error("`to_party_id` is not allowed on {kind}")]
    UnexpectedToPartyId { kind: EventKind },
    #[error("{kind} cannot be sealed; only offer, answer, ice_candidate and media_state can")]
    SealedNotAllowed { kind: EventKind },
    #[error("party id `server` is reserved for the trusted server and cannot send client events")]
    ReservedPartyId,
    #[error("events from the trusted server must use party id `server`")]
    ServerPartyRequired,
    #[error("`caller` must equal the header's `user_id`")]
    CallerMismatch,
    #[error("the caller cannot be one of the callees")]
    CallerInCallees,
    #[error("callee `{user}` is listed twice")]
    DuplicateCallee { user: String },
    #[error("more than {MAX_CALLEES} callees")]
    TooManyCallees,
    #[error("call_id `{found}` does not match the channel's call id `{expected}`")]
    CallIdMismatch { expected: String, found: String },
    #[error("`channel` in the body names `{found}` but the event arrived on `{expected}`")]
    StartedChannelMismatch { expected: String, found: String },
    #[error("`sdp` without `chunk` must be a whole session description starting with `v=0`")]
    SdpNotWhole,
    #[error("chunk index {index} and count {count} are inconsistent (count 2..=8, index < count)")]
    ChunkInconsistent { index: u8, count: u8 },
    #[error("{count} candidates in one event, more than {MAX_CANDIDATES_PER_EVENT}")]
    TooManyCandidates { count: usize },
    #[error("an empty `candidates` list is only allowed with `end_of_candidates: true`")]
    EmptyCandidates,
    #[error("candidate {index} has neither `sdp_mid` nor `sdp_mline_index`")]
    CandidateWithoutMedia { index: usize },
    #[error("`to_party_id` on call.ended is only allowed with reason `answered_elsewhere`")]
    EndedAddressedWrongly,
    #[error("header `user_id` `{found}` differs from the server-verified user `{verified}`")]
    UserIdMismatch { verified: String, found: String },
    #[error("a client event on a presence channel arrived without the server-added `user_id`")]
    MissingVerifiedUser,
    #[error("only call.started from the trusted server may arrive on an inbox channel, not {name}")]
    NotAllowedOnInbox { name: String },
    #[error("the invitation on `{inbox}` does not list that user among the callees")]
    InboxUserNotCallee { inbox: String },
}

impl EventError {
    /// Stable, language-neutral name of the failure, used in vectors and wire messages.
    pub fn code(&self) -> &'static str {
        use EventError::*;
        match self {
            Frame(e) => e.code(),
            UnknownName { .. } => "event.unknown_name",
            MissingChannel => "event.missing_channel",
            BadChannel { .. } => "event.bad_channel",
            MissingData => "event.missing_data",
            UnsupportedVersion { .. } => "event.unsupported_version",
            MissingField { .. } => "event.missing_field",
            InvalidField { .. } => "event.invalid_field",
            UnexpectedToPartyId { .. } => "event.unexpected_to_party_id",
            SealedNotAllowed { .. } => "event.sealed_not_allowed",
            ReservedPartyId => "event.reserved_party_id",
            ServerPartyRequired => "event.server_party_required",
            CallerMismatch => "event.caller_mismatch",
            CallerInCallees => "event.caller_in_callees",
            DuplicateCallee { .. } => "event.duplicate_callee",
            TooManyCallees => "event.too_many_callees",
            CallIdMismatch { .. } => "event.call_id_mismatch",
            StartedChannelMismatch { .. } => "event.started_channel_mismatch",
            SdpNotWhole => "event.sdp_not_whole",
            ChunkInconsistent { .. } => "event.chunk_inconsistent",
            TooManyCandidates { .. } => "event.too_many_candidates",
            EmptyCandidates => "event.empty_candidates",
            CandidateWithoutMedia { .. } => "event.candidate_without_media",
            EndedAddressedWrongly => "event.ended_addressed_wrongly",
            UserIdMismatch { .. } => "event.user_id_mismatch",
            MissingVerifiedUser => "event.missing_verified_user",
            NotAllowedOnInbox { .. } => "event.not_allowed_on_inbox",
            InboxUserNotCallee { .. } => "event.inbox_user_not_callee",
        }
    }

    /// The requirement of `spec/` the event breaks, for diagnostics that point a reader at the
    /// rule (`None` where no single requirement names it).
    pub fn requirement(&self) -> Option<&'static str> {
        use EventError::*;
        Some(match self {
            Frame(e) => return e.requirement(),
            UnknownName { .. } => "EVT-003",
            MissingChannel | BadChannel { .. } => "CHAN-001",
            MissingData | MissingField { .. } | InvalidField { .. } => return None,
            UnsupportedVersion { .. } => "EVT-010",
            UnexpectedToPartyId { .. } => "EVT-021",
            SealedNotAllowed { .. } => "PRIV-012",
            ReservedPartyId | ServerPartyRequired => "EVT-013",
            CallerMismatch
            | CallerInCallees
            | DuplicateCallee { .. }
            | TooManyCallees
            | StartedChannelMismatch { .. } => "EVT-030",
            CallIdMismatch { .. } => "EVT-011",
            SdpNotWhole => "EVT-040",
            ChunkInconsistent { .. } => "EVT-082",
            TooManyCandidates { .. } | EmptyCandidates => "EVT-052",
            CandidateWithoutMedia { .. } => "EVT-051",
            EndedAddressedWrongly => "EVT-022",
            UserIdMismatch { .. } | MissingVerifiedUser => "EVT-014",
            NotAllowedOnInbox { .. } | InboxUserNotCallee { .. } => "FLOW-002",
        })
    }

    /// The field at fault, for field-level errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            EventError::MissingField { path } | EventError::InvalidField { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl CallEvent {
    /// Builds an event, checking every rule that the event alone can violate.
    pub fn new(origin: Origin, header: EventHeader, body: EventBody) -> Result<Self, EventError> {
        check_origin(origin, &header)?;
        check_body(&header, &body)?;
        Ok(CallEvent {
            origin,
            header,
            body,
        })
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
    pub fn header(&self) -> &EventHeader {
        &self.header
    }
    pub fn body(&self) -> &EventBody {
        &self.body
    }
    pub fn into_parts(self) -> (Origin, EventHeader, EventBody) {
        (self.origin, self.header, self.body)
    }

    /// The event name on the wire: `client-call.x` or `call.x`.
    pub fn wire_name(&self) -> String {
        self.kind().wire_name(self.origin)
    }

    /// The wire `data` object: header members, then body members.
    pub fn to_data(&self) -> Map<String, Value> {
        let mut map = header_map(&self.header);
        map.extend(self.body.to_map());
        map
    }

    /// Checks the rules that depend on where the event arrived: the call id of the channel, the
    /// server-verified `user_id` on presence channels, and what an inbox may carry.
    ///
    /// `verified_user` is the `user_id` the realtime server added to the frame, if any.
    pub fn check_delivery(
        &self,
        channel: &ChannelName,
        verified_user: Option<&str>,
    ) -> Result<(), EventError> {
        check_delivery(
            self.kind(),
            self.origin,
            &self.header,
            Some(&self.body),
            channel,
            verified_user,
        )
    }
}

/// The header as a JSON object.
pub(crate) fn header_map(header: &EventHeader) -> Map<String, Value> {
    match serde_json::to_value(header) {
        Ok(Value::Object(m)) => m,
        _ => unreachable!("the header serializes to a JSON object"),
    }
}

fn check_origin(origin: Origin, header: &EventHeader) -> Result<(), EventError> {
    match (origin, header.party_id.is_server()) {
        (Origin::Client, true) => Err(EventError::ReservedPartyId),
        (Origin::Server, false) => Err(EventError::ServerPartyRequired),
        _ => Ok(()),
    }
}

fn check_sdp(sdp: &Sdp, chunk: &Option<ChunkInfo>) -> Result<(), EventError> {
    match chunk {
        None if !(sdp.as_str().starts_with("v=0\r\n") || sdp.as_str().starts_with("v=0\n")) => {
            Err(EventError::SdpNotWhole)
        }
        Some(c) if !c.is_consistent() => Err(EventError::ChunkInconsistent {
            index: c.index,
            count: c.count,
        }),
        _ => Ok(()),
    }
}

fn check_body(header: &EventHeader, body: &EventBody) -> Result<(), EventError> {
    match body {
        EventBody::Started(b) => {
            if b.caller != header.user_id {
                return Err(EventError::CallerMismatch);
            }
            if b.channel.call_id() != &header.call_id {
                return Err(EventError::CallIdMismatch {
                    expected: b.channel.call_id().to_string(),
                    found: header.call_id.to_string(),
                });
            }
            if b.callees.len() > MAX_CALLEES {
                return Err(EventError::TooManyCallees);
            }
            for (i, callee) in b.callees.iter().enumerate() {
                if *callee == b.caller {
                    return Err(EventError::CallerInCallees);
                }
                if b.callees[..i].contains(callee) {
                    return Err(EventError::DuplicateCallee {
                        user: callee.to_string(),
                    });
                }
            }
            Ok(())
        }
        EventBody::Offer(b) => check_sdp(&b.sdp, &b.chunk),
        EventBody::Answer(b) => check_sdp(&b.sdp, &b.chunk),
        EventBody::IceCandidate(b) => {
            if b.candidates.len() > MAX_CANDIDATES_PER_EVENT {
                return Err(EventError::TooManyCandidates {
                    count: b.candidates.len(),
                });
            }
            if b.candidates.is_empty() && !b.end_of_candidates {
                return Err(EventError::EmptyCandidates);
            }
            if let Some(index) = b
                .candidates
                .iter()
                .position(|c| c.sdp_mid.is_none() && c.sdp_mline_index.is_none())
            {
                return Err(EventError::CandidateWithoutMedia { index });
            }
            Ok(())
        }
        EventBody::Ended(b) => {
            if b.to_party_id.is_some() && b.reason != EndReason::AnsweredElsewhere {
                return Err(EventError::EndedAddressedWrongly);
            }
            Ok(())
        }
        EventBody::Ringing | EventBody::Accepted | EventBody::MediaState(_) => Ok(()),
    }
}

pub(crate) fn check_delivery(
    kind: EventKind,
    origin: Origin,
    header: &EventHeader,
    body: Option<&EventBody>,
    channel: &ChannelName,
    verified_user: Option<&str>,
) -> Result<(), EventError> {
    match channel {
        ChannelName::Call(call) => {
            if call.call_id() != &header.call_id {
                return Err(EventError::CallIdMismatch {
                    expected: call.call_id().to_string(),
                    found: header.call_id.to_string(),
                });
            }
            if let Some(EventBody::Started(b)) = body
                && b.channel != *call
            {
                return Err(EventError::StartedChannelMismatch {
                    expected: call.to_string(),
                    found: b.channel.to_string(),
                });
            }
            if call.kind() == ChannelKind::Presence && origin == Origin::Client {
                let verified = verified_user.ok_or(EventError::MissingVerifiedUser)?;
                if verified != header.user_id.as_str() {
                    return Err(EventError::UserIdMismatch {
                        verified: verified.to_owned(),
                        found: header.user_id.to_string(),
                    });
                }
            }
            Ok(())
        }
        ChannelName::Inbox(inbox) => {
            let Some(EventBody::Started(b)) = body.filter(|_| origin == Origin::Server) else {
                return Err(EventError::NotAllowedOnInbox {
                    name: kind.wire_name(origin),
                });
            };
            if !b.callees.is_empty() && !b.callees.contains(inbox.user_id()) {
                return Err(EventError::InboxUserNotCallee {
                    inbox: inbox.to_string(),
                });
            }
            Ok(())
        }
    }
}

/// What arrived: a clear event, or a sealed one still to be opened with the channel key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Clear(CallEvent),
    Sealed(SealedEvent),
}

impl Incoming {
    pub fn kind(&self) -> EventKind {
        match self {
            Incoming::Clear(e) => e.kind(),
            Incoming::Sealed(s) => s.kind(),
        }
    }
    pub fn header(&self) -> &EventHeader {
        match self {
            Incoming::Clear(e) => e.header(),
            Incoming::Sealed(s) => s.header(),
        }
    }

    /// [`CallEvent::check_delivery`] for either form.
    pub fn check_delivery(
        &self,
        channel: &ChannelName,
        verified_user: Option<&str>,
    ) -> Result<(), EventError> {
        match self {
            Incoming::Clear(e) => e.check_delivery(channel, verified_user),
            Incoming::Sealed(s) => check_delivery(
                s.kind(),
                Origin::Client,
                s.header(),
                None,
                channel,
                verified_user,
            ),
        }
    }
}

/// Runs serde on `data` and reports the failing field's path. The body and header types are
/// deserialized separately from the same object (not through `#[serde(flatten)]`, which would hide
/// the path of a nested failure).
pub(crate) fn from_data<T: serde::de::DeserializeOwned>(data: &Value) -> Result<T, EventError> {
    serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field as "missing field `name`" at the parent's path.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let path = if path == "." {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            EventError::MissingField { path }
        } else {
            EventError::InvalidField {
                path,
                reason: message,
            }
        }
    })
}

fn wire<B: serde::de::DeserializeOwned>(data: &Value) -> Result<(EventHeader, B), EventError> {
    Ok((from_data(data)?, from_data(data)?))
}

/// Whether `name` is in the call events' namespace (`client-call.*` or `call.*`), known or not.
pub fn is_call_event_name(name: &str) -> bool {
    name.starts_with("client-call.") || name.starts_with("call.")
}

/// Parses the data of a call event named `name` (`client-call.x` or `call.x`).
///
/// Checks, in order: the name, `v` (so a future version is reported as such and not as a shape
/// error), `to_party_id` on events that cannot carry it, the sealed form, then every field and
/// every rule of [`CallEvent::new`]. The channel rules are not checked here: see
/// [`CallEvent::check_delivery`] and [`parse_frame`].
pub fn parse_event(name: &str, data: &Map<String, Value>) -> Result<Incoming, EventError> {
    let (kind, origin) = classify_event_name(name).ok_or_else(|| EventError::UnknownName {
        name: name.to_owned(),
    })?;
    if let Some(v) = data.get("v")
        && v.as_u64() != Some(PROTOCOL_VERSION)
    {
        return Err(EventError::UnsupportedVersion {
            found: v.to_string(),
        });
    }
    if !kind.may_address() && data.contains_key("to_party_id") {
        return Err(EventError::UnexpectedToPartyId { kind });
    }
    let data = Value::Object(data.clone());
    if data.get("sealed").is_some() {
        if !kind.is_sensitive() || origin == Origin::Server {
            return Err(EventError::SealedNotAllowed { kind });
        }
        let sealed = SealedEvent::from_data(kind, &data)?;
        check_origin(origin, sealed.header())?;
        return Ok(Incoming::Sealed(sealed));
    }
    let data = &data;
    let (header, body) = match kind {
        EventKind::Started => wire(data).map(|(h, b)| (h, EventBody::Started(b)))?,
        EventKind::Ringing => wire::<NoBody>(data).map(|(h, _)| (h, EventBody::Ringing))?,
        EventKind::Accepted => wire::<NoBody>(data).map(|(h, _)| (h, EventBody::Accepted))?,
        EventKind::Offer => wire(data).map(|(h, b)| (h, EventBody::Offer(b)))?,
        EventKind::Answer => wire(data).map(|(h, b)| (h, EventBody::Answer(b)))?,
        EventKind::IceCandidate => wire(data).map(|(h, b)| (h, EventBody::IceCandidate(b)))?,
        EventKind::MediaState => wire(data).map(|(h, b)| (h, EventBody::MediaState(b)))?,
        EventKind::Ended => wire(data).map(|(h, b)| (h, EventBody::Ended(b)))?,
    };
    CallEvent::new(origin, header, body).map(Incoming::Clear)
}

/// A received event that a receiver refused, with the rule it broke: what diagnostics print so
/// a reader sees which requirement stopped a call ("dropped client-call.started: a client event
/// on a presence channel arrived without the server-added `user_id` [EVT-014]").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The event name as it arrived (`client-call.offer`).
    pub event: String,
    /// The stable error code (`event.missing_verified_user`).
    pub code: &'static str,
    /// The requirement of `spec/`, where one names the rule.
    pub requirement: Option<&'static str>,
    pub reason: String,
}

impl Refusal {
    pub fn new(
        event: &str,
        code: &'static str,
        requirement: Option<&'static str>,
        reason: impl fmt::Display,
    ) -> Refusal {
        Refusal {
            event: event.to_owned(),
            code,
            requirement,
            reason: reason.to_string(),
        }
    }

    pub fn of_event(event: &str, e: &EventError) -> Refusal {
        Refusal::new(event, e.code(), e.requirement(), e)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dropped {}: {}", self.event, self.reason)?;
        match self.requirement {
            Some(r) => write!(f, " [{r}]"),
            None => write!(f, " ({})", self.code),
        }
    }
}

/// Parses a received frame as a call event and checks it against the channel it arrived on.
/// Applies the data size limit before reading the data.
pub fn parse_frame(frame: &Frame) -> Result<(ChannelName, Incoming), EventError> {
    let name = frame.channel.as_deref().ok_or(EventError::MissingChannel)?;
    let channel = ChannelName::parse(name).map_err(|reason| EventError::BadChannel {
        name: name.to_owned(),
        reason,
    })?;
    let data = frame.data.as_ref().ok_or(EventError::MissingData)?;
    let len = data.wire_len();
    if len > MAX_EVENT_DATA_BYTES {
        return Err(FrameError::DataTooLarge {
            len,
            max: MAX_EVENT_DATA_BYTES,
        }
        .into());
    }
    let incoming = parse_event(&frame.event, &data.to_object()?)?;
    incoming.check_delivery(&channel, frame.user_id.as_deref())?;
    Ok((channel, incoming))
}

#[cfg(test)]
mod tests;
