//! A call from start to hang-up: ringing, the answer and its report, offer and answer, local
//! candidates batched over one window, media up, and the end heard by both.

use domvia_calls::call::{Action, Phase};
use domvia_calls::call_endpoint::ActionReport;
use domvia_calls::event::{EndReason, Privacy};
use domvia_calls::limits::CANDIDATE_BATCH_WINDOW_MS;

use crate::call::{act, candidate, ringing_call, sdp};
use crate::world::World;

#[test]
fn a_call_rings_connects_batches_candidates_and_ends_for_both() {
    let mut w = World::new();
    let (a, b) = ringing_call(&mut w, Privacy::Standard);
    assert!(
        w.clients[a]
            .actions()
            .iter()
            .any(|x| matches!(x, Action::PeerRinging { .. })),
        "the caller hears the callee ring"
    );

    act(&mut w, b, |e, now| e.accept(now)).unwrap();
    assert_eq!(
        w.clients[b]
            .reports
            .iter()
            .map(|(_, r)| *r)
            .collect::<Vec<_>>(),
        vec![ActionReport::Accept],
        "the answer is reported to the trusted server"
    );
    assert!(matches!(
        w.clients[a].actions().last(),
        Some(Action::CreateOffer { .. })
    ));

    act(&mut w, a, |e, now| e.send_offer(&sdp("offer"), false, now)).unwrap();
    let Some(Action::RemoteOffer {
        sdp: offer,
        negotiation_id,
        rollback: false,
        ..
    }) = w.clients[b].actions().last().cloned().cloned()
    else {
        panic!("the callee got the offer: {:?}", w.clients[b].actions())
    };
    assert_eq!(offer, sdp("offer"));
    act(&mut w, b, |e, now| {
        e.send_answer(&sdp("answer"), negotiation_id, now)
    })
    .unwrap();
    assert_eq!(
        w.clients[a].actions().last().cloned().cloned(),
        Some(Action::RemoteAnswer { sdp: sdp("answer") })
    );

    // Three candidates gathered 5 ms apart leave together, one window after the first.
    let first = w.now;
    for n in 0..3 {
        act(&mut w, b, |e, now| e.add_local_candidate(candidate(n), now));
        w.run_for(5);
    }
    w.run_for(100);
    let batches: Vec<(u64, usize, bool)> = w.clients[a]
        .actions
        .iter()
        .filter_map(|(t, x)| match x {
            Action::RemoteCandidates {
                candidates,
                end_of_candidates,
            } => Some((*t - first, candidates.len(), *end_of_candidates)),
            _ => None,
        })
        .collect();
    assert_eq!(batches, vec![(CANDIDATE_BATCH_WINDOW_MS, 3, false)]);
    act(&mut w, b, |e, now| e.local_candidates_complete(now));
    assert!(matches!(
        w.clients[a].actions().last(),
        Some(Action::RemoteCandidates {
            end_of_candidates: true,
            ..
        })
    ));

    for c in [a, b] {
        act(&mut w, c, |e, _| e.media_connected());
        assert_eq!(
            w.clients[c].endpoint.as_ref().unwrap().phase(),
            Phase::Active
        );
    }

    act(&mut w, a, |e, now| e.hang_up(now)).unwrap();
    assert_eq!(
        w.clients[a].reports.last().map(|(_, r)| *r),
        Some(ActionReport::End {
            reason: EndReason::Hangup
        })
    );
    assert!(matches!(
        w.clients[b].actions().last(),
        Some(Action::Ended {
            reason: EndReason::Hangup,
            by_remote: true
        })
    ));
    // Nothing was refused on either side.
    for c in [a, b] {
        assert!(
            w.clients[c]
                .endpoint
                .as_ref()
                .unwrap()
                .refusals()
                .is_empty()
        );
    }
}
