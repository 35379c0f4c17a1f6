use super::*;
use crate::event::{
    AudioState, EventBody, MediaStateBody, OfferBody, ProtocolVersion, ScreenState, Sdp, Seq,
    UnixMillis, VideoState,
};
use crate::ids::DevicePartyId;
use crate::ids::{CallId, PartyId, UserId};
use proptest::prelude::*;

fn channel() -> CallChannel {
    CallChannel::parse("private-call.room.chat-room-42.call-9001").unwrap()
}

fn key() -> ChannelKey {
    ChannelKey::derive(&[7u8; 32], &channel())
}

fn header(seq: u64) -> EventHeader {
    EventHeader {
        v: ProtocolVersion,
        call_id: CallId::parse("call-9001").unwrap(),
        party_id: PartyId::parse("alice-phone-1").unwrap(),
        user_id: UserId::parse("alice").unwrap(),
        seq: Seq::new(seq).unwrap(),
        sent_at_ms: UnixMillis::new(1_700_000_000_000).unwrap(),
    }
}

fn offer(seq: u64, sdp: &str) -> CallEvent {
    CallEvent::new(
        Origin::Client,
        header(seq),
        EventBody::Offer(OfferBody {
            to_party_id: DevicePartyId::parse("bob-laptop-1").unwrap(),
            sdp: Sdp::parse(sdp).unwrap(),
            negotiation_id: 1,
            ice_restart: false,
            chunk: None,
        }),
    )
    .unwrap()
}

fn media(seq: u64) -> CallEvent {
    CallEvent::new(
        Origin::Client,
        header(seq),
        EventBody::MediaState(MediaStateBody {
            audio: AudioState { muted: true },
            video: VideoState { enabled: false },
            screen: ScreenState { sharing: false },
            on_hold: false,
        }),
    )
    .unwrap()
}

fn reparse(sealed: &SealedEvent) -> Incoming {
    parse_event(&sealed.wire_name(), &sealed.to_data()).unwrap()
}

#[test]
fn seal_then_open_restores_the_event() {
    let e = offer(3, "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n");
    let sealed = seal(&key(), &channel(), &e, [1u8; 24]).unwrap();
    let data = sealed.to_data();
    assert!(
        !data.contains_key("sdp"),
        "the SDP must not travel in clear"
    );
    assert_eq!(data["to_party_id"], "bob-laptop-1");
    let Incoming::Sealed(back) = reparse(&sealed) else {
        panic!("expected the sealed form")
    };
    assert_eq!(open(&key(), &channel(), &back).unwrap(), e);
}

#[test]
fn key_derivation_depends_on_the_channel_and_round_trips_as_shared_secret() {
    let other = CallChannel::parse("private-call.room.chat-room-42.call-9002").unwrap();
    assert_ne!(
        ChannelKey::derive(&[7u8; 32], &other).shared_secret(),
        key().shared_secret()
    );
    let k = ChannelKey::from_shared_secret(&key().shared_secret()).unwrap();
    assert_eq!(k, key());
    assert_eq!(k.kid().len(), 12);
    assert_eq!(
        ChannelKey::from_shared_secret("c2hvcnQ=")
            .unwrap_err()
            .code(),
        "envelope.bad_shared_secret"
    );
    assert!(!format!("{k:?}").contains(&k.shared_secret()));
}

#[test]
fn any_change_to_the_bound_fields_fails_authentication() {
    let sealed = seal(&key(), &channel(), &offer(3, "v=0\r\n"), [2u8; 24]).unwrap();
    // Same bytes, replayed under another seq: the AAD differs.
    let mut data = sealed.to_data();
    data.insert("seq".into(), 4.into());
    let Incoming::Sealed(moved) = parse_event("client-call.offer", &data).unwrap() else {
        panic!()
    };
    assert_eq!(
        open(&key(), &channel(), &moved).unwrap_err().code(),
        "envelope.authentication_failed"
    );
    // Opened against another channel.
    let other = CallChannel::parse("presence-call.room.chat-room-42.call-9001").unwrap();
    assert_eq!(
        open(&key(), &other, &sealed).unwrap_err().code(),
        "envelope.authentication_failed"
    );
    // Presented as another event kind.
    let Incoming::Sealed(as_answer) = parse_event("client-call.answer", &sealed.to_data()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        open(&key(), &channel(), &as_answer).unwrap_err().code(),
        "envelope.authentication_failed"
    );
    // One flipped ciphertext bit.
    let mut data = sealed.to_data();
    let ct = data["sealed"]["ct"].as_str().unwrap().to_owned();
    let mut bytes = URL_SAFE_NO_PAD.decode(ct).unwrap();
    bytes[0] ^= 1;
    data["sealed"]["ct"] = URL_SAFE_NO_PAD.encode(bytes).into();
    let Incoming::Sealed(tampered) = parse_event("client-call.offer", &data).unwrap() else {
        panic!()
    };
    assert_eq!(
        open(&key(), &channel(), &tampered).unwrap_err().code(),
        "envelope.authentication_failed"
    );
}

