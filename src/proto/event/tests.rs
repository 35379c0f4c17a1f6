use super::*;
use crate::channel::CallChannel;
use crate::ids::ChunkId;
use proptest::prelude::*;
use serde_json::json;

const CHANNEL: &str = "private-call.room.chat-room-42.call-9001";

fn data(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("test data must be an object"),
    }
}

fn header(party: &str, user: &str) -> Value {
    json!({"v": 1, "call_id": "call-9001", "party_id": party, "user_id": user, "seq": 7, "sent_at_ms": 1_700_000_000_000u64})
}

fn with(base: Value, extra: Value) -> Map<String, Value> {
    let mut m = data(base);
    m.extend(data(extra));
    m
}

fn sample(kind: EventKind) -> (String, Map<String, Value>) {
    let alice = header("alice-phone-1", "alice");
    let body = match kind {
        EventKind::Started => json!({
            "channel": CHANNEL, "caller": "alice", "callees": ["bob"],
            "media": {"audio": true, "video": false, "screen": false},
            "ring_timeout_ms": 30000, "privacy": "standard", "topology": "p2p"
        }),
        EventKind::Ringing | EventKind::Accepted => json!({}),
        EventKind::Offer => json!({
            "to_party_id": "bob-laptop-1", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n",
            "negotiation_id": 1, "ice_restart": false
        }),
        EventKind::Answer => json!({
            "to_party_id": "bob-laptop-1", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n",
            "negotiation_id": 1
        }),
        EventKind::IceCandidate => json!({
            "to_party_id": "bob-laptop-1",
            "candidates": [{
                "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
                "sdp_mid": "0", "sdp_mline_index": 0, "username_fragment": "abcd"
            }],
            "end_of_candidates": false
        }),
        EventKind::MediaState => json!({
            "audio": {"muted": true}, "video": {"enabled": false},
            "screen": {"sharing": false}, "on_hold": false
        }),
        EventKind::Ended => json!({"reason": "hangup"}),
    };
    (kind.wire_name(Origin::Client), with(alice, body))
}

fn parse_clear(name: &str, d: &Map<String, Value>) -> Result<CallEvent, EventError> {
    match parse_event(name, d)? {
        Incoming::Clear(e) => Ok(e),
        Incoming::Sealed(_) => panic!("unexpected sealed event"),
    }
}

#[test]
fn every_event_kind_parses_and_serializes_back_to_the_same_data() {
    for kind in EventKind::ALL {
        let (name, d) = sample(kind);
        let event = parse_clear(&name, &d).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(event.kind(), kind);
        assert_eq!(event.wire_name(), name);
        assert_eq!(event.to_data(), d, "{kind}");
    }
}

#[test]
fn wire_json_of_every_event_is_stable() {
    let mut all = Map::new();
    for kind in EventKind::ALL {
        let (name, d) = sample(kind);
        let event = parse_clear(&name, &d).unwrap();
        all.insert(name, Value::Object(event.to_data()));
    }
    insta::assert_json_snapshot!("wire_events", Value::Object(all));
}

#[test]
fn client_and_server_names_normalize_to_one_kind() {
    assert_eq!(
        classify_event_name("client-call.offer"),
        Some((EventKind::Offer, Origin::Client))
    );
    assert_eq!(
        classify_event_name("call.offer"),
        Some((EventKind::Offer, Origin::Server))
    );
    assert_eq!(classify_event_name("client-call.unknown"), None);
    assert_eq!(classify_event_name("client-offer"), None);
}

#[test]
fn data_as_json_string_is_accepted() {
    let (name, d) = sample(EventKind::Ringing);
    let frame = Frame {
        event: name,
        channel: Some(CHANNEL.into()),
        data: Some(crate::pusher::FrameData::Text(Value::Object(d).to_string())),
        user_id: None,
    };
    let (_, incoming) = parse_frame(&frame).unwrap();
    assert_eq!(incoming.kind(), EventKind::Ringing);
}

fn err(name: &str, d: &Map<String, Value>) -> EventError {
    parse_event(name, d).unwrap_err()
}

