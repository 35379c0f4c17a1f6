//! Entry points for fuzzing: one function per parser and state machine, taking raw bytes. The
//! cargo-fuzz targets in `fuzz/` are one-line wrappers around these, and `tests/fuzz_corpus.rs`
//! replays every committed corpus file through the same functions on the stable toolchain.
//!
//! Each function asserts the invariants that must hold for any input (accepted values round-trip,
//! state machines never leave `Ended`, nothing forged authenticates); a failed assertion or a panic
//! is a finding.

use serde_json::{Map, Value};

use crate::call::{CallMachine, Phase};
use crate::channel::{CallChannel, ChannelName};
use crate::envelope::{ChannelKey, PrivacyGuard};
use crate::event::chunk::ChunkAssembler;
use crate::event::{EventKind, Incoming, Origin, Privacy, parse_event, parse_frame};
use crate::ids::{DevicePartyId, SocketId, UserId};
use crate::pusher::{Frame, FrameLimits};
use crate::realtime::{AppConfig, ConnId, HttpRequest, Hub, Output};
use crate::signing::{self, Secret};

const CHANNEL: &str = "presence-call.room.r.call-1";

fn object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// A raw WebSocket message: frame parser, then call event parsing with the channel rules.
pub fn frame(data: &[u8]) {
    if let Ok(f) = Frame::parse(data, &FrameLimits::default()) {
        let again = Frame::parse(f.to_json().as_bytes(), &FrameLimits::default())
            .expect("a serialized frame parses");
        assert_eq!(again, f);
        let _ = parse_frame(&f);
    }
}

/// First byte picks the event name and origin, the rest is the event data.
pub fn event(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let kind = EventKind::ALL[usize::from(pick) % EventKind::ALL.len()];
    let origin = if pick & 0x80 == 0 {
        Origin::Client
    } else {
        Origin::Server
    };
    let Some(map) = object(rest) else { return };
    if let Ok(Incoming::Clear(e)) = parse_event(&kind.wire_name(origin), &map) {
        let again = parse_event(&e.wire_name(), &e.to_data()).expect("accepted data re-parses");
        assert_eq!(again, Incoming::Clear(e));
    }
}

/// A channel name: accepted names render back byte for byte.
pub fn channel_name(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(name) = ChannelName::parse(text)
    {
        assert_eq!(name.to_string(), text);
    }
}

/// Lines of text as the inputs of every signature check; nothing made up verifies.
pub fn signatures(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (a, b, c, d) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let secret = Secret::new("fuzz-secret");
    let socket = SocketId::parse("1.2").expect("valid");
    // Without the secret nothing can be made to verify.
    assert!(signing::verify_channel("k", &secret, &socket, a, Some(b), c).is_err());
    assert!(signing::verify_channel("k", &secret, &socket, a, None, c).is_err());
    assert!(signing::verify_user("k", &secret, &socket, b, c).is_err());
    assert!(
        signing::verify_http_request(
            "k",
            &secret,
            "POST",
            "/apps/1/events",
            a,
            d.as_bytes(),
            1_700_000_000
        )
        .is_err()
    );
    assert!(signing::verify_webhook("k", &secret, "k", c, d.as_bytes()).is_err());
    assert!(signing::verify_turn_credential(&secret, a, b, 0).is_err());
    let _ = signing::parse_query(a);
    let _ = signing::parse_channel_data(b);
    let _ = crate::trusted::webhook::verify("k", &secret, Some("k"), Some(c), d.as_bytes(), 0);
}

/// A sealed event against a strong-privacy receiver with one known key.
pub fn envelope_open(data: &[u8]) {
    let Some(map) = object(data) else { return };
    let channel = CallChannel::parse(CHANNEL).expect("valid");
    let mut guard = PrivacyGuard::new(channel.clone(), Privacy::Strong);
    guard.install_key(ChannelKey::derive(b"fuzz master key", &channel));
    for name in ["client-call.offer", "client-call.media_state"] {
        if let Ok(incoming @ Incoming::Sealed(_)) = parse_event(name, &map) {
            assert!(
                guard.receive(incoming).is_err(),
                "a made-up sealed event authenticated"
            );
        }
    }
}

/// A sequence of offer chunks (JSON objects, one per line) fed to the reassembler with a clock
/// advanced by the first byte of each line.
pub fn chunks(data: &[u8]) {
    let mut asm = ChunkAssembler::new();
    let mut now = 0u64;
    for line in data.split(|&b| b == b'\n') {
        let Some((&step, rest)) = line.split_first() else {
            continue;
        };
        now += u64::from(step) * 200;
        if let Some(map) = object(rest)
            && let Ok(Incoming::Clear(e)) = parse_event("client-call.offer", &map)
            && let Ok(Some(joined)) = asm.push(e, now)
        {
            assert!(joined.body().to_party_id().is_some());
        }
    }
    assert!(asm.pending() <= 64 * 4);
}

/// What one run of [`hub`] reached, so tests can check that seeds drive the hub deep.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HubRun {
    pub subscriptions_succeeded: usize,
    pub call_events_delivered: usize,
}

