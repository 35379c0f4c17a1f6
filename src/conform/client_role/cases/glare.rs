//! Glare ([FLOW-008]): the client and the remote party call each other in one scope at the same
//! moment, and the call with the lower `call_id` goes on. The runner plays the trusted server,
//! so it chooses the remote call's id, lower than the client's in one case and higher in the
//! other, and judges what the client sends in each call.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::super::Outcome;
use super::{
    ClientCase, Env, PROMPT, Step, answered, errored, failed, hang_up_remote, remote_inbox,
    room_call, sent_in,
};
use crate::conform::verdict::Level;
use crate::ids::CallId;
use crate::media::PeerOptions;
use crate::session::{CallSession, Inbox, Invitation, RunUntil};

pub(super) fn all() -> Vec<ClientCase> {
    vec![
        ClientCase {
            id: "client.glare.yields",
            level: Level::Must,
            requirements: &["FLOW-008"],
            title: "Called across its own ringing call by a call with a lower call_id, the client ends its call with `replaced` and rings for the other",
            run: yields,
        },
        ClientCase {
            id: "client.glare.keeps",
            level: Level::Must,
            requirements: &["FLOW-008"],
            title: "Called across its own ringing call by a call with a higher call_id, the client keeps its call, does not ring for the other, and connects when the other party gives way",
            run: keeps,
        },
    ]
}

/// Two calls that crossed: the client's and the remote party's.
struct Crossed {
    /// The client's call id.
    mine: String,
    /// The remote party's call and its id.
    theirs: (CallSession, String),
    /// The remote party's inbox, and the client's invitation read from it.
    inbox: Inbox,
    invitation: Invitation,
}

/// The client (bob) calls alice; the moment its call is placed, alice calls bob in the same
/// scope with the call id `pick(client's call id)`.
async fn cross(env: &mut Env<'_>, bob: usize, pick: fn(&str) -> String) -> Step<Crossed> {
    let mut inbox = remote_inbox(env, "alice").await?;
    env.at(bob)
        .send(json!({"cmd": "place", "request": room_call("alice", None)}))
        .await?;
    let placed = env
        .at(bob)
        .expect(json!({"event": "placed"}), PROMPT)
        .await?;
    let mine = placed["call_id"].as_str().unwrap_or_default().to_owned();
    let theirs = CallId::parse(&pick(&mine))
        .map_err(|e| errored(format!("no crossing call id for {mine}: {e}")))?;
    env.stack.trusted.use_next_call_id(theirs.clone());
    let alice = env.remote("alice")?;
    let (call, placed) = CallSession::place(&alice, room_call("bob", None), PeerOptions::default())
        .await
        .map_err(|e| errored(format!("the remote party could not place its call: {e}")))?;
    if placed.call_id != theirs {
        return Err(errored(format!(
            "the trusted server gave the crossing call {} instead of {theirs}",
            placed.call_id
        )));
    }
    let invitation = inbox
        .wait_for_invitation(PROMPT)
        .await
        .map_err(|e| errored(format!("the client's invitation did not reach alice: {e}")))?;
    if invitation.started().channel.call_id().as_str() != mine {
        return Err(errored(
            "alice was invited to a call the client did not place",
        ));
    }
    Ok(Crossed {
        mine,
        theirs: (call, theirs.to_string()),
        inbox,
        invitation,
    })
}

