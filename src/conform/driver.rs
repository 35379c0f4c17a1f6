//! The client-driver contract: how the conformance runner drives a call client under test, in
//! any language, over the child process's stdin and stdout. One JSON object per line each way;
//! `conformance/client-driver.md` is the normative text, and these types are its Rust form (the
//! runner writes [`DriverCommand`]s and reads [`DriverReport`]s; the reference client's driver,
//! `domvia-calls drive`, does the opposite).
//!
//! A driver is thin on purpose: it turns commands into its SDK's calls and its SDK's callbacks
//! into reports. Verdicts never rest on a report alone where the wire can show the behaviour: the
//! runner also sees every frame the client sends.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the runner asks; `cmd` names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum DriverCommand {
    /// Connect as `user` and listen on the user's inbox; answer with `ready`.
    Connect {
        realtime_url: String,
        trusted_url: String,
        token: String,
        user: String,
    },
    /// Place a call through the trusted server (`request` is the `POST /calls` body); answer with
    /// `placed`, then phases as the call goes on.
    Place { request: Value },
    /// Accept the ringing call.
    Answer,
    /// Decline the ringing call (`busy`: because of another call).
    Decline {
        #[serde(default)]
        busy: bool,
    },
    /// Hang up (or cancel before an answer).
    HangUp,
    /// Mute or unmute the microphone (a `call.media_state`).
    Mute { muted: bool },
    /// Close everything and exit with status 0.
    Quit,
}

/// What the client says; `event` names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DriverReport {
    /// Listening for invitations: after `connect`, and again after each call.
    Ready { user: String },
    /// The trusted server created the call this client placed.
    Placed { call_id: String, channel: String },
    /// An invitation arrived and this device rings.
    Incoming { call_id: String, caller: String },
    /// The call moved to `phase` (one of [`PHASES`]); `reason` with `ended`.
    Phase {
        call_id: String,
        phase: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Media flows both ways (the reference client: data-channel echo and RTP).
    MediaUp { call_id: String },
    /// The client refused an event on the call channel, with the rule it broke.
    Refused {
        call_id: String,
        event_name: String,
        code: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requirement: Option<String>,
    },
    /// A command could not be carried out.
    Error { command: String, message: String },
}

/// The phase names a driver reports, the call states of `spec/09-call-states.md`.
pub const PHASES: [&str; 8] = [
    "idle",
    "outgoing",
    "ringing",
    "incoming",
    "alerting",
    "connecting",
    "active",
    "ended",
];

/// The contract's name for a phase of the reference call machine, and the end reason if any.
pub fn phase_name(phase: crate::call::Phase) -> (&'static str, Option<String>) {
    use crate::call::Phase;
    match phase {
        Phase::Idle => ("idle", None),
        Phase::Outgoing => ("outgoing", None),
        Phase::Ringing => ("ringing", None),
        Phase::Incoming => ("incoming", None),
        Phase::Alerting => ("alerting", None),
        Phase::Connecting => ("connecting", None),
        Phase::Active => ("active", None),
        Phase::Ended(reason) => (
            "ended",
            Some(
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_the_documented_one() {
        let c: DriverCommand = serde_json::from_str(r#"{"cmd":"decline","busy":true}"#).unwrap();
        assert_eq!(c, DriverCommand::Decline { busy: true });
        let c: DriverCommand = serde_json::from_str(r#"{"cmd":"hang_up"}"#).unwrap();
        assert_eq!(c, DriverCommand::HangUp);
        assert!(serde_json::from_str::<DriverCommand>(r#"{"cmd":"dance"}"#).is_err());
        let r = DriverReport::Phase {
            call_id: "c1".into(),
            phase: "ended".into(),
            reason: Some("hangup".into()),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"event": "phase", "call_id": "c1", "phase": "ended", "reason": "hangup"})
        );
        let (name, reason) =
            phase_name(crate::call::Phase::Ended(crate::event::EndReason::NoAnswer));
        assert_eq!((name, reason.as_deref()), ("ended", Some("no_answer")));
        assert!(PHASES.contains(&name));
    }
}
