//! Pusher Channels protocol 7 frames and error codes (`spec/01-transport.md`).
//!
//! A [`Frame`] is one WebSocket text message: a JSON object with `event`, optional `channel`,
//! optional `data` (an object, or a JSON document carried as a string) and optional `user_id`.
//! Invariant: [`Frame::parse`] checks the byte length before it reads a single byte of JSON, and
//! the nesting depth before it builds a value tree, so hostile input costs at most one bounded scan.

pub mod webhook;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::limits::{MAX_EVENT_DATA_BYTES, MAX_EVENT_NAME_LEN, MAX_FRAME_BYTES, MAX_JSON_DEPTH};

/// A Pusher error or close code (4000–4399), with the reconnect advice its range carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PusherCode(pub u16);

impl PusherCode {
    /// The application only accepts TLS connections.
    pub const SSL_ONLY: Self = Self(4000);
    /// The app key in the URL names no app.
    pub const APP_NOT_FOUND: Self = Self(4001);
    pub const APP_DISABLED: Self = Self(4003);
    pub const OVER_CONNECTION_QUOTA: Self = Self(4004);
    pub const PATH_NOT_FOUND: Self = Self(4005);
    pub const INVALID_VERSION_FORMAT: Self = Self(4006);
    pub const UNSUPPORTED_PROTOCOL_VERSION: Self = Self(4007);
    pub const NO_PROTOCOL_VERSION: Self = Self(4008);
    /// Connection is unauthorized (bad subscription signature, forbidden channel).
    pub const UNAUTHORIZED: Self = Self(4009);
    pub const OVER_CAPACITY: Self = Self(4100);
    pub const GENERIC_RECONNECT: Self = Self(4200);
    pub const PONG_NOT_RECEIVED: Self = Self(4201);
    pub const CLOSED_AFTER_INACTIVITY: Self = Self(4202);
    /// Client event rejected: over the per-connection rate limit. Sent as `pusher:error`; the
    /// connection stays open.
    pub const CLIENT_EVENT_RATE_LIMIT: Self = Self(4301);

    /// What a client should do after a close with this code (Pusher's documented ranges).
    pub fn reconnect(self) -> Reconnect {
        match self.0 {
            4000..=4099 => Reconnect::Never,
            4100..=4199 => Reconnect::AfterBackoff,
            4200..=4299 => Reconnect::Immediately,
            _ => Reconnect::Unspecified,
        }
    }

    /// The constant's name, for messages; `None` for codes without one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::SSL_ONLY => "ssl_only",
            Self::APP_NOT_FOUND => "app_not_found",
            Self::APP_DISABLED => "app_disabled",
            Self::OVER_CONNECTION_QUOTA => "over_connection_quota",
            Self::PATH_NOT_FOUND => "path_not_found",
            Self::INVALID_VERSION_FORMAT => "invalid_version_format",
            Self::UNSUPPORTED_PROTOCOL_VERSION => "unsupported_protocol_version",
            Self::NO_PROTOCOL_VERSION => "no_protocol_version",
            Self::UNAUTHORIZED => "unauthorized",
            Self::OVER_CAPACITY => "over_capacity",
            Self::GENERIC_RECONNECT => "generic_reconnect",
            Self::PONG_NOT_RECEIVED => "pong_not_received",
            Self::CLOSED_AFTER_INACTIVITY => "closed_after_inactivity",
            Self::CLIENT_EVENT_RATE_LIMIT => "client_event_rate_limit",
            _ => return None,
        })
    }
}

impl fmt::Display for PusherCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({n})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Pusher's three types of channel, told apart by the name's prefix: `private-` and `presence-`
/// channels need a signed subscription, presence channels also carry member data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelType {
    Public,
    Private,
    Presence,
}

impl ChannelType {
    /// The type of the channel named `name`.
    pub fn of(name: &str) -> ChannelType {
        if name.starts_with("presence-") {
            ChannelType::Presence
        } else if name.starts_with("private-") {
            ChannelType::Private
        } else {
            ChannelType::Public
        }
    }

    /// Whether a subscription needs a signature (private and presence channels).
    pub fn is_protected(self) -> bool {
        self != ChannelType::Public
    }
}

