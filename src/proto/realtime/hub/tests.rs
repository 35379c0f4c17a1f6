use super::*;
use crate::signing::Secret;

const KEY: &str = "app-key";
const SECRET: &str = "app-secret";

fn app() -> AppConfig {
    let mut a = AppConfig::new("app-1", KEY, SECRET);
    a.webhook_url = Some("http://127.0.0.1:1/hooks".into());
    a
}

struct Harness {
    hub: Hub,
    now: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with(app())
    }

    fn with(cfg: AppConfig) -> Self {
        Harness {
            hub: Hub::new(vec![cfg]),
            now: 1_000,
        }
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.hub.poll_output()).collect()
    }

    /// Opens a connection and returns its socket id.
    fn connect(&mut self, id: u64) -> String {
        self.connect_from(id, None)
    }

    /// Opens a connection from `peer` and returns its socket id.
    fn connect_from(&mut self, id: u64, peer: Option<IpAddr>) -> String {
        self.hub.open(
            ConnId(id),
            &format!("/app/{KEY}"),
            "protocol=7&client=js",
            peer,
            id * 7,
            self.now,
        );
        let out = self.drain();
        let frames = frames_to(&out, id);
        assert_eq!(frames[0]["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(frames[0]["data"].as_str().unwrap()).unwrap();
        data["socket_id"].as_str().unwrap().to_owned()
    }

    fn send(&mut self, id: u64, frame: Value) -> Vec<Output> {
        self.hub
            .message(ConnId(id), frame.to_string().as_bytes(), false, self.now);
        self.drain()
    }

    fn subscribe(
        &mut self,
        id: u64,
        socket: &str,
        channel: &str,
        user: Option<&str>,
    ) -> Vec<Output> {
        let secret = Secret::new(SECRET);
        let socket = SocketId::parse(socket).unwrap();
        let mut data = json!({ "channel": channel });
        if channel.starts_with("private-") {
            data["auth"] = json!(signing::sign_channel(KEY, &secret, &socket, channel, None));
        }
        if let Some(user) = user {
            let cd = json!({ "user_id": user, "user_info": { "name": user } }).to_string();
            data["auth"] = json!(signing::sign_channel(
                KEY,
                &secret,
                &socket,
                channel,
                Some(&cd)
            ));
            data["channel_data"] = json!(cd);
        }
        self.send(id, json!({ "event": "pusher:subscribe", "data": data }))
    }
}

fn frames_to(out: &[Output], id: u64) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, text } if conn.0 == id => {
                Some(serde_json::from_str(text).unwrap())
            }
            _ => None,
        })
        .collect()
}

fn events_to(out: &[Output], id: u64) -> Vec<String> {
    frames_to(out, id)
        .iter()
        .map(|f| f["event"].as_str().unwrap().to_owned())
        .collect()
}

fn webhooks(out: &[Output]) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Webhook { event, .. } => Some(serde_json::to_value(event).unwrap()),
            _ => None,
        })
        .collect()
}

fn closes(out: &[Output]) -> Vec<(u64, u16)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Close { conn, code, .. } => Some((conn.0, code.0)),
            _ => None,
        })
        .collect()
}

fn error_type(out: &[Output], id: u64) -> Option<(Value, String)> {
    frames_to(out, id).into_iter().find_map(|f| {
        (f["event"] == "pusher:error").then(|| {
            let data: Value = f["data"].clone();
            (
                data["code"].clone(),
                data["type"].as_str().unwrap().to_owned(),
            )
        })
    })
}

#[test]
fn connection_established_announces_timeout_and_limits() {
    let mut h = Harness::new();
    h.hub
        .open(ConnId(1), "/app/app-key", "protocol=7", None, 42, 0);
    let out = h.drain();
    let f = &frames_to(&out, 1)[0];
    let data: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
    assert!(SocketId::parse(data["socket_id"].as_str().unwrap()).is_ok());
    assert_eq!(data["activity_timeout"], 120);
    assert_eq!(data["limits"]["client_events_per_second"], 10);
    assert_eq!(data["limits"]["max_event_bytes"], 10240);
}

#[test]
fn bad_connection_attempts_get_their_close_codes() {
    let cases = [
        ("/app/nope", "protocol=7", 4001),
        ("/nope/app-key", "protocol=7", 4005),
        ("/app/app-key", "client=js", 4008),
        ("/app/app-key", "protocol=seven", 4006),
        ("/app/app-key", "protocol=8", 4007),
    ];
    for (i, (path, query, code)) in cases.into_iter().enumerate() {
        let mut h = Harness::new();
        h.hub.open(ConnId(i as u64), path, query, None, 0, 0);
        let out = h.drain();
        assert_eq!(closes(&out), vec![(i as u64, code)], "{path}?{query}");
        assert_eq!(events_to(&out, i as u64), ["pusher:error"]);
        assert_eq!(h.hub.connection_count(), 0);
    }
}

