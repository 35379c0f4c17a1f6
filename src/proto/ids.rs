//! Identifier newtypes: user ids, call ids, scope tokens, party ids, chunk ids and socket ids.
//!
//! Invariant: a value of any type here satisfies its grammar (`spec/02-channels.md`, `spec/04-events.md`). The only way to
//! build one is `parse`/`FromStr`/`TryFrom<String>`/`Deserialize`, all of which run the same check,
//! so code that holds a `CallId` never re-validates it. Every grammar is ASCII-only, so byte length
//! and character count agree.

use crate::limits::{MAX_ID_TOKEN_LEN, MAX_PARTY_ID_LEN, MAX_SCOPE_LEN, MIN_PARTY_ID_LEN};

/// Why a token failed its grammar. The part it belongs to is added by the caller's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("is empty")]
    Empty,
    #[error("is {len} characters long, shorter than the minimum {min}")]
    TooShort { len: usize, min: usize },
    #[error("is {len} characters long, longer than the maximum {max}")]
    TooLong { len: usize, max: usize },
    #[error("contains {ch:?} at position {index}, outside the allowed characters {allowed}")]
    InvalidChar {
        ch: char,
        index: usize,
        allowed: &'static str,
    },
}

impl TokenError {
    /// Stable, language-neutral name of the failure, used in vectors and wire messages.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Empty => "empty",
            TokenError::TooShort { .. } => "too_short",
            TokenError::TooLong { .. } => "too_long",
            TokenError::InvalidChar { .. } => "invalid_char",
        }
    }
}

/// Checks `s` against a length range and a per-character predicate.
pub(crate) fn check_token(
    s: &str,
    min: usize,
    max: usize,
    allowed: &'static str,
    is_allowed: impl Fn(usize, char) -> bool,
) -> Result<(), TokenError> {
    if let Some((index, ch)) = s.chars().enumerate().find(|&(i, c)| !is_allowed(i, c)) {
        return Err(TokenError::InvalidChar { ch, index, allowed });
    }
    let len = s.len();
    if len == 0 {
        return Err(TokenError::Empty);
    }
    if len < min {
        return Err(TokenError::TooShort { len, min });
    }
    if len > max {
        return Err(TokenError::TooLong { len, max });
    }
    Ok(())
}

/// Pusher's channel-name charset without `.`, which separates the parts of a call channel name.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | ';')
}

const ID_CHARSET: &str = "[A-Za-z0-9_-=@,;]";
const ID_PATTERN: &str = "^[A-Za-z0-9_\\-=@,;]{1,64}$";

