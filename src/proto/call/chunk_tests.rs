//! The call machine with chunked SDP: offers and answers split across events.

use super::*;

#[test]
fn large_offers_are_chunked_with_consecutive_seqs() {
    let mut alice = CallMachine::caller(
        CallChannel::parse("presence-call.room.chat-room-42.call-1").unwrap(),
        DevicePartyId::parse("alice-phone-1").unwrap(),
        UserId::parse("alice").unwrap(),
    )
    .with_event_limit(1200, true);
    alice
        .start(
            vec![UserId::parse("bob").unwrap()],
            MediaSelection {
                audio: true,
                video: false,
                screen: false,
            },
            RingTimeoutMs::default(),
            Privacy::Strong,
            0,
        )
        .unwrap();
    let _ = alice.poll_action();
    let accepted = CallEvent::new(
        Origin::Client,
        EventHeader {
            v: ProtocolVersion,
            call_id: CallId::parse("call-1").unwrap(),
            party_id: PartyId::parse("bob-laptop-1").unwrap(),
            user_id: UserId::parse("bob").unwrap(),
            seq: Seq::new(1).unwrap(),
            sent_at_ms: UnixMillis::new(0).unwrap(),
        },
        EventBody::Accepted,
    )
    .unwrap();
    assert!(alice.handle_event(&accepted, 1));
    while alice.poll_action().is_some() {}
    let sdp = format!("v=0\r\n{}", "a=x-filler:0123456789abcdef\r\n".repeat(60));
    alice
        .send_offer(Sdp::parse(&sdp).unwrap(), false, 2)
        .unwrap();
    alice.add_local_candidates(vec![], true, 3);
    let sent: Vec<CallEvent> = std::iter::from_fn(|| alice.poll_action())
        .filter_map(|a| match a {
            Action::Send(e) => Some(e),
            _ => None,
        })
        .collect();
    let offers = sent
        .iter()
        .filter(|e| e.kind().name() == "call.offer")
        .count();
    assert!(offers >= 2, "{offers} offer events");
    let seqs: Vec<u64> = sent.iter().map(|e| e.header().seq.get()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive, no reuse: {seqs:?}"
    );
}
