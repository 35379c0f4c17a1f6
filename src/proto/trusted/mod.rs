//! The reference trusted server's decisions, pure: the user directory, channel authorization,
//! call records and their transitions, the ring timeout and webhook verification. The I/O shell in
//! `crate::trusted_server` stores records and talks HTTP; it decides nothing itself.

pub mod api;
mod directory;
pub mod outbox;
mod policy;
pub mod rate;
pub mod reconcile;
mod record;
pub mod webhook;

pub use directory::{Directory, User};
pub use policy::{AuthResponse, Denial, SigningApp, authorize};
pub use record::{
    CallRecord, CallRequest, CallRequestError, CallState, LogEntry, Outcome, PlannedCall,
    UserAction, apply_user_action, apply_webhook, end_vacated, expire_if_due, plan_call,
};
