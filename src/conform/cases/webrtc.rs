//! Real WebRTC through the target's signaling. The reference Rust peer calls; the callee is the
//! reference Rust peer too, or with `--peer` an implementation nobody here wrote: headless
//! Chromium running the demo page with the real pusher-js client, or aiortc with its own
//! Pusher-protocol client. Both sides must reach ICE + DTLS, the data channel echo and RTP, and
//! the hang-up must reach the callee. With `--turn`, a relay-only caller does all of this through
//! the target's TURN server with REST credentials made from `--turn-secret`.
//!
//! Both peers run on the runner's machine and signal only loopback candidates (the Rust peer binds
//! 127.0.0.1; the page and the aiortc script filter), whatever the target's address is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::calls::{explained, fresh_call_channel, join_callee, join_caller, observe, start_call};
use super::{Case, case};
use crate::call::Phase;
use crate::channel::{CallChannel, ChannelKind};
use crate::conform::target::SecondPeer;
use crate::conform::wire::{Conn, Ctx, PROMPT, Problem, Step, decode_data, ensure, errored, fail};
use crate::event::EndReason;
use crate::interop::aiortc::{self, AiortcPeer};
use crate::interop::chromium::{self, Chromium, Page};
use crate::interop::peer_host::{PeerHost, PeerHostConfig};
use crate::media::{CandidateAddress, PeerOptions, SelectedPair};
use crate::session::{CallSession, RunUntil, Signaling};
use crate::signing;

/// How long media may take to come up once the call is set up.
const MEDIA_WITHIN: Duration = Duration::from_secs(20);
/// The callee's user on the target.
const CALLEE: &str = "conform-bob";

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "webrtc.private.handshake",
            Webrtc,
            Must,
            ["MEDIA-001", "MEDIA-002", "MEDIA-006", "EVT-053"],
            [AppSecret, Webrtc],
            "On a private-call. channel, a reference WebRTC caller and a callee (Rust, or --peer chromium|aiortc) signal through the target to ICE + DTLS, a data channel echo and RTP",
            handshake_private
        ),
        case!(
            "webrtc.presence.handshake",
            Webrtc,
            Must,
            ["MEDIA-001", "MEDIA-002", "MEDIA-006", "EVT-053", "EVT-014"],
            [AppSecret, Presence, Webrtc],
            "On a presence-call. channel, the same call, with the server-verified user_id on every event",
            handshake_presence
        ),
        case!(
            "webrtc.turn-relay",
            Webrtc,
            Must,
            ["MEDIA-003", "SIGN-030"],
            [AppSecret, Webrtc, Turn],
            "A relay-only caller with REST credentials reaches the callee through the TURN server over a relay candidate pair",
            turn_relay
        ),
    ]
}

/// The callee of a WebRTC case, with what keeps it running.
enum Callee {
    Rust(Box<CallSession>),
    Chromium {
        page: Page,
        browser: Chromium,
        _host: PeerHost,
    },
    Aiortc {
        peer: AiortcPeer,
        _host: PeerHost,
    },
}

/// The far end of the callee's selected pair: the caller's address as the callee sees it.
/// Chromium hides the address of a peer-reflexive candidate; then only the port is known.
#[derive(Debug)]
struct CalleeView {
    remote: CandidateAddress,
}

async fn peer_host(ctx: &Ctx) -> Step<PeerHost> {
    PeerHost::start(PeerHostConfig {
        realtime: ctx.target.nodes[0].clone(),
        key: ctx.target.key.clone(),
        secret: ctx.secret()?.clone(),
        pusher_js: ctx.target.pusher_js.clone(),
        ice_servers: json!([]),
    })
    .await
    .map_err(|e| errored(format!("the peer host: {e}")))
}

fn candidate_address(v: &Value) -> CandidateAddress {
    CandidateAddress {
        kind: v["type"].as_str().unwrap_or_default().to_owned(),
        address: v["address"].as_str().unwrap_or_default().to_owned(),
        port: v["port"].as_u64().unwrap_or(0) as u16,
    }
}

