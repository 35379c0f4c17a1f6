//! A raw WebSocket text message through the frame parser and, if it is a frame, the call event
//! parser with its channel rules.
#![no_main]
use domvia_calls::event::parse_frame;
use domvia_calls::pusher::{Frame, FrameLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::parse(data, &FrameLimits::default()) {
        let _ = parse_frame(&frame);
    }
});