#[test]
fn guard_rejects_downgrade_replay_and_unknown_keys() {
    let mut guard = PrivacyGuard::new(channel(), Privacy::Strong);
    guard.install_key(key());
    let clear = Incoming::Clear(offer(1, "v=0\r\n"));
    assert_eq!(
        guard.receive(clear).unwrap_err().code(),
        "envelope.downgrade"
    );
    let sealed = seal(&key(), &channel(), &media(2), [3u8; 24]).unwrap();
    guard.receive(reparse(&sealed)).unwrap();
    assert_eq!(
        guard.receive(reparse(&sealed)).unwrap_err().code(),
        "envelope.replay"
    );
    // Non-sensitive events may stay clear in a strong call.
    let ringing = CallEvent::new(Origin::Client, header(3), EventBody::Ringing).unwrap();
    guard.receive(Incoming::Clear(ringing)).unwrap();

    let rotated = ChannelKey::from_bytes([9u8; 32]);
    let sealed = seal(&rotated, &channel(), &media(4), [4u8; 24]).unwrap();
    assert_eq!(
        guard.receive(reparse(&sealed)).unwrap_err().code(),
        "envelope.refetch_key"
    );
    assert_eq!(
        guard.receive(reparse(&sealed)).unwrap_err().code(),
        "envelope.unknown_kid"
    );
    guard.install_key(rotated);
    guard.receive(reparse(&sealed)).unwrap();
}

#[test]
fn a_forged_event_does_not_burn_a_sequence_number() {
    let mut guard = PrivacyGuard::new(channel(), Privacy::Strong);
    guard.install_key(key());
    let forged = seal(
        &ChannelKey::from_bytes([1u8; 32]),
        &channel(),
        &media(5),
        [0; 24],
    )
    .unwrap();
    let mut data = forged.to_data();
    data["sealed"]["kid"] = key().kid().into();
    let Incoming::Sealed(forged) = parse_event("client-call.media_state", &data).unwrap() else {
        panic!()
    };
    assert!(guard.receive(Incoming::Sealed(forged)).is_err());
    let genuine = seal(&key(), &channel(), &media(5), [5u8; 24]).unwrap();
    guard.receive(reparse(&genuine)).unwrap();
}

#[test]
fn standard_calls_refuse_sealed_events() {
    let mut guard = PrivacyGuard::new(channel(), Privacy::Standard);
    let sealed = seal(&key(), &channel(), &media(1), [0; 24]).unwrap();
    assert_eq!(
        guard.receive(reparse(&sealed)).unwrap_err().code(),
        "envelope.unexpected_sealed"
    );
}

#[test]
fn plaintext_cannot_override_clear_members() {
    let k = key();
    let h = header(1);
    let aad = associated_data(EventKind::MediaState, &channel(), &h);
    let plaintext = br#"{"audio":{"muted":true},"video":{"enabled":false},"screen":{"sharing":false},"on_hold":false,"user_id":"mallory"}"#;
    let nonce = [8u8; 24];
    let ct = k
        .cipher()
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .unwrap();
    let sealed = SealedEvent {
        kind: EventKind::MediaState,
        header: h,
        to_party_id: None,
        sealed: SealedBox {
            alg: ALG.into(),
            kid: k.kid().into(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ct: URL_SAFE_NO_PAD.encode(ct),
        },
    };
    assert_eq!(
        open(&k, &channel(), &sealed).unwrap_err().code(),
        "envelope.plaintext_overrides_header"
    );
}

#[test]
fn only_sensitive_client_events_are_sealed() {
    let ringing = CallEvent::new(Origin::Client, header(1), EventBody::Ringing).unwrap();
    assert_eq!(
        seal(&key(), &channel(), &ringing, [0; 24])
            .unwrap_err()
            .code(),
        "envelope.not_sensitive"
    );
    let mut data = seal(&key(), &channel(), &media(1), [0; 24])
        .unwrap()
        .to_data();
    assert_eq!(
        parse_event("client-call.ringing", &data)
            .unwrap_err()
            .code(),
        "event.sealed_not_allowed"
    );
    data.insert("party_id".into(), "server".into());
    assert_eq!(
        parse_event("call.media_state", &data).unwrap_err().code(),
        "event.sealed_not_allowed"
    );
}

proptest! {
    #[test]
    fn seal_open_round_trip(sdp_tail in "[ -~]{0,300}", seq in 0u64..1_000_000, nonce in any::<[u8; 24]>()) {
        let e = offer(seq, &format!("v=0\r\n{sdp_tail}"));
        let sealed = seal(&key(), &channel(), &e, nonce).unwrap();
        let Incoming::Sealed(back) = reparse(&sealed) else { panic!() };
        prop_assert_eq!(open(&key(), &channel(), &back).unwrap(), e);
    }
}

#[test]
fn keyring_evicts_the_oldest_key() {
    let mut ring = Keyring::new();
    let keys: Vec<ChannelKey> = (0u8..5).map(|i| ChannelKey::from_bytes([i; 32])).collect();
    for k in &keys[..4] {
        ring.insert(k.clone());
    }
    ring.insert(keys[0].clone()); // refreshed: now the newest
    ring.insert(keys[4].clone());
    assert!(ring.get(keys[1].kid()).is_none(), "the oldest is evicted");
    for k in [&keys[0], &keys[2], &keys[3], &keys[4]] {
        assert!(ring.get(k.kid()).is_some());
    }
}

#[test]
fn refetching_is_bounded() {
    let mut guard = PrivacyGuard::new(channel(), Privacy::Strong);
    let mut refetches = 0;
    for i in 0..20u8 {
        let k = ChannelKey::from_bytes([i; 32]);
        let sealed = seal(&k, &channel(), &media(u64::from(i) + 1), [0; 24]).unwrap();
        if guard.receive(reparse(&sealed)).unwrap_err().code() == "envelope.refetch_key" {
            refetches += 1;
        }
    }
    assert_eq!(refetches, MAX_REFETCHED_KIDS);
}
