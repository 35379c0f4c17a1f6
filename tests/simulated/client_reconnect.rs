//! Reconnecting by close-code class: 4200 at once, a network failure after a doubling backoff,
//! a 4000-range code never; subscriptions come back on every new socket, and nothing queued is
//! lost or reordered.

use serde_json::{Value, json};

use crate::world::World;
use domvia_calls::pusher_client::{ClientError, ClientEvent};

#[test]
fn a_server_restart_4200_reconnects_at_once_and_restores_subscriptions() {
    let (mut w, a, b) = World::subscribed_pair(None);
    let before = w.clients[a].machine.socket_id().unwrap().to_owned();
    w.hub.shutdown();
    let restarted = w.now;
    w.run_for(1_000);
    let seen = &w.clients[a].seen;
    assert!(seen.events.iter().any(|(_, e)| *e
        == ClientEvent::Disconnected {
            code: Some(4200),
            reconnecting: true
        }));
    assert_eq!(
        seen.connects.last(),
        Some(&restarted),
        "4200: reconnect at once"
    );
    let after = w.clients[a].machine.socket_id().unwrap().to_owned();
    assert_ne!(before, after);
    // Re-signed for the new socket, and events flow again.
    assert!(
        seen.authorizations
            .iter()
            .any(|(_, s, c)| *s == after && c == "private-chat")
    );
    w.clients[b]
        .machine
        .trigger("private-chat", "client-n", json!({ "n": 7 }));
    w.run_for(1_000);
    assert_eq!(
        w.clients[a].seen.events_named("client-n"),
        vec![json!({ "n": 7 })]
    );
}

#[test]
fn a_network_failure_backs_off_doubling_and_resets_once_connected() {
    let (mut w, a, _) = World::subscribed_pair(None);
    w.clients[a].refused_connects = 3;
    let dropped = w.now;
    w.drop_network(a);
    w.run_for(20_000);
    let connects: Vec<u64> = w.clients[a]
        .seen
        .connects
        .iter()
        .skip(1)
        .map(|t| t - dropped)
        .collect();
    assert_eq!(connects, vec![1_000, 3_000, 7_000, 15_000]);
    // Connected again: the next failure starts from the first backoff.
    let dropped = w.now;
    w.drop_network(a);
    w.run_for(5_000);
    assert_eq!(w.clients[a].seen.connects.last(), Some(&(dropped + 1_000)));
}

#[test]
fn events_queued_across_a_drop_arrive_in_order_after_the_reconnect() {
    let (mut w, a, b) = World::subscribed_pair(None);
    for n in 0..5 {
        w.clients[a]
            .machine
            .trigger("private-chat", "client-n", json!({ "n": n }));
    }
    // The first event reaches the hub, its confirmation does not.
    w.drive_client(a);
    w.drop_network(a);
    w.run_for(10_000);
    let got = w.clients[b].seen.events_named("client-n");
    let mut expected: Vec<Value> = vec![json!({ "n": 0 })];
    expected.extend((0..5).map(|n| json!({ "n": n })));
    assert_eq!(
        got, expected,
        "the unconfirmed event is sent again first (at least once, in order)"
    );
    assert_eq!(w.clients[a].seen.triggered.len(), 5);
}

#[test]
fn an_unknown_app_is_final_and_fails_everything_waiting() {
    let mut w = World::new();
    let a = w.client_of("no-such-key", None);
    let now = w.now;
    w.clients[a].machine.subscribe("private-chat", now);
    let id = w.clients[a]
        .machine
        .trigger("private-chat", "client-n", json!({}));
    w.run_for(60_000);
    let seen = &w.clients[a].seen;
    assert_eq!(seen.connects.len(), 1, "4001 means never reconnect");
    assert!(seen.events.iter().any(|(_, e)| *e
        == ClientEvent::Disconnected {
            code: Some(4001),
            reconnecting: false
        }));
    assert_eq!(
        seen.triggered
            .iter()
            .map(|(_, i, r)| (*i, r.clone()))
            .collect::<Vec<_>>(),
        vec![(id, Err(ClientError::Closed(Some(4001))))]
    );
    assert_eq!(seen.subscribed[0].2, Err(ClientError::Closed(Some(4001))));
    assert!(w.clients[a].machine.is_ended());
}
