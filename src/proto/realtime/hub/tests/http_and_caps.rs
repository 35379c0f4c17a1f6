//! The hub's HTTP API, shutdown, and its connection and subscription caps.

use super::*;

fn signed(method: &str, path: &str, params: &str, body: &str, ts: u64) -> String {
    let params = signing::parse_query(params).unwrap();
    let q = signing::sign_http_request(
        KEY,
        &Secret::new(SECRET),
        method,
        path,
        params,
        body.as_bytes(),
        ts,
    );
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn http_trigger_delivers_to_subscribers_except_the_named_socket() {
    let mut h = Harness::new();
    let ch = "private-call.room.r.c1";
    let s1 = h.connect(1);
    h.subscribe(1, &s1, ch, None);
    let s2 = h.connect(2);
    h.subscribe(2, &s2, ch, None);
    let body =
        json!({"name": "call.started", "channels": [ch], "data": "{\"v\":1}", "socket_id": s1})
            .to_string();
    let path = "/apps/app-1/events";
    let query = signed("POST", path, "", &body, 5_000);
    let resp = h.hub.http(
        HttpRequest {
            method: "POST",
            path,
            query: &query,
            body: body.as_bytes(),
        },
        5_000,
    );
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let out = h.drain();
    assert!(frames_to(&out, 1).is_empty());
    let f = &frames_to(&out, 2)[0];
    assert_eq!(
        (f["event"].as_str(), f["data"].as_str()),
        (Some("call.started"), Some("{\"v\":1}"))
    );
}

#[test]
fn http_errors_are_typed() {
    let mut h = Harness::new();
    let path = "/apps/app-1/events";
    let body = json!({"name": "e", "channel": "private-a", "data": "x".repeat(10_241)}).to_string();
    let query = signed("POST", path, "", &body, 5_000);
    let req = HttpRequest {
        method: "POST",
        path,
        query: &query,
        body: body.as_bytes(),
    };
    assert_eq!(h.hub.http(req, 5_000).status, 413);
    assert_eq!(
        h.hub.http(req, 5_601).body["code"],
        "signature.stale_timestamp"
    );
    let tampered = HttpRequest { body: b"{}", ..req };
    assert_eq!(h.hub.http(tampered, 5_000).status, 401);
    let unknown = HttpRequest {
        path: "/apps/other/events",
        ..req
    };
    assert_eq!(h.hub.http(unknown, 5_000).status, 404);
    let bad = "{\"name\":1}";
    let query = signed("POST", path, "", bad, 5_000);
    let resp = h.hub.http(
        HttpRequest {
            method: "POST",
            path,
            query: &query,
            body: bad.as_bytes(),
        },
        5_000,
    );
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (400, Some("http.bad_body"))
    );
}

#[test]
fn http_channel_queries() {
    let mut h = Harness::new();
    let ch = "presence-call.room.r.c1";
    let s1 = h.connect(1);
    h.subscribe(1, &s1, ch, Some("alice"));
    let s2 = h.connect(2);
    h.subscribe(2, &s2, "private-b", None);
    let get = |h: &mut Harness, path: &str, params: &str| {
        let query = signed("GET", path, params, "", 9);
        h.hub.http(
            HttpRequest {
                method: "GET",
                path,
                query: &query,
                body: b"",
            },
            9,
        )
    };
    let r = get(
        &mut h,
        "/apps/app-1/channels",
        "filter_by_prefix=presence-&info=user_count",
    );
    assert_eq!(r.body, json!({"channels": {ch: {"user_count": 1}}}));
    let r = get(&mut h, "/apps/app-1/channels", "");
    assert_eq!(r.body["channels"].as_object().unwrap().len(), 2);
    let r = get(
        &mut h,
        &format!("/apps/app-1/channels/{ch}"),
        "info=user_count,subscription_count",
    );
    assert_eq!(
        r.body,
        json!({"occupied": true, "user_count": 1, "subscription_count": 1})
    );
    let r = get(&mut h, &format!("/apps/app-1/channels/{ch}/users"), "");
    assert_eq!(r.body, json!({"users": [{"id": "alice"}]}));
    let r = get(&mut h, "/apps/app-1/channels/private-b/users", "");
    assert_eq!(r.status, 400);
}

