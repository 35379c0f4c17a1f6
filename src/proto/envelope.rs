//! The strong-privacy envelope (`spec/05-strong-privacy.md`): sealing the bodies of sensitive events so the
//! realtime server relays them without reading SDP, candidates or media state.
//!
//! - Key: `HKDF-SHA256(ikm = master key, salt = "domvia-calls/strong-privacy/v1", info = channel
//!   name)`, 32 bytes, handed to members as `shared_secret` (standard base64).
//! - `kid`: base64url (no padding) of the first 9 bytes of `HMAC-SHA256(key, "domvia-calls/kid/v1")`,
//!   so both ends name a key without another field in the auth response and without revealing it.
//! - Sealed data: the clear header, `to_party_id` (routing) and `sealed {alg: "XC20P", kid, nonce,
//!   ct}`; `ct` is XChaCha20-Poly1305 over the JSON object of the remaining body members.
//! - AAD: `domvia-calls/strong-privacy/v1\n{event}\n{channel}\n{call_id}\n{party_id}\n{seq}`. None
//!   of these may contain a newline, so the encoding is unambiguous.
//!
//! Invariants: sealing never reads a clock or a random source (the nonce is an argument); opening
//! authenticates before it parses; [`PrivacyGuard`] records a `seq` only after the event carrying
//! it authenticated, so a forged event cannot burn a sequence number.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::channel::CallChannel;
pub use crate::event::sealed::{SealedBox, SealedEvent, SealedParts, SealedWire};
use crate::event::seq::{SeqError, SeqTracker};
use crate::event::{
    CallEvent, EventError, EventHeader, EventKind, Incoming, Origin, Privacy, header_map,
    parse_event,
};

/// The only sealing algorithm: XChaCha20-Poly1305 with a 24-byte nonce.
pub const ALG: &str = "XC20P";
/// HKDF salt of the channel key, and the first line of every AAD.
pub const KEY_DERIVATION_SALT: &str = "domvia-calls/strong-privacy/v1";
const KID_LABEL: &[u8] = b"domvia-calls/kid/v1";
/// Members that stay in the clear in a sealed event.
const CLEAR_MEMBERS: [&str; 8] = [
    "v",
    "call_id",
    "party_id",
    "user_id",
    "seq",
    "sent_at_ms",
    "to_party_id",
    "sealed",
];

/// A 32-byte channel key and its `kid`. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelKey {
    key: [u8; 32],
    kid: String,
}

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ChannelKey {
    /// Derives the key of `channel` from the trusted server's privacy master key.
    pub fn derive(master: &[u8], channel: &CallChannel) -> ChannelKey {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(KEY_DERIVATION_SALT.as_bytes()), master);
        let mut key = [0u8; 32];
        hk.expand(channel.to_string().as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        ChannelKey::from_bytes(key)
    }

    pub fn from_bytes(key: [u8; 32]) -> ChannelKey {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(KID_LABEL);
        let tag = mac.finalize().into_bytes();
        ChannelKey {
            key,
            kid: URL_SAFE_NO_PAD.encode(&tag[..9]),
        }
    }

    /// Reads the `shared_secret` of an auth response.
    pub fn from_shared_secret(b64: &str) -> Result<ChannelKey, EnvelopeError> {
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| EnvelopeError::BadSharedSecret)?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| EnvelopeError::BadSharedSecret)?;
        Ok(ChannelKey::from_bytes(key))
    }

    /// The key as the auth endpoint returns it.
    pub fn shared_secret(&self) -> String {
        STANDARD.encode(self.key)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(&self.key).expect("32-byte key")
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error(
        "{kind} is not a sensitive event; only offer, answer, ice_candidate and media_state are sealed"
    )]
    NotSensitive { kind: EventKind },
    #[error("only client events are sealed")]
    NotClientEvent,
    #[error("{kind} arrived unsealed in a strong-privacy call (downgrade)")]
    Downgrade { kind: EventKind },
    #[error("a sealed {kind} arrived in a standard-privacy call")]
    UnexpectedSealed { kind: EventKind },
    #[error("sealing algorithm `{alg}` is not supported (only XC20P)")]
    UnsupportedAlg { alg: String },
    #[error("sealed member `{field}` is not valid base64url of the right length")]
    BadEncoding { field: &'static str },
    #[error("no key with kid `{kid}`; refetch the channel key once")]
    RefetchKey { kid: String },
    #[error("no key with kid `{kid}`, even after refetching; dropped")]
    UnknownKid { kid: String },
    #[error("the sealed body did not authenticate (tampered, wrong key or wrong associated data)")]
    AuthenticationFailed,
    #[error("the opened body is not a JSON object")]
    PlaintextNotObject,
    #[error("the opened body carries clear member `{field}`")]
    PlaintextOverridesHeader { field: String },
    #[error("shared_secret is not standard base64 of 32 bytes")]
    BadSharedSecret,
    #[error("the opened event is invalid: {0}")]
    Event(EventError),
    #[error(transparent)]
    Replay(SeqError),
}