/// The protocol's own events (Pusher protocol 7), named once for both ends: servers and clients
/// match on [`ProtocolEvent::of`] and build frames with [`ProtocolEvent::name`], so a misspelt
/// event name cannot compile into one side only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolEvent {
    ConnectionEstablished,
    Error,
    Ping,
    Pong,
    Subscribe,
    Unsubscribe,
    Signin,
    SigninSuccess,
    SubscriptionSucceeded,
    SubscriptionError,
    MemberAdded,
    MemberRemoved,
}

impl ProtocolEvent {
    const ALL: [ProtocolEvent; 12] = [
        ProtocolEvent::ConnectionEstablished,
        ProtocolEvent::Error,
        ProtocolEvent::Ping,
        ProtocolEvent::Pong,
        ProtocolEvent::Subscribe,
        ProtocolEvent::Unsubscribe,
        ProtocolEvent::Signin,
        ProtocolEvent::SigninSuccess,
        ProtocolEvent::SubscriptionSucceeded,
        ProtocolEvent::SubscriptionError,
        ProtocolEvent::MemberAdded,
        ProtocolEvent::MemberRemoved,
    ];

    /// The event's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolEvent::ConnectionEstablished => "pusher:connection_established",
            ProtocolEvent::Error => "pusher:error",
            ProtocolEvent::Ping => "pusher:ping",
            ProtocolEvent::Pong => "pusher:pong",
            ProtocolEvent::Subscribe => "pusher:subscribe",
            ProtocolEvent::Unsubscribe => "pusher:unsubscribe",
            ProtocolEvent::Signin => "pusher:signin",
            ProtocolEvent::SigninSuccess => "pusher:signin_success",
            ProtocolEvent::SubscriptionSucceeded => "pusher_internal:subscription_succeeded",
            ProtocolEvent::SubscriptionError => "pusher:subscription_error",
            ProtocolEvent::MemberAdded => "pusher_internal:member_added",
            ProtocolEvent::MemberRemoved => "pusher_internal:member_removed",
        }
    }

    /// The protocol event named `name`, or `None` for a client or application event (and for
    /// an unknown `pusher:` name, which a receiver ignores or refuses by its own rule).
    pub fn of(name: &str) -> Option<ProtocolEvent> {
        if !name.starts_with("pusher") {
            return None;
        }
        ProtocolEvent::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// What a client needs from `pusher:connection_established`: its socket id and the limits the
/// server announced (absent ones are `None`; the protocol's defaults then apply).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionEstablished {
    pub socket_id: String,
    pub activity_timeout_s: Option<u64>,
    pub client_events_per_second: Option<f64>,
    pub max_event_bytes: Option<usize>,
}

impl ConnectionEstablished {
    /// Reads the frame's data (a JSON string holding an object, or an object).
    pub fn from_frame(frame: &Frame) -> Result<ConnectionEstablished, FrameError> {
        let data = frame
            .data
            .as_ref()
            .map(FrameData::to_object)
            .transpose()?
            .unwrap_or_default();
        let limits = data.get("limits");
        Ok(ConnectionEstablished {
            socket_id: data
                .get("socket_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            activity_timeout_s: data.get("activity_timeout").and_then(Value::as_u64),
            client_events_per_second: limits
                .and_then(|l| l.get("client_events_per_second"))
                .and_then(Value::as_f64),
            max_event_bytes: limits
                .and_then(|l| l.get("max_event_bytes"))
                .and_then(Value::as_u64)
                .map(|b| b as usize),
        })
    }
}

/// The data of a `pusher:error` frame: Pusher's numeric code (absent in some servers' errors)
/// and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorData {
    pub code: Option<u16>,
    pub message: String,
}

