//! The TURN path with a real relay: Debian's coturn with REST credentials (`use-auth-secret`) on
//! 127.0.0.1. The trusted server mints the credentials; the caller's WebRTC peer is relay-only.
//! A call connects over a relay candidate pair; with a wrong secret or an expired credential no
//! relay candidate exists, the call ends with `ice_failed` and the trusted server records it.
//!
//! Needs `turnserver` (apt-get install coturn); without it the tests say what they skipped and
//! why, unless `DOMVIA_REQUIRE_INTEROP=1` (set by CI).
#![cfg(feature = "conform")]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use domvia_calls::call::Phase;
use domvia_calls::event::EndReason;
use domvia_calls::interop::coturn::{Coturn, TURN_RELAY_PORTS};
use domvia_calls::media::PeerOptions;
use domvia_calls::session::{CallSession, Inbox, Outcome, PlacedCall, RunUntil, SessionError};
use domvia_calls::signing::{self, Secret};
use domvia_calls::stack::RunningStack;

const WITHIN: Duration = Duration::from_secs(30);
const TURN_SECRET: &str = "turn-secret-for-tests";

fn prerequisites(test: &str) -> bool {
    if Coturn::installed() {
        return true;
    }
    common::interop::skip(test, "coturn is not installed (apt-get install coturn)");
    false
}

/// The reference servers; with `turn`, the trusted server mints credentials for it with `secret`.
async fn stack(tag: &str, turn: Option<(&Coturn, &str)>) -> RunningStack {
    common::calls::stack(tag, |cfg| {
        if let Some((coturn, secret)) = turn {
            cfg.trusted.turn_urls = vec![coturn.url()];
            cfg.trusted.turn_secret = Some(Secret::new(secret));
        }
    })
    .await
}

