//! How a client negotiates a call, judged on what it sends: the offer only after an acceptance
//! and only to the party that accepted ([FLOW-007], [STATE-002], [SEC-005]); candidates batched
//! with `end_of_candidates` once per ICE generation ([EVT-052], [EVT-053]); offers and answers
//! split to fit a smaller event size the server announced ([EVT-080], [TRN-003]); and a device
//! that sees another device of its user answer stops ringing and sends nothing more ([FLOW-005],
//! [STATE-004]).

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::super::proxy::Way;
use super::{
    ClientCase, Env, PROMPT, Step, answered, call_client, connected_call, errored, failed,
    hang_up_remote, remote_inbox, room_call, sent, sent_in,
};
use crate::conform::verdict::Level;
use crate::media::PeerOptions;
use crate::session::{CallSession, Inbox, RunUntil};

pub(super) fn all() -> Vec<ClientCase> {
    vec![
        ClientCase {
            id: "client.caller.offer-to-accepting-party",
            level: Level::Must,
            requirements: &["FLOW-007", "STATE-002", "SEC-005"],
            title: "Calling a user with two devices, the client sends its offer and candidates only after one device accepted, and only to that device",
            run: offer_to_accepting_party,
        },
        ClientCase {
            id: "client.candidates.end-once",
            level: Level::Must,
            requirements: &["EVT-052", "EVT-053", "MEDIA-002"],
            title: "The client's candidate events carry at most 20 candidates, none empty unless ending, and end_of_candidates exactly once, last",
            run: candidates_end_once,
        },
        ClientCase {
            id: "client.chunking.announced-size",
            level: Level::Must,
            requirements: &["EVT-080", "TRN-003"],
            title: "Told a maximum event size of 1024 bytes, the client keeps every event under it (splitting its offer or answer) and the call connects",
            run: chunking,
        },
        ClientCase {
            id: "client.ringing-race.rings-again",
            level: Level::Must,
            requirements: &["FLOW-012"],
            title: "A callee that sees the caller's call.started only after it rang (the caller subscribed late) sends call.ringing once more",
            run: ringing_race,
        },
        ClientCase {
            id: "client.vanished-peer.ends",
            level: Level::Should,
            requirements: &["MEDIA-007", "MEDIA-005"],
            title: "After answering a caller that then goes silent (no offer ever arrives), the client ends the call with ice_failed within the 20 s connect timeout",
            run: vanished_peer,
        },
        ClientCase {
            id: "client.answered-elsewhere",
            level: Level::Must,
            requirements: &["FLOW-005", "STATE-004"],
            title: "When another device of the same user answers, the client stops ringing (answered_elsewhere) and sends nothing more in that call",
            run: answered_elsewhere,
        },
    ]
}

/// When the client received the first `client-call.accepted` of call `id`, and its party.
fn acceptance_seen(env: &Env<'_>, id: &str) -> Option<(Instant, String)> {
    env.proxy.frames().into_iter().find_map(|t| {
        if t.way != Way::ToClient || !t.text.contains("client-call.accepted") {
            return None;
        }
        let frame = t.frame()?;
        let data = frame.data.as_ref()?.to_object().ok()?;
        (frame.event == "client-call.accepted" && data.get("call_id")? == id)
            .then(|| Some((t.at, data.get("party_id")?.as_str()?.to_owned())))?
    })
}

/// The next invitation of a remote device, joined.
async fn remote_rings(inbox: Inbox) -> Step<CallSession> {
    inbox
        .next_call(PeerOptions::default(), PROMPT)
        .await
        .map_err(|e| errored(format!("a remote device got no invitation: {e}")))
}

fn offer_to_accepting_party<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let alice = env.client("alice").await?;
        let first = remote_inbox(env, "bob").await?;
        let second = remote_inbox(env, "bob").await?;
        env.at(alice)
            .send(json!({"cmd": "place", "request": room_call("bob", None)}))
            .await?;
        let placed = env
            .at(alice)
            .expect(json!({"event": "placed"}), PROMPT)
            .await?;
        let id = placed["call_id"].as_str().unwrap_or_default().to_owned();
        let (ringing_only, answering) = tokio::join!(remote_rings(first), remote_rings(second));
        let (mut ringing_only, mut answering) = (ringing_only?, answering?);
        // Both devices ring for a moment, so an early offer would have somewhere to go.
        let _ = answering
            .run(RunUntil::Elapsed, Duration::from_millis(300))
            .await;
        answering.accept().await.map_err(errored)?;
        let (up, _) = tokio::join!(
            answering.run(RunUntil::MediaUp, PROMPT),
            ringing_only.run(RunUntil::Ended, PROMPT)
        );
        up.map_err(|e| failed("media did not come up", "media up", e.to_string()))?;
        let (accepted_at, accepter) = acceptance_seen(env, &id)
            .ok_or_else(|| errored("the client never received the acceptance"))?;
        let negotiation: Vec<(Instant, String, Value)> = sent_in(env, &id)
            .into_iter()
            .filter(|(_, n, _)| n == "client-call.offer" || n == "client-call.ice_candidate")
            .collect();
        if negotiation.is_empty() {
            return Err(failed(
                "the client sent no offer",
                "client-call.offer to the accepting party",
                "nothing",
            ));
        }
        for (at, name, data) in &negotiation {
            if *at < accepted_at {
                return Err(failed(
                    "the client sent negotiation before any device accepted",
                    "no offer or candidate before client-call.accepted",
                    format!("{name} {} ms before it", (accepted_at - *at).as_millis()),
                ));
            }
            if data["to_party_id"] != accepter.as_str() {
                return Err(failed(
                    "the client addressed negotiation to a party that did not accept",
                    format!("to_party_id {accepter}"),
                    format!("{name} to {}", data["to_party_id"]),
                ));
            }
        }
        env.at(alice).send(json!({"cmd": "hang_up"})).await?;
        env.at(alice)
            .expect(
                json!({"event": "phase", "phase": "ended", "call_id": id}),
                PROMPT,
            )
            .await?;
        let _ = answering.run(RunUntil::Ended, PROMPT).await;
        answering.close().await;
        ringing_only.close().await;
        Ok(Some(format!(
            "{} offer/candidate events, all to the accepting party",
            negotiation.len()
        )))
    })
}

