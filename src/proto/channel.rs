//! Call channel names (`spec/02-channels.md`): `{kind}-call.{scope}.{scope_id}.{call_id}` and the per-user
//! inbox `private-call-inbox.{user_id}`.
//!
//! Invariants: a [`CallChannel`] or [`InboxChannel`] always renders to a name of at most
//! [`MAX_CHANNEL_NAME_LEN`] bytes, and `parse(x.to_string()) == x` for every value (build and parse
//! are exact inverses). Every rejection names the part of the name at fault.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::ids::{CallId, Scope, ScopeId, TokenError, UserId};
use crate::limits::MAX_CHANNEL_NAME_LEN;

const PRIVATE_CALL_PREFIX: &str = "private-call.";
const PRESENCE_CALL_PREFIX: &str = "presence-call.";
const INBOX_PREFIX: &str = "private-call-inbox.";

/// Whether a call channel is a Pusher private or presence channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Private,
    Presence,
}

impl ChannelKind {
    fn prefix(self) -> &'static str {
        match self {
            ChannelKind::Private => PRIVATE_CALL_PREFIX,
            ChannelKind::Presence => PRESENCE_CALL_PREFIX,
        }
    }
}

/// The part of a channel name an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelPart {
    /// The whole name (length limit).
    Name,
    /// The `{kind}-call.` or `private-call-inbox.` prefix.
    Prefix,
    Scope,
    ScopeId,
    CallId,
    UserId,
}

impl ChannelPart {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelPart::Name => "name",
            ChannelPart::Prefix => "prefix",
            ChannelPart::Scope => "scope",
            ChannelPart::ScopeId => "scope_id",
            ChannelPart::CallId => "call_id",
            ChannelPart::UserId => "user_id",
        }
    }
}

impl fmt::Display for ChannelPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel name that is not a valid call or inbox channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelNameError {
    #[error("channel name is {len} bytes long, longer than the maximum {max}")]
    TooLong { len: usize, max: usize },
    #[error(
        "channel name does not start with `private-call.`, `presence-call.` or `private-call-inbox.`"
    )]
    UnknownPrefix,
    #[error("channel name has no {part} part")]
    MissingPart { part: ChannelPart },
    #[error("channel name part {part} {reason}")]
    InvalidPart {
        part: ChannelPart,
        reason: TokenError,
    },
}

impl ChannelNameError {
    /// Stable, language-neutral name of the failure: `channel.{part}.{reason}`.
    pub fn code(&self) -> String {
        match self {
            ChannelNameError::TooLong { .. } => "channel.name.too_long".into(),
            ChannelNameError::UnknownPrefix => "channel.prefix.unknown".into(),
            ChannelNameError::MissingPart { part } => format!("channel.{part}.missing"),
            ChannelNameError::InvalidPart { part, reason } => {
                format!("channel.{part}.{}", reason.code())
            }
        }
    }

    /// The part of the name at fault.
    pub fn part(&self) -> ChannelPart {
        match self {
            ChannelNameError::TooLong { .. } => ChannelPart::Name,
            ChannelNameError::UnknownPrefix => ChannelPart::Prefix,
            ChannelNameError::MissingPart { part } | ChannelNameError::InvalidPart { part, .. } => {
                *part
            }
        }
    }
}

fn part<T>(
    part: ChannelPart,
    parse: impl FnOnce(&str) -> Result<T, TokenError>,
    s: &str,
) -> Result<T, ChannelNameError> {
    parse(s).map_err(|reason| ChannelNameError::InvalidPart { part, reason })
}

/// A protected per-call channel, e.g. `private-call.room.chat-room-42.call-9001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallChannel {
    kind: ChannelKind,
    scope: Scope,
    scope_id: ScopeId,
    call_id: CallId,
}

