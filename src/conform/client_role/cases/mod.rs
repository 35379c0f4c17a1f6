//! The client-role cases. Each starts the client under test through its driver, plays the other
//! party with the reference call session, and judges the frames the client sent.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::proxy::Way;
use super::{ClientCase, Env, PROMPT, Step, errored, failed};
use crate::conform::verdict::Level;
use crate::media::PeerOptions;
use crate::session::{CallSession, Inbox, RunUntil};

mod glare;
mod ignored;
mod negotiation;
mod privacy;

pub(super) fn all() -> Vec<ClientCase> {
    let mut cases = vec![
        ClientCase {
            id: "client.call.answer",
            level: Level::Must,
            requirements: &["EVT-001", "FLOW-003", "FLOW-005"],
            title: "An invited client rings (client-call.ringing), answers (client-call.accepted) and gets media up with the caller",
            run: answer,
        },
        ClientCase {
            id: "client.seq.increasing",
            level: Level::Must,
            requirements: &["EVT-015"],
            title: "Every event the client sends in a call has a seq greater than its previous one",
            run: seq_increasing,
        },
        ClientCase {
            id: "client.party-id.fresh",
            level: Level::Must,
            requirements: &["EVT-012"],
            title: "The client uses a new party_id of at least 8 characters for every call, never `server`",
            run: party_id_fresh,
        },
        ClientCase {
            id: "client.pacing.announced-rate",
            level: Level::Must,
            requirements: &["LIM-004", "TRN-003"],
            title: "Told a rate of 2 client events per second, the client never sends more than that rate and one second's burst in any second",
            run: pacing,
        },
        ClientCase {
            id: "client.rate-refusal.resent",
            level: Level::Must,
            requirements: &["LIM-004"],
            title: "A client event refused with 4301 is sent again, and the call still connects",
            run: rate_refusal,
        },
        ClientCase {
            id: "client.reconnect.4200",
            level: Level::Must,
            requirements: &["TRN-010"],
            title: "Closed with 4200, the client reconnects and subscribes to its inbox again, so the next call reaches it",
            run: reconnect_4200,
        },
        ClientCase {
            id: "client.reconnect.4100-backoff",
            level: Level::Must,
            requirements: &["TRN-010"],
            title: "Closed with 4100, the client waits at least a second, then reconnects and subscribes to its inbox again",
            run: reconnect_4100,
        },
        ClientCase {
            id: "client.reconnect.4001-never",
            level: Level::Must,
            requirements: &["TRN-010"],
            title: "Closed with 4001, the client does not reconnect",
            run: no_reconnect_4001,
        },
        ClientCase {
            id: "client.ring-timeout.silent-after-end",
            level: Level::Must,
            requirements: &["EVT-071"],
            title: "An unanswered call ends for the client (no_answer), and it sends nothing more in that call",
            run: ring_timeout,
        },
    ];
    cases.extend(negotiation::all());
    cases.extend(glare::all());
    cases.extend(ignored::all());
    cases.extend(privacy::all());
    cases
}

fn room_call(callee: &str, ring_timeout_ms: Option<u64>) -> Value {
    let mut request = json!({"scope": "room", "scope_id": "chat-room-42", "callees": [callee]});
    if let Some(ms) = ring_timeout_ms {
        request["ring_timeout_ms"] = json!(ms);
    }
    request
}

/// The client's call events in call `id`: `(time, name, data)`.
fn sent_in(env: &Env<'_>, id: &str) -> Vec<(Instant, String, Value)> {
    env.sent_events()
        .into_iter()
        .filter(|(_, name, data)| name.starts_with("client-call.") && data["call_id"] == id)
        .collect()
}

/// A device of the remote user `user` listening on its inbox.
async fn remote_inbox(env: &Env<'_>, user: &str) -> Step<Inbox> {
    let device = env.remote(user)?;
    Inbox::open(&device)
        .await
        .map_err(|e| errored(format!("a remote device of {user} could not listen: {e}")))
}

/// The remote party hangs up, lets the end go out, and closes.
async fn hang_up_remote(mut call: CallSession) -> Step<()> {
    call.hang_up().await.map_err(errored)?;
    let _ = call.run(RunUntil::Ended, PROMPT).await;
    call.close().await;
    Ok(())
}

