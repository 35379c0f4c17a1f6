//! Events a client must not act on: one that belongs to another call ([EVT-011]), one that
//! repeats an old `seq` ([EVT-015]), one on a presence channel without the sender's verified
//! `user_id` or with another one ([EVT-014]), and, in a strong-privacy call, a sensitive event
//! sent in the clear ([PRIV-020]). A forged event looks like the caller's in every
//! other respect, so a client that skips the rule acts on it.
//!
//! Each case runs a call to media up, delivers one forged event as if the server had relayed it,
//! and judges what follows: on the wire, the client must not react (no answer to a forged offer,
//! no `call.ended`, no unsubscribe from the call channel), it must not report the call ended, and
//! when the caller then really hangs up, the client must end the call for that reason: a client
//! that took the forged event's `seq` as seen would drop the caller's real events after it.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::super::proxy::Way;
use super::{
    ClientCase, Env, PROMPT, Step, answered, call_client_with, errored, failed, hang_up_remote,
    privacy, room_call,
};
use crate::conform::verdict::Level;

pub(super) fn all() -> Vec<ClientCase> {
    vec![
        ClientCase {
            id: "client.ignore.other-call",
            level: Level::Must,
            requirements: &["EVT-011", "SEC-005"],
            title: "An offer for another call on the call channel is not answered",
            run: other_call,
        },
        ClientCase {
            id: "client.ignore.old-seq",
            level: Level::Must,
            requirements: &["EVT-015"],
            title: "A call.ended repeating a seq the caller already used does not end the call",
            run: old_seq,
        },
        ClientCase {
            id: "client.ignore.unverified-user",
            level: Level::Must,
            requirements: &["EVT-014", "CHAN-011"],
            title: "On a presence channel, a call.ended without the server-added user_id does not end the call",
            run: unverified_user,
        },
        ClientCase {
            id: "client.ignore.impersonated-user",
            level: Level::Must,
            requirements: &["EVT-014", "CHAN-011"],
            title: "On a presence channel, a call.ended whose user_id is not the one the server added does not end the call",
            run: impersonated_user,
        },
        ClientCase {
            id: "client.ignore.downgrade",
            level: Level::Must,
            requirements: &["PRIV-020"],
            title: "In a strong-privacy call, an offer sent in the clear (a downgrade) is not answered",
            run: downgrade,
        },
    ]
}

/// A `seq` far above anything a party sends in a test call: a forged event with it cannot be
/// mistaken for a repeat, and a client that records it drops the caller's real events after it.
const FORGED_SEQ: u64 = 1 << 50;

/// The live call as the client under test sees it, what forged events are made from.
struct LiveCall {
    channel: String,
    /// The channel key, in a strong-privacy call (derived as the trusted server does).
    key: Option<crate::envelope::ChannelKey>,
    /// The caller's party and every event of the caller the client received, in order.
    caller_party: String,
    caller_events: Vec<(String, Value)>,
}

impl LiveCall {
    /// An event of the caller's with `data` changed by `edit`, as the server relays it on a
    /// presence channel (`user_id` is the server-added member, `None` leaves it out).
    fn forged(
        &self,
        name: &str,
        data: Value,
        edit: impl FnOnce(&mut serde_json::Map<String, Value>),
        member: Option<&str>,
    ) -> Value {
        let mut data = data.as_object().cloned().unwrap_or_default();
        data.insert("party_id".into(), json!(self.caller_party));
        data.insert("sent_at_ms".into(), json!(0));
        edit(&mut data);
        let mut frame = json!({
            "event": name,
            "channel": self.channel,
            "data": Value::Object(data).to_string(),
        });
        if let Some(user) = member {
            frame["user_id"] = json!(user);
        }
        frame
    }

    /// The caller's event named `name`, as received.
    fn caller_event(&self, name: &str) -> Option<&Value> {
        self.caller_events
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
    }
}