impl CallChannel {
    /// Builds a call channel; fails only when the rendered name would exceed the length limit.
    pub fn new(
        kind: ChannelKind,
        scope: Scope,
        scope_id: ScopeId,
        call_id: CallId,
    ) -> Result<Self, ChannelNameError> {
        let len = kind.prefix().len()
            + scope.as_str().len()
            + scope_id.as_str().len()
            + call_id.as_str().len()
            + 2;
        if len > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong {
                len,
                max: MAX_CHANNEL_NAME_LEN,
            });
        }
        Ok(CallChannel {
            kind,
            scope,
            scope_id,
            call_id,
        })
    }

    pub fn parse(name: &str) -> Result<Self, ChannelNameError> {
        match ChannelName::parse(name)? {
            ChannelName::Call(c) => Ok(c),
            ChannelName::Inbox(_) => Err(ChannelNameError::UnknownPrefix),
        }
    }

    pub fn kind(&self) -> ChannelKind {
        self.kind
    }
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
    pub fn scope_id(&self) -> &ScopeId {
        &self.scope_id
    }
    pub fn call_id(&self) -> &CallId {
        &self.call_id
    }
}

impl fmt::Display for CallChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}.{}.{}",
            self.kind.prefix(),
            self.scope,
            self.scope_id,
            self.call_id
        )
    }
}

/// A user's invitation inbox, `private-call-inbox.{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InboxChannel {
    user_id: UserId,
}

impl InboxChannel {
    /// Always fits the length limit: the prefix plus the longest user id is 83 bytes.
    pub fn new(user_id: UserId) -> Self {
        InboxChannel { user_id }
    }
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }
}

impl fmt::Display for InboxChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{INBOX_PREFIX}{}", self.user_id)
    }
}

/// Any channel this protocol uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelName {
    Call(CallChannel),
    Inbox(InboxChannel),
}

impl ChannelName {
    pub fn parse(name: &str) -> Result<Self, ChannelNameError> {
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong {
                len: name.len(),
                max: MAX_CHANNEL_NAME_LEN,
            });
        }
        // The inbox prefix is checked first: `private-call.` is not its prefix, but keeping the
        // longer, more specific match first makes the intent plain.
        if let Some(user) = name.strip_prefix(INBOX_PREFIX) {
            let user_id = part(ChannelPart::UserId, UserId::parse, user)?;
            return Ok(ChannelName::Inbox(InboxChannel { user_id }));
        }
        let (kind, rest) = if let Some(rest) = name.strip_prefix(PRIVATE_CALL_PREFIX) {
            (ChannelKind::Private, rest)
        } else if let Some(rest) = name.strip_prefix(PRESENCE_CALL_PREFIX) {
            (ChannelKind::Presence, rest)
        } else {
            return Err(ChannelNameError::UnknownPrefix);
        };
        // At most three parts: a `.` left in the last one is reported as a bad call_id character.
        let mut parts = rest.splitn(3, '.');
        let mut next = |p: ChannelPart| {
            parts
                .next()
                .ok_or(ChannelNameError::MissingPart { part: p })
        };
        let scope = part(ChannelPart::Scope, Scope::parse, next(ChannelPart::Scope)?)?;
        let scope_id = part(
            ChannelPart::ScopeId,
            ScopeId::parse,
            next(ChannelPart::ScopeId)?,
        )?;
        let call_id = part(
            ChannelPart::CallId,
            CallId::parse,
            next(ChannelPart::CallId)?,
        )?;
        Ok(ChannelName::Call(CallChannel {
            kind,
            scope,
            scope_id,
            call_id,
        }))
    }

    /// Whether Pusher treats the channel as a presence channel.
    pub fn is_presence(&self) -> bool {
        matches!(self, ChannelName::Call(c) if c.kind == ChannelKind::Presence)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelName::Call(c) => c.fmt(f),
            ChannelName::Inbox(i) => i.fmt(f),
        }
    }
}

macro_rules! string_serde {
    ($ty:ident, $pattern:expr, $desc:expr) => {
        impl FromStr for $ty {
            type Err = ChannelNameError;
            fn from_str(s: &str) -> Result<Self, ChannelNameError> {
                Self::parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = Cow::<'de, str>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": $desc,
                    "pattern": $pattern,
                    "maxLength": MAX_CHANNEL_NAME_LEN,
                })
            }
        }
    };
}