impl ErrorData {
    /// Reads the frame's data; a missing or malformed member reads as absent.
    pub fn from_frame(frame: &Frame) -> ErrorData {
        let data = frame
            .data
            .as_ref()
            .and_then(|d| d.to_object().ok())
            .unwrap_or_default();
        ErrorData {
            code: data
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok()),
            message: data
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// Reconnect advice of a close code range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// 4000–4099: the same parameters will fail again.
    Never,
    /// 4100–4199: reconnect after at least one second, backing off.
    AfterBackoff,
    /// 4200–4299: reconnect at once.
    Immediately,
    /// Anything else, 4300–4399 included.
    Unspecified,
}

/// The `data` member of a frame, kept in the form it arrived in so that a relay can forward it
/// byte for byte and a receiver parses it only when it needs to.
#[derive(Debug, Clone)]
pub enum FrameData {
    /// A JSON string, decoded; for Pusher events it usually holds a serialized JSON document.
    Text(String),
    /// Any other JSON value (usually an object), as the exact JSON text that arrived.
    Json(Box<RawValue>),
}

impl PartialEq for FrameData {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FrameData::Text(a), FrameData::Text(b)) => a == b,
            (FrameData::Json(a), FrameData::Json(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl FrameData {
    /// Data holding `value` as JSON (not as a string).
    pub fn json(value: &Value) -> FrameData {
        FrameData::Json(
            RawValue::from_string(value.to_string()).expect("a Value serializes to valid JSON"),
        )
    }

    /// Size of the data as it travels on the wire: the decoded string's bytes, or the JSON text's.
    pub fn wire_len(&self) -> usize {
        match self {
            FrameData::Text(s) => s.len(),
            FrameData::Json(raw) => raw.get().len(),
        }
    }

    /// The data as the JSON text to put in a frame's `data` member.
    pub fn to_json_text(&self) -> String {
        match self {
            FrameData::Text(s) => Value::String(s.clone()).to_string(),
            FrameData::Json(raw) => raw.get().to_owned(),
        }
    }

    /// The data as a JSON object: an object as is, or a string holding one.
    pub fn to_object(&self) -> Result<Map<String, Value>, FrameError> {
        let text = match self {
            FrameData::Json(raw) => raw.get(),
            FrameData::Text(s) => {
                check_depth(s.as_bytes(), MAX_JSON_DEPTH)?;
                s.as_str()
            }
        };
        match serde_json::from_str(text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(FrameError::DataNotObject),
            Err(e) => Err(FrameError::DataNotJson {
                detail: e.to_string(),
            }),
        }
    }
}

/// One Pusher protocol message.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event: String,
    pub channel: Option<String>,
    pub data: Option<FrameData>,
    pub user_id: Option<String>,
}

/// Limits applied by [`Frame::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub max_frame_bytes: usize,
    pub max_depth: usize,
    pub max_event_data_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_depth: MAX_JSON_DEPTH,
            max_event_data_bytes: MAX_EVENT_DATA_BYTES,
        }
    }
}

/// A frame that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame is not valid UTF-8")]
    NotUtf8,
    #[error("frame nests deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("frame is not valid JSON: {detail}")]
    NotJson { detail: String },
    #[error("frame is not a JSON object")]
    NotObject,
    #[error("frame has no string `event` member")]
    MissingEvent,
    #[error("event name is {len} bytes, over the limit of {max}")]
    EventNameTooLong { len: usize, max: usize },
    #[error("frame member `{field}` must be a string")]
    FieldNotString { field: &'static str },
    #[error("event data is {len} bytes, over the limit of {max}")]
    DataTooLarge { len: usize, max: usize },
    #[error("event data is not valid JSON: {detail}")]
    DataNotJson { detail: String },
    #[error("event data is not a JSON object")]
    DataNotObject,
}

impl FrameError {
    /// The requirement of `spec/` the frame breaks, if one names it.
    pub fn requirement(&self) -> Option<&'static str> {
        match self {
            FrameError::DataTooLarge { .. } => Some("LIM-010"),
            FrameError::TooLarge { .. } | FrameError::TooDeep { .. } => Some("LIM-011"),
            FrameError::EventNameTooLong { .. } => Some("LIM-012"),
            _ => None,
        }
    }

    /// Stable, language-neutral name of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "frame.too_large",
            FrameError::NotUtf8 => "frame.not_utf8",
            FrameError::TooDeep { .. } => "frame.too_deep",
            FrameError::NotJson { .. } => "frame.not_json",
            FrameError::NotObject => "frame.not_object",
            FrameError::MissingEvent => "frame.missing_event",
            FrameError::EventNameTooLong { .. } => "frame.event_name_too_long",
            FrameError::FieldNotString { .. } => "frame.field_not_string",
            FrameError::DataTooLarge { .. } => "frame.data_too_large",
            FrameError::DataNotJson { .. } => "frame.data_not_json",
            FrameError::DataNotObject => "frame.data_not_object",
        }
    }
}

