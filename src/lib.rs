//! # domvia-calls
//!
//! The protocol core of call signaling over a Pusher-compatible realtime service: channel names,
//! Pusher frames and codes, typed call events, signatures, the strong-privacy envelope, JSON Schema
//! generation and the machine-readable requirement list of the spec.
//!
//! This library is pure: no async runtime, no sockets, no clock reads and no random source. Time
//! and nonces are arguments. `cargo build --no-default-features` builds exactly this core; the
//! command-line tool sits behind the default `cli` feature and only adds a binary.
//!
//! Modules, top-down:
//! - [`channel`]: call and inbox channel names (build and parse are exact inverses).
//! - [`event`]: call events, their wire form, the per-party `seq` rule and SDP chunking.
//! - [`envelope`]: sealing sensitive events in strong-privacy calls.
//! - [`signing`]: channel, user, HTTP API, webhook and TURN signatures.
//! - [`pusher`]: Pusher protocol 7 frames and close/error codes.
//! - [`ids`], [`limits`]: identifier grammars and the protocol's numbers.
//! - [`schema`], [`spec`], [`vectors`]: generated schemas, the spec's requirement list and the
//!   language-neutral conformance vectors.

pub mod asyncapi;
pub mod call;
pub mod call_endpoint;
pub mod channel;
#[cfg(feature = "client")]
pub mod client;
pub mod compat;
#[cfg(feature = "conform")]
pub mod conform;
pub mod envelope;
pub mod error;
pub mod event;
pub mod fuzz_entry;
pub mod ids;
#[cfg(feature = "conform")]
pub mod interop;
pub mod limits;
#[cfg(feature = "media")]
pub mod media;
#[cfg(any(feature = "client", feature = "server"))]
pub mod net;
pub mod pusher;
pub mod pusher_client;
pub mod realtime;
pub mod schema;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "media")]
pub mod session;
pub mod signing;
pub mod spec;
#[cfg(feature = "trusted")]
pub mod stack;
pub mod trusted;
#[cfg(feature = "trusted")]
pub mod trusted_server;
pub mod vectors;
