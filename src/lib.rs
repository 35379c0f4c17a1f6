//! # domvia-calls
//!
//! Call signaling over a Pusher-compatible realtime service: the protocol's pure core, reference
//! implementations of every role around it, and the conformance kit that checks other people's.
//!
//! ## Layout
//! - [`proto`] (always built, `--no-default-features` builds nothing else): every protocol
//!   decision as pure state machines and types, with time and randomness as arguments. Its modules
//!   are also re-exported at the crate root (`domvia_calls::call` is `domvia_calls::proto::call`).
//! - The shells, each a driver loop around a machine of [`proto`], each behind the feature that
//!   brings its I/O:
//!   - `client` feature: [`client`] (the Pusher client over tokio-tungstenite, driving
//!     [`proto::pusher_client::PusherClient`]) and [`net`] (TLS and HTTP clients);
//!   - `client` feature, too: [`session`] (calls: a device, its inbox, `session::Signaling`
//!     driving [`proto::call_endpoint::CallEndpoint`]), for apps with their own WebRTC stack;
//!   - `media` feature: [`media`] (the reference WebRTC peer, webrtc-rs) and
//!     `session::CallSession` (a call with that peer);
//!   - `server` feature: [`server`] (the realtime server's listener, driving
//!     [`proto::realtime::Hub`], and its webhook sender);
//!   - `trusted` feature: [`trusted_server`] (HTTP endpoints, the call store on SQLite or
//!     PostgreSQL, background loops, driving [`proto::trusted`]) and [`stack`] (both servers in
//!     one process);
//!   - `conform` feature: [`conform`] (the conformance runner, its cases and reports) and
//!     [`interop`] (Chromium, aiortc, coturn and network namespaces for the interop runs);
//!   - `cli` feature: the `domvia-calls` binary.
//!
//! ## Errors
//! Protocol errors are typed beside the code that detects them (`EventError`, `EnvelopeError`,
//! `FrameError`, `ClientError`, `EndpointError`, `SessionError`, `MediaError`); settings and
//! local tools fail with [`error::ConfigError`] and [`error::ToolError`]. All are
//! `#[non_exhaustive]` enums or newtypes with a message naming the problem.

pub mod proto;

pub use proto::{
    asyncapi, call, call_endpoint, channel, client_defect, compat, envelope, error, event,
    fuzz_entry, ids, limits, pusher, pusher_client, realtime, schema, signing, spec, trusted,
    vectors,
};

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "conform")]
pub mod conform;
#[cfg(feature = "conform")]
pub mod interop;
#[cfg(feature = "client")]
pub mod load;
#[cfg(feature = "media")]
pub mod media;
#[cfg(any(feature = "client", feature = "server"))]
pub mod net;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "client")]
pub mod session;
#[cfg(feature = "trusted")]
pub mod stack;
#[cfg(feature = "trusted")]
pub mod trusted_server;
