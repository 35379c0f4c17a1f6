//! Two reference WebRTC peers on loopback, signaling handed across directly: ICE, DTLS, the data
//! channel echo and Opus RTP both ways. The signaling path through the servers is tested in
//! `tests/call_flow.rs`.
#![cfg(feature = "media")]

use std::time::Duration;

use domvia_calls::media::{MediaPeer, PeerOptions, PeerSignal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_connect_echo_and_exchange_rtp() {
    let mut caller = MediaPeer::new(&PeerOptions::default()).await.unwrap();
    let mut callee = MediaPeer::new(&PeerOptions::default()).await.unwrap();
    let offer = caller.create_offer().await.unwrap();
    assert!(offer.starts_with("v=0"));
    let answer = callee.accept_offer(&offer, false).await.unwrap();
    caller.accept_answer(&answer).await.unwrap();

    let (mut echo, mut rtp_at_caller, mut rtp_at_callee, mut connected) = (false, false, false, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !(echo && rtp_at_caller && rtp_at_callee) {
        let step = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                s = caller.next_signal() => (0, s),
                s = callee.next_signal() => (1, s),
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out: echo {echo}, rtp {rtp_at_caller}/{rtp_at_callee}, connected {connected}"
            )
        });
        match step {
            (from, Some(PeerSignal::LocalCandidate(c))) => {
                let to = if from == 0 { &callee } else { &caller };
                assert!(
                    c.candidate.as_str().contains("127.0.0.1"),
                    "loopback only: {}",
                    c.candidate
                );
                to.add_remote_candidate(&c).await.unwrap();
            }
            (from, Some(PeerSignal::Connected)) => {
                connected += 1;
                let peer = if from == 0 { &caller } else { &callee };
                peer.start_audio(Duration::from_secs(5));
            }
            (0, Some(PeerSignal::DataMessage(m))) => {
                assert_eq!(m, "echo:ping");
                echo = true;
            }
            (0, Some(PeerSignal::FirstRtp)) => rtp_at_caller = true,
            (1, Some(PeerSignal::FirstRtp)) => rtp_at_callee = true,
            (_, Some(PeerSignal::Failed(e))) => panic!("peer failed: {e}"),
            (_, Some(_)) => {}
            (_, None) => panic!("a peer stopped"),
        }
    }
    assert_eq!(connected, 2);
    caller.close().await;
    callee.close().await;
}