impl EnvelopeError {
    /// The requirement of `spec/` the event breaks, if one names it.
    pub fn requirement(&self) -> Option<&'static str> {
        use EnvelopeError::*;
        Some(match self {
            NotSensitive { .. } | NotClientEvent => "PRIV-012",
            Downgrade { .. } => "PRIV-020",
            UnexpectedSealed { .. } => "PRIV-021",
            UnsupportedAlg { .. } | BadEncoding { .. } => "PRIV-022",
            RefetchKey { .. } | UnknownKid { .. } => "PRIV-023",
            AuthenticationFailed | PlaintextNotObject | PlaintextOverridesHeader { .. } => {
                "PRIV-013"
            }
            BadSharedSecret => "PRIV-002",
            Event(e) => return e.requirement(),
            // The rule for every event; PRIV-030 applies it to sealed ones.
            Replay(_) => "EVT-015",
        })
    }

    pub fn code(&self) -> &'static str {
        use EnvelopeError::*;
        match self {
            NotSensitive { .. } => "envelope.not_sensitive",
            NotClientEvent => "envelope.not_client_event",
            Downgrade { .. } => "envelope.downgrade",
            UnexpectedSealed { .. } => "envelope.unexpected_sealed",
            UnsupportedAlg { .. } => "envelope.unsupported_alg",
            BadEncoding { .. } => "envelope.bad_encoding",
            RefetchKey { .. } => "envelope.refetch_key",
            UnknownKid { .. } => "envelope.unknown_kid",
            AuthenticationFailed => "envelope.authentication_failed",
            PlaintextNotObject => "envelope.plaintext_not_object",
            PlaintextOverridesHeader { .. } => "envelope.plaintext_overrides_header",
            BadSharedSecret => "envelope.bad_shared_secret",
            Event(_) => "envelope.event_invalid",
            Replay(_) => "envelope.replay",
        }
    }
}

/// The associated data binding a sealed body to its event name, channel, call, party and seq.
pub fn associated_data(kind: EventKind, channel: &CallChannel, header: &EventHeader) -> String {
    format!(
        "{KEY_DERIVATION_SALT}\n{}\n{channel}\n{}\n{}\n{}",
        kind.name(),
        header.call_id,
        header.party_id,
        header.seq.get()
    )
}

/// The bytes that get encrypted: the body members that do not stay clear, as a JSON object with
/// keys in sorted order.
pub fn sealed_plaintext(event: &CallEvent) -> Vec<u8> {
    let mut body = event.body().to_map();
    body.remove("to_party_id");
    serde_json::to_vec(&body).expect("a JSON map serializes")
}

/// Seals a sensitive client event with `key` and a caller-chosen random `nonce`.
pub fn seal(
    key: &ChannelKey,
    channel: &CallChannel,
    event: &CallEvent,
    nonce: [u8; 24],
) -> Result<SealedEvent, EnvelopeError> {
    let kind = event.kind();
    if !kind.is_sensitive() {
        return Err(EnvelopeError::NotSensitive { kind });
    }
    if event.origin() != Origin::Client {
        return Err(EnvelopeError::NotClientEvent);
    }
    let aad = associated_data(kind, channel, event.header());
    let plaintext = sealed_plaintext(event);
    let ct = key
        .cipher()
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: aad.as_bytes(),
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any message under 256 GiB");
    Ok(SealedEvent {
        kind,
        header: event.header().clone(),
        to_party_id: event.body().to_party_id().cloned(),
        sealed: SealedBox {
            alg: ALG.to_owned(),
            kid: key.kid().to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ct: URL_SAFE_NO_PAD.encode(ct),
        },
    })
}

