//! Restoring a protected subscription on a new socket: a signature that fails is asked for again
//! after 250 ms, 1 s and 2 s; one that keeps failing is reported lost, never dropped silently;
//! a signature made for an earlier socket is never sent.

use crate::world::World;
use domvia_calls::pusher_client::ClientEvent;

fn subscribed(w: &mut World) -> usize {
    let a = w.client(None);
    w.settle();
    let now = w.now;
    w.clients[a].machine.subscribe("private-chat", now);
    w.settle();
    assert!(w.clients[a].seen.subscribed[0].2.is_ok());
    a
}

#[test]
fn a_failing_signature_is_retried_and_the_subscription_comes_back() {
    let mut w = World::new();
    let a = subscribed(&mut w);
    w.clients[a].failing_grants = 2;
    let restarted = w.now;
    w.hub.shutdown();
    w.run_for(5_000);
    let tries: Vec<u64> = w.clients[a]
        .seen
        .authorizations
        .iter()
        .skip(1)
        .map(|(t, _, _)| t - restarted)
        .collect();
    assert_eq!(tries, vec![0, 250, 1_250]);
    assert_eq!(
        w.clients[a]
            .seen
            .count(|e| matches!(e, ClientEvent::SubscriptionLost { .. })),
        0
    );
    assert_eq!(
        w.hub.channel_counts(0, "private-chat").0,
        1,
        "subscribed again"
    );
}

#[test]
fn a_signature_that_keeps_failing_is_reported_lost() {
    let mut w = World::new();
    let a = subscribed(&mut w);
    w.clients[a].failing_grants = 4;
    let restarted = w.now;
    w.hub.shutdown();
    w.run_for(10_000);
    let lost: Vec<(u64, String)> = w.clients[a]
        .seen
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            ClientEvent::SubscriptionLost { channel, .. } => Some((t - restarted, channel.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(lost, vec![(3_250, "private-chat".to_owned())]);
    assert_eq!(w.hub.channel_counts(0, "private-chat").0, 0);
    // Lost means forgotten: the next socket does not try it again.
    let before = w.clients[a].seen.authorizations.len();
    w.hub.shutdown();
    w.run_for(5_000);
    assert_eq!(w.clients[a].seen.authorizations.len(), before);
}

#[test]
fn a_signature_for_an_earlier_socket_is_never_sent() {
    let mut w = World::new();
    let a = w.client(None);
    w.settle();
    w.clients[a].hold_grants = true;
    let now = w.now;
    w.clients[a].machine.subscribe("private-chat", now);
    w.settle();
    let old = w.clients[a].machine.socket_id().unwrap().to_owned();
    w.hub.shutdown();
    w.run_for(0);
    let new = w.clients[a].machine.socket_id().unwrap().to_owned();
    assert_ne!(old, new);
    // Both grants arrive now: the one for the old socket first.
    w.release_grants(a);
    w.run_for(1_000);
    let subscribes = w.clients[a]
        .seen
        .sent
        .iter()
        .filter(|(_, f)| f.contains("pusher:subscribe"))
        .count();
    assert_eq!(
        subscribes, 1,
        "only the grant for the current socket is sent"
    );
    assert!(
        !w.wire.iter().any(|(_, f)| f.contains("subscription_error")),
        "the hub never saw a stale signature"
    );
    let answers = &w.clients[a].seen.subscribed;
    assert_eq!(answers.len(), 1);
    assert!(answers[0].2.is_ok());
}

#[test]
fn a_subscribe_before_the_connection_is_established_waits_for_it() {
    let mut w = World::new();
    let a = w.client(None);
    let now = w.now;
    // Before any socket: no socket id to sign for yet.
    w.clients[a].machine.subscribe("private-chat", now);
    w.run_for(1_000);
    let answers = &w.clients[a].seen.subscribed;
    assert_eq!(answers.len(), 1);
    assert!(answers[0].2.is_ok(), "{:?}", answers[0].2);
}
