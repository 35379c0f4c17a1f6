//! The reference trusted server over real sockets, paired with the reference realtime server:
//! authorization rules, invitations, ring timeout, webhooks (real ones and forged ones), and
//! crash safety with SIGKILL.
#![cfg(all(feature = "trusted", feature = "cli"))]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Client;
use domvia_calls::channel::ChannelName;
use domvia_calls::event::{EventBody, EventKind, Incoming, parse_frame};
use domvia_calls::ids::SocketId;
use domvia_calls::pusher::{Frame, FrameLimits};
use domvia_calls::signing::{self, Secret};
use domvia_calls::stack::{self, RunningStack, StackConfig};
use serde_json::{Value, json};

const DEV_KEY: &str = "domvia-key";
const DEV_SECRET: &str = "domvia-secret";

async fn start_stack(tag: &str, turn: bool) -> RunningStack {
    let mut cfg = StackConfig::development(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.trusted.data_dir = common::temp_dir(tag);
    cfg.trusted.watchdog_interval_ms = 50;
    cfg.realtime.webhook_batch_ms = 10;
    if turn {
        cfg.trusted.stun_urls = vec!["stun:127.0.0.1:3478".into()];
        cfg.trusted.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        cfg.trusted.turn_secret = Some(Secret::new("turn-secret"));
    }
    stack::start(cfg).await.expect("stack starts")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn post(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let mut req = domvia_calls::net::http_client()
        .post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(addr: SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let resp = domvia_calls::net::http_client()
        .get(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

async fn create_call(trusted: SocketAddr, token: &str, body: Value) -> Value {
    let (status, resp) = post(
        trusted,
        "/calls",
        Some(token),
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(status, 201, "{resp}");
    resp
}

async fn auth(
    trusted: SocketAddr,
    token: Option<&str>,
    socket_id: &str,
    channel: &str,
    json_body: bool,
) -> (u16, Value) {
    if json_body {
        let body = json!({ "socket_id": socket_id, "channel_name": channel }).to_string();
        post(trusted, "/realtime/auth", token, "application/json", body).await
    } else {
        let body = format!("socket_id={socket_id}&channel_name={channel}");
        post(
            trusted,
            "/realtime/auth",
            token,
            "application/x-www-form-urlencoded",
            body,
        )
        .await
    }
}

/// A client of the development app (key `domvia-key`).
async fn dev_client(realtime: SocketAddr) -> Client {
    let ws = Client::raw(realtime, &format!("/app/{DEV_KEY}?protocol=7")).await;
    let mut c = Client {
        ws,
        socket_id: String::new(),
    };
    let f = c.expect("pusher:connection_established").await;
    let data: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
    c.socket_id = data["socket_id"].as_str().unwrap().to_owned();
    c
}

/// Subscribes `c` to `channel` with a signature from the trusted server.
async fn join(c: &mut Client, trusted: SocketAddr, token: &str, channel: &str) -> Value {
    let (status, grant) = auth(trusted, Some(token), &c.socket_id, channel, false).await;
    assert_eq!(status, 200, "{grant}");
    let mut data = json!({ "channel": channel, "auth": grant["auth"] });
    if let Some(cd) = grant.get("channel_data") {
        data["channel_data"] = cd.clone();
    }
    c.send(json!({ "event": "pusher:subscribe", "data": data }))
        .await;
    c.expect("pusher_internal:subscription_succeeded").await;
    grant
}

/// The next call event on `c`, parsed and checked against its channel like a real receiver does.
async fn next_call_event(c: &mut Client) -> (ChannelName, domvia_calls::event::CallEvent) {
    loop {
        // Long enough for the shortest ring timeout (5 s) plus delivery.
        let f = match c.next_within(Duration::from_secs(10)).await {
            common::Received::Frame(f) => f,
            common::Received::Closed(code) => {
                panic!("closed ({code:?}) while waiting for a call event")
            }
        };
        if !f["event"].as_str().unwrap().contains("call.") {
            continue;
        }
        let frame = Frame::parse(f.to_string().as_bytes(), &FrameLimits::default()).unwrap();
        let (channel, incoming) =
            parse_frame(&frame).unwrap_or_else(|e| panic!("invalid call event {f}: {e}"));
        let Incoming::Clear(event) = incoming else {
            panic!("sealed")
        };
        return (channel, event);
    }
}

fn client_event_data(call_id: &str, party: &str, user: &str, seq: u64, extra: Value) -> Value {
    let mut d = json!({"v": 1, "call_id": call_id, "party_id": party, "user_id": user, "seq": seq, "sent_at_ms": unix_ms()});
    d.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    d
}

async fn wait_for_state(trusted: SocketAddr, token: &str, call_id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = get(trusted, &format!("/calls/{call_id}"), token).await;
        if status == 200 && v["call"]["state"] == state {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call {call_id} never became {state}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn every_authorization_rule_over_http() {
    let s = start_stack("auth", false).await;
    let t = s.trusted.addr();
    let call = create_call(
        t,
        "alice-token",
        json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"]}),
    )
    .await;
    let channel = call["channel"].as_str().unwrap();
    let call_id = call["call_id"].as_str().unwrap();
    assert!(channel.starts_with("presence-call.room.chat-room-42."));

    for as_json in [false, true] {
        let (status, grant) = auth(t, Some("bob-token"), "1.2", channel, as_json).await;
        assert_eq!(status, 200, "{grant}");
        let cd = grant["channel_data"].as_str().unwrap();
        signing::verify_channel(
            DEV_KEY,
            &Secret::new(DEV_SECRET),
            &SocketId::parse("1.2").unwrap(),
            channel,
            Some(cd),
            grant["auth"].as_str().unwrap(),
        )
        .expect("the grant verifies");
    }
    let refused: Vec<(Option<&str>, String, &str)> = vec![
        (None, channel.to_owned(), "auth.not_signed_in"),
        (
            Some("wrong-token"),
            channel.to_owned(),
            "auth.not_signed_in",
        ),
        (Some("dave-token"), channel.to_owned(), "auth.not_a_member"),
        (Some("carol-token"), channel.to_owned(), "auth.unknown_call"),
        (
            Some("bob-token"),
            format!("presence-call.trip.trip-7.{call_id}"),
            "auth.not_a_member",
        ),
        (
            Some("dave-token"),
            format!("presence-call.trip.trip-7.{call_id}"),
            "auth.unknown_call",
        ),
        (
            Some("carol-token"),
            format!("private-call.room.chat-room-42.{call_id}"),
            "auth.unknown_call",
        ),
        (
            Some("bob-token"),
            format!("private-call.room.chat-room-42.{call_id}"),
            "auth.wrong_channel",
        ),
        (
            Some("bob-token"),
            "presence-call.room.chat-room-42.no-such-call".into(),
            "auth.unknown_call",
        ),
        (
            Some("bob-token"),
            "presence-call.room.chat-room-42".into(),
            "auth.malformed_channel",
        ),
        (
            Some("bob-token"),
            "private-somethingelse".into(),
            "auth.malformed_channel",
        ),
        (
            Some("bob-token"),
            "private-call-inbox.alice".into(),
            "auth.not_your_inbox",
        ),
    ];
    for (token, ch, code) in refused {
        let (status, body) = auth(t, token, "1.2", &ch, false).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some(code)),
            "{token:?} {ch}: {body}"
        );
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    let (status, body) = auth(t, Some("bob-token"), "nope", channel, false).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("auth.bad_socket_id"))
    );
    let (status, _) = auth(t, Some("bob-token"), "1.2", "private-call-inbox.bob", true).await;
    assert_eq!(status, 200);
    let (status, body) = post(
        t,
        "/realtime/auth",
        Some("bob-token"),
        "application/json",
        "{}".into(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("auth.bad_request"))
    );

    // Starting calls has its own rules.
    let (status, body) = post(
        t,
        "/calls",
        Some("dave-token"),
        "application/json",
        json!({"scope": "room", "scope_id": "chat-room-42"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("call.caller_not_member"))
    );
    let (status, _) = post(t, "/calls", None, "application/json", "{}".into()).await;
    assert_eq!(status, 401);
    let (status, body) = post(
        t,
        "/calls",
        Some("alice-token"),
        "application/json",
        json!({"scope": "room", "scope_id": "chat-room-42", "ring_timeout_ms": 1}).to_string(),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("call.invalid")));
    s.shutdown().await;
}

#[tokio::test]
async fn strong_privacy_calls_hand_members_the_channel_key() {
    let s = start_stack("strong", false).await;
    let t = s.trusted.addr();
    let call = create_call(t, "alice-token", json!({"scope": "trip", "scope_id": "trip-7", "callees": ["dave"], "privacy": "strong", "kind": "private"})).await;
    let channel = call["channel"].as_str().unwrap();
    let (_, a) = auth(t, Some("alice-token"), "1.2", channel, false).await;
    let (_, d) = auth(t, Some("dave-token"), "3.4", channel, false).await;
    let key = a["shared_secret"]
        .as_str()
        .expect("strong calls carry shared_secret");
    assert_eq!(
        Some(key),
        d["shared_secret"].as_str(),
        "both members get the same key"
    );
    assert!(a.get("channel_data").is_none(), "private channel");
    s.shutdown().await;
}

#[tokio::test]
async fn invitation_reaches_the_inbox_and_the_ring_timeout_records_a_missed_call() {
    let s = start_stack("ring", true).await;
    let (r, t) = (s.realtime.addr(), s.trusted.addr());
    let mut bob = dev_client(r).await;
    join(&mut bob, t, "bob-token", "private-call-inbox.bob").await;

    let call = create_call(t, "alice-token", json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"], "ring_timeout_ms": 5000})).await;
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    let channel = call["channel"].as_str().unwrap().to_owned();
    // ICE servers: STUN, and TURN with a REST credential that coturn would accept.
    let turn = &call["ice_servers"][1];
    let now = unix_ms() / 1000;
    let user = signing::verify_turn_credential(
        &Secret::new("turn-secret"),
        turn["username"].as_str().unwrap(),
        turn["credential"].as_str().unwrap(),
        now,
    )
    .expect("a valid TURN credential");
    assert_eq!(user, "alice");

    let (inbox, invitation) = next_call_event(&mut bob).await;
    assert!(matches!(inbox, ChannelName::Inbox(_)));
    assert_eq!(invitation.wire_name(), "call.started");
    let EventBody::Started(started) = invitation.body() else {
        panic!()
    };
    assert_eq!(started.channel.to_string(), channel);
    assert_eq!(started.ring_timeout_ms.get(), 5000);

    join(&mut bob, t, "bob-token", &channel).await;
    let (_, ended) = next_call_event(&mut bob).await;
    assert_eq!(ended.kind(), EventKind::Ended);
    assert!(ended.header().party_id.is_server());
    assert_eq!(ended.header().seq.get(), 2);
    let EventBody::Ended(body) = ended.body() else {
        panic!()
    };
    assert_eq!(format!("{:?}", body.reason), "NoAnswer");

    let (_, missed) = get(t, "/calls/missed", "bob-token").await;
    assert_eq!(missed["missed"][0]["call_id"], call_id.as_str());
    assert_eq!(missed["missed"][0]["reason"], "no_answer");
    let (_, history) = get(t, "/calls/history", "alice-token").await;
    assert_eq!(history["calls"][0]["state"], "ended");
    assert_eq!(history["calls"][0]["role"], "caller");
    let (_, none) = get(t, "/calls/missed", "alice-token").await;
    assert_eq!(none["missed"], json!([]));
    s.shutdown().await;
}

#[tokio::test]
async fn real_client_events_drive_the_call_log() {
    let s = start_stack("log", false).await;
    let (r, t) = (s.realtime.addr(), s.trusted.addr());
    let call = create_call(
        t,
        "alice-token",
        json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"]}),
    )
    .await;
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    let channel = call["channel"].as_str().unwrap().to_owned();
    let mut alice = dev_client(r).await;
    let mut bob = dev_client(r).await;
    join(&mut alice, t, "alice-token", &channel).await;
    join(&mut bob, t, "bob-token", &channel).await;
    alice.expect("pusher_internal:member_added").await;

    let accepted = client_event_data(&call_id, "bob-laptop-1", "bob", 1, json!({}));
    bob.send(json!({"event": "client-call.accepted", "channel": channel, "data": accepted}))
        .await;
    let v = wait_for_state(t, "bob-token", &call_id, "active").await;
    assert_eq!(v["call"]["accepted_by"], "bob");

    let ended = client_event_data(
        &call_id,
        "alice-phone-1",
        "alice",
        1,
        json!({"reason": "hangup"}),
    );
    alice
        .send(json!({"event": "client-call.ended", "channel": channel, "data": ended}))
        .await;
    let v = wait_for_state(t, "alice-token", &call_id, "ended").await;
    assert_eq!(v["call"]["end_reason"], "hangup");
    let kinds: Vec<&str> = v["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"joined") && kinds.contains(&"accepted") && kinds.contains(&"ended"),
        "{kinds:?}"
    );
    let (_, missed) = get(t, "/calls/missed", "bob-token").await;
    assert_eq!(
        missed["missed"],
        json!([]),
        "an answered call is not missed"
    );
    // Nobody outside the call can read it.
    let (status, _) = get(t, &format!("/calls/{call_id}"), "dave-token").await;
    assert_eq!(status, 404);
    s.shutdown().await;
}

fn signed_webhook(body: &str, key: &str) -> (String, String) {
    (
        key.to_owned(),
        signing::sign_webhook(&Secret::new(DEV_SECRET), body.as_bytes()),
    )
}

async fn deliver(t: SocketAddr, body: &str, key: &str, signature: &str) -> (u16, Value) {
    let resp = domvia_calls::net::http_client()
        .post(format!("http://{t}/realtime/webhooks"))
        .header("content-type", "application/json")
        .header("x-pusher-key", key)
        .header("x-pusher-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// A webhook delivery reporting the client event `event` (with `extra` body members) that `user`
/// sent on the presence call `channel`, as the realtime server reports it: the server-added
/// `user_id` beside a full, valid call event.
fn webhook_body(channel: &str, event: &str, extra: Value, user: &str, time_ms: u64) -> String {
    let call_id = channel.rsplit('.').next().unwrap();
    let data = client_event_data(call_id, &format!("{user}-device-1"), user, 1, extra);
    json!({"time_ms": time_ms, "events": [{"name": "client_event", "channel": channel, "event": event, "data": data.to_string(), "socket_id": "1.2", "user_id": user}]}).to_string()
}

#[tokio::test]
async fn forged_stale_and_replayed_webhooks_change_nothing() {
    let s = start_stack("forgery", false).await;
    let t = s.trusted.addr();
    let call = create_call(
        t,
        "alice-token",
        json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"]}),
    )
    .await;
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    let channel = call["channel"].as_str().unwrap().to_owned();

    let ended = webhook_body(
        &channel,
        "client-call.ended",
        json!({"reason": "hangup"}),
        "alice",
        unix_ms(),
    );
    let (_, good_sig) = signed_webhook(&ended, DEV_KEY);
    let forged_sig = signing::sign_webhook(&Secret::new("not-the-secret"), ended.as_bytes());
    let (status, body) = deliver(t, &ended, DEV_KEY, &forged_sig).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("signature.mismatch"))
    );
    let (status, body) = deliver(t, &ended, "other-key", &good_sig).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("signature.wrong_key"))
    );
    let stale = webhook_body(
        &channel,
        "client-call.ended",
        json!({"reason": "hangup"}),
        "alice",
        unix_ms() - 10 * 60 * 1000,
    );
    let (_, stale_sig) = signed_webhook(&stale, DEV_KEY);
    let (status, body) = deliver(t, &stale, DEV_KEY, &stale_sig).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("webhook.stale"))
    );
    let (_, v) = get(t, &format!("/calls/{call_id}"), "alice-token").await;
    assert_eq!(
        v["call"]["state"], "ringing",
        "no refused delivery changed the call"
    );

    let accepted = webhook_body(
        &channel,
        "client-call.accepted",
        json!({}),
        "bob",
        unix_ms(),
    );
    let (_, sig) = signed_webhook(&accepted, DEV_KEY);
    assert_eq!(deliver(t, &accepted, DEV_KEY, &sig).await.0, 200);
    let (status, body) = deliver(t, &accepted, DEV_KEY, &sig).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("webhook.replayed"))
    );
    let (_, v) = get(t, &format!("/calls/{call_id}"), "alice-token").await;
    assert_eq!(v["call"]["state"], "active");
    assert_eq!(
        v["log"].as_array().unwrap().len(),
        1,
        "the replay added nothing: {v}"
    );
    s.shutdown().await;
}

