//! The value types of call event fields and bodies (`spec/04-events.md`).
//!
//! Field-level grammar lives in the types (a `Sdp` is never empty, a `Seq` never exceeds 2^53−1);
//! rules that tie several fields together are checked once, in [`super::CallEvent::new`].

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::channel::CallChannel;
use crate::ids::{ChunkId, DevicePartyId, TokenError, UserId, check_token, string_token};
use crate::limits::{
    DEFAULT_RING_TIMEOUT_MS, MAX_CALLEES, MAX_CANDIDATE_LEN, MAX_CANDIDATES_PER_EVENT, MAX_CHUNKS,
    MAX_RING_TIMEOUT_MS, MAX_SAFE_INTEGER, MAX_SDP_BYTES, MAX_SDP_MID_LEN, MAX_UFRAG_LEN,
    MIN_RING_TIMEOUT_MS, PROTOCOL_VERSION,
};

/// An integer JavaScript reads exactly: `0..=2^53−1`.
macro_rules! safe_integer {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(u64);

        impl $name {
            pub const MAX: $name = $name(MAX_SAFE_INTEGER);

            pub fn new(v: u64) -> Option<Self> {
                (v <= MAX_SAFE_INTEGER).then_some(Self(v))
            }

            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl TryFrom<u64> for $name {
            type Error = String;
            fn try_from(v: u64) -> Result<Self, String> {
                Self::new(v).ok_or_else(|| format!("{v} is above 2^53-1"))
            }
        }

        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER })
            }
        }
    };
}

safe_integer! {
    /// Per-party sequence number; strictly increasing over all events a party sends in one call.
    Seq
}

safe_integer! {
    /// Milliseconds since the Unix epoch on the sender's clock; informational only.
    UnixMillis
}

/// The `v` header field. Only [`PROTOCOL_VERSION`] exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct ProtocolVersion;

impl TryFrom<u64> for ProtocolVersion {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        if v == PROTOCOL_VERSION {
            Ok(ProtocolVersion)
        } else {
            Err(format!("unsupported protocol version {v}"))
        }
    }
}

impl From<ProtocolVersion> for u64 {
    fn from(_: ProtocolVersion) -> u64 {
        PROTOCOL_VERSION
    }
}

impl JsonSchema for ProtocolVersion {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ProtocolVersion")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "const": PROTOCOL_VERSION })
    }
}

fn check_sdp(s: &str) -> Result<(), TokenError> {
    check_token(s, 1, MAX_SDP_BYTES, "any character but NUL", |_, c| {
        c != '\0'
    })
}

string_token! {
    /// SDP text: a whole session description, or one slice of it when the event carries `chunk`.
    Sdp, check = check_sdp, pattern = "^[^\\u0000]+$", min = 1, max = MAX_SDP_BYTES
}

fn check_candidate(s: &str) -> Result<(), TokenError> {
    if !s.starts_with("candidate:") {
        let index = s
            .char_indices()
            .zip("candidate:".chars())
            .find(|((_, a), b)| a != b)
            .map_or(s.len(), |((i, _), _)| i);
        return Err(TokenError::InvalidChar {
            ch: s[index..].chars().next().unwrap_or('\0'),
            index,
            allowed: "the prefix `candidate:`",
        });
    }
    check_token(
        s,
        "candidate:".len() + 1,
        MAX_CANDIDATE_LEN,
        "printable characters without CR or LF",
        |_, c| !c.is_control(),
    )
}

string_token! {
    /// The browser's `RTCIceCandidate.candidate` string: `candidate:...`, without `a=`.
    CandidateLine,
    check = check_candidate,
    pattern = "^candidate:[^\\u0000-\\u001f\\u007f]+$",
    min = 11,
    max = MAX_CANDIDATE_LEN
}

fn check_sdp_mid(s: &str) -> Result<(), TokenError> {
    check_token(
        s,
        1,
        MAX_SDP_MID_LEN,
        "printable characters without space",
        |_, c| c.is_ascii_graphic(),
    )
}

