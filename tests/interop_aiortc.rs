//! Interop with a second independent WebRTC stack: aiortc (Python) with a Pusher-protocol client
//! of its own calls, and is called by, the Rust reference peer through the reference servers.
//! aiortc's host addresses are limited to 127.0.0.1 by the peer script, so the test stays on
//! loopback without a network namespace.
//!
//! Needs Python with aiortc and websockets (tests/interop/aiortc/requirements.txt); without them
//! the tests say what they skipped and why, unless `DOMVIA_REQUIRE_INTEROP=1` (set by CI).
#![cfg(feature = "conform")]

mod common;

use std::time::{Duration, Instant};

use domvia_calls::call::Phase;
use domvia_calls::conform::{SecondPeer, Verdict};
use domvia_calls::interop::aiortc::{self, AiortcPeer};
use domvia_calls::media::PeerOptions;
use domvia_calls::session::{Inbox, RunUntil};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(30);

async fn prerequisites(test: &str) -> bool {
    match aiortc::available().await {
        Ok(()) => true,
        Err(why) => {
            common::interop::skip(test, &why.to_string());
            false
        }
    }
}

/// What aiortc itself saw: connected over a loopback host pair, the data channel echo, audio RTP
/// in, and the end the Rust side sent.
fn assert_aiortc_media(r: &Value, echo_text: &str) {
    assert_eq!(r["connected"], true, "{r:#}");
    assert_eq!(r["echo"], true, "{r:#}");
    assert_eq!(r["data_channel_received"][0], echo_text, "{r:#}");
    assert!(r["inbound_audio_packets"].as_u64() > Some(0), "{r:#}");
    for side in ["local", "remote"] {
        let end = &r["selected_pair"][side];
        assert_eq!(
            (end["type"].as_str(), end["address"].as_str()),
            (Some("host"), Some("127.0.0.1")),
            "{r:#}"
        );
    }
    assert_eq!(r["end_reason"], "hangup", "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_calls_rust_peer() {
    if !prerequisites("aiortc_calls_rust_peer").await {
        return;
    }
    let s = common::calls::stack("aiortc-a2r", |_| {}).await;
    let inbox = Inbox::open(&common::calls::device(&s, "bob"))
        .await
        .unwrap();
    let began = Instant::now();
    let alice = AiortcPeer::spawn(&aiortc::args(&s, "alice", &["--call", "bob"]))
        .await
        .unwrap();
    let mut bob = inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    bob.accept().await.unwrap();
    let outcome = bob.run(RunUntil::MediaUp, WITHIN).await;
    let took = began.elapsed();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => panic!("the Rust callee: {e}\naiortc:\n{}", alice.log().await),
    };
    assert_eq!(outcome.phase, Phase::Active);
    bob.hang_up().await.unwrap();
    let (result, ok) = alice.finish(WITHIN).await.unwrap();
    assert!(ok, "{result:#}");
    assert_aiortc_media(&result, "echo:ping");
    assert_eq!(result["peer_user"], "bob");
    assert_eq!(result["call_id"], bob.call_id().as_str());
    bob.close().await;
    common::interop::say(&format!(
        "interop aiortc -> Rust: Rust media up {} ms after the aiortc peer started (process start included)",
        took.as_millis()
    ));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_peer_calls_aiortc() {
    if !prerequisites("rust_peer_calls_aiortc").await {
        return;
    }
    let s = common::calls::stack("aiortc-r2a", |_| {}).await;
    let mut bob = AiortcPeer::spawn(&aiortc::args(&s, "bob", &[]))
        .await
        .unwrap();
    bob.ready(WITHIN).await.unwrap();
    let began = Instant::now();
    let (mut alice, placed) =
        common::calls::place_room_call(&s, "alice", "bob", PeerOptions::default()).await;
    let outcome = alice.run(RunUntil::MediaUp, WITHIN).await;
    let took = began.elapsed();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => panic!("the Rust caller: {e}\naiortc:\n{}", bob.log().await),
    };
    assert_eq!(outcome.phase, Phase::Active);
    alice.hang_up().await.unwrap();
    let (result, ok) = bob.finish(WITHIN).await.unwrap();
    assert!(ok, "{result:#}");
    assert_aiortc_media(&result, "ping");
    assert_eq!(result["peer_user"], "alice");
    assert_eq!(result["call_id"], placed.call_id.as_str());
    alice.close().await;
    common::interop::say(&format!(
        "interop Rust -> aiortc: Rust media up {} ms after the call was placed",
        took.as_millis()
    ));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_takes_aiortc_as_the_callee_of_its_webrtc_case() {
    if !prerequisites("the_runner_takes_aiortc_as_the_callee_of_its_webrtc_case").await {
        return;
    }
    let report = common::interop::run_webrtc_case(SecondPeer::Aiortc, None).await;
    assert_eq!(report.0, Verdict::Pass, "{}", report.1);
    assert!(report.1.contains("callee aiortc"), "{}", report.1);
}
