//! Call signaling through the target: sealed envelopes relayed intact, a whole call between two
//! reference clients (watched by an observer that checks every event against its schema) and SDP
//! chunking. The helpers that set up a call on a fresh channel serve the WebRTC cases too.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Case, case};
use crate::call::{Action, CallMachine};
use crate::channel::{CallChannel, ChannelKind};
use crate::client::{Auth, ClientConfig, ClientEvent, RealtimeClient};
use crate::conform::wire::{Conn, Ctx, PROMPT, Problem, Step, decode_data, ensure, errored, fail};
use crate::envelope::ChannelKey;
use crate::event::{Incoming, MediaSelection, Privacy, Refusal, RingTimeoutMs};
use crate::ids::{DevicePartyId, UserId};
use crate::pusher::Frame;
use crate::session::Signaling;

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "envelope.sealed-relayed-intact",
            Envelope,
            Must,
            ["TRN-033", "PRIV-010", "PRIV-011"],
            [AppSecret],
            "A sealed call.offer crosses the target with its ciphertext intact: the receiver opens it",
            sealed_relayed
        ),
        case!(
            "call_flow.private.standard",
            CallFlow,
            Must,
            ["EVT-001", "FLOW-005", "FLOW-007", "STATE-002"],
            [AppSecret],
            "On a private-call. channel, two reference clients run started, accepted, offer, answer, ended through the target; every event is schema-valid",
            standard_private
        ),
        case!(
            "call_flow.presence.standard",
            CallFlow,
            Must,
            [
                "EVT-001",
                "FLOW-005",
                "FLOW-007",
                "STATE-002",
                "TRN-032",
                "EVT-014"
            ],
            [AppSecret, Presence],
            "On a presence-call. channel, the same call with every event carrying the sender's server-verified user_id",
            standard_presence
        ),
        case!(
            "call_flow.private.chunked-offer",
            CallFlow,
            Must,
            ["EVT-080", "EVT-081", "LIM-010"],
            [AppSecret],
            "On a private-call. channel, an offer larger than the event limit crosses the target as chunk events and is reassembled",
            chunked_private
        ),
        case!(
            "call_flow.presence.chunked-offer",
            CallFlow,
            Must,
            ["EVT-080", "EVT-081", "LIM-010", "EVT-014"],
            [AppSecret, Presence],
            "On a presence-call. channel, the chunked offer crosses the target with the verified user_id on every chunk",
            chunked_presence
        ),
    ]
}