/// What the proxy saw of call `id`: its channel and the caller's events to the client (opened,
/// in a strong-privacy call).
fn live_call(env: &Env<'_>, id: &str, strong: bool) -> Step<LiveCall> {
    let mut channel = None;
    let mut key = None;
    let mut parsed_channel = None;
    let mut caller_party = None;
    let mut caller_events = Vec::new();
    for t in env.proxy.frames() {
        if t.way != Way::ToClient {
            continue;
        }
        let Some(frame) = t.frame() else { continue };
        if !frame.event.starts_with("client-call.") {
            continue;
        }
        let data = frame
            .data
            .as_ref()
            .and_then(|d| d.to_object().ok())
            .map_or(Value::Null, Value::Object);
        if data["call_id"] != id || data["user_id"] != "alice" {
            continue;
        }
        if channel.is_none() && strong {
            let name = frame.channel.clone().unwrap_or_default();
            let call_channel = crate::channel::CallChannel::parse(&name)
                .map_err(|e| errored(format!("the call channel {name}: {e}")))?;
            key = Some(crate::envelope::ChannelKey::derive(
                env.master_key,
                &call_channel,
            ));
            parsed_channel = Some(call_channel);
        }
        let data = match (&key, &parsed_channel, data.get("sealed")) {
            (Some(k), Some(ch), Some(_)) => open_sealed(k, ch, &frame.event, &data)?,
            _ => data,
        };
        channel = frame.channel.clone();
        caller_party = data["party_id"].as_str().map(str::to_owned);
        caller_events.push((frame.event.clone(), data));
    }
    match (channel, caller_party) {
        (Some(channel), Some(caller_party)) => Ok(LiveCall {
            channel,
            key,
            caller_party,
            caller_events,
        }),
        _ => Err(errored("the client received no event of the caller's")),
    }
}

/// The clear form of the sealed event `data` named `name`, as a receiver opens it.
fn open_sealed(
    key: &crate::envelope::ChannelKey,
    channel: &crate::channel::CallChannel,
    name: &str,
    data: &Value,
) -> Step<Value> {
    let map = data.as_object().cloned().unwrap_or_default();
    match crate::event::parse_event(name, &map) {
        Ok(crate::event::Incoming::Sealed(sealed)) => crate::envelope::open(key, channel, &sealed)
            .map(|e| Value::Object(e.to_data()))
            .map_err(|e| errored(format!("the caller's sealed {name} did not open: {e}"))),
        Ok(crate::event::Incoming::Clear(e)) => Ok(Value::Object(e.to_data())),
        Err(e) => Err(errored(format!("the caller's {name}: {e}"))),
    }
}

/// Runs a call to media up, delivers the event `forge` makes, and judges the client's reaction:
/// none of the client events in `reactions`, no unsubscribe, no end, and the call still ends
/// for the caller's real hang-up. `strong`: a strong-privacy call, `unsupported` for a client
/// that declines those.
async fn not_acted_on(
    env: &mut Env<'_>,
    strong: bool,
    forge: impl FnOnce(&LiveCall, &str) -> Step<Value>,
    reactions: &[&str],
) -> Step<Option<String>> {
    let bob = env.client("bob").await?;
    let (call, id) = if strong {
        privacy::strong_call(env, bob).await?
    } else {
        let (call, id) = call_client_with(env, bob, room_call("bob", None)).await?;
        answered(env, bob, call, id).await?
    };
    let live = live_call(env, &id, strong)?;
    let frame = forge(&live, &id)?;
    let injected = Instant::now();
    env.proxy.inject(&frame);
    let ended = json!({"event": "phase", "phase": "ended", "call_id": id});
    if let Some(report) = env.at(bob).watch(&ended, Duration::from_secs(2)).await? {
        return Err(failed(
            "the client acted on the forged event: it ended the call",
            "the call goes on",
            report.to_string(),
        ));
    }
    let reacted: Vec<String> = env
        .sent_events()
        .into_iter()
        .filter(|(t, name, _)| *t >= injected && reactions.contains(&name.as_str()))
        .map(|(_, name, _)| name)
        .collect();
    let left = env.proxy.frames().into_iter().any(|t| {
        t.at >= injected
            && t.way == Way::FromClient
            && t.text.contains("pusher:unsubscribe")
            && t.text.contains(&live.channel)
    });
    if !reacted.is_empty() || left {
        return Err(failed(
            "the client acted on the forged event",
            "no reaction on the wire",
            if left {
                "it left the call channel".to_owned()
            } else {
                format!("it sent {reacted:?}")
            },
        ));
    }
    hang_up_remote(call).await?;
    let report = env.at(bob).expect(ended, PROMPT).await?;
    if report["reason"] != "hangup" {
        return Err(failed(
            "the call did not end for the caller's hang-up",
            "phase ended, reason hangup",
            report.to_string(),
        ));
    }
    Ok(Some(format!("forged {} ignored", frame["event"])))
}

