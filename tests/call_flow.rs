//! Real calls end to end: the reference servers on loopback, two reference call sessions (realtime
//! client + call state machine + WebRTC peer), signaling through the servers, media over WebRTC.
#![cfg(feature = "media")]

mod common;

use std::time::Duration;

use domvia_calls::call::Phase;
use domvia_calls::event::EndReason;
use domvia_calls::media::PeerOptions;
use domvia_calls::session::{CallSession, Inbox, Outcome, PlacedCall, RunUntil};
use domvia_calls::stack::RunningStack;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(20);

/// `caller` invites `callee` with `request` (scope, callees, privacy, ...); returns both sessions
/// with the callee's device ringing.
async fn invite(
    s: &RunningStack,
    caller: &str,
    callee: &str,
    request: Value,
    caller_peer: PeerOptions,
) -> (CallSession, CallSession, PlacedCall) {
    let inbox = Inbox::open(&common::calls::device(s, callee))
        .await
        .unwrap();
    let (caller, placed) =
        CallSession::place(&common::calls::device(s, caller), request, caller_peer)
            .await
            .unwrap();
    let callee = inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    (caller, callee, placed)
}

fn room_call(callee: &str, extra: Value) -> Value {
    let mut request = json!({"scope": "room", "scope_id": "chat-room-42", "callees": [callee]});
    request
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    request
}

/// Runs both sides until media is up; both must be active.
async fn media_up(caller: &mut CallSession, callee: &mut CallSession) -> (Outcome, Outcome) {
    let (a, b) = tokio::join!(
        caller.run(RunUntil::MediaUp, WITHIN),
        callee.run(RunUntil::MediaUp, WITHIN)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.phase, b.phase), (Phase::Active, Phase::Active));
    (a, b)
}

fn sent(t: &domvia_calls::session::Timeline, what: &str) -> usize {
    t.entries
        .iter()
        .filter(|(_, e)| e.strip_prefix("sent ").is_some_and(|n| n.contains(what)))
        .count()
}