/// A `domvia-calls serve` child process and the addresses it announced, in order.
struct ServeProcess {
    child: Child,
    addrs: Vec<SocketAddr>,
}

impl ServeProcess {
    /// Starts `serve` with `args` and waits for `servers` "listening on" lines.
    fn spawn(args: &[&str], servers: usize) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = Vec::new();
        while addrs.len() < servers {
            let line = lines.next().expect("server output").unwrap();
            if let Some((_, rest)) = line.split_once(" server listening on ") {
                addrs.push(rest.trim().parse::<SocketAddr>().unwrap());
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        ServeProcess { child, addrs }
    }

    /// Both roles on ephemeral ports with their data in `data_dir`.
    fn both(data_dir: &std::path::Path) -> ServeProcess {
        let dir = data_dir.to_str().unwrap();
        Self::spawn(
            &[
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--trusted-bind",
                "127.0.0.1:0",
                "--data-dir",
                dir,
            ],
            2,
        )
    }

    fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[tokio::test]
async fn sigkill_while_ringing_and_while_active_loses_nothing() {
    let data = common::temp_dir("crash");
    let first = ServeProcess::both(&data);
    let t = first.addrs[1];
    let ringing = create_call(t, "alice-token", json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"], "ring_timeout_ms": 5000})).await;
    let active = create_call(
        t,
        "alice-token",
        json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["carol"]}),
    )
    .await;
    let accepted = webhook_body(
        active["channel"].as_str().unwrap(),
        "client-call.accepted",
        json!({}),
        "carol",
        unix_ms(),
    );
    let (_, sig) = signed_webhook(&accepted, DEV_KEY);
    assert_eq!(deliver(t, &accepted, DEV_KEY, &sig).await.0, 200);
    first.sigkill();

    let second = ServeProcess::both(&data);
    assert_ne!(second.addrs[1], t);
    let t = second.addrs[1];
    let v = wait_for_state(
        t,
        "carol-token",
        active["call_id"].as_str().unwrap(),
        "active",
    )
    .await;
    assert_eq!(
        v["call"]["accepted_by"], "carol",
        "the active call survived"
    );
    let v = wait_for_state(
        t,
        "bob-token",
        ringing["call_id"].as_str().unwrap(),
        "ended",
    )
    .await;
    assert_eq!(
        v["call"]["end_reason"], "no_answer",
        "the ring timeout still fired after the restart"
    );
    let (_, missed) = get(t, "/calls/missed", "bob-token").await;
    assert_eq!(missed["missed"][0]["call_id"], ringing["call_id"]);
    let (_, history) = get(t, "/calls/history", "alice-token").await;
    assert_eq!(
        history["calls"].as_array().unwrap().len(),
        2,
        "both records survived"
    );
    // The realtime side of the restarted process serves clients again.
    let _ = dev_client(second.addrs[0]).await;
    second.sigkill();
    std::fs::remove_dir_all(data).unwrap();
}

#[tokio::test]
async fn each_role_runs_alone() {
    let data = common::temp_dir("roles");
    let realtime =
        ServeProcess::spawn(&["serve", "--role", "realtime", "--bind", "127.0.0.1:0"], 1);
    let r = realtime.addrs[0];
    let api = format!("http://{r}");
    let dir = data.to_str().unwrap();
    let trusted = ServeProcess::spawn(
        &[
            "serve",
            "--role",
            "trusted",
            "--trusted-bind",
            "127.0.0.1:0",
            "--realtime-api-url",
            &api,
            "--data-dir",
            dir,
        ],
        1,
    );
    let t = trusted.addrs[0];
    // The separate trusted server signs for the separate realtime server, and reaches its API.
    let mut bob = dev_client(r).await;
    join(&mut bob, t, "bob-token", "private-call-inbox.bob").await;
    create_call(
        t,
        "alice-token",
        json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"]}),
    )
    .await;
    let (_, invitation) = next_call_event(&mut bob).await;
    assert_eq!(invitation.wire_name(), "call.started");
    realtime.sigkill();
    trusted.sigkill();
    std::fs::remove_dir_all(data).unwrap();
}
