//! Real calls end to end: the reference servers on loopback, two reference call sessions (realtime
//! client + call state machine + WebRTC peer), signaling through the servers, media over WebRTC.
#![cfg(feature = "media")]

mod common;

use std::time::Duration;

use domvia_calls::call::Phase;
use domvia_calls::event::EndReason;
use domvia_calls::media::PeerOptions;
use domvia_calls::session::{CallSession, Device, Inbox, RunUntil};
use domvia_calls::stack::{self, RunningStack, StackConfig};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(20);

async fn stack(tag: &str) -> RunningStack {
    let mut cfg = StackConfig::development(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.trusted.data_dir = common::temp_dir(tag);
    cfg.trusted.watchdog_interval_ms = 50;
    cfg.realtime.webhook_batch_ms = 10;
    stack::start(cfg).await.unwrap()
}

fn device(s: &RunningStack, user: &str) -> Device {
    Device::new(
        &format!("ws://{}/app/domvia-key", s.realtime.addr()),
        &format!("http://{}", s.trusted.addr()),
        &format!("{user}-token"),
        user,
    )
    .unwrap()
}

async fn call_history(s: &RunningStack, token: &str, call_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = reqwest::Client::new()
            .get(format!("http://{}/calls/{call_id}", s.trusted.addr()))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        if v["call"]["state"] == "ended" || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn full_call(privacy: &str) {
    let s = stack(privacy).await;
    let (alice, bob) = (device(&s, "alice"), device(&s, "bob"));
    let inbox = Inbox::open(&bob).await.unwrap();
    let request = json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"], "privacy": privacy});
    let (mut caller, placed) = CallSession::place(&alice, request, PeerOptions::default())
        .await
        .unwrap();
    let mut callee = inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    assert_eq!(callee.channel().to_string(), placed.channel);
    callee.accept().await.unwrap();

    let (a, b) = tokio::join!(
        caller.run(RunUntil::MediaUp, WITHIN),
        callee.run(RunUntil::MediaUp, WITHIN)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.phase, b.phase), (Phase::Active, Phase::Active));
    for t in [&caller.timeline, &callee.timeline] {
        for step in [
            "ICE connected, DTLS up",
            "data channel open",
            "first RTP packet",
        ] {
            assert!(t.at(step).is_some(), "missing {step}: {:?}", t.entries);
        }
    }
    assert!(
        caller
            .timeline
            .at("data channel message \"echo:ping\"")
            .is_some(),
        "{:?}",
        caller.timeline.entries
    );
    assert_eq!(a.throttled + b.throttled, 0, "paced under the limit");
    assert!(
        a.events_sent <= 8 && b.events_sent <= 8,
        "a handful of events per side: {} and {}",
        a.events_sent,
        b.events_sent
    );

    caller.hang_up().await.unwrap();
    let (_, ended) = tokio::join!(
        caller.run(RunUntil::Ended, WITHIN),
        callee.run(RunUntil::Ended, WITHIN)
    );
    assert_eq!(ended.unwrap().phase, Phase::Ended(EndReason::Hangup));
    let record = call_history(&s, "alice-token", &placed.call_id).await;
    assert_eq!(record["call"]["state"], "ended", "{record}");
    assert_eq!(record["call"]["end_reason"], "hangup");
    assert_eq!(record["call"]["accepted_by"], "bob");
    caller.close().await;
    callee.close().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_call_reaches_connected_media() {
    full_call("standard").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_privacy_call_reaches_connected_media() {
    full_call("strong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_call_ends_for_the_caller_and_is_recorded() {
    let s = stack("decline").await;
    let (alice, bob) = (device(&s, "alice"), device(&s, "bob"));
    let inbox = Inbox::open(&bob).await.unwrap();
    let request = json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"]});
    let (mut caller, placed) = CallSession::place(&alice, request, PeerOptions::default())
        .await
        .unwrap();
    let mut callee = inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    callee.decline(false).await.unwrap();
    let out = caller.run(RunUntil::Ended, WITHIN).await.unwrap();
    assert_eq!(out.phase, Phase::Ended(EndReason::Declined));
    let record = call_history(&s, "alice-token", &placed.call_id).await;
    assert_eq!(record["call"]["end_reason"], "declined");
    s.shutdown().await;
}