#[test]
fn ping_gets_pong_and_silence_gets_ping_then_4201() {
    let mut h = Harness::new();
    h.connect(1);
    let out = h.send(1, json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(events_to(&out, 1), ["pusher:pong"]);
    h.hub.tick(h.now + 119_000);
    assert!(h.drain().is_empty());
    h.hub.tick(h.now + 120_000);
    assert_eq!(events_to(&h.drain(), 1), ["pusher:ping"]);
    h.hub.tick(h.now + 149_000);
    assert!(h.drain().is_empty());
    h.hub.tick(h.now + 150_000);
    assert_eq!(closes(&h.drain()), vec![(1, 4201)]);
    assert_eq!(h.hub.connection_count(), 0);
}

#[test]
fn any_message_counts_as_activity() {
    let mut h = Harness::new();
    h.connect(1);
    h.hub.tick(h.now + 120_000);
    h.drain();
    h.now += 121_000;
    h.send(1, json!({"event": "pusher:pong", "data": {}}));
    h.hub.tick(h.now + 60_000);
    assert!(closes(&h.drain()).is_empty());
}

#[test]
fn private_subscription_needs_a_signature_for_this_socket_and_channel() {
    let mut h = Harness::new();
    let s1 = h.connect(1);
    let s2 = h.connect(2);
    let out = h.subscribe(1, &s1, "private-call.room.r.c1", None);
    assert_eq!(
        events_to(&out, 1),
        ["pusher_internal:subscription_succeeded"]
    );

    // A signature made for socket 1 presented by socket 2.
    let auth = signing::sign_channel(
        KEY,
        &Secret::new(SECRET),
        &SocketId::parse(&s1).unwrap(),
        "private-call.room.r.c1",
        None,
    );
    let out = h.send(2, json!({"event": "pusher:subscribe", "data": {"channel": "private-call.room.r.c1", "auth": auth}}));
    let f = &frames_to(&out, 2)[0];
    assert_eq!(f["event"], "pusher:subscription_error");
    let data: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["status"], 401);
    assert!(
        data["error"]
            .as_str()
            .unwrap()
            .contains("signature.mismatch")
    );
    let _ = s2;

    let out = h.send(
        2,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-call.room.r.c1"}}),
    );
    assert_eq!(events_to(&out, 2), ["pusher:subscription_error"]);
}

#[test]
fn bad_channel_names_are_refused_with_a_message() {
    let mut h = Harness::new();
    h.connect(1);
    for name in ["", "has space", &"x".repeat(165), "ümlaut"] {
        let out = h.send(
            1,
            json!({"event": "pusher:subscribe", "data": {"channel": name}}),
        );
        let f = &frames_to(&out, 1)[0];
        assert_eq!(f["event"], "pusher:subscription_error", "{name}");
        assert!(f["data"].as_str().unwrap().contains("InvalidChannel"));
    }
    let out = h.send(1, json!({"event": "pusher:subscribe", "data": {}}));
    assert_eq!(error_type(&out, 1).unwrap().1, "subscribe.missing_channel");
}

#[test]
fn presence_members_are_announced_once_per_user() {
    let mut h = Harness::new();
    let s1 = h.connect(1);
    let s2 = h.connect(2);
    let s3 = h.connect(3);
    let ch = "presence-call.room.r.c1";
    h.subscribe(1, &s1, ch, Some("alice"));
    let out = h.subscribe(2, &s2, ch, Some("bob"));
    assert_eq!(events_to(&out, 1), ["pusher_internal:member_added"]);
    let ok = &frames_to(&out, 2)[0];
    let data: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["count"], 2);
    assert_eq!(data["presence"]["ids"], json!(["alice", "bob"]));
    assert_eq!(data["presence"]["hash"]["alice"]["name"], "alice");
    assert_eq!(
        webhooks(&out),
        vec![json!({"name": "member_added", "channel": ch, "user_id": "bob"})]
    );

    // bob's second tab: no member event.
    let out = h.subscribe(3, &s3, ch, Some("bob"));
    assert!(events_to(&out, 1).is_empty());
    assert!(webhooks(&out).is_empty());

    // First tab leaves: still present.
    h.hub.closed(ConnId(2), h.now);
    assert!(events_to(&h.drain(), 1).is_empty());
    // Last tab leaves: removed once.
    h.hub.closed(ConnId(3), h.now);
    let out = h.drain();
    assert_eq!(events_to(&out, 1), ["pusher_internal:member_removed"]);
    assert_eq!(
        webhooks(&out),
        vec![json!({"name": "member_removed", "channel": ch, "user_id": "bob"})]
    );
    assert_eq!(h.hub.presence_ids(0, ch), ["alice"]);
}

