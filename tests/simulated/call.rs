//! Two call endpoints, each on its own Pusher client machine, on one private call channel of the
//! pure hub: the caller starts the call on the channel and the callee joins from the
//! `call.started` it heard there (the way a call runs without a trusted server in the loop).

use domvia_calls::call::CallMachine;
use domvia_calls::call_endpoint::CallEndpoint;
use domvia_calls::channel::CallChannel;
use domvia_calls::event::{
    CandidateLine, IceCandidate, Incoming, MediaSelection, Privacy, RingTimeoutMs, SdpMid,
    parse_frame,
};
use domvia_calls::ids::{DevicePartyId, UserId};
use domvia_calls::pusher::Frame;
use domvia_calls::pusher_client::ClientEvent;

use crate::world::World;

pub const CHANNEL: &str = "private-call.room.chat-room-42.call-1";
pub const RING_MS: u64 = 30_000;

pub fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub fn party(s: &str) -> DevicePartyId {
    DevicePartyId::parse(s).unwrap()
}

pub fn candidate(n: u32) -> IceCandidate {
    IceCandidate {
        candidate: CandidateLine::parse(&format!(
            "candidate:{n} 1 udp 1 127.0.0.1 {} typ host",
            5000 + n
        ))
        .unwrap(),
        sdp_mid: Some(SdpMid::parse("0").unwrap()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
}

pub fn sdp(label: &str) -> String {
    format!("v=0\r\ns={label}\r\n")
}

/// Subscribes client `c` to the call channel; the channel key of its grant, if any.
pub fn join_channel(w: &mut World, c: usize) -> Option<String> {
    let now = w.now;
    w.clients[c].machine.subscribe(CHANNEL, now);
    w.run_for(0);
    let (_, channel, result) = w.clients[c].seen.subscribed.last().expect("an answer");
    assert_eq!(channel, CHANNEL);
    result.as_ref().expect("subscribed").shared_secret.clone()
}

/// A caller (client 0) who started a call to bob, and a callee (client 1) ringing for it.
pub fn ringing_call(w: &mut World, privacy: Privacy) -> (usize, usize) {
    let (a, b) = (w.client(None), w.client(None));
    w.run_for(0);
    let key_a = join_channel(w, a);
    let key_b = join_channel(w, b);
    let machine = CallMachine::caller(
        CallChannel::parse(CHANNEL).unwrap(),
        party("alice-device-1"),
        user("alice"),
    );
    let mut caller = CallEndpoint::new(machine, privacy, key_a.as_deref()).unwrap();
    let media = MediaSelection {
        audio: true,
        video: false,
        screen: false,
    };
    caller
        .start(
            vec![user("bob")],
            media,
            RingTimeoutMs::new(RING_MS).unwrap(),
            privacy,
            w.now,
        )
        .unwrap();
    w.clients[a].endpoint = Some(caller);
    w.run_for(0);
    let started = w.clients[b]
        .seen
        .events
        .iter()
        .find_map(|(_, e)| match e {
            ClientEvent::Event {
                channel,
                event,
                data,
                user_id,
            } if event == "client-call.started" => Some(Frame {
                event: event.clone(),
                channel: channel.clone(),
                data: data.clone(),
                user_id: user_id.clone(),
            }),
            _ => None,
        })
        .expect("the callee heard call.started");
    let Ok((_, Incoming::Clear(started))) = parse_frame(&started) else {
        panic!("call.started is a clear event")
    };
    let machine = CallMachine::callee(&started, party("bob-device-1"), user("bob"), w.now).unwrap();
    let mut callee = CallEndpoint::new(machine, privacy, key_b.as_deref()).unwrap();
    callee.ring(w.now).unwrap();
    w.clients[b].endpoint = Some(callee);
    w.run_for(0);
    (a, b)
}

/// Runs `f` on client `c`'s endpoint at the world's time, then lets everything settle.
pub fn act<T>(w: &mut World, c: usize, f: impl FnOnce(&mut CallEndpoint, u64) -> T) -> T {
    let now = w.now;
    let out = f(w.clients[c].endpoint.as_mut().expect("in a call"), now);
    w.run_for(0);
    out
}