#[test]
fn shutdown_closes_everyone_with_4200() {
    let mut h = Harness::new();
    h.connect(1);
    h.connect(2);
    h.hub.shutdown();
    let mut c = closes(&h.drain());
    c.sort();
    assert_eq!(c, vec![(1, 4200), (2, 4200)]);
}

#[test]
fn connection_limit_gives_4100() {
    let mut cfg = app();
    cfg.max_connections = 1;
    let mut h = Harness::with(cfg);
    h.connect(1);
    h.hub
        .open(ConnId(2), "/app/app-key", "protocol=7", None, 0, 0);
    assert_eq!(closes(&h.drain()), vec![(2, 4100)]);
    // The count follows closes.
    h.hub.closed(ConnId(1), 0);
    h.connect(3);
}

#[test]
fn connections_per_address_are_capped_and_released_on_close() {
    let mut cfg = app();
    cfg.max_connections_per_address = 2;
    let mut h = Harness::with(cfg);
    let a: IpAddr = "192.0.2.7".parse().unwrap();
    h.connect_from(1, Some(a));
    h.connect_from(2, Some(a));
    h.hub
        .open(ConnId(3), "/app/app-key", "protocol=7", Some(a), 0, 0);
    let out = h.drain();
    assert_eq!(closes(&out), vec![(3, 4100)]);
    assert_eq!(error_type(&out, 3).unwrap().0, json!(4100));
    // Another address, and the same one written as IPv4-mapped IPv6, are counted apart/together.
    h.connect_from(4, Some("192.0.2.8".parse().unwrap()));
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    h.hub
        .open(ConnId(5), "/app/app-key", "protocol=7", Some(mapped), 0, 0);
    assert_eq!(closes(&h.drain()), vec![(5, 4100)]);
    // One IPv6 /64 is one address, whichever host part it uses.
    let mut cfg = app();
    cfg.max_connections_per_address = 1;
    let mut v6 = Harness::with(cfg);
    v6.connect_from(1, Some("2001:db8:1:2::1".parse().unwrap()));
    v6.hub.open(
        ConnId(2),
        "/app/app-key",
        "protocol=7",
        Some("2001:db8:1:2:ffff::9".parse().unwrap()),
        0,
        0,
    );
    assert_eq!(closes(&v6.drain()), vec![(2, 4100)]);
    v6.connect_from(3, Some("2001:db8:1:3::1".parse().unwrap()));
    // A closed connection frees its place.
    h.hub.closed(ConnId(1), 0);
    h.connect_from(6, Some(a));
}

