//! Deliberate defects for proving that the conformance kit catches real bugs.
//!
//! Each variant breaks exactly one rule of the protocol in the reference server. They exist only
//! when the crate is built with the `defects` feature: a release build cannot be configured into a
//! broken server. `tests/conform_defects.rs` runs the whole conformance suite against each variant
//! and checks that the case written for that rule is the one that catches it.

use serde::{Deserialize, Serialize};

/// One deliberate protocol violation of the reference realtime server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Defect {
    /// Delivers client events back to the connection that sent them too ([TRN-031]).
    EchoToSender,
    /// Accepts any `auth` on private and presence subscriptions ([TRN-020]).
    SkipSignatureCheck,
    /// Accepts a signature made for another connected socket ([SIGN-003]).
    AcceptOtherSocketSignature,
    /// Relays client events on public channels ([TRN-030]).
    RelayOnPublicChannels,
    /// Relays client events over the rate limit ([LIM-002]).
    IgnoreRateLimit,
    /// Relays presence client events without the sender's `user_id` ([TRN-032]).
    DropPresenceUserId,
    /// Sends `member_added` for every connection of a user, not once per user ([TRN-022]).
    MemberEventsPerConnection,
    /// Re-serializes relayed `data`, so bytes differ while the meaning stays ([TRN-033]).
    ReserializePayload,
    /// Closes the connection on a frame that is not JSON ([TRN-013]).
    CloseOnMalformedJson,
    /// Never answers `pusher:ping` ([TRN-006]).
    NoPong,
    /// Keeps delivering a channel's events after `pusher:unsubscribe` ([TRN-023]).
    DeliverAfterUnsubscribe,
    /// Accepts HTTP API requests with any `auth_timestamp` ([SIGN-011]).
    IgnoreHttpTimestamp,
    /// Accepts client events whose `data` is over the event size limit ([LIM-010]).
    IgnoreEventSizeLimit,
    /// Signs webhooks with a wrong key ([SIGN-020]).
    BadWebhookSignature,
    /// Gives every listening address a hub of its own, so nodes deliver only their own
    /// connections' events ([TRN-030] across a cluster).
    NodeLocalHubs,
    /// Answers refused subscriptions with `pusher:error` 4009 instead of
    /// `pusher:subscription_error`, as an independent server was seen to ([TRN-024]).
    SubscriptionErrorAsPusherError,
    /// Keeps a connection whose outbound queue is full open, dropping what does not fit, so a
    /// consumer that stopped reading is never disconnected ([LIM-013]).
    NeverCloseSlowConsumer,
}

impl Defect {
    /// Every defect, in a stable order.
    pub const ALL: [Defect; 17] = [
        Defect::EchoToSender,
        Defect::SkipSignatureCheck,
        Defect::AcceptOtherSocketSignature,
        Defect::RelayOnPublicChannels,
        Defect::IgnoreRateLimit,
        Defect::DropPresenceUserId,
        Defect::MemberEventsPerConnection,
        Defect::ReserializePayload,
        Defect::CloseOnMalformedJson,
        Defect::NoPong,
        Defect::DeliverAfterUnsubscribe,
        Defect::IgnoreHttpTimestamp,
        Defect::IgnoreEventSizeLimit,
        Defect::BadWebhookSignature,
        Defect::NodeLocalHubs,
        Defect::SubscriptionErrorAsPusherError,
        Defect::NeverCloseSlowConsumer,
    ];

    /// The kebab-case name used on the command line and in reports.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}
