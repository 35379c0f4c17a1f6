//! Deliberate defects of the reference client, for proving that the client-role cases catch real
//! client bugs. Like the server's ([`crate::realtime::Defect`]), each breaks exactly one rule, and
//! only a build with the `defects` feature can be configured with one.

use serde::{Deserialize, Serialize};

/// One deliberate protocol violation of the reference client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ClientDefect {
    /// Sends client events as soon as they are queued, ignoring the announced rate ([LIM-004]).
    NoPacing,
    /// Treats a 4301 refusal as final and drops the event instead of sending it again
    /// ([LIM-004]).
    DropRateRefused,
    /// Reconnects after a close code that says never to ([TRN-010]).
    ReconnectAfterFinalCode,
    /// Uses one party id for every call of the device ([EVT-012]).
    ReusePartyId,
    /// Takes an event on the call channel as this call's whatever its `call_id` ([EVT-011]).
    ActOnOtherCall,
    /// Takes a client event on a presence channel without the server-added `user_id` as coming
    /// from the user it names ([EVT-014]).
    TrustUnverifiedUser,
    /// Ends an ICE generation's candidates twice ([EVT-053]).
    EndCandidatesTwice,
    /// Acts on a sensitive event that arrived unsealed in a strong-privacy call ([PRIV-020]).
    AcceptDowngrade,
    /// Takes an invitation that crosses its own call as another call, so its call never gives
    /// way ([FLOW-008]).
    IgnoreGlare,
    /// Gives way to a crossing call even when its own call has the lower id ([FLOW-008]).
    AlwaysYieldGlare,
}

impl ClientDefect {
    pub const ALL: [ClientDefect; 10] = [
        ClientDefect::NoPacing,
        ClientDefect::DropRateRefused,
        ClientDefect::ReconnectAfterFinalCode,
        ClientDefect::ReusePartyId,
        ClientDefect::ActOnOtherCall,
        ClientDefect::TrustUnverifiedUser,
        ClientDefect::EndCandidatesTwice,
        ClientDefect::AcceptDowngrade,
        ClientDefect::IgnoreGlare,
        ClientDefect::AlwaysYieldGlare,
    ];

    /// The defect's name, as `DOMVIA_CLIENT_DEFECT` takes it.
    pub fn name(self) -> &'static str {
        match self {
            ClientDefect::NoPacing => "no-pacing",
            ClientDefect::DropRateRefused => "drop-rate-refused",
            ClientDefect::ReconnectAfterFinalCode => "reconnect-after-final-code",
            ClientDefect::ReusePartyId => "reuse-party-id",
            ClientDefect::ActOnOtherCall => "act-on-other-call",
            ClientDefect::TrustUnverifiedUser => "trust-unverified-user",
            ClientDefect::EndCandidatesTwice => "end-candidates-twice",
            ClientDefect::AcceptDowngrade => "accept-downgrade",
            ClientDefect::IgnoreGlare => "ignore-glare",
            ClientDefect::AlwaysYieldGlare => "always-yield-glare",
        }
    }

    pub fn from_name(name: &str) -> Option<ClientDefect> {
        ClientDefect::ALL.into_iter().find(|d| d.name() == name)
    }
}
