//! The signaling-only session API (for apps with their own WebRTC stack) over the reference
//! servers: every event kind is received as a notice and sent with its own method.
#![cfg(feature = "media")]

mod common;

use std::time::Duration;

use domvia_calls::call::{Action, Phase};
use domvia_calls::event::{
    AudioState, CandidateLine, EndReason, IceCandidate, MediaStateBody, ScreenState, SdpMid,
    VideoState,
};
use domvia_calls::session::{Inbox, Signaling};
use serde_json::json;

async fn next(s: &mut Signaling) -> Action {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    s.next_event(deadline)
        .await
        .unwrap()
        .expect("a notice before the deadline")
}

#[tokio::test]
async fn every_event_through_the_signaling_api() {
    for privacy in ["standard", "strong"] {
        let s = common::calls::stack("signaling", |_| {}).await;
        let device = |user: &str| common::calls::device(&s, user);
        let inbox = Inbox::open(&device("bob")).await.unwrap();
        let request = json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"], "privacy": privacy});
        let (mut alice, _) = Signaling::place(&device("alice"), request).await.unwrap();
        let mut bob = inbox
            .next_invitation(Duration::from_secs(10))
            .await
            .unwrap();

        assert!(matches!(next(&mut alice).await, Action::PeerRinging { .. }));
        bob.accept().unwrap();
        assert!(matches!(
            next(&mut alice).await,
            Action::PeerAccepted { .. }
        ));
        assert!(matches!(next(&mut alice).await, Action::CreateOffer { .. }));
        let id = alice.send_offer("v=0\r\ns=alice\r\n", false).unwrap();
        let Action::RemoteOffer {
            sdp,
            negotiation_id,
            ..
        } = next(&mut bob).await
        else {
            panic!("offer expected")
        };
        assert_eq!((sdp.as_str(), negotiation_id), ("v=0\r\ns=alice\r\n", id));
        bob.send_answer("v=0\r\ns=bob\r\n", id).unwrap();
        assert_eq!(
            next(&mut alice).await,
            Action::RemoteAnswer {
                sdp: "v=0\r\ns=bob\r\n".into()
            }
        );

        let candidate = IceCandidate {
            candidate: CandidateLine::parse(
                "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
            )
            .unwrap(),
            sdp_mid: Some(SdpMid::parse("0").unwrap()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        };
        alice.add_local_candidates(vec![candidate.clone()], true);
        assert_eq!(
            next(&mut bob).await,
            Action::RemoteCandidates {
                candidates: vec![candidate],
                end_of_candidates: true
            }
        );

        let state = MediaStateBody {
            audio: AudioState { muted: true },
            video: VideoState { enabled: false },
            screen: ScreenState { sharing: false },
            on_hold: false,
        };
        bob.send_media_state(state).unwrap();
        assert_eq!(next(&mut alice).await, Action::RemoteMediaState(state));

        bob.hang_up().unwrap();
        assert_eq!(
            next(&mut alice).await,
            Action::Ended {
                reason: EndReason::Hangup,
                by_remote: true
            }
        );
        assert_eq!(alice.phase(), Phase::Ended(EndReason::Hangup));
        alice.close().await;
        bob.close().await;
        s.shutdown().await;
    }
}

#[tokio::test]
async fn a_session_for_a_call_id_and_channel_without_a_trusted_server() {
    use domvia_calls::call::CallMachine;
    use domvia_calls::channel::CallChannel;
    use domvia_calls::client::{Auth, ClientConfig, RealtimeClient};
    use domvia_calls::event::{MediaSelection, Privacy, RingTimeoutMs};
    use domvia_calls::ids::{DevicePartyId, UserId};
    use domvia_calls::signing::Secret;

    // Only a realtime server; both devices sign with the app secret (as a trusted backend would).
    let server = common::start().await;
    let connect = |user: &str| {
        RealtimeClient::connect(ClientConfig {
            defect: None,
            url: format!("ws://{}/app/{}", server.addr(), common::KEY),
            auth: Auth::Signer {
                key: common::KEY.into(),
                secret: Secret::new(common::SECRET),
                presence_user: Some((user.into(), json!({}))),
            },
            events_per_second: None,
            tap: None,
        })
    };
    let channel = CallChannel::parse("presence-call.support.ticket-1.call-77").unwrap();
    let caller = CallMachine::caller(
        channel.clone(),
        DevicePartyId::parse("carol-desk-01").unwrap(),
        UserId::parse("carol").unwrap(),
    );
    let mut carol = Signaling::join(caller, connect("carol").await.unwrap(), Privacy::Standard)
        .await
        .unwrap();
    // Dave's device learns of the call from carol's call.started on the channel it joined.
    let dave_client = connect("dave").await.unwrap();
    dave_client.subscribe(&channel.to_string()).await.unwrap();
    carol
        .start(
            vec![UserId::parse("dave").unwrap()],
            MediaSelection {
                audio: true,
                video: true,
                screen: false,
            },
            RingTimeoutMs::default(),
            Privacy::Standard,
        )
        .unwrap();
    let mut dave_client = dave_client;
    let started = loop {
        if let Some(domvia_calls::client::ClientEvent::Event {
            channel: ch,
            event,
            data,
            user_id,
        }) = dave_client.next_event().await
        {
            let frame = domvia_calls::pusher::Frame {
                event,
                channel: ch,
                data,
                user_id,
            };
            if let Ok((_, domvia_calls::event::Incoming::Clear(e))) =
                domvia_calls::event::parse_frame(&frame)
            {
                break e;
            }
        }
    };
    let callee = CallMachine::callee(
        &started,
        DevicePartyId::parse("dave-desk-01").unwrap(),
        UserId::parse("dave").unwrap(),
        0,
    )
    .unwrap();
    let mut dave = Signaling::join(callee, dave_client, Privacy::Standard)
        .await
        .unwrap();
    dave.accept().unwrap();
    assert!(matches!(
        next(&mut carol).await,
        Action::PeerAccepted { .. }
    ));
    assert!(matches!(next(&mut carol).await, Action::CreateOffer { .. }));
    let id = carol.send_offer("v=0\r\ns=carol\r\n", false).unwrap();
    assert!(
        matches!(next(&mut dave).await, Action::RemoteOffer { negotiation_id, .. } if negotiation_id == id)
    );
    server.shutdown().await;
}