#[test]
fn presence_member_limit_applies_to_new_users_only() {
    let mut cfg = app();
    cfg.max_presence_members = 2;
    let mut h = Harness::with(cfg);
    let ch = "presence-call.room.r.c1";
    for (id, user) in [(1, "a"), (2, "b")] {
        let s = h.connect(id);
        h.subscribe(id, &s, ch, Some(user));
    }
    let s3 = h.connect(3);
    let out = h.subscribe(3, &s3, ch, Some("c"));
    assert!(
        frames_to(&out, 3)[0]["data"]
            .as_str()
            .unwrap()
            .contains("LimitReached")
    );
    let s4 = h.connect(4);
    let out = h.subscribe(4, &s4, ch, Some("a"));
    assert_eq!(
        events_to(&out, 4),
        ["pusher_internal:subscription_succeeded"]
    );
}

#[test]
fn tampered_presence_channel_data_is_refused() {
    let mut h = Harness::new();
    let s1 = h.connect(1);
    let ch = "presence-call.room.r.c1";
    let good = json!({"user_id": "alice"}).to_string();
    let auth = signing::sign_channel(
        KEY,
        &Secret::new(SECRET),
        &SocketId::parse(&s1).unwrap(),
        ch,
        Some(&good),
    );
    let forged = json!({"user_id": "mallory"}).to_string();
    let out = h.send(1, json!({"event": "pusher:subscribe", "data": {"channel": ch, "auth": auth, "channel_data": forged}}));
    assert_eq!(events_to(&out, 1), ["pusher:subscription_error"]);
    assert!(h.hub.presence_ids(0, ch).is_empty());
}

fn client_event(channel: &str, n: u64) -> Value {
    json!({"event": "client-call.ringing", "channel": channel, "data": {"seq": n, "pad": 1.50}})
}

