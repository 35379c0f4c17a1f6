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
use domvia_calls::session::{Device, Inbox, Signaling};
use domvia_calls::stack::{self, StackConfig};
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
        let mut cfg = StackConfig::development(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        cfg.trusted.data_dir = common::temp_dir("signaling");
        let s = stack::start(cfg).await.unwrap();
        let device = |user: &str| {
            Device::new(
                &format!("ws://{}/app/domvia-key", s.realtime.addr()),
                &format!("http://{}", s.trusted.addr()),
                &format!("{user}-token"),
                user,
            )
            .unwrap()
        };
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
        alice
            .add_local_candidates(vec![candidate.clone()], true)
            .unwrap();
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
