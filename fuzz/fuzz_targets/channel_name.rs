//! Channel names: whatever parses must render back to the same bytes.
#![no_main]
use domvia_calls::channel::ChannelName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(name) = ChannelName::parse(text) {
        assert_eq!(name.to_string(), text);
    }
});