#[test]
fn client_events_relay_to_others_byte_for_byte_and_never_echo() {
    let mut h = Harness::new();
    let ch = "private-call.room.r.c1";
    for id in 1..=3 {
        let s = h.connect(id);
        h.subscribe(id, &s, ch, None);
    }
    let raw = r#"{"event":"client-call.ringing","channel":"private-call.room.r.c1","data":{"z":1,"a":2.50}}"#;
    h.hub.message(ConnId(1), raw.as_bytes(), false, h.now);
    let out = h.drain();
    assert!(frames_to(&out, 1).is_empty(), "never echoed");
    for id in [2, 3] {
        let text = out
            .iter()
            .find_map(|o| match o {
                Output::Send { conn, text } if conn.0 == id => Some(text.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(text, raw, "relayed byte for byte");
    }
    let hook = &webhooks(&out)[0];
    assert_eq!(hook["name"], "client_event");
    assert_eq!(hook["data"], r#"{"z":1,"a":2.50}"#);
}

#[test]
fn presence_client_events_carry_the_verified_user_id() {
    let mut h = Harness::new();
    let ch = "presence-call.room.r.c1";
    let s1 = h.connect(1);
    h.subscribe(1, &s1, ch, Some("alice"));
    let s2 = h.connect(2);
    h.subscribe(2, &s2, ch, Some("bob"));
    let mut ev = client_event(ch, 1);
    ev["user_id"] = json!("mallory");
    let out = h.send(1, ev);
    assert_eq!(frames_to(&out, 2)[0]["user_id"], "alice");
}

#[test]
fn client_events_are_refused_where_the_protocol_forbids_them() {
    let mut h = Harness::new();
    let s1 = h.connect(1);
    h.connect(2);
    h.subscribe(1, &s1, "public-room", None);
    let out = h.send(1, client_event("public-room", 1));
    assert_eq!(
        error_type(&out, 1).unwrap(),
        (json!(4009), "client_event.public_channel".into())
    );
    let out = h.send(1, client_event("private-call.room.r.c1", 1));
    assert_eq!(
        error_type(&out, 1).unwrap().1,
        "client_event.not_subscribed"
    );
    let out = h.send(1, json!({"event": "client-x", "data": {}}));
    assert_eq!(
        error_type(&out, 1).unwrap().1,
        "client_event.missing_channel"
    );
    assert!(frames_to(&out, 2).is_empty());

    let mut cfg = app();
    cfg.client_events = false;
    let mut h = Harness::with(cfg);
    let s1 = h.connect(1);
    h.subscribe(1, &s1, "private-a", None);
    let out = h.send(1, client_event("private-a", 1));
    assert_eq!(error_type(&out, 1).unwrap().1, "client_event.disabled");
}

#[test]
fn oversized_and_malformed_frames_get_typed_errors_and_keep_the_connection() {
    let mut h = Harness::new();
    let ch = "private-a";
    let s1 = h.connect(1);
    h.subscribe(1, &s1, ch, None);
    let s2 = h.connect(2);
    h.subscribe(2, &s2, ch, None);
    let big = json!({"event": "client-x", "channel": ch, "data": {"pad": "a".repeat(10_241)}});
    let out = h.send(1, big);
    assert_eq!(error_type(&out, 1).unwrap().1, "frame.data_too_large");
    assert!(frames_to(&out, 2).is_empty());
    h.hub.message(ConnId(1), b"{not json", false, h.now);
    let out = h.drain();
    assert_eq!(error_type(&out, 1).unwrap().1, "frame.not_json");
    h.hub.message(ConnId(1), &[0xff, 0x00], true, h.now);
    assert_eq!(error_type(&h.drain(), 1).unwrap().1, "frame.binary");
    assert!(closes(&out).is_empty());
    // Still works.
    let out = h.send(1, client_event(ch, 1));
    assert_eq!(events_to(&out, 2), ["client-call.ringing"]);
}

#[test]
fn rate_limit_relays_exactly_the_burst_then_refuses_with_4301() {
    let mut h = Harness::new();
    let ch = "private-a";
    let s1 = h.connect(1);
    h.subscribe(1, &s1, ch, None);
    let s2 = h.connect(2);
    h.subscribe(2, &s2, ch, None);
    let mut relayed = 0;
    let mut refused = 0;
    for n in 0..25 {
        let out = h.send(1, client_event(ch, n));
        relayed += frames_to(&out, 2).len();
        if let Some((code, _)) = error_type(&out, 1) {
            assert_eq!(code, 4301);
            refused += 1;
        }
        assert!(closes(&out).is_empty(), "the connection stays open");
    }
    assert_eq!((relayed, refused), (10, 15));
    // 100 ms later one more token is available at 10/s.
    h.now += 100;
    assert_eq!(frames_to(&h.send(1, client_event(ch, 99)), 2).len(), 1);
    assert_eq!(frames_to(&h.send(1, client_event(ch, 100)), 2).len(), 0);
    // A second later the whole burst is back.
    h.now += 1_000;
    let n: usize = (0..12)
        .map(|i| frames_to(&h.send(1, client_event(ch, 200 + i)), 2).len())
        .sum();
    assert_eq!(n, 10);
}

#[test]
fn unsubscribe_stops_delivery_and_vacates() {
    let mut h = Harness::new();
    let ch = "private-a";
    let s1 = h.connect(1);
    let out = h.subscribe(1, &s1, ch, None);
    assert_eq!(
        webhooks(&out),
        vec![json!({"name": "channel_occupied", "channel": ch})]
    );
    let s2 = h.connect(2);
    h.subscribe(2, &s2, ch, None);
    h.send(
        2,
        json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}),
    );
    let out = h.send(1, client_event(ch, 1));
    assert!(frames_to(&out, 2).is_empty());
    let out = h.send(
        1,
        json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}),
    );
    assert_eq!(
        webhooks(&out),
        vec![json!({"name": "channel_vacated", "channel": ch})]
    );
    assert_eq!(h.hub.channel_counts(0, ch), (0, 0));
}

#[test]
fn slow_consumers_are_closed_with_4100_and_cleaned_up() {
    let mut h = Harness::new();
    let ch = "presence-a";
    let s1 = h.connect(1);
    h.subscribe(1, &s1, ch, Some("alice"));
    let s2 = h.connect(2);
    h.subscribe(2, &s2, ch, Some("bob"));
    h.hub.overflow(ConnId(2), h.now);
    let out = h.drain();
    assert_eq!(closes(&out), vec![(2, 4100)]);
    assert_eq!(events_to(&out, 1), ["pusher_internal:member_removed"]);
    assert!(frames_to(&out, 2).is_empty());
}

#[test]
fn signin_verifies_user_data() {
    let mut h = Harness::new();
    let s1 = h.connect(1);
    let user_data = r#"{"id":"alice"}"#;
    let auth = signing::sign_user(
        KEY,
        &Secret::new(SECRET),
        &SocketId::parse(&s1).unwrap(),
        user_data,
    );
    let out = h.send(
        1,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    );
    assert_eq!(events_to(&out, 1), ["pusher:signin_success"]);
    let out = h.send(
        1,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": r#"{"id":"bob"}"#}}),
    );
    assert_eq!(
        error_type(&out, 1).unwrap(),
        (json!(4009), "signature.mismatch".into())
    );
}

mod http_and_caps;