/// Waits until the client has sent an event named `name`; its data.
async fn sent(env: &Env<'_>, name: &str, after: Option<Instant>, within: Duration) -> Step<Value> {
    let deadline = Instant::now() + within;
    loop {
        let found = env
            .sent_events()
            .into_iter()
            .find(|(at, e, _)| e == name && after.is_none_or(|t| *at >= t));
        if let Some((_, _, data)) = found {
            return Ok(data);
        }
        if Instant::now() >= deadline {
            return Err(failed(
                &format!("the client did not send {name}"),
                name,
                format!(
                    "it sent: {:?}",
                    env.sent_events()
                        .into_iter()
                        .map(|(_, e, _)| e)
                        .collect::<Vec<_>>()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The remote alice calls the client (user bob, index `bob`); returns her session once the
/// client reported the invitation.
async fn call_client(
    env: &mut Env<'_>,
    bob: usize,
    ring_timeout_ms: Option<u64>,
) -> Step<(CallSession, String)> {
    call_client_with(env, bob, room_call("bob", ring_timeout_ms)).await
}

/// [`call_client`] with the `POST /calls` body `request`.
async fn call_client_with(
    env: &mut Env<'_>,
    bob: usize,
    request: Value,
) -> Step<(CallSession, String)> {
    let alice = env.remote("alice")?;
    let (call, placed) = CallSession::place(&alice, request, PeerOptions::default())
        .await
        .map_err(|e| errored(format!("the remote party could not place the call: {e}")))?;
    let id = placed.call_id.to_string();
    env.at(bob)
        .expect(json!({"event": "incoming", "call_id": id}), PROMPT)
        .await?;
    Ok((call, id))
}

/// Alice calls the client, the client answers, and media comes up both ways: alice's session
/// and the call id.
async fn connected_call(env: &mut Env<'_>, bob: usize) -> Step<(CallSession, String)> {
    let (call, id) = call_client(env, bob, None).await?;
    answered(env, bob, call, id).await
}

/// The client answers the ringing call `id` and media comes up both ways.
async fn answered(
    env: &mut Env<'_>,
    bob: usize,
    mut call: CallSession,
    id: String,
) -> Step<(CallSession, String)> {
    env.at(bob).send(json!({"cmd": "answer"})).await?;
    let remote = tokio::spawn(async move {
        let r = call.run(RunUntil::MediaUp, PROMPT).await;
        (call, r)
    });
    env.at(bob)
        .expect(json!({"event": "media_up", "call_id": id}), PROMPT)
        .await?;
    let (call, up) = remote.await.map_err(errored)?;
    up.map_err(|e| {
        failed(
            "the caller's media did not come up",
            "media up at the caller",
            e.to_string(),
        )
    })?;
    Ok((call, id))
}

/// A whole call: alice calls, the client answers, media comes up both ways, the client toggles
/// mute `muted_toggles` times, alice hangs up and the client reports the end.
async fn full_call(env: &mut Env<'_>, bob: usize, muted_toggles: usize) -> Step<String> {
    let (call, id) = connected_call(env, bob).await?;
    for n in 0..muted_toggles {
        env.at(bob)
            .send(json!({"cmd": "mute", "muted": n % 2 == 0}))
            .await?;
    }
    // Every change reaches the wire before the call ends (paced, that can take seconds).
    let deadline = Instant::now() + PROMPT;
    loop {
        let sent = env
            .sent_events()
            .iter()
            .filter(|(_, name, _)| name == "client-call.media_state")
            .count();
        if sent >= muted_toggles {
            break;
        }
        if Instant::now() >= deadline {
            return Err(failed(
                "the client did not send its media state changes",
                format!("{muted_toggles} client-call.media_state"),
                format!("{sent}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hang_up_remote(call).await?;
    env.at(bob)
        .expect(
            json!({"event": "phase", "phase": "ended", "call_id": id}),
            PROMPT,
        )
        .await?;
    // Listening again before the next call.
    env.at(bob)
        .expect(json!({"event": "ready"}), PROMPT)
        .await?;
    Ok(id)
}

/// The caller's media came up (`up` is its run to media up) and the client reports media up
/// too; then the caller hangs up and closes.
async fn media_up_then_hang_up(
    env: &mut Env<'_>,
    bob: usize,
    call: CallSession,
    id: &str,
    up: Result<crate::session::Outcome, crate::session::SessionError>,
    failure: &str,
) -> Step<()> {
    up.map_err(|e| failed(failure, "media up", e.to_string()))?;
    env.at(bob)
        .expect(json!({"event": "media_up", "call_id": id}), PROMPT)
        .await?;
    hang_up_remote(call).await?;
    Ok(())
}

fn answer<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        let (mut call, id) = call_client(env, bob, None).await?;
        sent(env, "client-call.ringing", None, PROMPT).await?;
        env.at(bob).send(json!({"cmd": "answer"})).await?;
        sent(env, "client-call.accepted", None, PROMPT).await?;
        let up = call.run(RunUntil::MediaUp, PROMPT).await;
        media_up_then_hang_up(
            env,
            bob,
            call,
            &id,
            up,
            "media did not come up at the caller",
        )
        .await?;
        Ok(None)
    })
}

/// `(call_id, party_id)` → the seqs the client sent, in order.
fn seqs_by_party(env: &Env<'_>) -> BTreeMap<(String, String), Vec<u64>> {
    let mut by_party: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for (_, name, data) in env.sent_events() {
        if !name.starts_with("client-call.") {
            continue;
        }
        let key = (
            data["call_id"].as_str().unwrap_or_default().to_owned(),
            data["party_id"].as_str().unwrap_or_default().to_owned(),
        );
        by_party
            .entry(key)
            .or_default()
            .push(data["seq"].as_u64().unwrap_or(0));
    }
    by_party
}

fn seq_increasing<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        full_call(env, bob, 2).await?;
        let by_party = seqs_by_party(env);
        if by_party.is_empty() {
            return Err(errored("the client sent no call events"));
        }
        for ((call, party), seqs) in &by_party {
            if seqs.windows(2).any(|w| w[1] <= w[0]) {
                return Err(failed(
                    &format!("seq did not increase in call {call} from {party}"),
                    "strictly increasing seq",
                    format!("{seqs:?}"),
                ));
            }
        }
        let sent: usize = by_party.values().map(Vec::len).sum();
        Ok(Some(format!("{sent} events, seq strictly increasing")))
    })
}

fn party_id_fresh<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        let first = full_call(env, bob, 0).await?;
        let second = full_call(env, bob, 0).await?;
        let parties = |call: &str| -> Vec<String> {
            let mut p: Vec<String> = seqs_by_party(env)
                .into_keys()
                .filter(|(c, _)| c == call)
                .map(|(_, p)| p)
                .collect();
            p.dedup();
            p
        };
        let (a, b) = (parties(&first), parties(&second));
        if a.len() != 1 || b.len() != 1 {
            return Err(failed(
                "the client used more than one party_id in a call, or none",
                "one party_id per call",
                format!("{a:?} then {b:?}"),
            ));
        }
        let bad = |p: &str| p.len() < 8 || p == "server";
        if a[0] == b[0] || bad(&a[0]) || bad(&b[0]) {
            return Err(failed(
                "party_id not fresh, too short or `server`",
                "a new random party_id per call, 8 characters or more",
                format!("{} then {}", a[0], b[0]),
            ));
        }
        Ok(None)
    })
}

fn pacing<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        const RATE: f64 = 2.0;
        env.proxy.announce_rate(RATE);
        let bob = env.client("bob").await?;
        // Six media-state changes in a row queue six events at once on top of the call's own.
        full_call(env, bob, 6).await?;
        let times: Vec<Instant> = env.sent_events().into_iter().map(|(t, _, _)| t).collect();
        let most = times
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                times[i..]
                    .iter()
                    .take_while(|&&u| u < t + Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0);
        // Rate plus a burst of one second's worth: the least any Pusher-compatible server allows.
        let allowed = (2.0 * RATE) as usize;
        if most > allowed {
            return Err(failed(
                "the client sent faster than the announced rate",
                format!("at most {allowed} client events in any second (rate {RATE}/s)"),
                format!("{most} in one second, {} events in all", times.len()),
            ));
        }
        Ok(Some(format!(
            "{} client events, at most {most} in any second",
            times.len()
        )))
    })
}