fn candidates_end_once<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        let (call, id) = connected_call(env, bob).await?;
        // Candidates trickle on after media is up; give the last batch time to leave.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let batches: Vec<Value> = sent_in(env, &id)
            .into_iter()
            .filter(|(_, n, _)| n == "client-call.ice_candidate")
            .map(|(_, _, d)| d)
            .collect();
        hang_up_remote(call).await?;
        let counts: Vec<usize> = batches
            .iter()
            .map(|b| b["candidates"].as_array().map_or(0, Vec::len))
            .collect();
        let ends: Vec<usize> = batches
            .iter()
            .enumerate()
            .filter(|(_, b)| b["end_of_candidates"] == true)
            .map(|(i, _)| i)
            .collect();
        if let Some((i, n)) = counts.iter().enumerate().find(|(_, n)| **n > 20) {
            return Err(failed(
                "a candidate event carried more than 20 candidates",
                "at most 20",
                format!("event {} of {}: {n}", i + 1, batches.len()),
            ));
        }
        if let Some(i) = (0..batches.len()).find(|&i| counts[i] == 0 && !ends.contains(&i)) {
            return Err(failed(
                "a candidate event carried no candidate and did not end the generation",
                "candidates, or end_of_candidates true",
                format!("event {} of {}", i + 1, batches.len()),
            ));
        }
        match ends.as_slice() {
            [last] if *last + 1 == batches.len() => Ok(Some(format!(
                "{} candidate events ({} candidates), end_of_candidates once, last",
                batches.len(),
                counts.iter().sum::<usize>()
            ))),
            _ => Err(failed(
                "end_of_candidates was not sent exactly once, on the last batch",
                "exactly one end_of_candidates, on the last candidate event",
                format!(
                    "{} candidate events, end_of_candidates on events {:?}",
                    batches.len(),
                    ends.iter().map(|i| i + 1).collect::<Vec<_>>()
                ),
            )),
        }
    })
}

/// The size the chunking case announces: small enough that the SDP of every client tested here
/// needs at least two chunks, large enough that a batch of a few candidates fits in one event.
const ANNOUNCED_MAX_EVENT_BYTES: usize = 1024;

fn chunking<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        env.proxy
            .announce_max_event_bytes(ANNOUNCED_MAX_EVENT_BYTES);
        let bob = env.client("bob").await?;
        let (call, id) = connected_call(env, bob).await?;
        hang_up_remote(call).await?;
        // The size a server checks: the data as the client serialized it on the wire.
        let sizes: Vec<(String, usize)> = env
            .proxy
            .frames()
            .into_iter()
            .filter(|t| t.way == Way::FromClient)
            .filter_map(|t| {
                let frame = t.frame()?;
                if !frame.event.starts_with("client-call.") {
                    return None;
                }
                Some((frame.event.clone(), frame.data.as_ref()?.wire_len()))
            })
            .collect();
        if let Some((name, size)) = sizes
            .iter()
            .find(|(_, size)| *size > ANNOUNCED_MAX_EVENT_BYTES)
        {
            return Err(failed(
                "the client sent an event larger than the size the server announced",
                format!("every event's data at most {ANNOUNCED_MAX_EVENT_BYTES} bytes"),
                format!("{name}: {size} bytes"),
            ));
        }
        let answers = sent_in(env, &id)
            .into_iter()
            .filter(|(_, n, _)| n == "client-call.answer")
            .count();
        let largest = sizes.iter().map(|(_, s)| *s).max().unwrap_or(0);
        Ok(Some(format!(
            "answer in {answers} event(s); largest event {largest} bytes"
        )))
    })
}

