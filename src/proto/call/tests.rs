//! The call machine's unit and property tests.

use super::*;
use proptest::prelude::*;

const CH: &str = "presence-call.room.chat-room-42.call-1";
const T0: u64 = 1_000_000;

fn party(s: &str) -> DevicePartyId {
    DevicePartyId::parse(s).unwrap()
}
fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}
fn sdp(s: &str) -> Sdp {
    Sdp::parse(&format!("v=0\r\ns={s}\r\n")).unwrap()
}
fn candidate(n: u32) -> IceCandidate {
    IceCandidate {
        candidate: crate::event::CandidateLine::parse(&format!(
            "candidate:{n} 1 udp 1 127.0.0.1 {} typ host",
            5000 + n
        ))
        .unwrap(),
        sdp_mid: Some(crate::event::SdpMid::parse("0").unwrap()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
}
fn media() -> MediaSelection {
    MediaSelection {
        audio: true,
        video: false,
        screen: false,
    }
}

/// Machines on one channel: `deliver` hands every sent event to every other machine.
struct Net {
    machines: Vec<CallMachine>,
    /// App-facing actions (everything but `Send`) per machine.
    seen: Vec<Vec<Action>>,
    sent: Vec<Vec<CallEvent>>,
}

impl Net {
    fn new(machines: Vec<CallMachine>) -> Self {
        let n = machines.len();
        Net {
            machines,
            seen: vec![Vec::new(); n],
            sent: vec![Vec::new(); n],
        }
    }

    fn deliver(&mut self, now: u64) {
        loop {
            let mut pending = Vec::new();
            for (i, m) in self.machines.iter_mut().enumerate() {
                while let Some(a) = m.poll_action() {
                    match a {
                        Action::Send(e) => {
                            self.sent[i].push(e.clone());
                            pending.push((i, e));
                        }
                        other => self.seen[i].push(other),
                    }
                }
            }
            if pending.is_empty() {
                return;
            }
            for (from, e) in pending {
                for (i, m) in self.machines.iter_mut().enumerate() {
                    if i != from {
                        m.handle_event(&e, now);
                    }
                }
            }
        }
    }

    fn kinds_sent(&self, i: usize) -> Vec<&'static str> {
        self.sent[i].iter().map(|e| e.kind().name()).collect()
    }
}

fn caller() -> CallMachine {
    CallMachine::caller(
        CallChannel::parse(CH).unwrap(),
        party("alice-phone-1"),
        user("alice"),
    )
}

/// Alice calls `callees`; returns the net with alice first, then one machine per `devices`.
fn setup(callees: &[&str], devices: &[(&str, &str)]) -> Net {
    let mut alice = caller();
    alice
        .start(
            callees.iter().map(|u| user(u)).collect(),
            media(),
            RingTimeoutMs::new(30_000).unwrap(),
            Privacy::Standard,
            T0,
        )
        .unwrap();
    let Some(Action::Send(started)) = alice.poll_action() else {
        panic!()
    };
    let mut machines = vec![alice];
    for (p, u) in devices {
        machines.push(CallMachine::callee(&started, party(p), user(u), T0).unwrap());
    }
    let mut net = Net::new(machines);
    net.sent[0].push(started);
    net
}

#[test]
fn a_whole_call_with_late_offer_and_trickled_candidates() {
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    // Alice gathers candidates early: they must wait for an accepted peer and an offer.
    net.machines[0].add_local_candidates(vec![candidate(1)], false, T0);
    net.machines[1].ring(T0).unwrap();
    net.deliver(T0);
    assert_eq!(net.machines[0].phase(), Phase::Ringing);
    assert_eq!(
        net.kinds_sent(0),
        ["call.started"],
        "no candidate before an answer"
    );

    net.machines[1].accept(T0 + 10).unwrap();
    net.deliver(T0 + 10);
    assert!(net.seen[0].contains(&Action::CreateOffer {
        to: party("bob-laptop-1")
    }));
    assert_eq!(net.machines[0].phase(), Phase::Connecting);

    let id = net.machines[0]
        .send_offer(sdp("offer"), false, T0 + 20)
        .unwrap();
    net.machines[0].add_local_candidates(vec![candidate(2)], true, T0 + 21);
    net.deliver(T0 + 21);
    assert_eq!(
        net.kinds_sent(0),
        [
            "call.started",
            "call.offer",
            "call.ice_candidate",
            "call.ice_candidate"
        ]
    );
    let last = net.sent[0].last().unwrap();
    let EventBody::IceCandidate(b) = last.body() else {
        panic!()
    };
    assert!(b.end_of_candidates, "end of candidates on the last batch");
    assert!(
        matches!(&net.seen[1][0], Action::RemoteOffer { negotiation_id, rollback: false, .. } if *negotiation_id == id)
    );
    assert_eq!(
        net.seen[1]
            .iter()
            .filter(|a| matches!(a, Action::RemoteCandidates { .. }))
            .count(),
        2
    );

    // Bob's candidates wait for his answer.
    net.machines[1].add_local_candidates(vec![candidate(3)], true, T0 + 30);
    net.deliver(T0 + 30);
    assert_eq!(net.kinds_sent(1), ["call.ringing", "call.accepted"]);
    net.machines[1]
        .send_answer(sdp("answer"), id, T0 + 40)
        .unwrap();
    net.deliver(T0 + 40);
    assert_eq!(
        net.kinds_sent(1),
        [
            "call.ringing",
            "call.accepted",
            "call.answer",
            "call.ice_candidate"
        ]
    );
    assert!(net.seen[0].contains(&Action::RemoteAnswer {
        sdp: "v=0\r\ns=answer\r\n".into()
    }));

    for m in &mut net.machines {
        m.media_connected();
        assert_eq!(m.phase(), Phase::Active);
    }
    net.machines[1].hang_up(T0 + 50).unwrap();
    net.deliver(T0 + 50);
    assert_eq!(net.machines[0].phase(), Phase::Ended(EndReason::Hangup));
    assert!(net.seen[0].contains(&Action::Ended {
        reason: EndReason::Hangup,
        by_remote: true
    }));
    // Every device's seq strictly increases.
    for sent in &net.sent {
        assert!(
            sent.windows(2)
                .all(|w| w[0].header().seq < w[1].header().seq)
        );
    }
}

#[test]
fn what_the_caller_missed_before_it_was_on_the_channel_is_said_once_more() {
    // Bob rang and accepted before alice's subscription was confirmed: both events reached
    // nobody ([FLOW-012]).
    // The invitation the callees were built from came another way (the inbox); what alice
    // sends on the channel once subscribed is her own later call.started.
    let announce_nth = |net: &Net, n: u64| {
        let first = &net.sent[0][0];
        let mut header = first.header().clone();
        header.seq = Seq::new(header.seq.get() + n).unwrap();
        CallEvent::new(Origin::Client, header, first.body().clone()).unwrap()
    };
    let announce = |net: &Net| announce_nth(net, 1);
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    let started = announce(&net);
    net.machines[1].ring(T0).unwrap();
    net.machines[1].accept(T0 + 1).unwrap();
    while net.machines[1].poll_action().is_some() {}
    assert_eq!(net.machines[0].phase(), Phase::Outgoing);
    // Alice is on the channel now and announces herself; bob says he accepted once more.
    net.machines[1].handle_event(&started, T0 + 50);
    net.deliver(T0 + 50);
    assert_eq!(net.kinds_sent(1), ["call.accepted"]);
    assert!(net.seen[0].contains(&Action::CreateOffer {
        to: party("bob-laptop-1")
    }));
    // Only once: a later, repeated announcement (FLOW-004) changes nothing.
    let again = announce_nth(&net, 2);
    net.machines[1].handle_event(&again, T0 + 60);
    net.deliver(T0 + 60);
    assert_eq!(net.kinds_sent(1), ["call.accepted"]);

    // A device still ringing rings once more.
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    let started = announce(&net);
    net.machines[1].ring(T0).unwrap();
    while net.machines[1].poll_action().is_some() {}
    net.machines[1].handle_event(&started, T0 + 50);
    net.deliver(T0 + 50);
    assert_eq!(net.kinds_sent(1), ["call.ringing"]);
    assert_eq!(net.machines[0].phase(), Phase::Ringing);
}

#[test]
fn a_second_device_of_the_callee_stops_ringing_when_the_first_answers() {
    let mut net = setup(
        &["bob"],
        &[("bob-laptop-1", "bob"), ("bob-phone-02", "bob")],
    );
    net.machines[1].ring(T0).unwrap();
    net.machines[2].ring(T0).unwrap();
    net.machines[1].accept(T0 + 5).unwrap();
    net.deliver(T0 + 5);
    assert_eq!(
        net.machines[2].phase(),
        Phase::Ended(EndReason::AnsweredElsewhere)
    );
    assert_eq!(
        net.kinds_sent(2),
        ["call.ringing"],
        "the other device sends nothing"
    );
    assert_eq!(net.machines[0].peer(), Some(&party("bob-laptop-1")));
}

#[test]
fn two_acceptances_keep_the_first_and_end_the_other() {
    let mut net = setup(
        &["bob"],
        &[("bob-laptop-1", "bob"), ("bob-phone-02", "bob")],
    );
    // Both accept before either sees the other's acceptance.
    net.machines[1].accept(T0).unwrap();
    net.machines[2].accept(T0).unwrap();
    let mut first = Vec::new();
    for i in [1, 2] {
        while let Some(Action::Send(e)) = net.machines[i].poll_action() {
            first.push(e);
        }
    }
    for e in &first {
        net.machines[0].handle_event(e, T0);
    }
    net.deliver(T0);
    assert_eq!(net.machines[0].peer(), Some(&party("bob-laptop-1")));
    let ended = net.sent[0]
        .iter()
        .find(|e| e.kind().name() == "call.ended")
        .expect("caller ends the second");
    let EventBody::Ended(b) = ended.body() else {
        panic!()
    };
    assert_eq!(
        (b.reason, b.to_party_id.clone()),
        (EndReason::AnsweredElsewhere, Some(party("bob-phone-02")))
    );
    assert_eq!(
        net.machines[2].phase(),
        Phase::Ended(EndReason::AnsweredElsewhere)
    );
    assert_eq!(
        net.machines[1].phase(),
        Phase::Connecting,
        "the first is unaffected"
    );
}

#[test]
fn decline_and_busy_end_a_one_callee_call() {
    for busy in [false, true] {
        let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
        net.machines[1].decline(busy, T0).unwrap();
        net.deliver(T0);
        let want = if busy {
            EndReason::Busy
        } else {
            EndReason::Declined
        };
        assert_eq!(net.machines[0].phase(), Phase::Ended(want));
    }
    // With two callees one decline leaves the call ringing.
    let mut net = setup(
        &["bob", "carol"],
        &[("bob-laptop-1", "bob"), ("carol-phone-1", "carol")],
    );
    net.machines[1].decline(false, T0).unwrap();
    net.deliver(T0);
    assert_eq!(net.machines[0].phase(), Phase::Outgoing);
    assert_eq!(
        net.machines[2].phase(),
        Phase::Incoming,
        "a callee ignores another callee's decline"
    );
}

#[test]
fn caller_cancels_before_an_answer() {
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    net.machines[1].ring(T0).unwrap();
    net.machines[0].hang_up(T0 + 1).unwrap();
    net.deliver(T0 + 1);
    assert_eq!(net.machines[0].phase(), Phase::Ended(EndReason::Cancelled));
    assert_eq!(net.machines[1].phase(), Phase::Ended(EndReason::Cancelled));
}

#[test]
fn ring_timeout_own_or_left_to_the_server() {
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    net.machines[1].ring(T0).unwrap();
    net.deliver(T0);
    assert_eq!(net.machines[0].next_timeout(), Some(T0 + 30_000));
    net.machines[0].handle_timeout(T0 + 29_999);
    assert_eq!(net.machines[0].phase(), Phase::Ringing);
    net.machines[0].handle_timeout(T0 + 30_000);
    net.deliver(T0 + 30_000);
    assert_eq!(net.machines[0].phase(), Phase::Ended(EndReason::NoAnswer));
    assert_eq!(net.machines[1].phase(), Phase::Ended(EndReason::NoAnswer));

    // With a trusted server in charge the caller waits for the server's call.ended.
    let mut alice = caller().with_server_ring_timeout();
    alice
        .start(
            vec![user("bob")],
            media(),
            RingTimeoutMs::new(5_000).unwrap(),
            Privacy::Standard,
            T0,
        )
        .unwrap();
    alice.handle_timeout(T0 + 60_000);
    assert_eq!(alice.phase(), Phase::Outgoing);
    let server_end = CallEvent::new(
        Origin::Server,
        EventHeader {
            v: ProtocolVersion,
            call_id: CallId::parse("call-1").unwrap(),
            party_id: PartyId::server(),
            user_id: user("alice"),
            seq: Seq::new(2).unwrap(),
            sent_at_ms: UnixMillis::new(0).unwrap(),
        },
        EventBody::Ended(EndedBody {
            reason: EndReason::NoAnswer,
            to_party_id: None,
        }),
    )
    .unwrap();
    assert!(alice.handle_event(&server_end, T0 + 60_000));
    assert_eq!(alice.phase(), Phase::Ended(EndReason::NoAnswer));
}

#[test]
fn media_that_does_not_connect_in_time_ends_the_call_with_ice_failed() {
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    net.machines[1].set_connect_timeout(5_000);
    net.machines[1].accept(T0).unwrap();
    net.deliver(T0);
    assert_eq!(net.machines[0].phase(), Phase::Connecting);
    assert_eq!(
        net.machines[0].next_timeout(),
        Some(T0 + MEDIA_CONNECT_TIMEOUT_MS)
    );
    assert_eq!(net.machines[1].next_timeout(), Some(T0 + 5_000));
    net.machines[1].handle_timeout(T0 + 4_999);
    assert_eq!(net.machines[1].phase(), Phase::Connecting);
    net.machines[1].handle_timeout(T0 + 5_000);
    net.deliver(T0 + 5_000);
    assert_eq!(net.machines[1].phase(), Phase::Ended(EndReason::IceFailed));
    assert_eq!(
        net.machines[0].phase(),
        Phase::Ended(EndReason::IceFailed),
        "the other side hears of it through call.ended"
    );

    // Once media is up the connect timeout is gone.
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    connected(&mut net);
    assert_eq!(net.machines[0].next_timeout(), None);
    net.machines[0].handle_timeout(T0 + 10 * MEDIA_CONNECT_TIMEOUT_MS);
    assert_eq!(net.machines[0].phase(), Phase::Active);
}

fn connected(net: &mut Net) -> u32 {
    net.machines[1].accept(T0).unwrap();
    net.deliver(T0);
    let id = net.machines[0].send_offer(sdp("o1"), false, T0).unwrap();
    net.deliver(T0);
    net.machines[1].send_answer(sdp("a1"), id, T0).unwrap();
    net.deliver(T0);
    for m in &mut net.machines {
        m.media_connected();
    }
    id
}

#[test]
fn colliding_renegotiation_the_callee_is_polite() {
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    connected(&mut net);
    net.seen = vec![Vec::new(), Vec::new()];
    // Both offer at once.
    net.machines[0]
        .send_offer(sdp("caller-reoffer"), false, T0 + 1)
        .unwrap();
    net.machines[1]
        .send_offer(sdp("callee-reoffer"), true, T0 + 1)
        .unwrap();
    let mut crossing = Vec::new();
    for i in [0, 1] {
        while let Some(Action::Send(e)) = net.machines[i].poll_action() {
            crossing.push((i, e));
        }
    }
    for (from, e) in &crossing {
        net.machines[1 - from].handle_event(e, T0 + 2);
    }
    net.deliver(T0 + 2);
    assert!(
        net.seen[1].iter().any(|a| matches!(a, Action::RemoteOffer { rollback: true, sdp, .. } if sdp.contains("caller-reoffer"))),
        "the polite callee rolls back and takes the caller's offer: {:?}",
        net.seen[1]
    );
    assert!(
        !net.seen[0]
            .iter()
            .any(|a| matches!(a, Action::RemoteOffer { .. })),
        "the impolite caller ignores the collision"
    );
}

#[test]
fn answers_must_match_the_outstanding_offer() {
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    let id = connected(&mut net);
    net.seen[0].clear();
    net.machines[1]
        .send_answer(sdp("stale"), id, T0 + 5)
        .unwrap();
    net.deliver(T0 + 5);
    assert!(
        net.seen[0].is_empty(),
        "no offer is outstanding, so the answer is ignored"
    );
}

#[test]
fn replays_foreign_addresses_and_ended_calls_are_ignored() {
    let mut net = setup(&["bob"], &[("bob-laptop-1", "bob")]);
    net.machines[1].ring(T0).unwrap();
    let Some(Action::Send(ringing)) = net.machines[1].poll_action() else {
        panic!()
    };
    assert!(net.machines[0].handle_event(&ringing, T0));
    assert!(!net.machines[0].handle_event(&ringing, T0), "replay");
    net.machines[0].hang_up(T0).unwrap();
    assert!(net.machines[0].accept(T0).is_err());
    assert!(
        net.machines[0]
            .send_media_state(
                MediaStateBody {
                    audio: crate::event::AudioState { muted: true },
                    video: crate::event::VideoState { enabled: false },
                    screen: crate::event::ScreenState { sharing: false },
                    on_hold: false,
                },
                T0
            )
            .is_err()
    );
}

#[test]
fn glare_keeps_the_lower_call_id() {
    let (a, b) = (
        CallId::parse("call-a").unwrap(),
        CallId::parse("call-b").unwrap(),
    );
    assert_eq!(glare_winner(&a, &b), &a);
    assert_eq!(glare_winner(&b, &a), &a);
    let (upper, lower) = (CallId::parse("Z").unwrap(), CallId::parse("a").unwrap());
    assert_eq!(
        glare_winner(&upper, &lower),
        &upper,
        "byte order: 'Z' < 'a'"
    );
}

/// Bob's invitation to alice on `channel`, as alice's inbox would carry it.
fn bobs_invitation(channel: &str, callees: &[&str]) -> StartedBody {
    let mut bob = CallMachine::caller(
        CallChannel::parse(channel).unwrap(),
        party("bob-phone-1"),
        user("bob"),
    );
    bob.start(
        callees.iter().map(|u| user(u)).collect(),
        media(),
        RingTimeoutMs::new(30_000).unwrap(),
        Privacy::Standard,
        T0,
    )
    .unwrap();
    bob.started().unwrap().clone()
}

#[test]
fn crossing_calls_are_decided_by_the_lower_call_id() {
    // Alice calls bob on call-1 (the setup's channel).
    let mut net = setup(&["bob"], &[]);
    let alice = &net.machines[0];
    let lower = bobs_invitation("presence-call.room.chat-room-42.call-0", &["alice"]);
    let higher = bobs_invitation("private-call.room.chat-room-42.call-2", &["alice"]);
    assert_eq!(alice.crossing(&lower), Crossing::YieldToTheirs);
    assert_eq!(alice.crossing(&higher), Crossing::KeepMine);
    // Not a glare: another scope, a call to someone else, from someone alice does not call.
    let elsewhere = bobs_invitation("presence-call.room.chat-room-43.call-0", &["alice"]);
    let to_carol = bobs_invitation("presence-call.room.chat-room-42.call-0", &["carol"]);
    assert_eq!(alice.crossing(&elsewhere), Crossing::Unrelated);
    assert_eq!(alice.crossing(&to_carol), Crossing::Unrelated);
    let mut dave = bobs_invitation("presence-call.room.chat-room-42.call-0", &["alice"]);
    dave.caller = user("dave");
    assert_eq!(alice.crossing(&dave), Crossing::Unrelated);
    // Once someone accepted, an invitation no longer crosses the call.
    let mut bob =
        CallMachine::callee(&net.sent[0][0], party("bob-phone-1"), user("bob"), T0).unwrap();
    bob.accept(T0).unwrap();
    while let Some(a) = bob.poll_action() {
        if let Action::Send(e) = a {
            net.machines[0].handle_event(&e, T0);
        }
    }
    assert_eq!(net.machines[0].phase(), Phase::Connecting);
    assert_eq!(net.machines[0].crossing(&lower), Crossing::Unrelated);
    // A callee's call never crosses an invitation.
    assert_eq!(bob.crossing(&lower), Crossing::Unrelated);
}

#[derive(Debug, Clone)]
enum Op {
    Ring(usize),
    Accept(usize),
    Decline(usize),
    HangUp(usize),
    Offer,
    Answer,
    Candidates(usize, bool),
    Timeout(u64),
    Deliver,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..3).prop_map(Op::Ring),
        (1usize..3).prop_map(Op::Accept),
        (1usize..3).prop_map(Op::Decline),
        (0usize..3).prop_map(Op::HangUp),
        Just(Op::Offer),
        Just(Op::Answer),
        ((0usize..3), any::<bool>()).prop_map(|(i, e)| Op::Candidates(i, e)),
        (0u64..40_000).prop_map(Op::Timeout),
        Just(Op::Deliver),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_for_any_sequence(ops in proptest::collection::vec(op(), 1..40)) {
        let mut net = setup(&["bob"], &[("bob-laptop-1", "bob"), ("bob-phone-02", "bob")]);
        let mut now = T0;
        let mut last_offer_id = 0;
        for op in ops {
            now += 10;
            let was_ended: Vec<bool> = net.machines.iter().map(|m| matches!(m.phase(), Phase::Ended(_))).collect();
            match op {
                Op::Ring(i) => { let _ = net.machines[i].ring(now); }
                Op::Accept(i) => { let _ = net.machines[i].accept(now); }
                Op::Decline(i) => { let _ = net.machines[i].decline(false, now); }
                Op::HangUp(i) => { let _ = net.machines[i].hang_up(now); }
                Op::Offer => { if let Ok(id) = net.machines[0].send_offer(sdp("o"), false, now) { last_offer_id = id; } }
                Op::Answer => { for i in 1..3 { let _ = net.machines[i].send_answer(sdp("a"), last_offer_id, now); } }
                Op::Candidates(i, end) => net.machines[i].add_local_candidates(vec![candidate(7)], end, now),
                Op::Timeout(dt) => { for m in &mut net.machines { m.handle_timeout(now + dt); } }
                Op::Deliver => net.deliver(now),
            }
            net.deliver(now);
            for (i, m) in net.machines.iter().enumerate() {
                prop_assert!(!was_ended[i] || matches!(m.phase(), Phase::Ended(_)), "machine {} left Ended", i);
            }
        }
        // The caller never sent SDP or candidates to anyone but an accepting party, and only
        // after that party's acceptance.
        let accepted_at: Vec<(DevicePartyId, u64)> = net.sent[1..].iter().enumerate()
            .flat_map(|(i, s)| s.iter().filter(|e| e.kind().name() == "call.accepted")
                .map(move |e| (party(if i == 0 { "bob-laptop-1" } else { "bob-phone-02" }), e.header().sent_at_ms.get())))
            .collect();
        for e in &net.sent[0] {
            if let Some(to) = e.body().to_party_id()
                && matches!(e.kind().name(), "call.offer" | "call.ice_candidate")
            {
                prop_assert!(accepted_at.iter().any(|(p, t)| p == to && *t <= e.header().sent_at_ms.get()),
                    "{} sent to {} without an acceptance", e.kind().name(), to);
            }
        }
        for sent in &net.sent {
            prop_assert!(sent.windows(2).all(|w| w[0].header().seq < w[1].header().seq));
        }
    }
}