/// Fails when the bracket nesting of a JSON text exceeds `max`. Strings are skipped with their
/// escapes, so brackets inside them do not count. Runs before the JSON parser, which would
/// otherwise recurse once per level.
fn check_depth(text: &[u8], max: usize) -> Result<(), FrameError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(FrameError::TooDeep { max });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl Frame {
    /// A frame with only an event name.
    pub fn new(event: impl Into<String>) -> Self {
        Frame {
            event: event.into(),
            channel: None,
            data: None,
            user_id: None,
        }
    }

    /// Parses one text message. Checks, in order: size, UTF-8, nesting, JSON, shape, member types,
    /// event name length and the event data limit.
    pub fn parse(bytes: &[u8], limits: &FrameLimits) -> Result<Frame, FrameError> {
        if bytes.len() > limits.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len: bytes.len(),
                max: limits.max_frame_bytes,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| FrameError::NotUtf8)?;
        check_depth(text.as_bytes(), limits.max_depth)?;
        // Members are read raw: `data` stays unparsed text until someone asks for it.
        let members: BTreeMap<Cow<'_, str>, &RawValue> = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) if e.is_data() => return Err(FrameError::NotObject),
            Err(e) => {
                return Err(FrameError::NotJson {
                    detail: e.to_string(),
                });
            }
        };
        let event = match member_string(&members, "event") {
            Ok(Some(s)) => s,
            _ => return Err(FrameError::MissingEvent),
        };
        if event.len() > MAX_EVENT_NAME_LEN {
            return Err(FrameError::EventNameTooLong {
                len: event.len(),
                max: MAX_EVENT_NAME_LEN,
            });
        }
        let channel = member_string(&members, "channel")?;
        let user_id = member_string(&members, "user_id")?;
        let data = match members.get("data") {
            None => None,
            Some(raw) if raw.get() == "null" => None,
            Some(raw) if raw.get().starts_with('"') => Some(FrameData::Text(
                serde_json::from_str(raw.get()).map_err(|e| FrameError::NotJson {
                    detail: e.to_string(),
                })?,
            )),
            Some(raw) => Some(FrameData::Json((*raw).to_owned())),
        };
        if let Some(d) = &data {
            let len = d.wire_len();
            if len > limits.max_event_data_bytes {
                return Err(FrameError::DataTooLarge {
                    len,
                    max: limits.max_event_data_bytes,
                });
            }
        }
        Ok(Frame {
            event,
            channel,
            data,
            user_id,
        })
    }

    /// Serializes the frame as Pusher servers send it; JSON `data` is copied byte for byte.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.data.as_ref().map_or(0, FrameData::wire_len));
        out.push_str("{\"event\":");
        out.push_str(&Value::String(self.event.clone()).to_string());
        if let Some(c) = &self.channel {
            out.push_str(",\"channel\":");
            out.push_str(&Value::String(c.clone()).to_string());
        }
        if let Some(d) = &self.data {
            out.push_str(",\"data\":");
            out.push_str(&d.to_json_text());
        }
        if let Some(u) = &self.user_id {
            out.push_str(",\"user_id\":");
            out.push_str(&Value::String(u.clone()).to_string());
        }
        out.push('}');
        out
    }
}