fn answered_elsewhere<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        let other = remote_inbox(env, "bob").await?;
        let (mut caller, id) = call_client(env, bob, None).await?;
        let mut other = remote_rings(other).await?;
        // The client rings before the other device answers.
        let _ = other
            .run(RunUntil::Elapsed, Duration::from_millis(300))
            .await;
        other.accept().await.map_err(errored)?;
        let remote = tokio::spawn(async move {
            let (a, b) = tokio::join!(
                caller.run(RunUntil::MediaUp, PROMPT),
                other.run(RunUntil::MediaUp, PROMPT)
            );
            (caller, other, a.and(b))
        });
        let ended = env
            .at(bob)
            .expect(
                json!({"event": "phase", "phase": "ended", "call_id": id}),
                PROMPT,
            )
            .await?;
        let (mut caller, mut other, up) = remote.await.map_err(errored)?;
        up.map_err(|e| {
            failed(
                "the call between the caller and the other device did not connect",
                "media up",
                e.to_string(),
            )
        })?;
        let (accepted_at, _) = acceptance_seen(env, &id)
            .ok_or_else(|| errored("the client never received the other device's acceptance"))?;
        // A ringing already queued may still leave; anything else after the acceptance is the
        // client taking part in a call another device answered.
        let after: Vec<String> = sent_in(env, &id)
            .into_iter()
            .filter(|(at, name, _)| *at > accepted_at && name != "client-call.ringing")
            .map(|(_, name, _)| name)
            .collect();
        if !after.is_empty() {
            return Err(failed(
                "the client sent events in a call another device of its user answered",
                "nothing after the other device's client-call.accepted",
                format!("{after:?}"),
            ));
        }
        if ended["reason"] != "answered_elsewhere" {
            return Err(failed(
                "the client ended the call for another reason",
                "phase ended, reason answered_elsewhere",
                ended.to_string(),
            ));
        }
        caller.hang_up().await.map_err(errored)?;
        let _ = tokio::join!(
            caller.run(RunUntil::Ended, PROMPT),
            other.run(RunUntil::Ended, PROMPT)
        );
        caller.close().await;
        other.close().await;
        Ok(None)
    })
}

fn ringing_race<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        // The caller's call.started on the channel is held back until the client has rung: as
        // if the caller's subscription were confirmed only after the client's ringing went out.
        env.remote_proxy.hold("client-call.started");
        let (call, id) = call_client(env, bob, None).await?;
        sent(env, "client-call.ringing", None, PROMPT).await?;
        if env.remote_proxy.held() == 0 {
            return Err(errored("the caller's call.started was not held back"));
        }
        let released = Instant::now();
        env.remote_proxy.release();
        sent(
            env,
            "client-call.ringing",
            Some(released),
            Duration::from_secs(5),
        )
        .await
        .map_err(|_| {
            failed(
                "the client did not ring again after the caller's late call.started",
                "client-call.ringing once more",
                "no second ringing within 5 s",
            )
        })?;
        let (call, _) = answered(env, bob, call, id).await?;
        hang_up_remote(call).await?;
        Ok(None)
    })
}

fn vanished_peer<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        // The caller's offer never leaves: from the client's side the caller vanished the
        // moment the call was answered.
        env.remote_proxy.hold("client-call.offer");
        let (mut call, id) = call_client(env, bob, None).await?;
        env.at(bob).send(json!({"cmd": "answer"})).await?;
        let answered_at = sent(env, "client-call.accepted", None, PROMPT)
            .await
            .map(|_| Instant::now())?;
        let caller = tokio::spawn(async move {
            let _ = call.run(RunUntil::Elapsed, Duration::from_secs(1)).await;
            call
        });
        // The connect timeout, and some slack for a slow machine.
        let limit =
            Duration::from_millis(crate::limits::MEDIA_CONNECT_TIMEOUT_MS) + Duration::from_secs(8);
        let ended = json!({"event": "phase", "phase": "ended", "call_id": id});
        let report = env.at(bob).watch(&ended, limit).await?;
        let mut call = caller.await.map_err(errored)?;
        call.hang_up().await.map_err(errored)?;
        call.close().await;
        let Some(report) = report else {
            return Err(failed(
                "the call stayed open with no media",
                format!("ended within {} s of answering", limit.as_secs()),
                "still open",
            ));
        };
        let took = answered_at.elapsed().as_millis();
        let said = sent(
            env,
            "client-call.ended",
            Some(answered_at),
            Duration::from_secs(3),
        )
        .await;
        match said {
            Ok(data) if data["reason"] == "ice_failed" && report["reason"] == "ice_failed" => Ok(
                Some(format!("ended with ice_failed {took} ms after answering")),
            ),
            Ok(data) => Err(failed(
                "the client ended the call, but not as ice_failed",
                "client-call.ended {reason: ice_failed}",
                format!("sent {data}, reported {report}"),
            )),
            Err(_) => Err(failed(
                "the client ended the call without telling the caller",
                "client-call.ended {reason: ice_failed}",
                format!("reported {report}, sent nothing"),
            )),
        }
    })
}