/// Declares a `String` newtype whose every constructor runs `check`, with serde and JSON Schema
/// impls that go through the same check and describe the same grammar.
macro_rules! string_token {
    (
        $(#[$doc:meta])*
        $name:ident, check = $check:expr, pattern = $pattern:expr, min = $min:expr, max = $max:expr
    ) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` against the grammar and wraps it.
            pub fn parse(s: &str) -> Result<Self, $crate::ids::TokenError> {
                ($check)(s)?;
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::ids::TokenError;
            fn from_str(s: &str) -> Result<Self, $crate::ids::TokenError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::ids::TokenError;
            fn try_from(s: String) -> Result<Self, $crate::ids::TokenError> {
                ($check)(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "minLength": $min,
                    "maxLength": $max,
                })
            }
        }
    };
}
pub(crate) use string_token;

fn check_id_token(s: &str) -> Result<(), TokenError> {
    check_token(s, 1, MAX_ID_TOKEN_LEN, ID_CHARSET, |_, c| is_id_char(c))
}

string_token! {
    /// A user id: `[A-Za-z0-9_\-=@,;]{1,64}`.
    UserId, check = check_id_token, pattern = ID_PATTERN, min = 1, max = MAX_ID_TOKEN_LEN
}

string_token! {
    /// A call id: `[A-Za-z0-9_\-=@,;]{1,64}`. Glare compares call ids in byte order, which `Ord`
    /// implements.
    CallId, check = check_id_token, pattern = ID_PATTERN, min = 1, max = MAX_ID_TOKEN_LEN
}

string_token! {
    /// The id of the thing a call belongs to inside its scope (a room id, a trip id, ...).
    ScopeId, check = check_id_token, pattern = ID_PATTERN, min = 1, max = MAX_ID_TOKEN_LEN
}

fn check_scope(s: &str) -> Result<(), TokenError> {
    check_token(s, 1, MAX_SCOPE_LEN, "[a-z] then [a-z0-9_]", |i, c| {
        c.is_ascii_lowercase() || (i > 0 && (c.is_ascii_digit() || c == '_'))
    })
}

string_token! {
    /// A scope kind: `[a-z][a-z0-9_]{0,31}`; well-known values are `room`, `trip`, `support` and
    /// `delivery`.
    Scope, check = check_scope, pattern = "^[a-z][a-z0-9_]{0,31}$", min = 1, max = MAX_SCOPE_LEN
}

/// The reserved party id of the trusted server.
pub const SERVER_PARTY_ID: &str = "server";

fn check_party_id(s: &str) -> Result<(), TokenError> {
    if s == SERVER_PARTY_ID {
        return Ok(());
    }
    check_device_party_id(s)
}

string_token! {
    /// A party id: random per device per call, `[A-Za-z0-9_-]{8,64}`, or the reserved `server`.
    PartyId,
    check = check_party_id,
    pattern = "^(server|[A-Za-z0-9_-]{8,64})$",
    min = 6,
    max = MAX_PARTY_ID_LEN
}

impl PartyId {
    /// The reserved party id of the trusted server.
    pub fn server() -> Self {
        PartyId(SERVER_PARTY_ID.to_owned())
    }

    pub fn is_server(&self) -> bool {
        self.0 == SERVER_PARTY_ID
    }

    /// This party as an addressee, unless it is the server (which has no media to address).
    pub fn as_device(&self) -> Option<DevicePartyId> {
        DevicePartyId::parse(&self.0).ok()
    }
}

fn check_device_party_id(s: &str) -> Result<(), TokenError> {
    check_token(
        s,
        MIN_PARTY_ID_LEN,
        MAX_PARTY_ID_LEN,
        "[A-Za-z0-9_-]",
        |_, c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
    )
}

string_token! {
    /// The party id of a device, `[A-Za-z0-9_-]{8,64}`: what `to_party_id` names. The reserved
    /// `server` is not one, since the server takes no part in media negotiation.
    DevicePartyId,
    check = check_device_party_id,
    pattern = "^[A-Za-z0-9_-]{8,64}$",
    min = MIN_PARTY_ID_LEN,
    max = MAX_PARTY_ID_LEN
}

impl DevicePartyId {
    pub fn as_party(&self) -> PartyId {
        PartyId(self.0.clone())
    }
}

impl PartialEq<DevicePartyId> for PartyId {
    fn eq(&self, other: &DevicePartyId) -> bool {
        self.0 == other.0
    }
}

fn check_chunk_id(s: &str) -> Result<(), TokenError> {
    check_token(s, 1, 64, "[A-Za-z0-9_-]", |_, c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    })
}

string_token! {
    /// Identifies one set of SDP chunks: `[A-Za-z0-9_-]{1,64}`.
    ChunkId, check = check_chunk_id, pattern = "^[A-Za-z0-9_-]{1,64}$", min = 1, max = 64
}

fn check_socket_id(s: &str) -> Result<(), TokenError> {
    let allowed = "digits '.' digits";
    let mut dots = 0;
    for (index, ch) in s.chars().enumerate() {
        let ok = ch.is_ascii_digit() || (ch == '.' && index > 0 && dots == 0);
        dots += usize::from(ch == '.');
        if !ok {
            return Err(TokenError::InvalidChar { ch, index, allowed });
        }
    }
    if s.is_empty() {
        return Err(TokenError::Empty);
    }
    if dots == 0 || s.ends_with('.') {
        return Err(TokenError::InvalidChar {
            ch: '.',
            index: s.len(),
            allowed: "a '.' between two runs of digits",
        });
    }
    if s.len() > 41 {
        return Err(TokenError::TooLong {
            len: s.len(),
            max: 41,
        });
    }
    Ok(())
}

string_token! {
    /// A Pusher socket id, `\d+\.\d+` (each half at most 20 digits).
    SocketId, check = check_socket_id, pattern = "^[0-9]{1,20}\\.[0-9]{1,20}$", min = 3, max = 41
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_tokens_accept_the_whole_charset_and_nothing_else() {
        assert!(CallId::parse("call-9001_=@,;AZaz09").is_ok());
        for bad in ["call.1", "call 1", "cäll", "call/1", "call#1"] {
            assert!(
                matches!(CallId::parse(bad), Err(TokenError::InvalidChar { .. })),
                "{bad}"
            );
        }
        assert_eq!(CallId::parse(""), Err(TokenError::Empty));
        assert_eq!(
            CallId::parse(&"a".repeat(65)),
            Err(TokenError::TooLong { len: 65, max: 64 })
        );
        assert!(CallId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn scope_must_start_with_a_lowercase_letter() {
        assert!(Scope::parse("room").is_ok());
        assert!(Scope::parse("a1_b").is_ok());
        assert!(matches!(
            Scope::parse("1room"),
            Err(TokenError::InvalidChar { index: 0, .. })
        ));
        assert!(matches!(
            Scope::parse("Room"),
            Err(TokenError::InvalidChar { .. })
        ));
        assert!(matches!(
            Scope::parse(&"a".repeat(33)),
            Err(TokenError::TooLong { .. })
        ));
    }

    #[test]
    fn party_ids_reserve_server_and_need_eight_characters() {
        assert!(PartyId::parse("server").unwrap().is_server());
        assert!(!PartyId::parse("device-01").unwrap().is_server());
        assert_eq!(
            PartyId::parse("short"),
            Err(TokenError::TooShort { len: 5, min: 8 })
        );
        assert!(matches!(
            PartyId::parse("device=01"),
            Err(TokenError::InvalidChar { ch: '=', .. })
        ));
    }

    #[test]
    fn socket_ids_are_two_digit_runs() {
        assert!(SocketId::parse("1234.1234").is_ok());
        for bad in ["1234", "1234.", ".1234", "12.34.56", "12a.34", "", "-1.2"] {
            assert!(SocketId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_deserialize_through_the_same_check() {
        let ok: UserId = serde_json::from_str("\"alice\"").unwrap();
        assert_eq!(ok.as_str(), "alice");
        assert!(serde_json::from_str::<UserId>("\"al ice\"").is_err());
        assert!(serde_json::from_str::<UserId>("42").is_err());
    }
}
