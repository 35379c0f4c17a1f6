//! The reference realtime server over real sockets: Pusher protocol 7 connection rules, channels,
//! presence, client events and their limits, the HTTP API, webhooks, slow consumers and shutdown.
//! Negative cases use a marker event instead of a silence window: the server handles one
//! connection's frames in order, so "the marker arrives first" proves nothing came before it.
#![cfg(feature = "server")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{APP_ID, Client, KEY, Received, SECRET, WAIT, app, http_api, start, start_with};
use domvia_calls::signing::{self, Secret};
use serde_json::{Value, json};

fn client_event(channel: &str, n: u64) -> Value {
    json!({ "event": "client-call.ringing", "channel": channel, "data": { "n": n } })
}

#[tokio::test]
async fn connection_established_carries_socket_id_timeout_and_limits() {
    let server = start().await;
    let ws = Client::raw(server.addr(), &format!("/app/{KEY}?protocol=7")).await;
    let mut c = Client {
        ws,
        socket_id: String::new(),
    };
    let f = c.expect("pusher:connection_established").await;
    let data: Value =
        serde_json::from_str(f["data"].as_str().expect("data is a JSON string")).unwrap();
    assert!(data["socket_id"].as_str().unwrap().contains('.'));
    assert_eq!(data["activity_timeout"], 120);
    assert_eq!(
        data["limits"],
        json!({"client_events_per_second": 10, "max_event_bytes": 10240})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_close_with_pusher_codes() {
    let server = start().await;
    for (path, code) in [
        ("/app/unknown-key?protocol=7", 4001),
        (&format!("/app/{KEY}")[..], 4008),
        (&format!("/app/{KEY}?protocol=x")[..], 4006),
        (&format!("/app/{KEY}?protocol=4")[..], 4007),
    ] {
        let ws = Client::raw(server.addr(), path).await;
        let mut c = Client {
            ws,
            socket_id: String::new(),
        };
        let err = c.expect_error().await;
        assert_eq!(err["code"], code, "{path}");
        assert!(!err["message"].as_str().unwrap().is_empty());
        assert_eq!(c.expect_close().await, Some(code), "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn ping_pong_and_idle_connections_are_closed_with_4201() {
    let mut cfg = app();
    cfg.activity_timeout_secs = 1;
    cfg.pong_timeout_secs = 1;
    let server = start_with(vec![cfg], 64).await;
    let mut c = Client::connect(server.addr()).await;
    c.send(json!({"event": "pusher:ping", "data": {}})).await;
    c.expect("pusher:pong").await;
    // Silent client: the server pings, then gives up.
    c.expect("pusher:ping").await;
    assert_eq!(c.expect_close().await, Some(4201));
    server.shutdown().await;
}

#[tokio::test]
async fn private_channels_need_a_signature_for_this_socket_and_channel() {
    let server = start().await;
    let mut a = Client::connect(server.addr()).await;
    let mut b = Client::connect(server.addr()).await;
    let ch = "private-call.room.r1.call-1";
    a.subscribe(ch, None).await;

    let borrowed = a.auth(ch, None);
    b.send(json!({"event": "pusher:subscribe", "data": {"channel": ch, "auth": borrowed}}))
        .await;
    let f = b.expect("pusher:subscription_error").await;
    assert_eq!(f["channel"], ch);
    let data: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        (data["type"].as_str(), data["status"].as_u64()),
        (Some("AuthError"), Some(401))
    );

    let other_channel = b.auth("private-call.room.r1.call-2", None);
    b.send(json!({"event": "pusher:subscribe", "data": {"channel": ch, "auth": other_channel}}))
        .await;
    b.expect("pusher:subscription_error").await;

    // b is not subscribed, so a's client events do not reach it and b's are refused.
    b.send(client_event(ch, 1)).await;
    let err = b.expect_error().await;
    assert_eq!(
        (err["code"].as_u64(), err["type"].as_str()),
        (Some(4009), Some("client_event.not_subscribed"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_events_reach_others_unchanged_and_never_echo() {
    let server = start().await;
    let ch = "private-call.room.r1.call-1";
    let (mut a, mut b) = Client::pair(server.addr(), ch).await;
    let raw = r#"{"event":"client-call.offer","channel":"private-call.room.r1.call-1","data":{"z":"last","a":1.50,"sdp":"v=0\r\n"}}"#;
    a.send_text(raw).await;
    let got = b.next_frame().await;
    assert_eq!(
        got.to_string(),
        serde_json::from_str::<Value>(raw).unwrap().to_string()
    );
    // Marker from b: it must be the next thing a sees (no echo of a's own event before it).
    b.send(client_event(ch, 99)).await;
    let next = a.next_frame().await;
    assert_eq!(next["data"]["n"], 99, "a received {next} before the marker");
    server.shutdown().await;
}

#[tokio::test]
async fn client_events_on_public_channels_are_refused() {
    let server = start().await;
    let mut a = Client::connect(server.addr()).await;
    let mut b = Client::connect(server.addr()).await;
    a.subscribe("public-lobby", None).await;
    b.subscribe("public-lobby", None).await;
    a.send(client_event("public-lobby", 1)).await;
    let err = a.expect_error().await;
    assert_eq!(err["type"], "client_event.public_channel");
    // b sees nothing from it: an HTTP-triggered marker arrives first.
    let (status, _) = http_api(
        server.addr(),
        "POST",
        &format!("/apps/{APP_ID}/events"),
        "",
        &json!({"name": "marker", "channel": "public-lobby", "data": "{}"}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(b.next_frame().await["event"], "marker");
    server.shutdown().await;
}

#[tokio::test]
async fn presence_members_once_per_user_and_verified_user_id_on_events() {
    let server = start().await;
    let ch = "presence-call.room.r1.call-1";
    let mut alice = Client::connect(server.addr()).await;
    let mut bob1 = Client::connect(server.addr()).await;
    let mut bob2 = Client::connect(server.addr()).await;
    alice.subscribe(ch, Some("alice")).await;
    let joined = bob1.subscribe(ch, Some("bob")).await;
    assert_eq!(joined["presence"]["count"], 2);
    assert_eq!(joined["presence"]["ids"], json!(["alice", "bob"]));
    let added = alice.expect("pusher_internal:member_added").await;
    let data: Value = serde_json::from_str(added["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["user_id"], "bob");

    // bob's second tab: no second member_added. bob1 sends a marker; alice must see it next.
    bob2.subscribe(ch, Some("bob")).await;
    let mut marker = client_event(ch, 7);
    marker["user_id"] = json!("mallory");
    bob1.send(marker).await;
    let got = alice.next_frame().await;
    assert_eq!(
        got["event"], "client-call.ringing",
        "expected the marker, got {got}"
    );
    assert_eq!(
        got["user_id"], "bob",
        "the server adds the verified user_id"
    );

    // Closing one of bob's tabs removes nobody; closing the last removes bob once.
    bob2.close().await;
    bob1.close().await;
    let removed = alice.expect("pusher_internal:member_removed").await;
    let data: Value = serde_json::from_str(removed["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["user_id"], "bob");
    server.shutdown().await;
}

#[tokio::test]
async fn tampered_presence_channel_data_is_refused() {
    let server = start().await;
    let ch = "presence-call.room.r1.call-1";
    let mut c = Client::connect(server.addr()).await;
    let auth = c.auth(ch, Some(r#"{"user_id":"alice"}"#));
    c.send(json!({"event": "pusher:subscribe", "data": {"channel": ch, "auth": auth, "channel_data": r#"{"user_id":"admin"}"#}}))
        .await;
    c.expect("pusher:subscription_error").await;
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_relays_exactly_the_burst_and_keeps_the_connection() {
    let server = start().await;
    let ch = "private-call.room.r1.call-1";
    let (mut a, mut b) = Client::pair(server.addr(), ch).await;
    for n in 0..30 {
        a.send(client_event(ch, n)).await;
    }
    let mut limited = 0;
    for _ in 0..30 {
        let e = a.next_frame().await;
        // Only refusals come back to the sender; every one must be 4301.
        assert_eq!(e["event"], "pusher:error");
        let data = &e["data"];
        if data["code"] == 4301 {
            limited += 1;
        }
        if limited == 20 {
            break;
        }
    }
    // The sender is still connected and subscribed: a marker from b reaches it.
    b.send(client_event(ch, 1000)).await;
    assert_eq!(a.next_frame().await["data"]["n"], 1000);
    // b received the events that were within the burst, in order, then nothing else.
    let mut relayed = Vec::new();
    a.send(json!({"event": "pusher:ping", "data": {}})).await;
    a.expect("pusher:pong").await;
    // A marker from the HTTP API closes b's stream of relayed events.
    http_api(
        server.addr(),
        "POST",
        &format!("/apps/{APP_ID}/events"),
        "",
        &json!({"name": "marker", "channel": ch, "data": "{}"}).to_string(),
    )
    .await;
    loop {
        let f = b.next_frame().await;
        if f["event"] == "marker" {
            break;
        }
        relayed.push(f["data"]["n"].as_u64().unwrap());
    }
    assert_eq!(limited, 20);
    assert_eq!(relayed.len(), 10, "relayed {relayed:?}");
    assert_eq!(relayed, (0..10).collect::<Vec<u64>>());
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_input_gets_typed_errors_and_hurts_no_one() {
    let server = start().await;
    let ch = "private-call.room.r1.call-1";
    let (mut a, mut b) = Client::pair(server.addr(), ch).await;
    for (input, kind) in [
        ("{not json", "frame.not_json"),
        ("[1,2]", "frame.not_object"),
        (r#"{"channel":"x"}"#, "frame.missing_event"),
        (r#"{"event":"hello"}"#, "event.unsupported"),
    ] {
        a.send_text(input).await;
        assert_eq!(a.expect_error().await["type"], kind, "{input}");
    }
    a.send_binary(&[0, 159, 146, 150]).await;
    assert_eq!(a.expect_error().await["type"], "frame.binary");
    let big = json!({"event": "client-x", "channel": ch, "data": {"pad": "a".repeat(10_300)}});
    a.send(big).await;
    assert_eq!(a.expect_error().await["type"], "frame.data_too_large");
    a.send(client_event(ch, 1)).await;
    assert_eq!(
        b.next_frame().await["data"]["n"],
        1,
        "the connection still works"
    );
    // A message past the WebSocket limit ends only that socket.
    let mut c = Client::connect(server.addr()).await;
    c.send_text(&"x".repeat(300 * 1024)).await;
    assert!(matches!(c.next().await, Received::Closed(_)));
    let mut d = Client::connect(server.addr()).await;
    d.subscribe(ch, None).await;
    a.send(client_event(ch, 2)).await;
    assert_eq!(
        d.next_frame().await["data"]["n"],
        2,
        "new connections still work"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn http_api_triggers_and_queries() {
    let server = start().await;
    let ch = "presence-call.room.r1.call-1";
    let mut a = Client::connect(server.addr()).await;
    let mut b = Client::connect(server.addr()).await;
    a.subscribe(ch, Some("alice")).await;
    b.subscribe(ch, Some("bob")).await;
    a.expect("pusher_internal:member_added").await;
    let body = json!({"name": "call.started", "channels": [ch], "data": "{\"v\":1}", "socket_id": a.socket_id});
    let (status, _) = http_api(
        server.addr(),
        "POST",
        &format!("/apps/{APP_ID}/events"),
        "",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let f = b.expect("call.started").await;
    assert_eq!(f["data"], "{\"v\":1}");
    let batch = json!({"batch": [{"name": "e1", "channel": ch, "data": "1"}, {"name": "e2", "channel": ch, "data": "2"}]});
    let (status, _) = http_api(
        server.addr(),
        "POST",
        &format!("/apps/{APP_ID}/batch_events"),
        "",
        &batch.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        a.expect("e1").await["data"],
        "1",
        "a was excluded only from the first event"
    );
    a.expect("e2").await;

    let (_, channels) = http_api(
        server.addr(),
        "GET",
        &format!("/apps/{APP_ID}/channels"),
        "filter_by_prefix=presence-&info=user_count",
        "",
    )
    .await;
    assert_eq!(channels, json!({"channels": {ch: {"user_count": 2}}}));
    let (_, users) = http_api(
        server.addr(),
        "GET",
        &format!("/apps/{APP_ID}/channels/{ch}/users"),
        "",
        "",
    )
    .await;
    assert_eq!(users, json!({"users": [{"id": "alice"}, {"id": "bob"}]}));
    let (_, info) = http_api(
        server.addr(),
        "GET",
        &format!("/apps/{APP_ID}/channels/{ch}"),
        "info=subscription_count",
        "",
    )
    .await;
    assert_eq!(info, json!({"occupied": true, "subscription_count": 2}));
    server.shutdown().await;
}

#[tokio::test]
async fn http_api_rejects_bad_requests_with_clear_errors() {
    let server = start().await;
    let path = format!("/apps/{APP_ID}/events");
    let too_big =
        json!({"name": "e", "channel": "private-a", "data": "x".repeat(10_241)}).to_string();
    let (status, body) = http_api(server.addr(), "POST", &path, "", &too_big).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("http.data_too_large"))
    );
    let (status, body) = http_api(server.addr(), "POST", &path, "", "{\"name\":").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("http.bad_body"))
    );

    // Unsigned, stale and tampered requests.
    let url = format!("http://{}{path}", server.addr());
    let client = domvia_calls::net::http_client();
    let resp = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body = r#"{"name":"e","channel":"private-a","data":"{}"}"#;
    let signed = signing::sign_http_request(
        KEY,
        &Secret::new(SECRET),
        "POST",
        &path,
        vec![],
        body.as_bytes(),
        1_000_000,
    );
    let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let resp = client
        .post(format!("{url}?{}", query.join("&")))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let text = resp.text().await.unwrap();
    assert!(text.contains("signature.stale_timestamp"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn webhooks_are_signed_batched_and_retried() {
    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let failures_left = Arc::new(Mutex::new(1));
    let sink = received.clone();
    let fail = failures_left.clone();
    let hooks = Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            let fail = fail.clone();
            async move {
                // The first delivery fails, to prove retries.
                let mut left = fail.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let key = headers["x-pusher-key"].to_str().unwrap();
                let sig = headers["x-pusher-signature"].to_str().unwrap();
                signing::verify_webhook(KEY, &Secret::new(SECRET), key, sig, &body)
                    .expect("signed webhook");
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert!(v["time_ms"].as_u64().unwrap() > 0);
                sink.lock()
                    .unwrap()
                    .extend(v["events"].as_array().unwrap().iter().cloned());
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hooks).await });

    let mut cfg = app();
    cfg.webhook_url = Some(format!("http://{hook_addr}/hooks"));
    let server = start_with(vec![cfg], 64).await;
    let ch = "presence-call.room.r1.call-1";
    let mut a = Client::connect(server.addr()).await;
    let mut b = Client::connect(server.addr()).await;
    a.subscribe(ch, Some("alice")).await;
    b.subscribe(ch, Some("bob")).await;
    b.send(client_event(ch, 5)).await;
    a.expect("pusher_internal:member_added").await;
    a.expect("client-call.ringing").await;
    b.close().await;
    a.expect("pusher_internal:member_removed").await;
    a.close().await;

    let wanted = [
        "channel_occupied",
        "member_added",
        "member_added",
        "client_event",
        "member_removed",
        "member_removed",
        "channel_vacated",
    ];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let names: Vec<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect();
        if names.len() >= wanted.len() {
            let mut sorted = names.clone();
            sorted.sort();
            let mut expected: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(sorted, expected);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhooks so far: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = received.lock().unwrap().clone();
    let client_event = events.iter().find(|e| e["name"] == "client_event").unwrap();
    assert_eq!(client_event["user_id"], "bob");
    assert_eq!(client_event["data"], "{\"n\":5}");
    assert_eq!(
        *failures_left.lock().unwrap(),
        0,
        "the failed delivery was retried"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn slow_consumers_are_disconnected_with_4100() {
    let server = start_with(vec![app()], 8).await;
    let ch = "private-call.room.r1.call-1";
    let mut slow = Client::connect(server.addr()).await;
    slow.subscribe(ch, None).await;
    let path = format!("/apps/{APP_ID}/batch_events");
    let payload = "p".repeat(10_000);
    let batch: Vec<Value> = (0..10)
        .map(|_| json!({"name": "bulk", "channel": ch, "data": payload}))
        .collect();
    let body = json!({ "batch": batch }).to_string();
    // Keep sending until the server drops the subscriber; the reader never reads meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        http_api(server.addr(), "POST", &path, "", &body).await;
        let (_, info) = http_api(
            server.addr(),
            "GET",
            &format!("/apps/{APP_ID}/channels/{ch}"),
            "info=subscription_count",
            "",
        )
        .await;
        if info["occupied"] == false {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow consumer was never dropped"
        );
    }
    assert_eq!(slow.expect_close().await, Some(4100));
    // Others are fine.
    let mut fresh = Client::connect(server.addr()).await;
    fresh.subscribe(ch, None).await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_with_4200() {
    let server = start().await;
    let mut c = Client::connect(server.addr()).await;
    let addr = server.addr();
    server.shutdown().await;
    assert_eq!(c.expect_close().await, Some(4200));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// A raw WebSocket client on TCP: the upgrade done by hand, then any bytes, masked or not.
async fn raw_websocket(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /app/{}?protocol=7 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        common::KEY
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // The 101 answer, then connection_established: read until the first frame has arrived.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(9).any(|w| w == b"socket_id") {
        let n = tokio::time::timeout(common::WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed during the upgrade");
        seen.extend_from_slice(&buf[..n]);
    }
    tcp
}

/// Reads frames until a close frame; returns its code (None if the connection ended without one).
async fn close_code(tcp: &mut tokio::net::TcpStream) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // Parse whole frames from the start of what arrived (server frames are unmasked).
        let mut at = 0;
        while data.len() >= at + 2 {
            let opcode = data[at] & 0x0f;
            let mut len = usize::from(data[at + 1] & 0x7f);
            let mut head = 2;
            if len == 126 {
                if data.len() < at + 4 {
                    break;
                }
                len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
                head = 4;
            }
            if data.len() < at + head + len {
                break;
            }
            if opcode == 0x8 {
                let p = &data[at + head..at + head + len];
                return (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
            }
            at += head + len;
        }
        let n = match tokio::time::timeout(common::WAIT, tcp.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return None,
        };
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn websocket_protocol_errors_close_with_their_codes() {
    use tokio::io::AsyncWriteExt;
    let server = common::start().await;
    // A masked text frame whose payload is not UTF-8: 1007.
    let mut tcp = raw_websocket(server.addr()).await;
    let payload = [0xffu8, 0xfe, 0x7b];
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&frame).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1007));
    // An unmasked client frame: 1002.
    let mut tcp = raw_websocket(server.addr()).await;
    let text = br#"{"event":"pusher:ping","data":{}}"#;
    let mut frame = vec![0x81, text.len() as u8];
    frame.extend_from_slice(text);
    tcp.write_all(&frame).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1002));
    // A reserved opcode: 1002.
    let mut tcp = raw_websocket(server.addr()).await;
    tcp.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1002));
    // Others are unaffected.
    let mut c = common::Client::connect(server.addr()).await;
    c.send(serde_json::json!({"event": "pusher:ping", "data": {}}))
        .await;
    c.expect("pusher:pong").await;
    server.shutdown().await;
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_cut_and_capped() {
    use domvia_calls::server::listen::ListenLimits;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = domvia_calls::server::start(domvia_calls::server::ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        apps: vec![common::app()],
        listen: ListenLimits {
            max_connections: 20,
            header_read_timeout: std::time::Duration::from_millis(300),
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.addr();
    // Twenty clients that open TCP and dribble half a request head, and one that sends nothing.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /app/test-key?protocol=7 HTTP/1.1\r\nHo")
            .await
            .unwrap();
        slow.push(tcp);
    }
    // While they hold every slot, one more connection is closed at once.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(common::WAIT, extra.read(&mut buf))
        .await
        .expect("the connection over the cap is closed, not left waiting")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The header deadline closes the slow ones (well before the test's own deadline).
    let began = std::time::Instant::now();
    for mut tcp in slow {
        let n = tokio::time::timeout(common::WAIT, tcp.read(&mut buf))
            .await
            .expect("a request head that never completes is cut off")
            .unwrap_or(0);
        // hyper may answer 408 before closing; either way the connection ends.
        if n > 0 {
            let _ = tokio::time::timeout(common::WAIT, tcp.read(&mut buf)).await;
        }
    }
    assert!(began.elapsed() < std::time::Duration::from_secs(3));
    // With the slots free again, clients connect normally.
    let mut c = common::Client::connect(addr).await;
    c.send(serde_json::json!({"event": "pusher:ping", "data": {}}))
        .await;
    c.expect("pusher:pong").await;
    server.shutdown().await;
}

#[tokio::test]
async fn connections_from_one_address_are_capped_over_real_sockets() {
    let mut app = common::app();
    app.max_connections_per_address = 3;
    let server = domvia_calls::server::start(domvia_calls::server::ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        apps: vec![app],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(common::Client::connect(server.addr()).await);
    }
    // The fourth from 127.0.0.1 is told why and closed with 4100 (reconnect after a pause).
    let mut fourth = common::Client {
        ws: common::Client::raw(server.addr(), &format!("/app/{}?protocol=7", common::KEY)).await,
        socket_id: String::new(),
    };
    let error = fourth.expect_error().await;
    assert_eq!(error["code"], 4100);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("this address has 3 connections")
    );
    assert_eq!(fourth.expect_close().await, Some(4100));
    // Closing one frees its place.
    held.pop().unwrap().close().await;
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        let mut c = common::Client {
            ws: common::Client::raw(server.addr(), &format!("/app/{}?protocol=7", common::KEY))
                .await,
            socket_id: String::new(),
        };
        let f = c.next_frame().await;
        if f["event"] == "pusher:connection_established" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a closed connection's place was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}