fn member_string(
    members: &BTreeMap<Cow<'_, str>, &RawValue>,
    field: &'static str,
) -> Result<Option<String>, FrameError> {
    match members.get(field).map(|raw| raw.get()) {
        None | Some("null") => Ok(None),
        Some(text) if text.starts_with('"') => {
            serde_json::from_str(text)
                .map(Some)
                .map_err(|e| FrameError::NotJson {
                    detail: e.to_string(),
                })
        }
        Some(_) => Err(FrameError::FieldNotString { field }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_types_follow_the_prefix() {
        for (name, want) in [
            ("presence-call.room.r.c", ChannelType::Presence),
            ("private-call-inbox.alice", ChannelType::Private),
            ("private-encrypted-x", ChannelType::Private),
            ("room-42", ChannelType::Public),
            ("presence", ChannelType::Public),
            ("xprivate-a", ChannelType::Public),
        ] {
            assert_eq!(ChannelType::of(name), want, "{name}");
            assert_eq!(
                ChannelType::of(name).is_protected(),
                want != ChannelType::Public
            );
        }
    }

    fn parse(s: &str) -> Result<Frame, FrameError> {
        Frame::parse(s.as_bytes(), &FrameLimits::default())
    }

    #[test]
    fn data_may_be_an_object_or_a_string() {
        let a = parse(r#"{"event":"client-x","channel":"private-a","data":{"k":1}}"#).unwrap();
        let b = parse(r#"{"event":"client-x","channel":"private-a","data":"{\"k\":1}"}"#).unwrap();
        assert_eq!(
            a.data.unwrap().to_object().unwrap(),
            b.data.unwrap().to_object().unwrap()
        );
    }

    #[test]
    fn limits_apply_before_parsing() {
        let limits = FrameLimits {
            max_frame_bytes: 10,
            ..FrameLimits::default()
        };
        // Not even JSON: the size check must answer first.
        let err = Frame::parse(&[b'x'; 11], &limits).unwrap_err();
        assert_eq!(err.code(), "frame.too_large");
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = Frame::parse(
            deep.as_bytes(),
            &FrameLimits {
                max_frame_bytes: usize::MAX,
                ..FrameLimits::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "frame.too_deep");
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        let s = format!(r#"{{"event":"x","data":"{}\"]"}}"#, "[".repeat(100));
        assert!(parse(&s).is_ok());
    }

    #[test]
    fn shape_errors_are_typed() {
        assert_eq!(parse("[1]").unwrap_err().code(), "frame.not_object");
        assert_eq!(parse("{").unwrap_err().code(), "frame.not_json");
        assert_eq!(
            parse(r#"{"channel":"x"}"#).unwrap_err().code(),
            "frame.missing_event"
        );
        assert_eq!(
            parse(r#"{"event":"x","channel":5}"#).unwrap_err().code(),
            "frame.field_not_string"
        );
        assert_eq!(
            Frame::parse(b"{\"event\":\"\xff\"}", &FrameLimits::default())
                .unwrap_err()
                .code(),
            "frame.not_utf8"
        );
        let big = format!(r#"{{"event":"x","data":"{}"}}"#, "a".repeat(10_241));
        assert_eq!(parse(&big).unwrap_err().code(), "frame.data_too_large");
    }

    #[test]
    fn close_code_ranges_map_to_reconnect_advice() {
        assert_eq!(PusherCode::APP_NOT_FOUND.reconnect(), Reconnect::Never);
        assert_eq!(
            PusherCode::OVER_CAPACITY.reconnect(),
            Reconnect::AfterBackoff
        );
        assert_eq!(
            PusherCode::PONG_NOT_RECEIVED.reconnect(),
            Reconnect::Immediately
        );
        assert_eq!(
            PusherCode::CLIENT_EVENT_RATE_LIMIT.reconnect(),
            Reconnect::Unspecified
        );
        assert_eq!(PusherCode::UNAUTHORIZED.to_string(), "4009 (unauthorized)");
    }

    #[test]
    fn json_data_is_kept_byte_for_byte() {
        let text =
            r#"{"event":"client-x","channel":"private-a","data":{"b":1,"a":2.50,"c":"\u00e9"}}"#;
        let f = parse(text).unwrap();
        assert_eq!(f.to_json(), text);
        assert_eq!(
            f.data.unwrap().wire_len(),
            r#"{"b":1,"a":2.50,"c":"\u00e9"}"#.len()
        );
    }

    #[test]
    fn serializes_back_to_an_equal_frame() {
        let f =
            parse(r#"{"event":"client-x","channel":"private-a","data":{"k":[1,2]},"user_id":"u"}"#)
                .unwrap();
        assert_eq!(parse(&f.to_json()).unwrap(), f);
    }
}
