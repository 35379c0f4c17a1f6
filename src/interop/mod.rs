//! Independent peers for interop checks: headless Chromium (its own WebRTC stack and the real
//! pusher-js client, through the demo page) and aiortc (a Python WebRTC stack with its own
//! Pusher-protocol client). Both are optional system components; callers find out whether they
//! are installed and say so when they are not.

pub mod aiortc;
pub mod chromium;
pub mod coturn;
pub mod netns;
pub mod peer_host;
