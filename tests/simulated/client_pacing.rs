//! A burst of client events leaves paced under the server's announced limit: the hub never
//! refuses one, every one is confirmed, and the receiver gets them once, in order.

use serde_json::{Value, json};

use crate::world::World;
use domvia_calls::pusher_client::ClientEvent;

#[test]
fn a_burst_is_paced_under_the_limit_and_arrives_once_in_order() {
    let (mut w, a, b) = World::subscribed_pair(None);
    let ids: Vec<_> = (0..60)
        .map(|n| {
            w.clients[a]
                .machine
                .trigger("private-chat", "client-n", json!({ "n": n }))
        })
        .collect();
    let started = w.now;
    w.run_for(20_000);

    let seen = &w.clients[a].seen;
    assert_eq!(
        seen.count(|e| matches!(e, ClientEvent::Throttled { .. })),
        0,
        "paced under the limit, the hub never refuses for the rate"
    );
    let confirmed: Vec<_> = seen.triggered.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(confirmed, ids, "every event confirmed, in order");
    assert!(seen.triggered.iter().all(|(_, _, r)| r.is_ok()));
    let expected: Vec<Value> = (0..60).map(|n| json!({ "n": n })).collect();
    assert_eq!(w.clients[b].seen.events_named("client-n"), expected);

    // Never more in any one-second window than the client's own bucket allows (4.5 at once,
    // then 9/s), and no slower than that pace needs: 60 events less the opening burst of 4.
    let times = seen.sent_times("client-n");
    for (i, &t) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|&&u| u < t + 1_000).count();
        assert!(
            in_window <= 13,
            "{in_window} events within a second from {t}"
        );
    }
    let took = times.last().unwrap() - started;
    assert!(
        (6_000..=6_500).contains(&took),
        "60 events at 9/s after a burst of 4 take about 6.2 s, took {took} ms"
    );
}

#[test]
fn the_announced_limit_sets_the_pace() {
    let mut app =
        domvia_calls::realtime::AppConfig::new("sim-app", crate::world::KEY, crate::world::SECRET);
    app.client_events_per_second = 4;
    app.client_event_burst = 4;
    let mut w = World::with_app(app);
    let a = w.client(None);
    w.settle();
    let now = w.now;
    w.clients[a].machine.subscribe("private-chat", now);
    w.settle();
    for n in 0..20 {
        w.clients[a]
            .machine
            .trigger("private-chat", "client-n", json!({ "n": n }));
    }
    w.run_for(20_000);
    let seen = &w.clients[a].seen;
    assert_eq!(
        seen.count(|e| matches!(e, ClientEvent::Throttled { .. })),
        0
    );
    assert_eq!(seen.triggered.len(), 20);
    let times = seen.sent_times("client-n");
    let span = times.last().unwrap() - times.first().unwrap();
    // 3.6/s with a bucket of 1.8: 19 gaps, the first one free.
    assert!(
        span >= 4_700,
        "paced at 90% of the announced 4/s, span {span} ms"
    );
}