#[test]
fn connections_per_user_are_capped_by_verified_identity() {
    let mut cfg = app();
    cfg.max_connections_per_user = 2;
    let mut h = Harness::with(cfg);
    let inbox = "private-call-inbox.alice";
    let s1 = h.connect(1);
    let s2 = h.connect(2);
    let s3 = h.connect(3);
    for (id, s) in [(1, &s1), (2, &s2)] {
        let out = h.subscribe(id, s, inbox, None);
        assert_eq!(
            events_to(&out, id),
            ["pusher_internal:subscription_succeeded"]
        );
    }
    // The same user on a presence channel of an already counted connection counts once.
    let out = h.subscribe(1, &s1, "presence-call.room.r1.c1", Some("alice"));
    assert!(events_to(&out, 1).contains(&"pusher_internal:subscription_succeeded".into()));
    // A third connection of alice is refused the inbox, the presence channel and the sign-in.
    let out = h.subscribe(3, &s3, inbox, None);
    assert_eq!(events_to(&out, 3), ["pusher:subscription_error"]);
    let frame = &frames_to(&out, 3)[0];
    let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["type"], "LimitReached");
    assert!(
        data["error"]
            .as_str()
            .unwrap()
            .contains("user alice has 2 connections")
    );
    let out = h.subscribe(3, &s3, "presence-call.room.r1.c1", Some("alice"));
    assert_eq!(events_to(&out, 3), ["pusher:subscription_error"]);
    let user_data = r#"{"id":"alice"}"#;
    let auth = signing::sign_user(
        KEY,
        &Secret::new(SECRET),
        &SocketId::parse(&s3).unwrap(),
        user_data,
    );
    let signin = json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}});
    let out = h.send(3, signin.clone());
    assert_eq!(
        error_type(&out, 3).unwrap(),
        (json!(4100), "signin.too_many_connections".into())
    );
    // Another user is not affected; a public channel carries no identity.
    let out = h.subscribe(3, &s3, "private-call-inbox.bob", None);
    assert_eq!(
        events_to(&out, 3),
        ["pusher_internal:subscription_succeeded"]
    );
    // When one of alice's connections closes, the third may become hers.
    h.hub.closed(ConnId(2), h.now);
    h.drain();
    let out = h.send(3, signin);
    assert_eq!(events_to(&out, 3), ["pusher:signin_success"]);
}

#[test]
fn oversized_presence_data_is_refused_before_anyone_hears_of_it() {
    let mut h = Harness::new();
    let ch = "presence-call.room.r.c1";
    let s1 = h.connect(1);
    h.subscribe(1, &s1, ch, Some("alice"));
    let s2 = h.connect(2);
    let cd = json!({ "user_id": "bob", "user_info": { "bio": "x".repeat(1100) } }).to_string();
    let auth = signing::sign_channel(
        KEY,
        &Secret::new(SECRET),
        &SocketId::parse(&s2).unwrap(),
        ch,
        Some(&cd),
    );
    let out = h.send(2, json!({"event": "pusher:subscribe", "data": {"channel": ch, "auth": auth, "channel_data": cd}}));
    assert!(
        frames_to(&out, 2)[0]["data"]
            .as_str()
            .unwrap()
            .contains("InvalidChannelData")
    );
    assert!(
        frames_to(&out, 1).is_empty(),
        "no member_added for a refused member"
    );
    assert_eq!(h.hub.presence_ids(0, ch), ["alice"]);
}

#[test]
fn a_connection_has_a_bounded_number_of_subscriptions_and_webhooks_of_them() {
    let mut cfg = app();
    cfg.max_subscriptions_per_connection = 3;
    let mut h = Harness::with(cfg);
    let socket = h.connect(1);
    for i in 0..3 {
        let out = h.subscribe(1, &socket, &format!("public-{i}"), None);
        assert_eq!(
            frames_to(&out, 1)[0]["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    // The fourth is refused before any work, and makes no channel (and no webhook).
    let out = h.subscribe(1, &socket, "private-fourth", None);
    let f = &frames_to(&out, 1)[0];
    assert_eq!(f["event"], "pusher:subscription_error");
    let data: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        (data["type"].as_str(), data["status"].as_u64()),
        (Some("LimitReached"), Some(403))
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Webhook { .. })),
        "a refused subscription occupies nothing"
    );
    // Leaving one makes room again; subscribing again to one held is not counted twice.
    h.send(
        1,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "public-0"}}),
    );
    let out = h.subscribe(1, &socket, "public-1", None);
    assert_eq!(
        frames_to(&out, 1)[0]["event"],
        "pusher_internal:subscription_succeeded"
    );
    let out = h.subscribe(1, &socket, "private-fourth", None);
    assert_eq!(
        frames_to(&out, 1)[0]["event"],
        "pusher_internal:subscription_succeeded"
    );
}