fn rate_refusal<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        let (mut call, id) = call_client(env, bob, None).await?;
        sent(env, "client-call.ringing", None, PROMPT).await?;
        // Let the ringing settle, then refuse the next client event (the acceptance, or a
        // ringing said once more) as a server over its rate would.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let armed = Instant::now();
        env.proxy.refuse_client_events(1);
        env.at(bob).send(json!({"cmd": "answer"})).await?;
        let up = call.run(RunUntil::MediaUp, PROMPT).await;
        let refused = env
            .sent_events()
            .into_iter()
            .find(|(t, _, _)| *t >= armed)
            .ok_or_else(|| errored("the client sent nothing after answering"))?;
        let resent = env.sent_events().into_iter().any(|(t, name, data)| {
            t > refused.0 && name == refused.1 && data["seq"] == refused.2["seq"]
        });
        if !resent {
            return Err(failed(
                "a client event refused with 4301 was not sent again",
                format!("{} (seq {}) sent again", refused.1, refused.2["seq"]),
                "never sent again",
            ));
        }
        media_up_then_hang_up(
            env,
            bob,
            call,
            &id,
            up,
            "the call did not connect after the refusal",
        )
        .await?;
        Ok(Some(format!("{} re-sent after the refusal", refused.1)))
    })
}

