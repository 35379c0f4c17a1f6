//! Event data under every call event name: the first byte picks the name, the rest is the data.
#![no_main]
use domvia_calls::event::{EventKind, Incoming, Origin, parse_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let kind = EventKind::ALL[usize::from(pick) % EventKind::ALL.len()];
    let origin = if pick & 0x80 == 0 { Origin::Client } else { Origin::Server };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(rest) else { return };
    if let Ok(Incoming::Clear(event)) = parse_event(&kind.wire_name(origin), &map) {
        let again = parse_event(&event.wire_name(), &event.to_data()).expect("accepted data re-parses");
        assert_eq!(again, Incoming::Clear(event));
    }
});
