//! The trusted server's HTTP answers that clients read, as types both ends share: the server
//! serializes them, the reference client deserializes them, so a member renamed on one side
//! fails to compile or to parse instead of reading as a default.

use serde::{Deserialize, Serialize};

use crate::channel::CallChannel;
use crate::event::Privacy;
use crate::ids::{CallId, UserId};

/// One ICE server as WebRTC's `RTCIceServer` takes it: STUN URLs alone, TURN URLs with a
/// short-lived username and credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The answer of `GET /ice-servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServerList {
    pub ice_servers: Vec<IceServer>,
}

/// The answer of `POST /calls`: the call the server created and invited callees to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedCall {
    pub call_id: CallId,
    pub channel: CallChannel,
    pub privacy: Privacy,
    pub ring_timeout_ms: u64,
    /// When the server ends the call as unanswered, in Unix milliseconds.
    pub ring_deadline_ms: u64,
    /// The users whose inboxes were invited.
    pub callees: Vec<UserId>,
    /// For the caller's peer connection: STUN, and TURN with fresh credentials.
    pub ice_servers: Vec<IceServer>,
}