async fn sealed_relayed(ctx: Ctx) -> Step<Option<String>> {
    let vectors: Value =
        serde_json::from_str(include_str!("../../../conformance/vectors/envelope.json"))
            .map_err(|e| errored(format!("envelope vectors: {e}")))?;
    let group = vectors["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["cases"][0]["data"]["sealed"].is_object())
        .ok_or_else(|| errored("no sealed vector"))?;
    let channel = group["channel"].as_str().unwrap_or_default().to_owned();
    let case = &group["cases"][0];
    let data_text = case["data"].to_string();
    let mut a = Conn::connect(&ctx, "a").await?;
    let mut b = Conn::connect(&ctx, "b").await?;
    a.subscribe(&channel, None).await?;
    b.subscribe(&channel, None).await?;
    let event = case["event"].as_str().unwrap_or("client-call.offer");
    a.send_text(&format!(
        r#"{{"event":"{event}","channel":"{channel}","data":{data_text}}}"#
    ))
    .await?;
    let (_, text) = b
        .wait_for_raw("the sealed offer", PROMPT, |f| {
            f["event"] == event && f["channel"] == channel.as_str()
        })
        .await?;
    let frame = Frame::parse(text.as_bytes(), &crate::pusher::FrameLimits::default())
        .map_err(|e| fail("the relayed frame parses", "a Pusher frame", e.to_string()))?;
    let opened = crate::event::parse_frame(&frame)
        .map_err(|e| {
            fail(
                "the relayed sealed event still parses",
                "a sealed call.offer",
                e.to_string(),
            )
        })
        .and_then(|(_, incoming)| match incoming {
            Incoming::Sealed(s) => Ok(s),
            Incoming::Clear(_) => Err(fail("the relayed event is still sealed", "sealed", "clear")),
        })?;
    let key = ChannelKey::from_shared_secret(case["shared_secret"].as_str().unwrap_or_default())
        .map_err(|e| errored(e.to_string()))?;
    let call_channel = CallChannel::parse(&channel).map_err(|e| errored(e.to_string()))?;
    crate::envelope::open(&key, &call_channel, &opened).map_err(|e| {
        fail(
            "the receiver opens the relayed envelope",
            "an authentic XC20P envelope",
            e.to_string(),
        )
    })?;
    Ok(None)
}

/// The event size the reference clients chunk SDP under: the target's limit, but never above the
/// protocol's 10240 bytes that every sender keeps to ([LIM-010]).
pub(super) fn chunk_limit(ctx: &Ctx) -> usize {
    ctx.target
        .max_event_bytes
        .min(crate::limits::MAX_EVENT_DATA_BYTES)
}

/// A reference client signing its own subscriptions with the app secret, as a presence user.
pub(super) async fn client(ctx: &Ctx, user: &str) -> Step<RealtimeClient> {
    RealtimeClient::connect(ClientConfig {
        #[cfg(feature = "defects")]
        defect: None,
        url: ctx.target.app_url(0),
        auth: Auth::Signer {
            key: ctx.target.key.clone(),
            secret: ctx.secret()?.clone(),
            presence_user: Some((user.to_owned(), json!({}))),
        },
        events_per_second: Some(f64::from(ctx.target.rate_limit.0)),
        tap: Some(ctx.tap(user)),
    })
    .await
    .map_err(|e| errored(format!("reference client {user}: {e}")))
}

pub(super) fn user(name: &str) -> Step<UserId> {
    UserId::parse(name).map_err(|e| errored(e.to_string()))
}

pub(super) fn party(name: &str) -> Step<DevicePartyId> {
    DevicePartyId::parse(&format!("{name}-{:08x}", rand::random::<u32>()))
        .map_err(|e| errored(e.to_string()))
}

/// A caller on a fresh presence call channel and a callee that received its `call.started`,
/// both joined, with an observer subscribed first.
struct Call {
    caller: Signaling,
    callee: Signaling,
    observer: Conn,
    channel: String,
}

/// A fresh call channel of `kind` with an observer already subscribed to it.
pub(super) async fn fresh_call_channel(ctx: &Ctx, kind: ChannelKind) -> Step<(CallChannel, Conn)> {
    let prefix = match kind {
        ChannelKind::Private => "private",
        ChannelKind::Presence => "presence",
    };
    let name = format!(
        "{prefix}-call.room.conform-{:08x}.call-{:016x}",
        rand::random::<u32>(),
        rand::random::<u64>()
    );
    let channel = CallChannel::parse(&name).map_err(|e| errored(e.to_string()))?;
    let mut observer = Conn::connect(ctx, "observer").await?;
    let member = (kind == ChannelKind::Presence).then(|| ("conform-observer", json!({})));
    observer.subscribe(&name, member).await?;
    Ok((channel, observer))
}

/// The reference caller `conform-alice`, joined to `channel`.
pub(super) async fn join_caller(ctx: &Ctx, channel: &CallChannel) -> Step<Signaling> {
    let machine = CallMachine::caller(channel.clone(), party("alice")?, user("conform-alice")?)
        .with_event_limit(chunk_limit(ctx), false);
    Signaling::join(
        machine,
        client(ctx, "conform-alice").await?,
        Privacy::Standard,
    )
    .await
    .map_err(|e| errored(format!("caller joins: {e}")))
}

/// The caller invites `conform-bob` with `call.started` on the channel.
pub(super) fn start_call(caller: &mut Signaling) -> Step<()> {
    caller
        .start(
            vec![user("conform-bob")?],
            MediaSelection {
                audio: true,
                video: false,
                screen: false,
            },
            RingTimeoutMs::default(),
            Privacy::Standard,
        )
        .map_err(|e| errored(format!("caller starts: {e}")))
}

/// The reference callee `conform-bob`: subscribes to `channel`, lets the caller start the call,
/// and joins as the callee of the `call.started` that crossed the target.
pub(super) async fn join_callee(
    ctx: &Ctx,
    channel: &CallChannel,
    caller: &mut Signaling,
) -> Step<Signaling> {
    let name = channel.to_string();
    let mut bob = client(ctx, "conform-bob").await?;
    bob.subscribe(&name)
        .await
        .map_err(|e| errored(format!("callee subscribes: {e}")))?;
    start_call(caller)?;
    let deadline = Instant::now() + PROMPT;
    // What the callee could not accept, so a failure says which rule stopped the call.
    let mut refusals: Vec<Refusal> = Vec::new();
    let started = loop {
        let ev = tokio::time::timeout_at(deadline, bob.next_event())
            .await
            .map_err(|_| match refusals.first() {
                Some(r) => fail(
                    format!("the callee {r}"),
                    "client-call.started the callee accepts",
                    refusals
                        .iter()
                        .map(Refusal::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                None => fail(
                    "the callee receives call.started through the target",
                    "client-call.started",
                    "nothing",
                ),
            })?;
        let Some(ClientEvent::Event {
            channel: ch,
            event,
            data,
            user_id,
        }) = ev
        else {
            continue;
        };
        if ch.as_deref() != Some(name.as_str()) || !crate::event::is_call_event_name(&event) {
            continue;
        }
        match crate::event::parse_frame(&Frame {
            event: event.clone(),
            channel: ch,
            data,
            user_id,
        }) {
            Ok((_, Incoming::Clear(e))) => break e,
            Ok((_, Incoming::Sealed(_))) => {}
            Err(e) => refusals.push(Refusal::of_event(&event, &e)),
        }
    };
    let machine = CallMachine::callee(&started, party("bob")?, user("conform-bob")?, 0)
        .map_err(|e| {
            fail(
                "the relayed call.started is a valid invitation",
                "valid call.started",
                e.to_string(),
            )
        })?
        .with_event_limit(chunk_limit(ctx), false);
    Signaling::join(machine, bob, Privacy::Standard)
        .await
        .map_err(|e| errored(format!("callee joins: {e}")))
}

async fn set_up_call(ctx: &Ctx, kind: ChannelKind) -> Step<Call> {
    let (channel, observer) = fresh_call_channel(ctx, kind).await?;
    let mut caller = join_caller(ctx, &channel).await?;
    let callee = join_callee(ctx, &channel, &mut caller).await?;
    Ok(Call {
        caller,
        callee,
        observer,
        channel: channel.to_string(),
    })
}

/// The next notice of `sig` that `pred` picks, skipping others. When it does not come, the
/// failure names the first event `sig` refused and the rule it broke, if there was one.
async fn until(
    sig: &mut Signaling,
    who: &str,
    what: &str,
    pred: impl Fn(&Action) -> bool,
) -> Step<Action> {
    let deadline = Instant::now() + PROMPT;
    let problem = loop {
        match sig.next_event(deadline).await {
            Ok(Some(a)) if pred(&a) => return Ok(a),
            Ok(Some(_)) => {}
            Ok(None) => break "nothing within 5 s".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    Err(explained(sig.refusals(), who, what, problem))
}

/// A failure of `who` to get `what`: led by the first refusal, if any, so the report names the
/// rule that stopped the call rather than only the silence that followed.
pub(super) fn explained(refusals: &[Refusal], who: &str, what: &str, problem: String) -> Problem {
    match refusals.first() {
        Some(first) => fail(
            format!("{who} {first}"),
            what.to_owned(),
            std::iter::once(problem)
                .chain(refusals.iter().map(Refusal::to_string))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        None => fail(
            format!("{who} gets {what} through the target"),
            what.to_owned(),
            problem,
        ),
    }
}

/// Waits on the observer for each call event in `names`, in order; on a presence channel each
/// must carry the sender's server-added `user_id` ([TRN-032]).
pub(super) async fn observe(
    observer: &mut Conn,
    channel: &str,
    names: &[&str],
) -> Step<Vec<Value>> {
    let presence = channel.starts_with("presence-");
    let mut seen = Vec::new();
    for name in names {
        let f = observer
            .wait_for(&format!("{name} on the call channel"), PROMPT, |f| {
                f["event"] == *name && f["channel"] == channel
            })
            .await?;
        ensure(
            !presence || f["user_id"].is_string(),
            "call events on a presence call channel carry the sender's server-added user_id [TRN-032]",
            "user_id",
            f.to_string(),
        )?;
        seen.push(f);
    }
    Ok(seen)
}

const SDP_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=conform\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";

async fn standard_private(ctx: Ctx) -> Step<Option<String>> {
    standard_flow(ctx, ChannelKind::Private).await
}

async fn standard_presence(ctx: Ctx) -> Step<Option<String>> {
    standard_flow(ctx, ChannelKind::Presence).await
}

async fn standard_flow(ctx: Ctx, kind: ChannelKind) -> Step<Option<String>> {
    let Call {
        mut caller,
        mut callee,
        mut observer,
        channel,
    } = set_up_call(&ctx, kind).await?;
    callee.accept().map_err(errored)?;
    until(&mut caller, "the caller", "call.accepted", |a| {
        matches!(a, Action::CreateOffer { .. })
    })
    .await?;
    let negotiation = caller.send_offer(SDP_OFFER, false).map_err(errored)?;
    let offer = until(&mut callee, "the callee", "call.offer", |a| {
        matches!(a, Action::RemoteOffer { .. })
    })
    .await?;
    if let Action::RemoteOffer {
        sdp,
        negotiation_id,
        ..
    } = &offer
    {
        ensure(
            sdp == SDP_OFFER && *negotiation_id == negotiation,
            "the offer arrives unchanged",
            SDP_OFFER,
            sdp.clone(),
        )?;
    }
    callee
        .send_answer(
            &SDP_OFFER.replace("s=conform", "s=conform-answer"),
            negotiation,
        )
        .map_err(errored)?;
    until(&mut caller, "the caller", "call.answer", |a| {
        matches!(a, Action::RemoteAnswer { .. })
    })
    .await?;
    caller.hang_up().map_err(errored)?;
    until(&mut callee, "the callee", "call.ended", |a| {
        matches!(a, Action::Ended { .. })
    })
    .await?;
    let seen = observe(
        &mut observer,
        &channel,
        &[
            "client-call.started",
            "client-call.accepted",
            "client-call.offer",
            "client-call.answer",
            "client-call.ended",
        ],
    )
    .await?;
    if kind == ChannelKind::Presence {
        ensure(
            seen[0]["user_id"] == "conform-alice" && seen[1]["user_id"] == "conform-bob",
            "each event names its verified sender [TRN-032]",
            "started by conform-alice, accepted by conform-bob",
            format!("{} / {}", seen[0]["user_id"], seen[1]["user_id"]),
        )?;
    }
    caller.close().await;
    callee.close().await;
    Ok(None)
}

async fn chunked_private(ctx: Ctx) -> Step<Option<String>> {
    chunked_offer(ctx, ChannelKind::Private).await
}

async fn chunked_presence(ctx: Ctx) -> Step<Option<String>> {
    chunked_offer(ctx, ChannelKind::Presence).await
}

async fn chunked_offer(ctx: Ctx, kind: ChannelKind) -> Step<Option<String>> {
    let Call {
        mut caller,
        mut callee,
        mut observer,
        channel,
    } = set_up_call(&ctx, kind).await?;
    callee.accept().map_err(errored)?;
    until(&mut caller, "the caller", "call.accepted", |a| {
        matches!(a, Action::CreateOffer { .. })
    })
    .await?;
    let mut sdp = SDP_OFFER.to_owned();
    while sdp.len() < chunk_limit(&ctx) * 2 {
        sdp.push_str("a=conform-padding:0123456789abcdef0123456789abcdef\r\n");
    }
    caller.send_offer(&sdp, false).map_err(errored)?;
    let offer = until(
        &mut callee,
        "the callee",
        "the reassembled call.offer",
        |a| matches!(a, Action::RemoteOffer { .. }),
    )
    .await?;
    if let Action::RemoteOffer { sdp: got, .. } = &offer {
        ensure(
            *got == sdp,
            "the chunked offer reassembles to the sent SDP",
            format!("{} bytes", sdp.len()),
            format!("{} bytes", got.len()),
        )?;
    }
    let chunks = observe(
        &mut observer,
        &channel,
        &[
            "client-call.offer",
            "client-call.offer",
            "client-call.offer",
        ],
    )
    .await?;
    for c in &chunks {
        let data = decode_data(&c["data"]);
        ensure(
            data["chunk"]["count"]
                .as_u64()
                .is_some_and(|n| (2..=8).contains(&n)),
            "each chunk event carries chunk {id, index, count}",
            "chunk.count in 2..=8",
            data["chunk"].to_string(),
        )?;
    }
    caller.close().await;
    callee.close().await;
    Ok(Some(format!(
        "{} bytes of SDP in {} chunks",
        sdp.len(),
        decode_data(&chunks[0]["data"])["chunk"]["count"]
    )))
}
