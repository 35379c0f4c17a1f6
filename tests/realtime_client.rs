//! The reference realtime client against the reference servers over real sockets: signing,
//! pacing under the limit, 4301 refusals retried in order, other refusals reported, the auth
//! endpoint, and reconnecting by close code with subscriptions restored.
#![cfg(all(feature = "client", feature = "trusted"))]

mod common;

use std::time::Duration;

use common::{KEY, SECRET, app, start};
use domvia_calls::client::{Auth, ClientConfig, ClientError, ClientEvent, RealtimeClient};
use domvia_calls::server::{self, ServerConfig};
use domvia_calls::signing::Secret;
use domvia_calls::stack::{self, StackConfig};
use serde_json::{Value, json};

const CH: &str = "private-call.room.r1.call-1";

fn signer(addr: std::net::SocketAddr, user: &str, rate: Option<f64>) -> ClientConfig {
    ClientConfig {
        defect: None,
        url: format!("ws://{addr}/app/{KEY}"),
        auth: Auth::Signer {
            key: KEY.into(),
            secret: Secret::new(SECRET),
            presence_user: Some((user.into(), json!({ "name": user }))),
        },
        events_per_second: rate,
        tap: None,
    }
}

/// The next `event` on `c` (other events are skipped), with its data as JSON.
async fn next_named(c: &mut RealtimeClient, event: &str) -> Value {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), c.next_event())
            .await
            .expect("an event within the deadline")
            .expect("client still running");
        if let ClientEvent::Event {
            event: name, data, ..
        } = e
            && name == event
        {
            return Value::Object(data.unwrap().to_object().unwrap());
        }
    }
}

#[tokio::test]
async fn events_are_relayed_confirmed_and_never_echoed() {
    let server = start().await;
    let mut a = RealtimeClient::connect(signer(server.addr(), "alice", None))
        .await
        .unwrap();
    let mut b = RealtimeClient::connect(signer(server.addr(), "bob", None))
        .await
        .unwrap();
    a.subscribe(CH).await.unwrap();
    b.subscribe(CH).await.unwrap();
    a.trigger(CH, "client-call.ringing", json!({"n": 1}))
        .await
        .expect("relayed");
    assert_eq!(next_named(&mut b, "client-call.ringing").await["n"], 1);
    b.trigger(CH, "client-call.ringing", json!({"n": 2}))
        .await
        .unwrap();
    assert_eq!(
        next_named(&mut a, "client-call.ringing").await["n"],
        2,
        "a saw the marker, not its own event"
    );

    let refused = a
        .trigger(
            "private-call.room.r1.other",
            "client-call.ringing",
            json!({}),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(ClientError::EventRefused {
                code: Some(4009),
                ..
            })
        ),
        "{refused:?}"
    );
    // The connection keeps working after a refusal.
    a.trigger(CH, "client-call.ringing", json!({"n": 3}))
        .await
        .unwrap();
    assert_eq!(next_named(&mut b, "client-call.ringing").await["n"], 3);
    server.shutdown().await;
}

/// Sends 25 events from a client pacing at `rate`; returns what the receiver got, in order, and
/// how many refusals for the rate the sender retried.
async fn burst(rate: Option<f64>) -> (Vec<u64>, usize) {
    let server = start().await;
    let mut a = RealtimeClient::connect(signer(server.addr(), "alice", rate))
        .await
        .unwrap();
    let mut b = RealtimeClient::connect(signer(server.addr(), "bob", None))
        .await
        .unwrap();
    a.subscribe(CH).await.unwrap();
    b.subscribe(CH).await.unwrap();
    let sends: Vec<_> = (0..25u64)
        .map(|n| a.trigger(CH, "client-call.ice_candidate", json!({"n": n})))
        .collect();
    let results = futures_util::future::join_all(sends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut got = Vec::new();
    while got.len() < 25 {
        got.push(
            next_named(&mut b, "client-call.ice_candidate").await["n"]
                .as_u64()
                .unwrap(),
        );
    }
    let mut throttled = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), a.next_event()).await {
        throttled += usize::from(matches!(e, ClientEvent::Throttled { .. }));
    }
    server.shutdown().await;
    (got, throttled)
}

#[tokio::test]
async fn paced_sends_stay_under_the_limit_and_arrive_in_order() {
    let (got, throttled) = burst(None).await;
    assert_eq!(got, (0..25).collect::<Vec<_>>());
    assert_eq!(
        throttled, 0,
        "pacing at 90% of the announced limit is never refused"
    );
}

