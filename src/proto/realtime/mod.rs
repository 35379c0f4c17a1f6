//! The reference realtime server's protocol logic, pure: [`Hub`] holds every connection, channel
//! and presence member and decides what Pusher protocol 7 asks for; the tokio shell in
//! `crate::server` only moves bytes, timers and webhook deliveries.

mod config;
mod defect;
mod http;
mod hub;
pub mod webhook_queue;

pub use config::AppConfig;
pub use defect::Defect;
pub use http::{MAX_BATCH_EVENTS, MAX_TRIGGER_CHANNELS};
pub use hub::{ConnId, HttpRequest, HttpResponse, Hub, Output};