/// Bytes as operations on a realtime hub with three connections: open, message (the following
/// bytes up to a zero), close, overflow, tick, HTTP request.
pub fn hub(data: &[u8]) {
    hub_run(data);
}

/// [`hub`], reporting what it reached.
pub fn hub_run(data: &[u8]) -> HubRun {
    let mut run = HubRun::default();
    let mut app = AppConfig::new("app", "key", "secret");
    app.webhook_url = Some("http://127.0.0.1:9/hooks".into());
    let mut hub = Hub::new(vec![app]);
    let mut now = 0u64;
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        let conn = ConnId(u64::from(op % 3));
        i += 1;
        let end = data[i..]
            .iter()
            .position(|&b| b == 0)
            .map_or(data.len(), |p| i + p);
        let payload = &data[i..end];
        match op / 3 % 6 {
            0 => hub.open(conn, "/app/key", "protocol=7", None, u64::from(op), now),
            1 => {
                hub.message(conn, payload, op & 0x40 != 0, now);
                i = end + 1;
            }
            2 => hub.closed(conn, now),
            3 => hub.overflow(conn, now),
            4 => {
                now += u64::from(op) * 1000;
                hub.tick(now);
            }
            _ => {
                let query = String::from_utf8_lossy(payload);
                let _ = hub.http(
                    HttpRequest {
                        method: "POST",
                        path: "/apps/app/events",
                        query: &query,
                        body: payload,
                    },
                    0,
                );
                i = end + 1;
            }
        }
        while let Some(output) = hub.poll_output() {
            if let Output::Send { text, .. } = output {
                run.subscriptions_succeeded +=
                    usize::from(text.contains("pusher_internal:subscription_succeeded"));
                run.call_events_delivered += usize::from(text.contains("\"client-call."));
            }
        }
        assert!(hub.connection_count() <= 3);
    }
    run
}

/// Bytes as operations on a callee's call machine: commands and received events (JSON objects
/// up to a zero byte); `Ended` must be final and sends must keep increasing `seq`.
pub fn call_machine(data: &[u8]) {
    call_machine_run(data);
}

/// [`call_machine`], returning every phase the machine was in after an operation.
pub fn call_machine_run(data: &[u8]) -> Vec<Phase> {
    let mut phases = Vec::new();
    let started = serde_json::json!({
        "v": 1, "call_id": "call-1", "party_id": "alice-phone-1", "user_id": "alice", "seq": 1, "sent_at_ms": 0,
        "channel": CHANNEL, "caller": "alice", "callees": ["bob"],
        "media": {"audio": true, "video": false, "screen": false}, "privacy": "standard", "topology": "p2p"
    });
    let Ok(Incoming::Clear(started)) =
        parse_event("client-call.started", started.as_object().expect("object"))
    else {
        unreachable!("the seed invitation is valid")
    };
    let mut m = CallMachine::callee(
        &started,
        DevicePartyId::parse("bob-laptop-1").expect("valid"),
        UserId::parse("bob").expect("valid"),
        0,
    )
    .expect("an invitation");
    let mut last_seq = 0;
    let mut ended = false;
    let mut i = 0;
    let mut now = 0u64;
    while i < data.len() {
        let op = data[i];
        i += 1;
        now += 10;
        match op % 8 {
            0 => {
                let _ = m.ring(now);
            }
            1 => {
                let _ = m.accept(now);
            }
            2 => {
                let _ = m.decline(op & 0x80 != 0, now);
            }
            3 => {
                let _ = m.hang_up(now);
            }
            4 => m.handle_timeout(now + u64::from(op) * 1000),
            5 => m.media_connected(),
            _ => {
                let end = data[i..]
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(data.len(), |p| i + p);
                if let Some(map) = object(&data[i..end])
                    && let Ok(Incoming::Clear(e)) = parse_event(
                        if op & 0x80 == 0 {
                            "client-call.offer"
                        } else {
                            "client-call.ended"
                        },
                        &map,
                    )
                {
                    m.handle_event(&e, now);
                }
                i = end + 1;
            }
        }
        while let Some(a) = m.poll_action() {
            if let crate::call::Action::Send(e) = a {
                assert!(e.header().seq.get() > last_seq, "seq went backwards");
                last_seq = e.header().seq.get();
            }
        }
        assert!(!ended || matches!(m.phase(), Phase::Ended(_)), "left Ended");
        ended = matches!(m.phase(), Phase::Ended(_));
        phases.push(m.phase());
    }
    phases
}

/// A fuzz entry point.
pub type Entry = fn(&[u8]);

/// Every entry point by name, for the corpus replay test and the fuzz targets.
pub const TARGETS: [(&str, Entry); 8] = [
    ("frame", frame),
    ("event", event),
    ("channel_name", channel_name),
    ("signatures", signatures),
    ("envelope_open", envelope_open),
    ("chunks", chunks),
    ("hub", hub),
    ("call_machine", call_machine),
];