fn relay_only() -> PeerOptions {
    PeerOptions {
        relay_only: true,
        ..PeerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_call_connects_through_coturn() {
    if !prerequisites("relay_only_call_connects_through_coturn") {
        return;
    }
    let coturn = Coturn::start(TURN_SECRET).unwrap();
    let s = stack("turn-ok", Some((&coturn, TURN_SECRET))).await;
    let began = Instant::now();
    let (mut alice, mut bob, placed, (a, b)) = relay_call(&s, relay_only()).await;
    let took = began.elapsed();
    assert_eq!(a.unwrap().phase, Phase::Active);
    assert_eq!(b.unwrap().phase, Phase::Active);
    // Through TURN, webrtc-rs 0.21 as released sends DTLS and SCTP flights only at its next
    // protocol deadline: ≥ 1 s from ICE connected to the data channel (DTLS retransmission).
    // The peer's runtime makes the driver send them at once (docs/webrtc-rs-driver-passes.md).
    let timeline = alice.timeline();
    let ice = timeline.at("ICE connected").expect("ICE connected");
    let open = timeline.at("data channel open").expect("data channel open");
    assert!(
        open.saturating_sub(ice) < Duration::from_millis(500),
        "ICE connected to data channel open took {:?} through TURN: {:?}",
        open.saturating_sub(ice),
        timeline.entries
    );
    let alice_pair = alice.selected_pair().await.expect("alice selected a pair");
    let bob_pair = bob.selected_pair().await.expect("bob selected a pair");
    // The relay-only side sends from its relayed address; the other side's pair ends at that
    // address (learnt as a trickled relay candidate or, if a check came first, as prflx).
    assert_eq!(alice_pair.local.kind, "relay", "{alice_pair:?}");
    let gathered = alice.local_candidates().await;
    assert!(
        !gathered.is_empty() && gathered.iter().all(|c| c.kind == "relay"),
        "a relay-only peer gathers relay candidates alone: {gathered:?}"
    );
    assert!(
        TURN_RELAY_PORTS.contains(&alice_pair.local.port),
        "{alice_pair:?}"
    );
    assert_eq!(
        (bob_pair.remote.address.as_str(), bob_pair.remote.port),
        (alice_pair.local.address.as_str(), alice_pair.local.port),
        "bob's pair {bob_pair:?} does not end at alice's relayed address"
    );
    assert!(
        ["relay", "prflx"].contains(&bob_pair.remote.kind.as_str()),
        "{bob_pair:?}"
    );
    alice.hang_up().await.unwrap();
    let _ = bob.run(RunUntil::Ended, WITHIN).await;
    assert_eq!(
        common::calls::ended_record(&s, "alice-token", &placed.call_id).await["call"]["end_reason"],
        "hangup"
    );
    common::interop::say(&format!(
        "interop relay (coturn, relay-only caller): media up {} ms after the call was placed",
        took.as_millis()
    ));
    alice.close().await;
    bob.close().await;
    s.shutdown().await;
}

/// alice (with `caller_peer`) calls bob, bob answers, and both run until media is up or the call
/// ended.
async fn relay_call(
    s: &RunningStack,
    caller_peer: PeerOptions,
) -> (
    CallSession,
    CallSession,
    PlacedCall,
    (Result<Outcome, SessionError>, Result<Outcome, SessionError>),
) {
    let inbox = Inbox::open(&common::calls::device(s, "bob")).await.unwrap();
    let (mut alice, placed) = common::calls::place_room_call(s, "alice", "bob", caller_peer).await;
    let mut bob = inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    bob.accept().await.unwrap();
    let outcomes = tokio::join!(
        alice.run(RunUntil::MediaUp, WITHIN),
        bob.run(RunUntil::MediaUp, WITHIN)
    );
    (alice, bob, placed, outcomes)
}

/// A relay-only caller whose TURN credential coturn refuses: no relay candidate, so after the
/// connect timeout (shortened here) the call ends with `ice_failed` on both sides and in the
/// trusted server's record.
async fn refused_credential_fails_the_call(s: &RunningStack, caller_peer: PeerOptions) {
    let caller_peer = PeerOptions {
        connect_timeout: Duration::from_secs(3),
        ..caller_peer
    };
    let (alice, bob, placed, (a, b)) = relay_call(s, caller_peer).await;
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.phase,
        Phase::Ended(EndReason::IceFailed),
        "{:?}",
        alice.timeline().entries
    );
    assert_eq!(
        b.phase,
        Phase::Ended(EndReason::IceFailed),
        "{:?}",
        bob.timeline().entries
    );
    assert!(alice.selected_pair().await.is_none());
    assert_eq!(
        alice.local_candidates().await,
        vec![],
        "coturn refused the allocation, so the relay-only caller has no candidate"
    );
    let rec = common::calls::ended_record(s, "alice-token", &placed.call_id).await;
    assert_eq!(rec["call"]["state"], "ended", "{rec:#}");
    assert_eq!(rec["call"]["end_reason"], "ice_failed", "{rec:#}");
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_turn_secret_gives_no_relay_and_the_call_ends_ice_failed() {
    if !prerequisites("a_wrong_turn_secret_gives_no_relay_and_the_call_ends_ice_failed") {
        return;
    }
    let coturn = Coturn::start(TURN_SECRET).unwrap();
    let s = stack("turn-wrong", Some((&coturn, "not-the-turn-secret"))).await;
    refused_credential_fails_the_call(&s, relay_only()).await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_turn_credential_gives_no_relay_and_the_call_ends_ice_failed() {
    if !prerequisites("an_expired_turn_credential_gives_no_relay_and_the_call_ends_ice_failed") {
        return;
    }
    let coturn = Coturn::start(TURN_SECRET).unwrap();
    // The trusted server hands out no TURN server here; the caller brings a credential made with
    // the right secret that expired a minute ago.
    let s = stack("turn-expired", None).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = signing::turn_credential(&Secret::new(TURN_SECRET), "alice", now - 60);
    let peer = PeerOptions {
        ice_servers: vec![domvia_calls::trusted::api::IceServer {
            urls: vec![coturn.url()],
            username: Some(expired.username),
            credential: Some(expired.password),
        }],
        ..relay_only()
    };
    refused_credential_fails_the_call(&s, peer).await;
    s.shutdown().await;
}

/// The runner's `webrtc.turn-relay` case passes against a working relay and fails when the relay
/// refuses its credentials (here: the runner was given the wrong TURN secret).
#[cfg(feature = "conform")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_relay_case_passes_through_coturn_and_fails_on_refused_credentials() {
    use domvia_calls::conform::Verdict;
    use domvia_calls::conform::embedded::{Embedded, EmbeddedOptions};
    if !prerequisites(
        "the_runner_relay_case_passes_through_coturn_and_fails_on_refused_credentials",
    ) {
        return;
    }
    let coturn = Coturn::start(TURN_SECRET).unwrap();
    let mut embedded = Embedded::start(EmbeddedOptions {
        turn: Some((coturn.url(), Secret::new(TURN_SECRET))),
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    let mut verdicts = Vec::new();
    for secret in [TURN_SECRET, "not-the-turn-secret"] {
        embedded.target.turn_secret = Some(Secret::new(secret));
        verdicts.push(common::interop::run_case(&embedded, "webrtc.turn-relay").await);
    }
    embedded.shutdown().await;
    assert_eq!(verdicts[0].0, Verdict::Pass, "{}", verdicts[0].1);
    assert!(
        verdicts[0].1.contains("relayed through"),
        "{}",
        verdicts[0].1
    );
    assert_eq!(verdicts[1].0, Verdict::Fail, "{}", verdicts[1].1);
    assert!(verdicts[1].1.contains("IceFailed"), "{}", verdicts[1].1);
}
