//! The runner's side of the wire: a traced raw Pusher-protocol connection, the signed HTTP API
//! client, the webhook listener, and the per-case context that records the trace and checks
//! every received call event against the generated schemas.
//!
//! Every wait has a deadline and ends as soon as what it waits for arrives; absence is proved
//! with a ping fence (the target answers `pusher:ping` in order) rather than with a sleep.

mod conn;
mod context;
mod webhooks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::target::Target;
use super::verdict::Failure;
use crate::event::EventKind;
use crate::ids::SocketId;
use crate::signing::{self, Secret};

pub use conn::{Conn, Opened, Recv, decode_data, error_data};
pub use context::{Ctx, Schemas, TraceEntry};
pub use webhooks::{RETRY_MARKER, WebhookDelivery, WebhookLog, listen_webhooks};

/// Longest wait for something the target should do promptly.
pub const PROMPT: Duration = Duration::from_secs(5);
/// Largest frame text kept in a trace entry unless the run asks for more.
pub const TRACE_TEXT_BYTES: usize = 1024;

/// Why a case step did not go on.
#[derive(Debug, Clone)]
pub enum Problem {
    Fail(Failure),
    Unsupported(String),
    Errored(String),
}

pub type Step<T> = Result<T, Problem>;

/// A failed expectation.
pub fn fail(
    message: impl Into<String>,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Problem {
    Problem::Fail(Failure {
        message: message.into(),
        expected: expected.into(),
        actual: actual.into(),
    })
}

/// Fails with `message` unless `cond` holds.
pub fn ensure(
    cond: bool,
    message: impl Into<String>,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Step<()> {
    if cond {
        Ok(())
    } else {
        Err(fail(message, expected, actual))
    }
}

/// The kit could not carry out a step.
pub fn errored(message: impl Into<String>) -> Problem {
    Problem::Errored(message.into())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