#[test]
fn version_is_checked_before_shape() {
    let (name, mut d) = sample(EventKind::Offer);
    d.insert("v".into(), json!(2));
    d.remove("sdp");
    assert_eq!(err(&name, &d).code(), "event.unsupported_version");
}

#[test]
fn field_errors_name_the_field() {
    let (name, mut d) = sample(EventKind::Offer);
    d.remove("negotiation_id");
    let e = err(&name, &d);
    assert_eq!(
        (e.code(), e.field()),
        ("event.missing_field", Some("negotiation_id"))
    );

    let (name, mut d) = sample(EventKind::IceCandidate);
    d["candidates"][0]["candidate"] = json!("a=candidate:1 1 udp 1 127.0.0.1 1 typ host");
    let e = err(&name, &d);
    assert_eq!(
        (e.code(), e.field()),
        ("event.invalid_field", Some("candidates[0].candidate"))
    );

    let (name, mut d) = sample(EventKind::Ringing);
    d.insert("seq".into(), json!(9_007_199_254_740_992u64));
    assert_eq!(err(&name, &d).field(), Some("seq"));
}

#[test]
fn cross_field_rules_have_their_own_errors() {
    let cases: Vec<(EventKind, Value, &str)> = vec![
        (
            EventKind::Ringing,
            json!({"to_party_id": "bob-laptop-1"}),
            "event.unexpected_to_party_id",
        ),
        (
            EventKind::Started,
            json!({"caller": "mallory"}),
            "event.caller_mismatch",
        ),
        (
            EventKind::Started,
            json!({"callees": ["bob", "bob"]}),
            "event.duplicate_callee",
        ),
        (
            EventKind::Started,
            json!({"callees": ["alice"]}),
            "event.caller_in_callees",
        ),
        (
            EventKind::Started,
            json!({"channel": "private-call.room.chat-room-42.call-other"}),
            "event.call_id_mismatch",
        ),
        (
            EventKind::Offer,
            json!({"sdp": "o=- 1 2 IN IP4 127.0.0.1\r\n"}),
            "event.sdp_not_whole",
        ),
        (
            EventKind::Offer,
            json!({"chunk": {"id": "c1", "index": 2, "count": 2}}),
            "event.chunk_inconsistent",
        ),
        (
            EventKind::IceCandidate,
            json!({"candidates": []}),
            "event.empty_candidates",
        ),
        (
            EventKind::IceCandidate,
            json!({"candidates": [{"candidate": "candidate:1 1 udp 1 127.0.0.1 1 typ host", "sdp_mid": null, "sdp_mline_index": null}]}),
            "event.candidate_without_media",
        ),
        (
            EventKind::Ended,
            json!({"to_party_id": "bob-laptop-1"}),
            "event.ended_addressed_wrongly",
        ),
        (
            EventKind::Ringing,
            json!({"party_id": "server"}),
            "event.reserved_party_id",
        ),
    ];
    for (kind, patch, code) in cases {
        let (name, mut d) = sample(kind);
        d.extend(data(patch));
        assert_eq!(err(&name, &d).code(), code, "{kind}");
    }
    let (_, d) = sample(EventKind::Ended);
    assert_eq!(err("call.ended", &d).code(), "event.server_party_required");
    let mut many = sample(EventKind::IceCandidate).1;
    let one = many["candidates"][0].clone();
    many.insert("candidates".into(), Value::Array(vec![one; 21]));
    assert_eq!(
        err("client-call.ice_candidate", &many).code(),
        "event.too_many_candidates"
    );
}

