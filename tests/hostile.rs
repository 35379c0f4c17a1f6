//! Hostile input to every parser of the core: arbitrary bytes and structured garbage must give a
//! typed error or a value, never a panic, and whatever is accepted must survive a round trip.

use domvia_calls::channel::ChannelName;
use domvia_calls::envelope::{ChannelKey, PrivacyGuard};
use domvia_calls::event::chunk::ChunkAssembler;
use domvia_calls::event::{Incoming, Privacy, parse_event, parse_frame};
use domvia_calls::ids::SocketId;
use domvia_calls::pusher::{Frame, FrameLimits};
use domvia_calls::signing::{self, Secret};
use domvia_calls::{spec, vectors};
use proptest::prelude::*;
use serde_json::{Value, json};

const CHANNEL: &str = "private-call.room.r.call-1";

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,16}".prop_map(Value::from),
        Just(json!("call-1")),
        Just(json!("server")),
        Just(json!("alice-phone-1")),
        Just(json!(1)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("v".to_owned()),
                    Just("call_id".to_owned()),
                    Just("party_id".to_owned()),
                    Just("user_id".to_owned()),
                    Just("seq".to_owned()),
                    Just("sent_at_ms".to_owned()),
                    Just("sealed".to_owned()),
                    Just("to_party_id".to_owned()),
                    Just("chunk".to_owned()),
                    Just("sdp".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("client-call.started".to_owned()),
        Just("client-call.offer".to_owned()),
        Just("client-call.ice_candidate".to_owned()),
        Just("client-call.media_state".to_owned()),
        Just("call.ended".to_owned()),
        "\\PC{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_from_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(frame) = Frame::parse(&bytes, &FrameLimits::default()) {
            let again = Frame::parse(frame.to_json().as_bytes(), &FrameLimits::default());
            prop_assert_eq!(again.unwrap(), frame);
        }
    }

    #[test]
    fn frames_from_arbitrary_json(v in json_value(), name in event_name(), channel in "\\PC{0,40}") {
        let text = json!({"event": name, "channel": channel, "data": v}).to_string();
        if let Ok(frame) = Frame::parse(text.as_bytes(), &FrameLimits::default()) {
            let _ = parse_frame(&frame);
        }
    }

    #[test]
    fn events_from_arbitrary_objects(v in json_value(), name in event_name()) {
        if let Value::Object(map) = v
            && let Ok(Incoming::Clear(e)) = parse_event(&name, &map)
        {
            let back = parse_event(&e.wire_name(), &e.to_data()).unwrap();
            prop_assert_eq!(back, Incoming::Clear(e));
        }
    }

    #[test]
    fn sealed_events_with_garbage_boxes(alg in "\\PC{0,8}", kid in "\\PC{0,16}", nonce in "[A-Za-z0-9_=-]{0,40}", ct in "[A-Za-z0-9_=+/-]{0,80}", seq in any::<u64>()) {
        let data = json!({
            "v": 1, "call_id": "call-1", "party_id": "alice-phone-1", "user_id": "alice",
            "seq": seq, "sent_at_ms": 0, "to_party_id": "bob-laptop-1",
            "sealed": {"alg": alg, "kid": kid, "nonce": nonce, "ct": ct}
        });
        let channel = domvia_calls::channel::CallChannel::parse(CHANNEL).unwrap();
        let mut guard = PrivacyGuard::new(channel.clone(), Privacy::Strong);
        guard.install_key(ChannelKey::derive(b"master", &channel));
        if let Ok(incoming) = parse_event("client-call.offer", data.as_object().unwrap()) {
            // Nothing random can authenticate.
            prop_assert!(guard.receive(incoming).is_err());
        }
    }

    #[test]
    fn channel_names_from_arbitrary_text(s in "\\PC{0,200}") {
        if let Ok(c) = ChannelName::parse(&s) {
            prop_assert_eq!(c.to_string(), s);
        }
    }

    #[test]
    fn signatures_from_arbitrary_text(auth in "\\PC{0,90}", data in "\\PC{0,60}", query in "\\PC{0,120}", body in "\\PC{0,40}", now in any::<u64>()) {
        let secret = Secret::new("s");
        let socket = SocketId::parse("1.2").unwrap();
        prop_assert!(signing::verify_channel("k", &secret, &socket, "presence-call.room.a.b", Some(&data), &auth).is_err());
        prop_assert!(signing::verify_user("k", &secret, &socket, &data, &auth).is_err());
        prop_assert!(signing::verify_http_request("k", &secret, "POST", "/apps/1/events", &query, body.as_bytes(), now).is_err());
        prop_assert!(signing::verify_webhook("k", &secret, "k", &auth, body.as_bytes()).is_err());
        prop_assert!(signing::verify_turn_credential(&secret, &data, &auth, now).is_err());
        let _ = signing::parse_channel_data(&data);
    }

    #[test]
    fn chunk_assembler_with_arbitrary_event_streams(events in proptest::collection::vec(json_value(), 0..20), times in proptest::collection::vec(any::<u32>(), 20)) {
        let mut asm = ChunkAssembler::new();
        for (v, t) in events.into_iter().zip(times) {
            if let Value::Object(map) = v
                && let Ok(Incoming::Clear(e)) = parse_event("client-call.offer", &map)
            {
                let _ = asm.push(e, u64::from(t));
            }
        }
        prop_assert!(asm.pending() <= 64 * 4);
    }

    #[test]
    fn spec_markup_from_arbitrary_text(s in "(\\PC|\n){0,300}") {
        let _ = spec::parse_file("x.md", &s);
    }

    #[test]
    fn vector_runner_with_arbitrary_documents(v in json_value()) {
        let doc = json!({"groups": [{"op": "parse_event", "cases": [v.clone()]}, {"op": "guard", "cases": [v.clone()]}, {"op": "seal", "cases": [v]}]});
        let results = vectors::run_file("x.json", &doc);
        prop_assert_eq!(results.len(), 3);
    }
}
