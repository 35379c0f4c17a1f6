//! The wire form of a sensitive event whose body is sealed (strong privacy): the header in the
//! clear, the body in a `sealed` box. Parsing it needs no key; opening it is
//! [`crate::envelope`]'s job, which depends on this module and never the other way round.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{EventError, EventHeader, EventKind, Origin, from_data, header_map};
use crate::ids::DevicePartyId;

/// The `sealed` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SealedBox {
    /// Always `XC20P`.
    #[schemars(extend("const" = "XC20P"))]
    pub alg: String,
    /// Names the channel key.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub kid: String,
    /// 24 random bytes, base64url without padding.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{32}$"))]
    pub nonce: String,
    /// Ciphertext and 16-byte tag, base64url without padding.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub ct: String,
}

/// The members of a sealed event besides the header.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SealedParts {
    /// Present on offer, answer and ice_candidate; absent on media_state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_party_id: Option<DevicePartyId>,
    pub sealed: SealedBox,
}

/// The wire form of a sealed event; the source of `schemas/sealed.json`.
pub type SealedWire = crate::event::WireEvent<SealedParts>;

/// A sensitive event whose body is still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEvent {
    pub(crate) kind: EventKind,
    pub(crate) header: EventHeader,
    pub(crate) to_party_id: Option<DevicePartyId>,
    pub(crate) sealed: SealedBox,
}

impl SealedEvent {
    pub(crate) fn from_data(kind: EventKind, data: &Value) -> Result<SealedEvent, EventError> {
        let header: EventHeader = from_data(data)?;
        let parts: SealedParts = from_data(data)?;
        if kind.is_directed() && parts.to_party_id.is_none() {
            return Err(EventError::MissingField {
                path: "to_party_id".into(),
            });
        }
        Ok(SealedEvent {
            kind,
            header,
            to_party_id: parts.to_party_id,
            sealed: parts.sealed,
        })
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }
    pub fn header(&self) -> &EventHeader {
        &self.header
    }
    pub fn to_party_id(&self) -> Option<&DevicePartyId> {
        self.to_party_id.as_ref()
    }
    pub fn sealed(&self) -> &SealedBox {
        &self.sealed
    }

    /// Sealed events are always client events.
    pub fn wire_name(&self) -> String {
        self.kind.wire_name(Origin::Client)
    }

    pub fn to_data(&self) -> Map<String, Value> {
        let mut map = header_map(&self.header);
        if let Some(to) = &self.to_party_id {
            map.insert("to_party_id".into(), Value::String(to.to_string()));
        }
        map.insert(
            "sealed".into(),
            serde_json::to_value(&self.sealed).expect("serializable"),
        );
        map
    }
}
