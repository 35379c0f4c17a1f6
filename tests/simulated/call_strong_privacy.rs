//! A strong-privacy call: offers, answers and candidates cross the hub sealed, and a clear
//! offer from another member of the channel is refused as a downgrade before the machine sees it.

use serde_json::json;

use domvia_calls::call::Action;
use domvia_calls::event::Privacy;

use crate::call::{CHANNEL, act, join_channel, ringing_call, sdp};
use crate::world::World;

#[test]
fn sensitive_events_cross_sealed_and_a_clear_offer_is_refused() {
    let mut w = World::new();
    w.channel_master = Some([7; 32]);
    let (a, b) = ringing_call(&mut w, Privacy::Strong);
    act(&mut w, b, |e, now| e.accept(now)).unwrap();
    act(&mut w, a, |e, now| {
        e.send_offer(&sdp("secret-offer"), false, now)
    })
    .unwrap();
    assert!(
        matches!(w.clients[b].actions().last(), Some(Action::RemoteOffer { sdp, .. }) if *sdp == self::sdp("secret-offer")),
        "the callee opened the sealed offer"
    );
    let offers_on_wire: Vec<&String> = w
        .wire
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.contains("client-call.offer"))
        .collect();
    assert!(!offers_on_wire.is_empty());
    assert!(
        offers_on_wire.iter().all(|f| !f.contains("secret-offer")),
        "the SDP never crosses the hub in the clear"
    );

    // Another member of the channel sends a clear offer to bob.
    let m = w.client(None);
    w.run_for(0);
    join_channel(&mut w, m);
    let offers_before = count_offers(&w, b);
    w.clients[m].machine.trigger(
        CHANNEL,
        "client-call.offer",
        json!({
            "v": 1, "call_id": "call-1", "party_id": "mallory-device-1", "user_id": "mallory", "seq": 1, "sent_at_ms": 1,
            "to_party_id": "bob-device-1", "negotiation_id": 9, "sdp": sdp("forged"), "ice_restart": false
        }),
    );
    w.run_for(1_000);
    assert_eq!(
        count_offers(&w, b),
        offers_before,
        "the machine never saw it"
    );
    let refusals = w.clients[b].endpoint.as_ref().unwrap().refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].code, "envelope.downgrade", "{:?}", refusals[0]);
}

fn count_offers(w: &World, c: usize) -> usize {
    w.clients[c]
        .actions()
        .iter()
        .filter(|x| matches!(x, Action::RemoteOffer { .. }))
        .count()
}
