//! The ping fence: a refusal for the rate puts the event back at the head of the queue, any other
//! refusal is that event's result, and the fences it leaves behind never block a later socket.

use serde_json::{Value, json};

use crate::world::World;
use domvia_calls::pusher_client::{ClientError, ClientEvent};
use domvia_calls::realtime::Output;

#[test]
fn refusals_for_the_rate_are_retried_in_order_without_loss_or_duplicates() {
    // Paced at 100/s against a hub that allows 10/s: the hub refuses with 4301.
    let (mut w, a, b) = World::subscribed_pair(Some(100.0));
    for n in 0..40 {
        w.clients[a]
            .machine
            .trigger("private-chat", "client-n", json!({ "n": n }));
    }
    w.run_for(30_000);
    let seen = &w.clients[a].seen;
    let throttled = seen.count(|e| matches!(e, ClientEvent::Throttled { .. }));
    assert!(throttled > 0, "the hub refused some for the rate");
    assert_eq!(seen.triggered.len(), 40);
    assert!(seen.triggered.iter().all(|(_, _, r)| r.is_ok()));
    let expected: Vec<Value> = (0..40).map(|n| json!({ "n": n })).collect();
    assert_eq!(
        w.clients[b].seen.events_named("client-n"),
        expected,
        "after {throttled} refusals every event arrived once, in order"
    );
}

#[test]
fn another_refusal_is_the_events_result_and_the_next_event_still_goes() {
    let (mut w, a, b) = World::subscribed_pair(None);
    // Not subscribed to this one: the hub refuses the event (not for the rate).
    let refused = w.clients[a]
        .machine
        .trigger("private-other", "client-n", json!({ "n": 0 }));
    let relayed = w.clients[a]
        .machine
        .trigger("private-chat", "client-n", json!({ "n": 1 }));
    w.run_for(5_000);
    let results = &w.clients[a].seen.triggered;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].1, refused);
    assert!(
        matches!(results[0].2, Err(ClientError::EventRefused { .. })),
        "{:?}",
        results[0].2
    );
    assert_eq!((results[1].1, results[1].2.clone()), (relayed, Ok(())));
    assert_eq!(
        w.clients[b].seen.events_named("client-n"),
        vec![json!({ "n": 1 })]
    );
}

#[test]
fn a_fence_owed_by_a_dead_socket_does_not_block_the_next_one() {
    let (mut w, a, b) = World::subscribed_pair(None);
    w.clients[a]
        .machine
        .trigger("private-other", "client-n", json!({ "n": 0 }));
    w.clients[a]
        .machine
        .trigger("private-chat", "client-n", json!({ "n": 1 }));
    // The refused event and its fence reach the hub; only the error comes back before the
    // network drops, so the client still owes a pong that the old socket will never bring.
    w.drive_client(a);
    let conn = w.clients[a].conn.unwrap();
    let outputs: Vec<Output> = std::iter::from_fn(|| w.hub.poll_output()).collect();
    let error = outputs
        .iter()
        .position(|o| matches!(o, Output::Send { conn: c, text } if *c == conn && text.contains("pusher:error")))
        .expect("the hub refused the event");
    w.deliver(outputs[error].clone());
    w.drop_network(a);
    w.run_for(10_000);
    assert_eq!(
        w.clients[b].seen.events_named("client-n"),
        vec![json!({ "n": 1 })],
        "the next event left on the new socket"
    );
}