impl Callee {
    /// Joins the callee to `channel` and has the caller start the call once it listens.
    async fn join(ctx: &Ctx, channel: &CallChannel, caller: &mut Signaling) -> Step<Callee> {
        match ctx.target.second_peer {
            SecondPeer::Rust => {
                let sig = join_callee(ctx, channel, caller).await?;
                let mut session = CallSession::with_signaling(sig, PeerOptions::default())
                    .await
                    .map_err(|e| errored(format!("callee's WebRTC peer: {e}")))?;
                session.accept().await.map_err(errored)?;
                Ok(Callee::Rust(Box::new(session)))
            }
            SecondPeer::Chromium => {
                let bin = chromium::binary().ok_or_else(|| {
                    errored("--peer chromium: Chromium is not installed (or set DOMVIA_CHROMIUM)")
                })?;
                if crate::trusted_server::pusher_js_path(ctx.target.pusher_js.as_ref()).is_none() {
                    return Err(errored(
                        "--peer chromium needs pusher-js: run `npm ci --prefix tests/interop/pusher-js` in a checkout and start the runner there, or pass --pusher-js FILE",
                    ));
                }
                let host = peer_host(ctx).await?;
                let browser = Chromium::launch(&bin).await.map_err(errored)?;
                let mut url = reqwest::Url::parse(&format!("{}/demo/", host.base()))
                    .map_err(|e| errored(e.to_string()))?;
                url.query_pairs_mut()
                    .append_pair("user", CALLEE)
                    .append_pair("token", CALLEE)
                    .append_pair("answer", "auto")
                    .append_pair("loopback", "1")
                    .append_pair("join", &channel.to_string());
                let page = browser.open(url.as_str()).await.map_err(errored)?;
                if let Err(e) = page
                    .wait_for("window.domvia && window.domvia.ready === true", PROMPT)
                    .await
                {
                    return Err(fail(
                        "the browser joins the call channel through the target (pusher-js)",
                        "subscribed",
                        format!("{e}; page console: {:?}", page.console().await),
                    ));
                }
                start_call(caller)?;
                Ok(Callee::Chromium {
                    page,
                    browser,
                    _host: host,
                })
            }
            SecondPeer::Aiortc => {
                aiortc::available().await.map_err(errored)?;
                let host = peer_host(ctx).await?;
                let args = [
                    "--realtime-url".to_owned(),
                    ctx.target.app_url(0),
                    "--auth-url".to_owned(),
                    format!("{}/realtime/auth", host.base()),
                    "--user".to_owned(),
                    CALLEE.to_owned(),
                    "--token".to_owned(),
                    CALLEE.to_owned(),
                    "--join".to_owned(),
                    channel.to_string(),
                    "--within".to_owned(),
                    MEDIA_WITHIN.as_secs().to_string(),
                ];
                let mut peer = AiortcPeer::spawn(&args).await.map_err(errored)?;
                peer.ready(PROMPT * 3).await.map_err(|e| {
                    fail(
                        "the aiortc peer joins the call channel through the target",
                        "subscribed",
                        e,
                    )
                })?;
                start_call(caller)?;
                Ok(Callee::Aiortc { peer, _host: host })
            }
        }
    }