/// The first event named `name` the client sends in call `id` within `within`, if any.
async fn first_in(env: &Env<'_>, id: &str, name: &str, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let found = sent_in(env, id).into_iter().find(|(_, n, _)| n == name);
        if found.is_some() || tokio::time::Instant::now() >= deadline {
            return found.map(|(_, _, data)| data);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first `client-call.ended` the client sends in call `id` within `within`, if any.
async fn ended_in(env: &Env<'_>, id: &str, within: Duration) -> Option<Value> {
    first_in(env, id, "client-call.ended", within).await
}

/// The verdict on a client that ended its own call `mine` (with `ended`) though it won.
fn gave_way(mine: &str, ended: &Value) -> Outcome {
    failed(
        "the client ended its own call, which had the lower call_id",
        format!("{mine} kept until the other party gave way"),
        format!("client-call.ended {ended}"),
    )
}

/// Alice's call has the lower id: she keeps it and sets the client's invitation aside; the
/// client must end its own call with `replaced` and ring for hers.
fn yields<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        // A strict prefix sorts first in byte order.
        let lower = |mine: &str| mine[..mine.len().saturating_sub(1)].to_owned();
        let Crossed {
            mine,
            theirs: (call, theirs),
            inbox,
            ..
        } = cross(env, bob, lower).await?;
        inbox.close().await;
        let Some(ended) = ended_in(env, &mine, PROMPT).await else {
            return Err(failed(
                "the client did not end its call when a call with a lower call_id crossed it",
                format!("client-call.ended {{reason: replaced}} in {mine}"),
                "its call went on",
            ));
        };
        if ended["reason"] != "replaced" {
            return Err(failed(
                "the client ended its call for another reason",
                "reason replaced",
                ended["reason"].to_string(),
            ));
        }
        let rang = env
            .at(bob)
            .watch(&json!({"event": "incoming", "call_id": theirs}), PROMPT)
            .await?;
        let rang_on_wire = first_in(env, &theirs, "client-call.ringing", PROMPT)
            .await
            .is_some();
        if rang.is_none() || !rang_on_wire {
            return Err(failed(
                "the client did not ring for the call that won",
                format!("an incoming report and client-call.ringing in {theirs}"),
                format!(
                    "incoming {}, ringing {}",
                    if rang.is_some() {
                        "reported"
                    } else {
                        "not reported"
                    },
                    if rang_on_wire { "sent" } else { "not sent" }
                ),
            ));
        }
        let (call, theirs) = answered(env, bob, call, theirs).await?;
        hang_up_remote(call).await?;
        Ok(Some(format!("ended {mine} as replaced, answered {theirs}")))
    })
}

/// The client's call has the lower id: alice gives way (ends hers with `replaced`) and answers
/// the client's; the client must not ring for or answer alice's call, and its own connects.
fn keeps<'a>(env: &'a mut Env<'_>) -> BoxFuture<'a, Step<Option<String>>> {
    Box::pin(async move {
        let bob = env.client("bob").await?;
        // Anything the client's id is a strict prefix of sorts after it.
        let higher = |mine: &str| format!("{mine}x");
        let Crossed {
            mine,
            theirs: (mut lost, theirs),
            inbox,
            invitation,
        } = cross(env, bob, higher).await?;
        // Give the client a moment with both invitations before alice gives way.
        tokio::time::sleep(Duration::from_millis(300)).await;
        lost.replaced().await.map_err(errored)?;
        lost.close().await;
        let joined = inbox.join_call(invitation, PeerOptions::default()).await;
        if let Some(data) = ended_in(env, &mine, Duration::ZERO).await {
            if let Ok(call) = joined {
                call.close().await;
            }
            return Err(gave_way(&mine, &data));
        }
        let mut call =
            joined.map_err(|e| errored(format!("alice could not join the client's call: {e}")))?;
        call.accept().await.map_err(errored)?;
        let remote = tokio::spawn(async move {
            let up = call.run(RunUntil::MediaUp, PROMPT).await;
            (call, up)
        });
        let up_here = env
            .at(bob)
            .watch(&json!({"event": "media_up", "call_id": mine}), PROMPT)
            .await?;
        let (mut call, up) = remote.await.map_err(errored)?;
        let in_lost: Vec<(String, Value)> = sent_in(env, &theirs)
            .into_iter()
            .map(|(_, name, data)| (name, data))
            .collect();
        if let Some((name, data)) = in_lost
            .iter()
            .find(|(name, data)| name != "client-call.ended" || data["reason"] != "replaced")
        {
            let _ = call.hang_up().await;
            call.close().await;
            return Err(failed(
                "the client took part in the crossing call its own call beat",
                format!("nothing in {theirs} but client-call.ended {{reason: replaced}}"),
                format!("{name} {data}"),
            ));
        }
        if up_here.is_none() || up.is_err() {
            let own_end = ended_in(env, &mine, Duration::ZERO).await;
            let _ = call.hang_up().await;
            call.close().await;
            return Err(match own_end {
                Some(data) => gave_way(&mine, &data),
                None => failed(
                    "the client's call, which had the lower call_id, did not connect",
                    format!("media up in {mine}"),
                    format!(
                        "no media: {}",
                        up.err().map_or("not reported".into(), |e| e.to_string())
                    ),
                ),
            });
        }
        env.at(bob).send(json!({"cmd": "hang_up"})).await?;
        let _ = call.run(RunUntil::Ended, PROMPT).await;
        call.close().await;
        Ok(Some(format!(
            "kept {mine}, connected after {theirs} gave way"
        )))
    })
}
