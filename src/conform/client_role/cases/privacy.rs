//! Strong privacy from the client's side (spec/05-strong-privacy.md): in a strong-privacy call
//! the client seals every sensitive event and nothing else ([PRIV-010], [PRIV-012]). A client
//! that declines strong-privacy calls (`incompatible`, [EVT-033]) gets `unsupported` for the
//! strong-privacy cases: declining is allowed, silently downgrading is not.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::json;

use super::{
    ClientCase, Env, PROMPT, Step, answered, call_client_with, failed, hang_up_remote, room_call,
};
use crate::conform::verdict::{Level, Outcome};
use crate::session::CallSession;

pub(super) fn all() -> Vec<ClientCase> {
    vec![ClientCase {
        id: "client.strong.sealed",
        level: Level::Must,
        requirements: &["PRIV-010", "PRIV-012"],
        title: "In a strong-privacy call the client seals its offer or answer, candidates and media state, and nothing else, and media comes up",
        run: sealed,
    }]
}

/// The sensitive events, whose bodies a strong-privacy call seals.
const SENSITIVE: [&str; 4] = [
    "client-call.offer",
    "client-call.answer",
    "client-call.ice_candidate",
    "client-call.media_state",
];

/// Alice calls the client with strong privacy and the client answers, media up both ways;
/// `unsupported` when the client declines the call as `incompatible`.
pub(super) async fn strong_call(env: &mut Env<'_>, bob: usize) -> Step<(CallSession, String)> {
    let mut request = room_call("bob", None);
    request["privacy"] = json!("strong");
    let (call, id) = call_client_with(env, bob, request).await?;
    let ended = json!({"event": "phase", "phase": "ended", "call_id": id});
    if let Some(report) = env.at(bob).watch(&ended, Duration::from_secs(1)).await? {
        hang_up_remote(call).await?;
        return Err(if report["reason"] == "incompatible" {
            Outcome::Unsupported("the client declines strong-privacy calls (incompatible)".into())
        } else {
            failed(
                "the client ended a strong-privacy call before answering",
                "ringing",
                report.to_string(),
            )
        });
    }
    answered(env, bob, call, id).await
}

fn sealed<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        let (call, id) = strong_call(env, bob).await?;
        env.at(bob)
            .send(json!({"cmd": "mute", "muted": true}))
            .await?;
        let deadline = tokio::time::Instant::now() + PROMPT;
        let events = loop {
            let events: Vec<(String, serde_json::Value)> = env
                .sent_events()
                .into_iter()
                .filter(|(_, name, data)| name.starts_with("client-call.") && data["call_id"] == id)
                .map(|(_, name, data)| (name, data))
                .collect();
            if events.iter().any(|(n, _)| n == "client-call.media_state") {
                break events;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(failed(
                    "the client did not send its media state",
                    "client-call.media_state",
                    "none",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        hang_up_remote(call).await?;
        // Members that must never show in the clear of a sealed event.
        let secret_members = ["sdp", "candidates", "audio", "video", "screen", "on_hold"];
        let mut sealed = 0;
        for (name, data) in &events {
            let is_sealed = data.get("sealed").is_some();
            if SENSITIVE.contains(&name.as_str()) {
                let leaked: Vec<&str> = secret_members
                    .iter()
                    .copied()
                    .filter(|m| data.get(*m).is_some())
                    .collect();
                if !is_sealed || !leaked.is_empty() {
                    return Err(failed(
                        "the client sent a sensitive event in the clear in a strong-privacy call",
                        format!("{name} sealed, with none of {secret_members:?} in the clear"),
                        format!("sealed: {is_sealed}, in the clear: {leaked:?}"),
                    ));
                }
                sealed += 1;
            } else if is_sealed {
                return Err(failed(
                    "the client sealed an event that is not sensitive",
                    format!("{name} in the clear"),
                    "sealed",
                ));
            }
        }
        Ok(Some(format!(
            "{sealed} sensitive events sealed, {} in the clear",
            events.len() - sealed
        )))
    })
}