string_token! {
    /// A media section identification tag (`a=mid`).
    SdpMid, check = check_sdp_mid, pattern = "^[!-~]{1,64}$", min = 1, max = MAX_SDP_MID_LEN
}

fn check_ufrag(s: &str) -> Result<(), TokenError> {
    check_token(s, 4, MAX_UFRAG_LEN, "ice-char [A-Za-z0-9+/]", |_, c| {
        c.is_ascii_alphanumeric() || c == '+' || c == '/'
    })
}

string_token! {
    /// An ICE username fragment (RFC 8839: 4 to 256 ice-chars).
    UsernameFragment,
    check = check_ufrag,
    pattern = "^[A-Za-z0-9+/]{4,256}$",
    min = 4,
    max = MAX_UFRAG_LEN
}

/// How long callees ring before the call counts as missed, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct RingTimeoutMs(u64);

impl RingTimeoutMs {
    pub fn new(ms: u64) -> Option<Self> {
        (MIN_RING_TIMEOUT_MS..=MAX_RING_TIMEOUT_MS)
            .contains(&ms)
            .then_some(Self(ms))
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Default for RingTimeoutMs {
    fn default() -> Self {
        RingTimeoutMs(DEFAULT_RING_TIMEOUT_MS)
    }
}

impl TryFrom<u64> for RingTimeoutMs {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        Self::new(v)
            .ok_or_else(|| format!("{v} is outside {MIN_RING_TIMEOUT_MS}..={MAX_RING_TIMEOUT_MS}"))
    }
}

impl From<RingTimeoutMs> for u64 {
    fn from(v: RingTimeoutMs) -> u64 {
        v.0
    }
}

impl JsonSchema for RingTimeoutMs {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("RingTimeoutMs")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": MIN_RING_TIMEOUT_MS,
            "maximum": MAX_RING_TIMEOUT_MS,
            "default": DEFAULT_RING_TIMEOUT_MS,
        })
    }
}

/// Which media a call starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MediaSelection {
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
}

/// `standard`: bodies travel in the clear; `strong`: sensitive bodies are sealed so the realtime server cannot read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    Standard,
    Strong,
}

/// Media topology. Only `p2p` is defined; `sfu` is reserved so group calls need no breaking
/// change. A receiver that cannot handle the value ends the call with `incompatible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    P2p,
    Sfu,
}

/// Why a call or a party's part in it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Hangup,
    Declined,
    Busy,
    NoAnswer,
    Cancelled,
    AnsweredElsewhere,
    IceFailed,
    MediaFailed,
    SignalingFailed,
    Replaced,
    Incompatible,
    Unknown,
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EndReason {
    /// The wire name (`no_answer`, `hangup`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Hangup => "hangup",
            EndReason::Declined => "declined",
            EndReason::Busy => "busy",
            EndReason::NoAnswer => "no_answer",
            EndReason::Cancelled => "cancelled",
            EndReason::AnsweredElsewhere => "answered_elsewhere",
            EndReason::IceFailed => "ice_failed",
            EndReason::MediaFailed => "media_failed",
            EndReason::SignalingFailed => "signaling_failed",
            EndReason::Replaced => "replaced",
            EndReason::Incompatible => "incompatible",
            EndReason::Unknown => "unknown",
        }
    }

    /// Ended before anyone answered, the way that makes a missed call.
    pub fn is_missed(self) -> bool {
        matches!(self, EndReason::NoAnswer | EndReason::Cancelled)
    }
}

/// One slice of a chunked SDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkInfo {
    pub id: ChunkId,
    #[schemars(range(max = 7))]
    pub index: u8,
    #[schemars(range(min = 2, max = 8))]
    pub count: u8,
}

impl ChunkInfo {
    pub(crate) fn is_consistent(&self) -> bool {
        (2..=MAX_CHUNKS).contains(&self.count) && self.index < self.count
    }
}