    /// Runs the callee until its media is up (connected, echo, audio received, as it reports
    /// itself) and returns the far end of its selected pair.
    async fn media_up(&mut self) -> Result<CalleeView, String> {
        match self {
            Callee::Rust(session) => {
                let out = session.run(RunUntil::MediaUp, MEDIA_WITHIN).await?;
                if out.phase != Phase::Active {
                    return Err(format!("the callee is {:?}", out.phase));
                }
                let pair = session
                    .selected_pair()
                    .await
                    .ok_or("the callee has media but no selected pair")?;
                Ok(CalleeView {
                    remote: pair.remote,
                })
            }
            Callee::Chromium { page, .. } => {
                let up = "domvia.report().then(r => !!r.call && r.call.phase === 'connected' \
                          && r.call.data_channel.echoed && r.call.inbound_audio_packets > 0)";
                let waited = page.wait_for(up, MEDIA_WITHIN).await;
                let report = page.eval("domvia.report()").await?;
                if let Err(e) = waited {
                    return Err(format!(
                        "{e}; browser report {report}; console {:?}",
                        page.console().await
                    ));
                }
                Ok(CalleeView {
                    remote: candidate_address(&report["call"]["selected_pair"]["remote"]),
                })
            }
            Callee::Aiortc { peer, .. } => {
                let r = peer.media_up(MEDIA_WITHIN).await?;
                if r["connected"] != true
                    || r["echo"] != true
                    || r["inbound_audio_packets"].as_u64() == Some(0)
                {
                    return Err(format!("aiortc reports incomplete media: {r}"));
                }
                Ok(CalleeView {
                    remote: candidate_address(&r["selected_pair"]["remote"]),
                })
            }
        }
    }

    /// The events the callee refused, where the callee can say (the reference peer).
    fn refusals(&self) -> Option<&[crate::event::Refusal]> {
        match self {
            Callee::Rust(session) => Some(session.refusals()),
            _ => None,
        }
    }

    /// After the caller hung up: the callee ended the call with `hangup`.
    async fn ended_by_hang_up(self) -> Result<(), String> {
        match self {
            Callee::Rust(mut session) => {
                let out = session.run(RunUntil::Ended, PROMPT).await?;
                session.close().await;
                match out.phase {
                    Phase::Ended(EndReason::Hangup) => Ok(()),
                    other => Err(format!("the callee is {other:?}")),
                }
            }
            Callee::Chromium { page, browser, .. } => {
                let ended = page
                    .wait_for(
                        "domvia.page.call.phase === 'ended' && domvia.page.call.reason === 'hangup'",
                        PROMPT,
                    )
                    .await;
                let report = page.eval("domvia.report()").await.unwrap_or_default();
                browser.close().await;
                ended.map_err(|e| format!("{e}; browser report {report}"))
            }
            Callee::Aiortc { peer, .. } => {
                let (result, _) = peer.finish(PROMPT).await?;
                if result["end_reason"] == "hangup" {
                    Ok(())
                } else {
                    Err(format!("aiortc ended with {}", result["end_reason"]))
                }
            }
        }
    }
}

/// What a call through the target showed.
struct MediaCall {
    caller_pair: SelectedPair,
    callee: CalleeView,
    took: Duration,
}

/// A whole call: the reference caller (with `caller_options`) and the selected callee, through
/// the target, to connected media and back to a hang-up; the observer checks the negotiation
/// crossed the target.
async fn media_call(ctx: &Ctx, kind: ChannelKind, caller_options: PeerOptions) -> Step<MediaCall> {
    let began = Instant::now();
    let (channel, mut observer) = fresh_call_channel(ctx, kind).await?;
    let mut caller = join_caller(ctx, &channel).await?;
    let mut callee = Callee::join(ctx, &channel, &mut caller).await?;
    let mut caller = CallSession::with_signaling(caller, caller_options)
        .await
        .map_err(|e| errored(format!("caller's WebRTC peer: {e}")))?;
    let (a, b) = tokio::join!(
        caller.run(RunUntil::MediaUp, MEDIA_WITHIN),
        callee.media_up()
    );
    let took = began.elapsed();
    let caller_phase = a
        .map_err(|e| {
            explained(
                caller.refusals(),
                "the caller",
                "data channel echo and RTP (media up through the target's signaling)",
                e.to_string(),
            )
        })?
        .phase;
    ensure(
        caller_phase == Phase::Active,
        "the caller's media comes up through the target's signaling",
        "Active",
        format!("{caller_phase:?}: {:?}", caller.timeline().entries),
    )?;
    let callee_view = b.map_err(|e| match callee.refusals() {
        Some(refusals) => explained(
            refusals,
            "the callee",
            "connected, data channel echo and RTP (media up through the target's signaling)",
            e,
        ),
        None => fail(
            format!(
                "the callee's ({}) media comes up through the target's signaling",
                ctx.target.second_peer.name()
            ),
            "connected, data channel echo and RTP",
            e,
        ),
    })?;
    let caller_pair = caller
        .selected_pair()
        .await
        .ok_or_else(|| errored("the caller has media but no selected pair"))?;
    negotiation_crossed(&mut observer, &channel.to_string()).await?;
    caller.hang_up().await.map_err(errored)?;
    callee.ended_by_hang_up().await.map_err(|e| {
        fail(
            "the callee hears the hang-up through the target",
            "call.ended {reason: hangup}",
            e,
        )
    })?;
    caller.close().await;
    Ok(MediaCall {
        caller_pair,
        callee: callee_view,
        took,
    })
}