fn reconnect_4200<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(reconnects_after(env, 4200, Duration::ZERO))
}

fn reconnect_4100<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(reconnects_after(env, 4100, Duration::from_secs(1)))
}

/// Closes the client's connection with `code` and judges its return: not sooner than
/// `at_least` after the close, subscribed to its inbox again within 15 s, and reachable by the
/// next call.
async fn reconnects_after(
    env: &mut Env<'_>,
    code: u16,
    at_least: Duration,
) -> Step<Option<String>> {
    let bob = env.client("bob").await?;
    let closed = Instant::now();
    env.proxy.close_all(code);
    let deadline = closed + Duration::from_secs(15);
    let inbox = "private-call-inbox.bob";
    // The client's request is not enough: an invitation published before the server has
    // confirmed the subscription is not delivered (Pusher semantics), so the case places the
    // next call only once the server said `subscription_succeeded` on the new connection.
    loop {
        let frames = env.proxy.frames();
        let new_conns = env.proxy.opened_since(closed);
        let asked = frames.iter().any(|t| {
            t.way == Way::FromClient
                && new_conns.contains(&t.conn)
                && t.text.contains("pusher:subscribe")
                && t.text.contains(inbox)
        });
        let confirmed = frames.iter().any(|t| {
            t.way == Way::ToClient
                && new_conns.contains(&t.conn)
                && t.text.contains("pusher_internal:subscription_succeeded")
                && t.text.contains(inbox)
        });
        if confirmed {
            break;
        }
        if Instant::now() >= deadline {
            return Err(failed(
                "the client did not reconnect and subscribe to its inbox again",
                format!("a new connection subscribed to {inbox} within 15 s"),
                format!(
                    "{} connections opened; subscription {}",
                    env.proxy.openings().len(),
                    if asked {
                        "asked for but not confirmed"
                    } else {
                        "not asked for"
                    }
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = env
        .proxy
        .openings()
        .get(1)
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(closed));
    if took < at_least {
        return Err(failed(
            &format!("the client reconnected too soon after {code}"),
            format!("no new connection for {} ms", at_least.as_millis()),
            format!("a new connection after {} ms", took.as_millis()),
        ));
    }
    let (mut call, _) = call_client(env, bob, None).await?;
    call.hang_up().await.map_err(errored)?;
    call.close().await;
    Ok(Some(format!("reconnected after {} ms", took.as_millis())))
}

fn no_reconnect_4001<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        env.client("bob").await?;
        env.proxy.close_all(4001);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let opened = env.proxy.openings().len();
        if opened > 1 {
            return Err(failed(
                "the client reconnected after 4001",
                "no new connection (4000-4099 means the same parameters will fail again)",
                format!("{} new connections within 3 s", opened - 1),
            ));
        }
        Ok(None)
    })
}

fn ring_timeout<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        let ring_ms = crate::limits::MIN_RING_TIMEOUT_MS;
        let (call, id) = call_client(env, bob, Some(ring_ms)).await?;
        let ended = env
            .at(bob)
            .expect(
                json!({"event": "phase", "phase": "ended", "call_id": id}),
                Duration::from_millis(ring_ms) + PROMPT,
            )
            .await?;
        if ended["reason"] != "no_answer" {
            return Err(failed(
                "the unanswered call ended for another reason",
                "no_answer",
                ended["reason"].to_string(),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        call.close().await;
        // Nothing from the client in this call after the end reached it.
        let frames = env.proxy.frames();
        let end_heard = frames
            .iter()
            .find(|t| {
                t.way == Way::ToClient && t.text.contains("call.ended") && t.text.contains(&id)
            })
            .map(|t| t.at);
        if let Some(heard) = end_heard {
            let after: Vec<String> = env
                .sent_events()
                .into_iter()
                .filter(|(t, name, data)| {
                    *t > heard && name.starts_with("client-call.") && data["call_id"] == id.as_str()
                })
                .map(|(_, name, _)| name)
                .collect();
            if !after.is_empty() {
                return Err(failed(
                    "the client kept signaling after the call ended",
                    "nothing after call.ended",
                    format!("{after:?}"),
                ));
            }
        }
        Ok(None)
    })
}
