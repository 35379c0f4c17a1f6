//! The trusted server under misuse, over real HTTP: call creation rate-limited per user with
//! `Retry-After`, `Idempotency-Key` replays, paged history, a scope-wide call bounded, a forged
//! acceptance on a private channel ignored while the user's own request counts, and a webhook
//! retried after its answer was lost applied exactly once.
#![cfg(feature = "trusted")]

mod common;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use domvia_calls::signing::{self, Secret};
use domvia_calls::stack::{self, RunningStack, StackConfig};
use domvia_calls::trusted::Directory;
use serde_json::{Value, json};

async fn start(
    tag: &str,
    per_minute: u32,
    burst: u32,
    directory: Option<Directory>,
) -> RunningStack {
    let mut cfg = StackConfig::development(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.trusted.data_dir = common::temp_dir(tag);
    cfg.trusted.calls_per_minute = per_minute;
    cfg.trusted.call_burst = burst;
    cfg.trusted.directory = directory;
    stack::start(cfg).await.expect("stack starts")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A request; returns status, answer and the headers that matter here.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let client = domvia_calls::net::http_client();
    let url = format!("http://{addr}{path}");
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    }
    .header("authorization", format!("Bearer {token}"));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

fn room_call(callees: &[&str]) -> Value {
    json!({"scope": "room", "scope_id": "chat-room-42", "callees": callees})
}

#[tokio::test]
async fn call_creation_is_rate_limited_and_idempotent() {
    let s = start("hardening-rate", 6, 3, None).await;
    let t = s.trusted.addr();
    // A client that retries after losing the 201 gets the same call, not a second one.
    let key = [("idempotency-key", "place-1")];
    let (status, first, _) = request(
        t,
        "POST",
        "/calls",
        "alice-token",
        Some(room_call(&["bob"])),
        &key,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let (status, again, headers) = request(
        t,
        "POST",
        "/calls",
        "alice-token",
        Some(room_call(&["bob"])),
        &key,
    )
    .await;
    assert_eq!((status, &again), (201, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, reused, _) = request(
        t,
        "POST",
        "/calls",
        "alice-token",
        Some(room_call(&[])),
        &key,
    )
    .await;
    assert_eq!(
        (status, reused["code"].as_str()),
        (422, Some("call.idempotency_key_reused"))
    );
    // The same key is another user's own.
    let (status, bobs, _) = request(
        t,
        "POST",
        "/calls",
        "bob-token",
        Some(room_call(&["alice"])),
        &key,
    )
    .await;
    assert_eq!(status, 201);
    assert_ne!(bobs["call_id"], first["call_id"]);

    // Burst of 3 (the first call used one; replays used none), then 429 with Retry-After.
    for _ in 0..2 {
        let (status, _, _) = request(
            t,
            "POST",
            "/calls",
            "alice-token",
            Some(room_call(&["bob"])),
            &[],
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, limited, headers) = request(
        t,
        "POST",
        "/calls",
        "alice-token",
        Some(room_call(&["bob"])),
        &[],
    )
    .await;
    assert_eq!(
        (status, limited["code"].as_str()),
        (429, Some("call.rate_limited"))
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    // Three calls created by alice, not four or five.
    let (_, history, _) = request(
        t,
        "GET",
        "/calls/history?limit=200",
        "alice-token",
        None,
        &[],
    )
    .await;
    let placed = history["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "caller")
        .count();
    assert_eq!(placed, 3);
    s.shutdown().await;
}

#[tokio::test]
async fn history_comes_in_pages_and_scope_wide_calls_are_bounded() {
    // A room of 300 members: calling it as a whole would invite 299.
    let mut fixture = String::new();
    let mut members = Vec::new();
    for i in 0..300 {
        fixture.push_str(&format!(
            "[[users]]\nid = \"u{i}\"\nname = \"U{i}\"\ntoken = \"u{i}-token\"\n"
        ));
        members.push(format!("\"u{i}\""));
    }
    fixture.push_str(&format!(
        "[scopes.room]\n\"big\" = [{}]\n",
        members.join(", ")
    ));
    let dir: Directory = toml::from_str(&fixture).unwrap();
    let s = start("hardening-pages", 600, 100, Some(dir)).await;
    let t = s.trusted.addr();
    let big = |callees: &[&str]| json!({"scope": "room", "scope_id": "big", "callees": callees});
    let (status, refused, _) = request(t, "POST", "/calls", "u0-token", Some(big(&[])), &[]).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (400, Some("call.too_many_invitees"))
    );
    for i in 1..=7 {
        let callee = format!("u{i}");
        let (status, _, _) =
            request(t, "POST", "/calls", "u0-token", Some(big(&[&callee])), &[]).await;
        assert_eq!(status, 201);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/calls/history?limit=3&cursor={cursor}");
        let (status, page, _) = request(t, "GET", &path, "u0-token", None, &[]).await;
        assert_eq!(status, 200, "{page}");
        let calls = page["calls"].as_array().unwrap();
        assert!(calls.len() <= 3);
        seen.extend(
            calls
                .iter()
                .map(|c| c["call_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (7, 7),
        "every call once: {seen:?}"
    );
    for bad in ["limit=0", "limit=201", "cursor=garbage"] {
        let (status, v, _) = request(
            t,
            "GET",
            &format!("/calls/history?{bad}"),
            "u0-token",
            None,
            &[],
        )
        .await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
    s.shutdown().await;
}

fn deliver_body(
    channel: &str,
    call_id: &str,
    event: &str,
    sender: &str,
    verified: Option<&str>,
    extra: Value,
) -> String {
    let mut data = json!({"v": 1, "call_id": call_id, "party_id": format!("{sender}-device-1"),
        "user_id": sender, "seq": 1, "sent_at_ms": 0});
    data.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut ev = json!({"name": "client_event", "channel": channel, "event": event,
        "data": data.to_string(), "socket_id": "1.2"});
    if let Some(v) = verified {
        ev["user_id"] = json!(v);
    }
    json!({"time_ms": unix_ms(), "events": [ev]}).to_string()
}

async fn deliver(t: SocketAddr, body: &str) -> u16 {
    let sig = signing::sign_webhook(&Secret::new("domvia-secret"), body.as_bytes());
    domvia_calls::net::http_client()
        .post(format!("http://{t}/realtime/webhooks"))
        .header("content-type", "application/json")
        .header("x-pusher-key", "domvia-key")
        .header("x-pusher-signature", sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn private_channel_calls_are_recorded_from_verified_identity_only() {
    let s = start("hardening-identity", 60, 10, None).await;
    let t = s.trusted.addr();
    let mut private = room_call(&["bob"]);
    private["kind"] = json!("private");
    let (_, call, _) = request(t, "POST", "/calls", "alice-token", Some(private), &[]).await;
    let (id, channel) = (
        call["call_id"].as_str().unwrap().to_owned(),
        call["channel"].as_str().unwrap().to_owned(),
    );
    assert!(channel.starts_with("private-call."));
    // The caller writes "bob" into an acceptance of his own: nobody verified it.
    let forged = deliver_body(
        &channel,
        &id,
        "client-call.accepted",
        "bob",
        None,
        json!({}),
    );
    assert_eq!(deliver(t, &forged).await, 200);
    let (_, v, _) = request(t, "GET", &format!("/calls/{id}"), "alice-token", None, &[]).await;
    assert_eq!(v["call"]["state"], "ringing", "{v}");
    assert_eq!(v["log"][0]["kind"], "unverified");
    // Another user of the scope may not act on a call he is not part of.
    let (status, _, _) = request(
        t,
        "POST",
        &format!("/calls/{id}/accept"),
        "carol-token",
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    // Bob's own request is what counts; then alice's hang-up.
    let (status, v, _) = request(
        t,
        "POST",
        &format!("/calls/{id}/accept"),
        "bob-token",
        None,
        &[],
    )
    .await;
    assert_eq!((status, v["state"].as_str()), (200, Some("active")));
    let (status, v, _) = request(
        t,
        "POST",
        &format!("/calls/{id}/end"),
        "alice-token",
        Some(json!({"reason": "hangup"})),
        &[],
    )
    .await;
    assert_eq!((status, v["state"].as_str()), (200, Some("ended")));
    // Reports retried after a lost answer (SRV-025): successes that change nothing.
    let (_, before, _) = request(t, "GET", &format!("/calls/{id}"), "alice-token", None, &[]).await;
    for (path, token, body) in [
        ("accept", "bob-token", None),
        ("end", "alice-token", Some(json!({"reason": "hangup"}))),
        ("end", "bob-token", Some(json!({"reason": "hangup"}))),
    ] {
        let (status, v, _) =
            request(t, "POST", &format!("/calls/{id}/{path}"), token, body, &[]).await;
        assert_eq!(
            (status, v["state"].as_str()),
            (200, Some("ended")),
            "{path}"
        );
    }
    let (_, after, _) = request(t, "GET", &format!("/calls/{id}"), "alice-token", None, &[]).await;
    assert_eq!(after["call"], before["call"], "a repeat changed the record");
    let (_, missed, _) = request(t, "GET", "/calls/missed", "bob-token", None, &[]).await;
    assert!(
        missed["missed"].as_array().unwrap().is_empty(),
        "answered, not missed"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_webhook_retried_after_a_lost_answer_is_applied_once() {
    let s = start("hardening-retry", 60, 10, None).await;
    let t = s.trusted.addr();
    let (_, call, _) = request(
        t,
        "POST",
        "/calls",
        "alice-token",
        Some(room_call(&["bob"])),
        &[],
    )
    .await;
    let (id, channel) = (
        call["call_id"].as_str().unwrap().to_owned(),
        call["channel"].as_str().unwrap().to_owned(),
    );
    let accepted = deliver_body(
        &channel,
        &id,
        "client-call.accepted",
        "bob",
        Some("bob"),
        json!({}),
    );
    // The first attempt is applied; its answer is "lost" and the realtime server sends the same
    // body again: refused as already applied, and nothing is applied twice.
    assert_eq!(deliver(t, &accepted).await, 200);
    assert_eq!(deliver(t, &accepted).await, 409);
    let (_, v, _) = request(t, "GET", &format!("/calls/{id}"), "alice-token", None, &[]).await;
    assert_eq!(v["call"]["state"], "active");
    let kinds: Vec<&str> = v["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["accepted"]);
    s.shutdown().await;
}

#[tokio::test]
async fn the_reference_client_records_a_private_channel_call_itself() {
    use domvia_calls::session::{Device, Inbox, Signaling};
    let s = start("hardening-client", 60, 10, None).await;
    let (r, t) = (s.realtime.addr(), s.trusted.addr());
    let device = |user: &str| {
        Device::new(
            &format!("ws://{r}/app/domvia-key"),
            &format!("http://{t}"),
            &format!("{user}-token"),
            user,
        )
        .unwrap()
    };
    // A request the client cannot read is refused before anything is created on the server.
    let mut bad = room_call(&["bob"]);
    bad["media"] = json!("loud");
    let refused = Signaling::place(&device("alice"), bad).await.err();
    assert!(
        matches!(
            refused,
            Some(domvia_calls::session::SessionError::InvalidRequest(_))
        ),
        "{refused:?}"
    );
    let (_, history, _) = request(t, "GET", "/calls/history", "alice-token", None, &[]).await;
    assert_eq!(history["calls"], json!([]), "no call was created");
    let inbox = Inbox::open(&device("bob")).await.unwrap();
    let mut placement = room_call(&["bob"]);
    placement["kind"] = json!("private");
    let (mut alice, placed) = Signaling::place(&device("alice"), placement).await.unwrap();
    let mut bob = inbox
        .next_invitation(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    bob.accept().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !matches!(
        alice.next_event(deadline).await.unwrap(),
        Some(domvia_calls::call::Action::CreateOffer { .. }) | None
    ) {}
    alice.hang_up().unwrap();
    let path = format!("/calls/{}", placed.call_id);
    let mut last = Value::Null;
    for _ in 0..50 {
        let (_, v, _) = request(t, "GET", &path, "alice-token", None, &[]).await;
        last = v;
        if last["call"]["state"] == "ended" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        (
            last["call"]["accepted_by"].as_str(),
            last["call"]["end_reason"].as_str()
        ),
        (Some("bob"), Some("hangup")),
        "{last}"
    );
    alice.close().await;
    bob.close().await;
    s.shutdown().await;
}
