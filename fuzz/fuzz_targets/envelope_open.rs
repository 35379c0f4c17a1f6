//! Sealed events through a strong-privacy receiver holding one known key: nothing the fuzzer
//! makes up may authenticate.
#![no_main]
use domvia_calls::channel::CallChannel;
use domvia_calls::envelope::{ChannelKey, PrivacyGuard};
use domvia_calls::event::{Privacy, parse_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(data) else { return };
    let channel = CallChannel::parse("private-call.room.r.call-1").expect("valid");
    let mut guard = PrivacyGuard::new(channel.clone(), Privacy::Strong);
    guard.install_key(ChannelKey::derive(b"fuzz master key", &channel));
    for name in ["client-call.offer", "client-call.media_state"] {
        if let Ok(incoming) = parse_event(name, &map) {
            let _ = guard.receive(incoming);
        }
    }
});