#[test]
fn delivery_rules_depend_on_the_channel() {
    let (name, d) = sample(EventKind::Ringing);
    let event = parse_clear(&name, &d).unwrap();
    let other = ChannelName::parse("private-call.room.chat-room-42.call-9002").unwrap();
    assert_eq!(
        event.check_delivery(&other, None).unwrap_err().code(),
        "event.call_id_mismatch"
    );
    let presence = ChannelName::parse("presence-call.room.chat-room-42.call-9001").unwrap();
    assert_eq!(
        event.check_delivery(&presence, None).unwrap_err().code(),
        "event.missing_verified_user"
    );
    assert_eq!(
        event
            .check_delivery(&presence, Some("mallory"))
            .unwrap_err()
            .code(),
        "event.user_id_mismatch"
    );
    event.check_delivery(&presence, Some("alice")).unwrap();

    let inbox = ChannelName::parse("private-call-inbox.bob").unwrap();
    assert_eq!(
        event.check_delivery(&inbox, None).unwrap_err().code(),
        "event.not_allowed_on_inbox"
    );
    let (_, mut started) = sample(EventKind::Started);
    started.insert("party_id".into(), json!("server"));
    let invitation = parse_clear("call.started", &started).unwrap();
    invitation.check_delivery(&inbox, None).unwrap();
    let carol = ChannelName::parse("private-call-inbox.carol").unwrap();
    assert_eq!(
        invitation.check_delivery(&carol, None).unwrap_err().code(),
        "event.inbox_user_not_callee"
    );
}

#[test]
fn unknown_members_are_ignored() {
    let (name, mut d) = sample(EventKind::MediaState);
    d.insert("x_future_field".into(), json!({"anything": [1, 2]}));
    parse_clear(&name, &d).unwrap();
}

#[test]
fn ring_timeout_defaults_when_absent() {
    let (name, mut d) = sample(EventKind::Started);
    d.remove("ring_timeout_ms");
    let event = parse_clear(&name, &d).unwrap();
    let EventBody::Started(b) = event.body() else {
        panic!()
    };
    assert_eq!(b.ring_timeout_ms.get(), 60_000);
}

#[test]
fn new_refuses_what_parse_refuses() {
    let (name, d) = sample(EventKind::Started);
    let event = parse_clear(&name, &d).unwrap();
    let (_, mut h, body) = event.into_parts();
    h.party_id = PartyId::server();
    assert_eq!(
        CallEvent::new(Origin::Client, h, body).unwrap_err().code(),
        "event.reserved_party_id"
    );
}

#[test]
fn channel_in_started_must_be_the_delivery_channel() {
    let (name, d) = sample(EventKind::Started);
    let event = parse_clear(&name, &d).unwrap();
    let presence = CallChannel::parse("presence-call.room.chat-room-42.call-9001").unwrap();
    assert_eq!(
        event
            .check_delivery(&ChannelName::Call(presence), Some("alice"))
            .unwrap_err()
            .code(),
        "event.started_channel_mismatch"
    );
}

#[test]
fn chunked_offer_round_trips_through_the_wire() {
    let (name, mut d) = sample(EventKind::Offer);
    d.insert(
        "chunk".into(),
        json!({"id": ChunkId::parse("c1").unwrap(), "index": 1, "count": 3}),
    );
    d.insert("sdp".into(), json!("a=middle-slice\r\n"));
    let e = parse_clear(&name, &d).unwrap();
    assert_eq!(e.to_data(), d);
}

fn arb_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(json!("server")),
        Just(json!("call-9001")),
        Just(json!("v=0\r\n")),
    ];
    leaf.prop_recursive(depth, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("v".to_string()),
                    Just("seq".to_string()),
                    Just("sdp".to_string()),
                    Just("candidates".to_string()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn mutated_events_never_panic_and_accepted_ones_round_trip(
        kind_index in 0usize..8,
        key in prop_oneof![
            Just("v"), Just("call_id"), Just("party_id"), Just("user_id"), Just("seq"),
            Just("sdp"), Just("candidates"), Just("to_party_id"), Just("reason"), Just("media"),
            Just("chunk"), Just("sealed"), Just("callees"), Just("channel")
        ],
        value in arb_json(3),
        server in any::<bool>(),
    ) {
        let kind = EventKind::ALL[kind_index];
        let (_, mut d) = sample(kind);
        d.insert(key.to_string(), value);
        let name = kind.wire_name(if server { Origin::Server } else { Origin::Client });
        if let Ok(Incoming::Clear(e)) = parse_event(&name, &d) {
            let again = parse_clear(&name, &e.to_data()).unwrap();
            prop_assert_eq!(again, e);
        }
    }
}
