//! Call sessions: the tokio driver around a [`CallEndpoint`] (every protocol decision: the
//! receive pipeline, sealing, candidate batching, what to report), a [`RealtimeClient`]
//! (signaling) and a [`MediaPeer`] (WebRTC). Shaped like what app developers expect: place a call
//! or wait for an invitation, accept or decline, then run until media is up or the call ends.
//!
//! This module only moves things: frames from the client into the endpoint, the endpoint's
//! events to one sender task (so they leave in order, each confirmed by the server), its reports
//! to the trusted server, its actions to the app or the media peer, and the clock and random
//! nonces into it.

#[cfg(feature = "media")]
mod call;
mod device;
mod signaling;

use std::time::{Duration, Instant};

use crate::call::Phase;
use crate::call_endpoint::EndpointError;
use crate::client::ClientError;
#[cfg(feature = "media")]
use crate::media::MediaError;
pub use crate::trusted::api::PlacedCall;
#[cfg(feature = "media")]
pub use call::CallSession;
pub use device::Device;
pub use signaling::{Inbox, Invitation, Signaling};

/// Why a session operation failed, by whose doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The app asked for something the call's state or the protocol does not allow, or gave
    /// input that is not valid (an SDP, an id).
    #[error(transparent)]
    Misuse(#[from] EndpointError),
    /// An id given to build a device is not valid.
    #[error("{what} {value:?} is not valid: {reason}")]
    InvalidId {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A `POST /calls` request that is not one (`CallRequest` names its members).
    #[error("the call request is not valid: {0}")]
    InvalidRequest(String),
    /// The realtime connection failed or the realtime server refused a request.
    #[error(transparent)]
    Realtime(#[from] ClientError),
    /// The trusted server refused a request or could not be reached (`status` is `None` then).
    #[error("{request}: {status_text}{detail}", status_text = status.map(|s| format!("{s} ")).unwrap_or_default())]
    Trusted {
        request: String,
        status: Option<u16>,
        detail: String,
    },
    /// A peer or server sent something that breaks the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The WebRTC stack refused an operation.
    #[cfg(feature = "media")]
    #[error(transparent)]
    Media(#[from] MediaError),
    /// What was awaited did not happen in time; the text says what was last seen.
    #[error("{0}")]
    TimedOut(String),
    /// The realtime connection ended for good.
    #[error("the signaling connection ended")]
    ConnectionEnded,
}

/// For tools that report every error as text.
impl From<SessionError> for String {
    fn from(e: SessionError) -> String {
        e.to_string()
    }
}

/// A timeline of what happened, with times since the session began.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    start: Option<Instant>,
    pub entries: Vec<(Duration, String)>,
}

impl Timeline {
    pub(crate) fn begin() -> Timeline {
        Timeline {
            start: Some(Instant::now()),
            entries: Vec::new(),
        }
    }
    pub(crate) fn note(&mut self, what: impl Into<String>) {
        let at = self.start.map_or(Duration::ZERO, |s| s.elapsed());
        self.entries.push((at, what.into()));
    }
    /// When this timeline began (its entries are times since then).
    pub fn began(&self) -> Option<Instant> {
        self.start
    }

    /// When the first entry starting with `prefix` happened.
    pub fn at(&self, prefix: &str) -> Option<Duration> {
        self.entries
            .iter()
            .find(|(_, e)| e.starts_with(prefix))
            .map(|(t, _)| *t)
    }
}

/// When [`CallSession::run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunUntil {
    /// The data channel carried the ping and its echo, and RTP arrived.
    MediaUp,
    /// The call ended.
    Ended,
    /// Keep handling events until the time given to `run` is up (an in-call pause).
    Elapsed,
}

/// How a run finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub phase: Phase,
    pub events_sent: usize,
    pub throttled: usize,
}