string_serde!(
    CallChannel,
    "^(private|presence)-call\\.[a-z][a-z0-9_]{0,31}\\.[A-Za-z0-9_\\-=@,;]{1,64}\\.[A-Za-z0-9_\\-=@,;]{1,64}$",
    "A call channel name: {kind}-call.{scope}.{scope_id}.{call_id}"
);
string_serde!(
    ChannelName,
    "^((private|presence)-call\\.[a-z][a-z0-9_]{0,31}\\.[A-Za-z0-9_\\-=@,;]{1,64}\\.[A-Za-z0-9_\\-=@,;]{1,64}|private-call-inbox\\.[A-Za-z0-9_\\-=@,;]{1,64})$",
    "A call channel or an inbox channel name"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_example() {
        let c = CallChannel::parse("private-call.room.chat-room-42.call-9001").unwrap();
        assert_eq!(c.kind(), ChannelKind::Private);
        assert_eq!(c.scope().as_str(), "room");
        assert_eq!(c.scope_id().as_str(), "chat-room-42");
        assert_eq!(c.call_id().as_str(), "call-9001");
        assert_eq!(c.to_string(), "private-call.room.chat-room-42.call-9001");
    }

    #[test]
    fn errors_name_the_offending_part() {
        let cases = [
            ("public-call.room.a.b", "channel.prefix.unknown"),
            ("private-call.room.a", "channel.call_id.missing"),
            ("private-call.room", "channel.scope_id.missing"),
            ("private-call.Room.a.b", "channel.scope.invalid_char"),
            ("private-call.room..b", "channel.scope_id.empty"),
            ("private-call.room.a.b.c", "channel.call_id.invalid_char"),
            ("presence-call.room.a.b c", "channel.call_id.invalid_char"),
            ("private-call-inbox.", "channel.user_id.empty"),
            ("private-call-inbox.a.b", "channel.user_id.invalid_char"),
        ];
        for (name, code) in cases {
            assert_eq!(ChannelName::parse(name).unwrap_err().code(), code, "{name}");
        }
    }

    #[test]
    fn whole_name_limit_is_enforced_both_ways() {
        let long = "a".repeat(64);
        let err = CallChannel::new(
            ChannelKind::Presence,
            Scope::parse(&"d".repeat(32)).unwrap(),
            ScopeId::parse(&long).unwrap(),
            CallId::parse(&long).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "channel.name.too_long");
        let name = format!("presence-call.{}.{long}.{long}", "d".repeat(32));
        assert_eq!(
            ChannelName::parse(&name).unwrap_err().code(),
            "channel.name.too_long"
        );
    }

    fn id_token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_\\-=@,;]{1,64}"
    }

    proptest! {
        #[test]
        fn build_and_parse_are_inverses(
            presence in any::<bool>(),
            scope in "[a-z][a-z0-9_]{0,31}",
            scope_id in id_token(),
            call_id in id_token(),
        ) {
            let kind = if presence { ChannelKind::Presence } else { ChannelKind::Private };
            let built = CallChannel::new(
                kind,
                Scope::parse(&scope).unwrap(),
                ScopeId::parse(&scope_id).unwrap(),
                CallId::parse(&call_id).unwrap(),
            );
            let expected = format!("{}{scope}.{scope_id}.{call_id}", kind.prefix());
            match built {
                Ok(c) => {
                    prop_assert_eq!(c.to_string(), expected.clone());
                    prop_assert_eq!(CallChannel::parse(&expected).unwrap(), c);
                }
                Err(e) => {
                    prop_assert!(expected.len() > MAX_CHANNEL_NAME_LEN);
                    prop_assert_eq!(CallChannel::parse(&expected).unwrap_err(), e);
                }
            }
        }

        #[test]
        fn parse_never_panics_and_round_trips_what_it_accepts(name in "\\PC{0,200}") {
            if let Ok(c) = ChannelName::parse(&name) {
                prop_assert_eq!(c.to_string(), name);
            }
        }
    }
}