fn other_call<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(not_acted_on(
        env,
        false,
        |live, id| {
            // Another call's id of the same form: the same length, all zeros after the prefix.
            let other: String = id
                .char_indices()
                .map(|(i, c)| if i == 0 { c } else { '0' })
                .collect();
            offer_again(live, |d| {
                d.insert("call_id".into(), json!(other));
            })
        },
        &["client-call.answer", "client-call.ended"],
    ))
}

/// The caller's offer (opened, in a strong-privacy call) as a renegotiation with a new `seq`,
/// changed by `edit`: a client that acts on it answers.
fn offer_again(
    live: &LiveCall,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Step<Value> {
    let offer = live
        .caller_event("client-call.offer")
        .ok_or_else(|| errored("the client received no offer from the caller"))?;
    if offer.get("chunk").is_some() {
        return Err(errored(
            "the caller's offer came in chunks; the case needs it whole",
        ));
    }
    let negotiation = offer["negotiation_id"].as_u64().unwrap_or(1) + 1;
    Ok(live.forged(
        "client-call.offer",
        offer.clone(),
        |d| {
            d.insert("seq".into(), json!(FORGED_SEQ));
            d.insert("negotiation_id".into(), json!(negotiation));
            edit(d);
        },
        Some("alice"),
    ))
}

/// The caller's hang-up, as it would send it, with `seq` and the member the server adds.
fn forged_ended(live: &LiveCall, id: &str, seq: u64, member: Option<&str>) -> Value {
    live.forged(
        "client-call.ended",
        json!({"v": 1, "call_id": id, "user_id": "alice", "reason": "hangup"}),
        |d| {
            d.insert("seq".into(), json!(seq));
        },
        member,
    )
}

fn old_seq<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(not_acted_on(
        env,
        false,
        |live, id| {
            let first = live
                .caller_events
                .iter()
                .filter_map(|(_, d)| d["seq"].as_u64())
                .min()
                .ok_or_else(|| errored("the caller's events had no seq"))?;
            Ok(forged_ended(live, id, first, Some("alice")))
        },
        &["client-call.ended"],
    ))
}

fn unverified_user<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(not_acted_on(
        env,
        false,
        |live, id| Ok(forged_ended(live, id, FORGED_SEQ, None)),
        &["client-call.ended"],
    ))
}

fn impersonated_user<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(not_acted_on(
        env,
        false,
        // Sent by carol, a member of the room, claiming to be alice.
        |live, id| Ok(forged_ended(live, id, FORGED_SEQ, Some("carol"))),
        &["client-call.ended"],
    ))
}

fn downgrade<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(not_acted_on(
        env,
        true,
        |live, _| {
            if live.key.is_none() {
                return Err(errored("no channel key for the strong-privacy call"));
            }
            // The caller's offer, opened, sent again in the clear as a renegotiation: what a
            // realtime server that strips the seal could make of it.
            offer_again(live, |_| {})
        },
        &["client-call.answer", "client-call.ended"],
    ))
}