#[tokio::test]
async fn refusals_for_the_rate_are_retried_in_order_without_loss_or_duplicates() {
    // 200/s against a 10/s server: most sends are refused with 4301 and must be retried.
    let (got, throttled) = burst(Some(200.0)).await;
    assert_eq!(
        got,
        (0..25).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    assert!(throttled > 0, "the server did refuse some events");
}

#[tokio::test]
async fn auth_endpoint_grants_and_refusals() {
    let mut cfg = StackConfig::development(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.trusted.data_dir = common::temp_dir("client-auth");
    let s = stack::start(cfg).await.unwrap();
    let (r, t) = (s.realtime.addr(), s.trusted.addr());
    let endpoint = |token: &str| ClientConfig {
        defect: None,
        url: format!("ws://{r}/app/domvia-key"),
        auth: Auth::Endpoint {
            url: format!("http://{t}/realtime/auth"),
            token: token.into(),
        },
        events_per_second: None,
        tap: None,
    };
    let bob = RealtimeClient::connect(endpoint("bob-token"))
        .await
        .unwrap();
    bob.subscribe("private-call-inbox.bob")
        .await
        .expect("own inbox");
    let err = bob.subscribe("private-call-inbox.alice").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::AuthRefused { message, .. } if message.contains("auth.not_your_inbox")),
        "{err:?}"
    );
    let stranger = RealtimeClient::connect(endpoint("nobody")).await.unwrap();
    assert!(matches!(
        stranger.subscribe("private-call-inbox.bob").await,
        Err(ClientError::AuthRefused { .. })
    ));
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_app_is_final_and_4200_reconnects_with_subscriptions_restored() {
    let server = start().await;
    let addr = server.addr();
    let mut bad = signer(addr, "x", None);
    bad.url = format!("ws://{addr}/app/nope");
    assert!(matches!(
        RealtimeClient::connect(bad).await,
        Err(ClientError::Closed(Some(4001)))
    ));

    let mut a = RealtimeClient::connect(signer(addr, "alice", None))
        .await
        .unwrap();
    a.subscribe(CH).await.unwrap();
    let first_socket = a.socket_id().to_owned();
    server.shutdown().await; // closes with 4200
    // A new server on the same address; the client comes back by itself.
    let config = ServerConfig {
        bind: addr,
        apps: vec![app()],
        outbound_queue: 64,
        webhook_batch_ms: 20,
        ..ServerConfig::default()
    };
    let again = server::start(config).await.expect("rebind the same port");
    let mut saw_disconnect = false;
    let socket = loop {
        match tokio::time::timeout(Duration::from_secs(10), a.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            ClientEvent::Disconnected { code, reconnecting } => {
                assert!(reconnecting, "{code:?} allows reconnecting");
                saw_disconnect = true;
            }
            ClientEvent::Connected { socket_id, .. } => break socket_id,
            _ => {}
        }
    };
    assert!(saw_disconnect);
    assert_ne!(socket, first_socket);
    // The subscription was restored: an event from a fresh client reaches a.
    let b = RealtimeClient::connect(signer(addr, "bob", None))
        .await
        .unwrap();
    b.subscribe(CH).await.unwrap();
    b.trigger(CH, "client-call.ringing", json!({"after": "restart"}))
        .await
        .unwrap();
    assert_eq!(
        next_named(&mut a, "client-call.ringing").await["after"],
        "restart"
    );
    again.shutdown().await;
}

/// An auth endpoint that signs with the test app's secret while `up`, and answers 503 otherwise.
async fn switchable_auth_endpoint(
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::net::SocketAddr {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/auth",
        post(move |body: String| {
            let up = up.clone();
            async move {
                if !up.load(std::sync::atomic::Ordering::Relaxed) {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                }
                let field = |k: &str| {
                    body.split('&')
                        .find_map(|p| p.strip_prefix(&format!("{k}=")))
                        .unwrap_or_default()
                        .to_owned()
                };
                let socket = domvia_calls::ids::SocketId::parse(&field("socket_id")).unwrap();
                let auth = domvia_calls::signing::sign_channel(
                    KEY,
                    &Secret::new(SECRET),
                    &socket,
                    &field("channel_name"),
                    None,
                );
                (
                    axum::http::StatusCode::OK,
                    json!({ "auth": auth }).to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_subscription_that_cannot_be_restored_is_reported_not_dropped_silently() {
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let auth = switchable_auth_endpoint(up.clone()).await;
    let server = start().await;
    let addr = server.addr();
    let mut a = RealtimeClient::connect(ClientConfig {
        defect: None,
        url: format!("ws://{addr}/app/{KEY}"),
        auth: Auth::Endpoint {
            url: format!("http://{auth}/auth"),
            token: "t".into(),
        },
        events_per_second: None,
        tap: None,
    })
    .await
    .unwrap();
    a.subscribe(CH).await.unwrap();
    // The realtime server restarts while the auth endpoint is down for longer than the retries.
    up.store(false, std::sync::atomic::Ordering::Relaxed);
    server.shutdown().await;
    let again = server::start(ServerConfig {
        bind: addr,
        apps: vec![app()],
        ..ServerConfig::default()
    })
    .await
    .expect("rebind the same port");
    let began = std::time::Instant::now();
    let lost = loop {
        match tokio::time::timeout(Duration::from_secs(20), a.next_event())
            .await
            .expect("the loss is reported")
            .unwrap()
        {
            ClientEvent::SubscriptionLost { channel, reason } => break (channel, reason),
            _ => continue,
        }
    };
    assert_eq!(lost.0, CH);
    assert!(lost.1.contains("503"), "{}", lost.1);
    // It was tried again before being given up (the pauses add up to over 3 s).
    assert!(began.elapsed() > Duration::from_secs(3));
    // The client still works: with the endpoint back, the channel can be subscribed again.
    up.store(true, std::sync::atomic::Ordering::Relaxed);
    a.subscribe(CH).await.unwrap();
    again.shutdown().await;
}