/// `call.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StartedBody {
    /// The call channel; lets an invitation delivered to an inbox name where to join.
    pub channel: CallChannel,
    /// The calling user; equals the header's `user_id`.
    pub caller: UserId,
    /// Invited users; empty means any member of the scope.
    #[schemars(length(max = MAX_CALLEES), extend("uniqueItems" = true))]
    pub callees: Vec<UserId>,
    pub media: MediaSelection,
    #[serde(default)]
    pub ring_timeout_ms: RingTimeoutMs,
    pub privacy: Privacy,
    pub topology: Topology,
}

/// `call.ringing` and `call.accepted` carry only the header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NoBody {}

/// `call.offer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = whole_sdp_unless_chunked)]
pub struct OfferBody {
    pub to_party_id: DevicePartyId,
    pub sdp: Sdp,
    #[schemars(range(max = u32::MAX))]
    pub negotiation_id: u32,
    pub ice_restart: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkInfo>,
}

/// `call.answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = whole_sdp_unless_chunked)]
pub struct AnswerBody {
    pub to_party_id: DevicePartyId,
    pub sdp: Sdp,
    #[schemars(range(max = u32::MAX))]
    pub negotiation_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkInfo>,
}

/// The JSON Schema form of "an unchunked `sdp` is a whole session description". A `null` chunk
/// counts as absent, as it does for the parser.
fn whole_sdp_unless_chunked(schema: &mut Schema) {
    schema.insert(
        "if".into(),
        serde_json::json!({ "required": ["chunk"], "properties": { "chunk": { "type": "object" } } }),
    );
    schema.insert(
        "else".into(),
        serde_json::json!({ "properties": { "sdp": { "pattern": "^v=0\r?\n" } } }),
    );
}

/// One trickled ICE candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = mid_or_index_present)]
pub struct IceCandidate {
    pub candidate: CandidateLine,
    pub sdp_mid: Option<SdpMid>,
    pub sdp_mline_index: Option<u16>,
    pub username_fragment: Option<UsernameFragment>,
}

fn mid_or_index_present(schema: &mut Schema) {
    schema.insert(
        "anyOf".into(),
        serde_json::json!([
            { "required": ["sdp_mid"], "properties": { "sdp_mid": { "type": "string" } } },
            { "required": ["sdp_mline_index"], "properties": { "sdp_mline_index": { "type": "integer" } } }
        ]),
    );
}

/// `call.ice_candidate`: a batch of candidates of one ICE generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = empty_only_at_end)]
pub struct IceCandidateBody {
    pub to_party_id: DevicePartyId,
    #[schemars(length(max = MAX_CANDIDATES_PER_EVENT))]
    pub candidates: Vec<IceCandidate>,
    pub end_of_candidates: bool,
}

fn empty_only_at_end(schema: &mut Schema) {
    schema.insert(
        "if".into(),
        serde_json::json!({ "properties": { "end_of_candidates": { "const": false } } }),
    );
    schema.insert(
        "then".into(),
        serde_json::json!({ "properties": { "candidates": { "minItems": 1 } } }),
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AudioState {
    pub muted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VideoState {
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScreenState {
    pub sharing: bool,
}

/// `call.media_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MediaStateBody {
    pub audio: AudioState,
    pub video: VideoState,
    pub screen: ScreenState,
    pub on_hold: bool,
}

/// `call.ended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = addressed_only_when_answered_elsewhere)]
pub struct EndedBody {
    pub reason: EndReason,
    /// Only with `answered_elsewhere`: the party whose acceptance lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_party_id: Option<DevicePartyId>,
}

fn addressed_only_when_answered_elsewhere(schema: &mut Schema) {
    schema.insert(
        "if".into(),
        serde_json::json!({ "required": ["to_party_id"], "properties": { "to_party_id": { "type": "string" } } }),
    );
    schema.insert(
        "then".into(),
        serde_json::json!({ "properties": { "reason": { "const": "answered_elsewhere" } } }),
    );
}