/// The observer saw the offer, the answer and candidates up to an end of candidates.
async fn negotiation_crossed(observer: &mut Conn, channel: &str) -> Step<()> {
    let seen = observe(
        observer,
        channel,
        &[
            "client-call.offer",
            "client-call.answer",
            "client-call.ice_candidate",
        ],
    )
    .await?;
    let ended_gen = |f: &Value| decode_data(&f["data"])["end_of_candidates"] == true;
    let mut candidates = vec![seen[2].clone()];
    while !candidates.iter().any(ended_gen) {
        let f = observer
            .wait_for("call.ice_candidate with end_of_candidates", PROMPT, |f| {
                f["event"] == "client-call.ice_candidate"
            })
            .await?;
        candidates.push(f);
    }
    Ok(())
}

async fn handshake_private(ctx: Ctx) -> Step<Option<String>> {
    handshake(ctx, ChannelKind::Private).await
}

async fn handshake_presence(ctx: Ctx) -> Step<Option<String>> {
    handshake(ctx, ChannelKind::Presence).await
}

async fn handshake(ctx: Ctx, kind: ChannelKind) -> Step<Option<String>> {
    let call = media_call(&ctx, kind, PeerOptions::default()).await?;
    Ok(Some(format!(
        "callee {}: media up {} ms after the call was set up, over {} -> {}",
        ctx.target.second_peer.name(),
        call.took.as_millis(),
        call.caller_pair.local.kind,
        call.caller_pair.remote.kind
    )))
}

async fn turn_relay(ctx: Ctx) -> Step<Option<String>> {
    let url = ctx
        .target
        .turn
        .clone()
        .ok_or_else(|| Problem::Unsupported("needs --turn".into()))?;
    let secret = ctx
        .target
        .turn_secret
        .clone()
        .ok_or_else(|| Problem::Unsupported("needs --turn-secret".into()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| errored(e.to_string()))?
        .as_secs();
    let credential = signing::turn_credential(&secret, "conform-alice", now + 600);
    let options = PeerOptions {
        relay_only: true,
        ice_servers: vec![crate::trusted::api::IceServer {
            urls: vec![url.clone()],
            username: Some(credential.username),
            credential: Some(credential.password),
        }],
        // An allocation on a working TURN server takes well under a second.
        connect_timeout: Duration::from_secs(10),
        ..PeerOptions::default()
    };
    let call = media_call(&ctx, ChannelKind::Private, options).await?;
    let local = &call.caller_pair.local;
    ensure(
        local.kind == "relay",
        "the relay-only caller's media flows from a relay candidate",
        "selected pair with a local relay candidate",
        format!("{:?}", call.caller_pair),
    )?;
    let seen = &call.callee.remote;
    ensure(
        seen.port == local.port && (seen.address.is_empty() || seen.address == local.address),
        "the callee's selected pair ends at the caller's relayed address",
        format!("{}:{}", local.address, local.port),
        format!("{seen:?}"),
    )?;
    Ok(Some(format!(
        "relayed through {url} at {}:{}; media up {} ms after the call was set up (callee {})",
        local.address,
        local.port,
        call.took.as_millis(),
        ctx.target.second_peer.name()
    )))
}