async fn full_call(privacy: &str) {
    let s = common::calls::stack(privacy, |_| {}).await;
    let (mut caller, mut callee, placed) = invite(
        &s,
        "alice",
        "bob",
        room_call("bob", json!({"privacy": privacy})),
        PeerOptions::default(),
    )
    .await;
    assert_eq!(callee.channel(), &placed.channel);
    callee.accept().await.unwrap();
    let (a, b) = media_up(&mut caller, &mut callee).await;
    for t in [&caller.timeline(), &callee.timeline()] {
        for step in [
            "ICE connected",
            "DTLS up: media can flow",
            "data channel open (SCTP up)",
            "first RTP packet",
        ] {
            assert!(t.at(step).is_some(), "missing {step}: {:?}", t.entries);
        }
    }
    assert!(
        caller
            .timeline()
            .at("data channel message \"echo:ping\"")
            .is_some(),
        "{:?}",
        caller.timeline().entries
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
    let record = common::calls::ended_record(&s, "alice-token", &placed.call_id).await;
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
    let s = common::calls::stack("decline", |_| {}).await;
    let (mut caller, mut callee, placed) = invite(
        &s,
        "alice",
        "bob",
        room_call("bob", json!({})),
        PeerOptions::default(),
    )
    .await;
    callee.decline(false).await.unwrap();
    let out = caller.run(RunUntil::Ended, WITHIN).await.unwrap();
    assert_eq!(out.phase, Phase::Ended(EndReason::Declined));
    let record = common::calls::ended_record(&s, "alice-token", &placed.call_id).await;
    assert_eq!(record["call"]["end_reason"], "declined");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_times_out_and_is_a_missed_call() {
    let s = common::calls::stack("missed", |_| {}).await;
    let request = room_call("bob", json!({"ring_timeout_ms": 5000}));
    let (mut caller, mut callee, placed) =
        invite(&s, "alice", "bob", request, PeerOptions::default()).await;
    let (a, b) = tokio::join!(
        caller.run(RunUntil::Ended, WITHIN),
        callee.run(RunUntil::Ended, WITHIN)
    );
    assert_eq!(a.unwrap().phase, Phase::Ended(EndReason::NoAnswer));
    assert_eq!(b.unwrap().phase, Phase::Ended(EndReason::NoAnswer));
    let resp = domvia_calls::net::http_client()
        .get(format!("http://{}/calls/missed", s.trusted.addr()))
        .header("authorization", "Bearer bob-token")
        .send()
        .await
        .unwrap();
    let missed: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(missed["missed"][0]["call_id"], placed.call_id.as_str());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_callee_device_stops_ringing_when_the_first_answers() {
    let s = common::calls::stack("elsewhere", |_| {}).await;
    let phone = Inbox::open(&common::calls::device(&s, "bob"))
        .await
        .unwrap();
    let (mut caller, mut laptop, _) = invite(
        &s,
        "alice",
        "bob",
        room_call("bob", json!({})),
        PeerOptions::default(),
    )
    .await;
    let mut second = phone
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    laptop.accept().await.unwrap();
    let (_, ended) = tokio::join!(
        media_up(&mut caller, &mut laptop),
        second.run(RunUntil::Ended, WITHIN)
    );
    assert_eq!(
        ended.unwrap().phase,
        Phase::Ended(EndReason::AnsweredElsewhere)
    );
    let sent: Vec<&str> = second
        .timeline()
        .entries
        .iter()
        .filter_map(|(_, e)| e.strip_prefix("sent "))
        .collect();
    assert_eq!(
        sent,
        ["client-call.ringing"],
        "the other device only said it was ringing"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callee_can_hang_up() {
    let s = common::calls::stack("callee-hangup", |_| {}).await;
    // alice and dave share trip-7; this call uses a private channel.
    let request =
        json!({"scope": "trip", "scope_id": "trip-7", "callees": ["dave"], "kind": "private"});
    let (mut caller, mut callee, _) =
        invite(&s, "alice", "dave", request, PeerOptions::default()).await;
    callee.accept().await.unwrap();
    media_up(&mut caller, &mut callee).await;
    callee.hang_up().await.unwrap();
    let out = caller.run(RunUntil::Ended, WITHIN).await.unwrap();
    assert_eq!(out.phase, Phase::Ended(EndReason::Hangup));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_calls_keep_the_lower_call_id() {
    let s = common::calls::stack("glare", |_| {}).await;
    let (alice, bob) = (
        common::calls::device(&s, "alice"),
        common::calls::device(&s, "bob"),
    );
    let (alice_inbox, bob_inbox) = (
        Inbox::open(&alice).await.unwrap(),
        Inbox::open(&bob).await.unwrap(),
    );
    let (from_alice, _) =
        CallSession::place(&alice, room_call("bob", json!({})), PeerOptions::default())
            .await
            .unwrap();
    let (from_bob, _) =
        CallSession::place(&bob, room_call("alice", json!({})), PeerOptions::default())
            .await
            .unwrap();
    let at_alice = alice_inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    let at_bob = bob_inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    // Each side applies the same rule and reaches the same decision.
    let winner = domvia_calls::call::glare_winner(from_alice.call_id(), from_bob.call_id()).clone();
    let (mut keep_caller, mut keep_callee, mut lost_caller) = if &winner == from_alice.call_id() {
        (from_alice, at_bob, from_bob)
    } else {
        (from_bob, at_alice, from_alice)
    };
    lost_caller.replaced().await.unwrap();
    keep_callee.accept().await.unwrap();
    media_up(&mut keep_caller, &mut keep_callee).await;
    assert_eq!(lost_caller.phase(), Phase::Ended(EndReason::Replaced));
    let record =
        common::calls::ended_record(&s, "alice-token", lost_caller.call_id().as_str()).await;
    assert_eq!(record["call"]["end_reason"], "replaced");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_storm_stays_under_the_rate_limit_and_connects() {
    let s = common::calls::stack("storm", |_| {}).await;
    // Thirty host candidates on the caller: thirty loopback addresses, 127.0.0.1 to 127.0.0.30.
    // (Both sides that wide would make 900 pairs to check; the point is the signaling.)
    let binds = (1..=30).map(|i| format!("127.0.0.{i}:0")).collect();
    let storm = PeerOptions {
        binds,
        ..PeerOptions::default()
    };
    let (mut caller, mut callee, _) =
        invite(&s, "alice", "bob", room_call("bob", json!({})), storm).await;
    callee.accept().await.unwrap();
    let (a, b) = media_up(&mut caller, &mut callee).await;
    assert_eq!(
        a.throttled + b.throttled,
        0,
        "never over the server's limit"
    );
    let batches = sent(caller.timeline(), "ice_candidate");
    assert!(
        batches >= 2,
        "thirty candidates need at least two events of twenty: {:?}",
        caller.timeline().entries
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_over_the_announced_limit_travel_in_chunks() {
    // A server announcing 1200-byte events: a WebRTC offer (about 2 KB) must be chunked.
    let s = common::calls::stack("chunks", |cfg| cfg.realtime.apps[0].max_event_bytes = 1200).await;
    let request = room_call("bob", json!({"privacy": "strong"}));
    let (mut caller, mut callee, _) =
        invite(&s, "alice", "bob", request, PeerOptions::default()).await;
    callee.accept().await.unwrap();
    media_up(&mut caller, &mut callee).await;
    let (offers, answers) = (
        sent(caller.timeline(), "call.offer"),
        sent(callee.timeline(), "call.answer"),
    );
    assert!(
        offers >= 2 && answers >= 2,
        "offer in {offers} and answer in {answers} chunks"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_privacy_rejects_and_reports_downgraded_and_replayed_events() {
    use domvia_calls::client::{Auth, ClientConfig, RealtimeClient};
    use domvia_calls::signing::Secret;

    let s = common::calls::stack("downgrade", |_| {}).await;
    let request = room_call("bob", json!({"privacy": "strong"}));
    let (mut caller, mut callee, placed) =
        invite(&s, "alice", "bob", request, PeerOptions::default()).await;
    callee.accept().await.unwrap();
    media_up(&mut caller, &mut callee).await;
    // Someone holding the app secret (a compromised relay, say) joins as "bob", sends a media
    // state in the clear, then the same event twice.
    let mallory = RealtimeClient::connect(ClientConfig {
        defect: None,
        url: format!("ws://{}/app/domvia-key", s.realtime.addr()),
        auth: Auth::Signer {
            key: "domvia-key".into(),
            secret: Secret::new("domvia-secret"),
            presence_user: Some(("bob".into(), json!({}))),
        },
        events_per_second: None,
        tap: None,
    })
    .await
    .unwrap();
    mallory
        .subscribe(&placed.channel.to_string())
        .await
        .unwrap();
    let call_id = placed.call_id.as_str();
    let clear = json!({"v": 1, "call_id": call_id, "party_id": "bob-mallory-01", "user_id": "bob", "seq": 99, "sent_at_ms": 0,
        "audio": {"muted": true}, "video": {"enabled": false}, "screen": {"sharing": false}, "on_hold": true});
    mallory
        .trigger(
            &placed.channel.to_string(),
            "client-call.media_state",
            clear,
        )
        .await
        .unwrap();
    let ringing = json!({"v": 1, "call_id": call_id, "party_id": "bob-mallory-01", "user_id": "bob", "seq": 100, "sent_at_ms": 0});
    mallory
        .trigger(
            &placed.channel.to_string(),
            "client-call.ringing",
            ringing.clone(),
        )
        .await
        .unwrap();
    mallory
        .trigger(&placed.channel.to_string(), "client-call.ringing", ringing)
        .await
        .unwrap();
    caller
        .run(RunUntil::Elapsed, Duration::from_millis(300))
        .await
        .unwrap();
    for code in ["(envelope.downgrade)", "(envelope.replay)"] {
        assert!(
            caller
                .timeline()
                .entries
                .iter()
                .any(|(_, e)| e.contains(code)),
            "{code} not reported: {:?}",
            caller.timeline().entries
        );
    }
    assert_eq!(
        caller.phase(),
        Phase::Active,
        "a rejected event changes nothing"
    );
    s.shutdown().await;
}

/// `domvia-calls drive` as a child process, spoken to over the client-driver contract.
struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    reports: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    fn start() -> Driver {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
            .arg("drive")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        use tokio::io::AsyncBufReadExt;
        let stdout = child.stdout.take().unwrap();
        Driver {
            stdin: child.stdin.take().unwrap(),
            reports: tokio::io::BufReader::new(stdout).lines(),
            child,
        }
    }

    async fn send(&mut self, command: Value) {
        use tokio::io::AsyncWriteExt;
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Reports until one matches `want` (every member of `want` equal); the ones before it.
    async fn until(&mut self, want: Value) -> Vec<Value> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(WITHIN, async {
            while let Some(line) = self.reports.next_line().await.unwrap() {
                let report: Value =
                    serde_json::from_str(&line).expect("a report is one JSON object");
                let matches = want
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| report.get(k) == Some(v));
                seen.push(report);
                if matches {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "no report like {want}; saw {seen:#?}");
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_answers_and_places_calls_through_the_driver_contract() {
    let s = common::calls::stack("driver", |_| {}).await;
    let mut bob = Driver::start();
    bob.send(json!({"cmd": "connect",
        "realtime_url": format!("ws://{}/app/domvia-key", s.realtime.addr()),
        "trusted_url": format!("http://{}", s.trusted.addr()),
        "token": "bob-token", "user": "bob"}))
        .await;
    bob.until(json!({"event": "ready", "user": "bob"})).await;
    bob.send(json!({"cmd": "dance"})).await;
    bob.until(json!({"event": "error"})).await;

    // Alice calls bob, who answers through the driver; media comes up; bob hangs up.
    let (mut alice, placed) =
        common::calls::place_room_call(&s, "alice", "bob", PeerOptions::default()).await;
    let call_id = placed.call_id.to_string();
    bob.until(json!({"event": "incoming", "call_id": call_id, "caller": "alice"}))
        .await;
    bob.until(json!({"event": "phase", "phase": "alerting"}))
        .await;
    bob.send(json!({"cmd": "answer"})).await;
    let (alice_up, _) = tokio::join!(
        alice.run(RunUntil::MediaUp, WITHIN),
        bob.until(json!({"event": "media_up", "call_id": call_id}))
    );
    alice_up.unwrap();
    bob.send(json!({"cmd": "mute", "muted": true})).await;
    bob.send(json!({"cmd": "hang_up"})).await;
    bob.until(json!({"event": "phase", "phase": "ended", "reason": "hangup"}))
        .await;
    let outcome = alice.run(RunUntil::Ended, WITHIN).await.unwrap();
    assert_eq!(outcome.phase, Phase::Ended(EndReason::Hangup));
    alice.close().await;

    // Bob places a call to alice through the driver; she answers, then hangs up.
    let inbox = Inbox::open(&common::calls::device(&s, "alice"))
        .await
        .unwrap();
    bob.send(json!({"cmd": "place",
        "request": {"scope": "room", "scope_id": "chat-room-42", "callees": ["alice"]}}))
        .await;
    let placed = bob.until(json!({"event": "placed"})).await;
    let call_id = placed.last().unwrap()["call_id"].clone();
    let mut alice = inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    assert_eq!(json!(alice.call_id().to_string()), call_id);
    alice.accept().await.unwrap();
    let (alice_up, _) = tokio::join!(
        alice.run(RunUntil::MediaUp, WITHIN),
        bob.until(json!({"event": "phase", "phase": "active", "call_id": call_id}))
    );
    alice_up.unwrap();
    alice.hang_up().await.unwrap();
    alice.run(RunUntil::Ended, WITHIN).await.unwrap();
    bob.until(json!({"event": "phase", "phase": "ended", "reason": "hangup"}))
        .await;
    alice.close().await;

    bob.send(json!({"cmd": "quit"})).await;
    let status = tokio::time::timeout(WITHIN, bob.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