/// Opens a sealed event with `key` (whose kid the caller already matched) and parses the result
/// with every event rule.
pub fn open(
    key: &ChannelKey,
    channel: &CallChannel,
    sealed: &SealedEvent,
) -> Result<CallEvent, EnvelopeError> {
    if sealed.sealed.alg != ALG {
        return Err(EnvelopeError::UnsupportedAlg {
            alg: sealed.sealed.alg.clone(),
        });
    }
    let nonce: [u8; 24] = URL_SAFE_NO_PAD
        .decode(&sealed.sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(EnvelopeError::BadEncoding { field: "nonce" })?;
    let ct = URL_SAFE_NO_PAD
        .decode(&sealed.sealed.ct)
        .map_err(|_| EnvelopeError::BadEncoding { field: "ct" })?;
    let aad = associated_data(sealed.kind, channel, &sealed.header);
    let plaintext = key
        .cipher()
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| EnvelopeError::AuthenticationFailed)?;
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&plaintext) else {
        return Err(EnvelopeError::PlaintextNotObject);
    };
    if let Some(field) = CLEAR_MEMBERS.iter().find(|m| body.contains_key(**m)) {
        return Err(EnvelopeError::PlaintextOverridesHeader {
            field: (*field).to_owned(),
        });
    }
    let mut data = header_map(&sealed.header);
    if let Some(to) = &sealed.to_party_id {
        data.insert("to_party_id".into(), Value::String(to.to_string()));
    }
    data.extend(body);
    match parse_event(&sealed.wire_name(), &data).map_err(EnvelopeError::Event)? {
        Incoming::Clear(event) => Ok(event),
        Incoming::Sealed(_) => unreachable!("`sealed` was refused as a plaintext member"),
    }
}

/// Keys of one channel by kid; holds the current key and a few predecessors during rotation.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Oldest first.
    keys: VecDeque<ChannelKey>,
}

impl Keyring {
    /// Keys kept at once; the oldest is evicted first.
    pub const CAPACITY: usize = 4;

    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key as the newest; re-adding a known key makes it the newest again.
    pub fn insert(&mut self, key: ChannelKey) {
        self.keys.retain(|k| k.kid() != key.kid());
        if self.keys.len() == Self::CAPACITY {
            self.keys.pop_front();
        }
        self.keys.push_back(key);
    }

    pub fn get(&self, kid: &str) -> Option<&ChannelKey> {
        self.keys.iter().find(|k| k.kid() == kid)
    }
}

/// Distinct unknown kids a guard refetches for before it stops refetching.
const MAX_REFETCHED_KIDS: usize = 8;

/// A receiver's checks for one call: downgrade, replay, unknown keys. Feed it every call event that
/// arrived on the call channel; it returns the event to act on or why to drop it.
#[derive(Debug)]
pub struct PrivacyGuard {
    channel: CallChannel,
    privacy: Privacy,
    keyring: Keyring,
    seq: SeqTracker,
    refetched: BTreeSet<String>,
}

impl PrivacyGuard {
    pub fn new(channel: CallChannel, privacy: Privacy) -> Self {
        PrivacyGuard {
            channel,
            privacy,
            keyring: Keyring::new(),
            seq: SeqTracker::new(),
            refetched: BTreeSet::new(),
        }
    }

    pub fn privacy(&self) -> Privacy {
        self.privacy
    }

    /// Adds a key (from the auth response, or from a refetch after [`EnvelopeError::RefetchKey`]).
    pub fn install_key(&mut self, key: ChannelKey) {
        self.keyring.insert(key);
    }

    /// Checks one received event. On [`EnvelopeError::RefetchKey`] the caller fetches the channel
    /// key again, installs it and passes the same event once more; a second miss for the same kid
    /// is [`EnvelopeError::UnknownKid`].
    pub fn receive(&mut self, incoming: Incoming) -> Result<CallEvent, EnvelopeError> {
        let header = incoming.header().clone();
        self.seq
            .check(&header.party_id, header.seq)
            .map_err(EnvelopeError::Replay)?;
        let event = match (incoming, self.privacy) {
            (Incoming::Clear(e), Privacy::Strong) if e.kind().is_sensitive() => {
                return Err(EnvelopeError::Downgrade { kind: e.kind() });
            }
            (Incoming::Clear(e), _) => e,
            (Incoming::Sealed(s), Privacy::Standard) => {
                return Err(EnvelopeError::UnexpectedSealed { kind: s.kind() });
            }
            (Incoming::Sealed(s), Privacy::Strong) => {
                let kid = &s.sealed().kid;
                let Some(key) = self.keyring.get(kid) else {
                    // Bounded so a peer inventing kids cannot grow the set; past the bound every
                    // unknown kid is dropped without a refetch.
                    let first_miss = self.refetched.len() < MAX_REFETCHED_KIDS
                        && self.refetched.insert(kid.clone());
                    return Err(if first_miss {
                        EnvelopeError::RefetchKey { kid: kid.clone() }
                    } else {
                        EnvelopeError::UnknownKid { kid: kid.clone() }
                    });
                };
                open(key, &self.channel, &s)?
            }
        };
        self.seq
            .accept(&header.party_id, header.seq)
            .map_err(EnvelopeError::Replay)?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests;
