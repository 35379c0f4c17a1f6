//! Simulated-time scenarios: the pure protocol machines (the Pusher client
//! [`PusherClient`] and, in the call scenarios, the call endpoint) wired to the pure realtime
//! [`Hub`] with no sockets and no clock. Time only moves when every machine is idle, straight to
//! the earliest timer, so a minute of pacing, backoff and ring timeouts runs in milliseconds and
//! every run is the same. One file per scenario; the real-socket tests of the shells are in
//! `tests/realtime_client.rs` and `tests/signaling_session.rs`.

mod call;
mod call_failures;
mod call_setup;
mod call_strong_privacy;
mod client_fence;
mod client_pacing;
mod client_reconnect;
mod client_restore;
mod world;
