//! How a call ends when nobody answers, when the server refuses signaling, and when the call
//! channel is lost for good: each side ends with the reason, and nothing waits for ever.

use domvia_calls::call::{Action, Phase};
use domvia_calls::event::{EndReason, Privacy};
use domvia_calls::realtime::AppConfig;

use crate::call::{RING_MS, act, ringing_call};
use crate::world::{KEY, SECRET, World};

fn ended(w: &World, c: usize) -> Option<(u64, EndReason, bool)> {
    w.clients[c].actions.iter().find_map(|(t, x)| match x {
        Action::Ended { reason, by_remote } => Some((*t, *reason, *by_remote)),
        _ => None,
    })
}

#[test]
fn an_unanswered_call_ends_at_the_ring_timeout() {
    let mut w = World::new();
    let started = w.now;
    let (a, b) = ringing_call(&mut w, Privacy::Standard);
    w.run_for(RING_MS + 5_000);
    let (at, reason, _) = ended(&w, a).expect("the caller's call ended");
    assert_eq!((at - started, reason), (RING_MS, EndReason::NoAnswer));
    let (_, reason, _) = ended(&w, b).expect("the callee stopped ringing");
    assert_eq!(reason, EndReason::NoAnswer);
}

#[test]
fn a_refused_signaling_event_ends_the_call() {
    let mut app = AppConfig::new("sim-app", KEY, SECRET);
    app.max_event_bytes = 2_000;
    let mut w = World::with_app(app);
    let (a, b) = ringing_call(&mut w, Privacy::Standard);
    act(&mut w, b, |e, now| e.accept(now)).unwrap();
    // The caller's machine chunks by the limit it was given (the protocol's 10 KiB), so an
    // offer of 5 KB is one event the hub refuses as too large.
    let big = format!("v=0\r\ns={}\r\n", "x".repeat(5_000));
    act(&mut w, a, |e, now| e.send_offer(&big, false, now)).unwrap();
    w.run_for(1_000);
    let (_, reason, by_remote) = ended(&w, a).expect("the caller's call ended");
    assert_eq!((reason, by_remote), (EndReason::SignalingFailed, false));
    assert!(matches!(
        w.clients[a].endpoint.as_ref().unwrap().phase(),
        Phase::Ended(EndReason::SignalingFailed)
    ));
}

#[test]
fn a_lost_call_channel_ends_the_call() {
    let mut w = World::new();
    let (a, _) = ringing_call(&mut w, Privacy::Standard);
    w.clients[a].failing_grants = 4;
    w.hub.shutdown();
    w.run_for(10_000);
    let (_, reason, _) = ended(&w, a).expect("the caller's call ended");
    assert_eq!(reason, EndReason::SignalingFailed);
}
