//! For tests that run calls through both reference servers: the stack on ephemeral ports with a
//! fresh database, a device of a demo user, and the stored record of a call once it ended.

use std::time::Duration;

use domvia_calls::media::PeerOptions;
use domvia_calls::session::{CallSession, Device, PlacedCall};
use domvia_calls::stack::{self, RunningStack, StackConfig};
use serde_json::Value;

/// Both servers on loopback, webhooks batched briefly and a fast watchdog; `adjust` changes the
/// configuration before they start.
pub async fn stack(tag: &str, adjust: impl FnOnce(&mut StackConfig)) -> RunningStack {
    let mut cfg = StackConfig::development(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.trusted.data_dir = super::temp_dir(tag);
    cfg.trusted.watchdog_interval_ms = 50;
    cfg.realtime.webhook_batch_ms = 10;
    adjust(&mut cfg);
    stack::start(cfg).await.unwrap()
}

/// A device of the demo user `user` (token `{user}-token`).
pub fn device(s: &RunningStack, user: &str) -> Device {
    Device::new(
        &format!("ws://{}/app/domvia-key", s.realtime.addr()),
        &format!("http://{}", s.trusted.addr()),
        &format!("{user}-token"),
        user,
    )
    .unwrap()
}

/// `caller` calls `callee` in the demo room through the trusted server, with `peer` for its media.
pub async fn place_room_call(
    s: &RunningStack,
    caller: &str,
    callee: &str,
    peer: PeerOptions,
) -> (CallSession, PlacedCall) {
    CallSession::place(
        &device(s, caller),
        serde_json::json!({"scope": "room", "scope_id": "chat-room-42", "callees": [callee]}),
        peer,
    )
    .await
    .unwrap()
}

/// `GET /calls/{id}` as the holder of `token`, polled until the call ended (or 10 s passed).
pub async fn ended_record(
    s: &RunningStack,
    token: &str,
    call_id: &(impl std::fmt::Display + ?Sized),
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = domvia_calls::net::http_client()
            .get(format!("http://{}/calls/{call_id}", s.trusted.addr()))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        if v["call"]["state"] == "ended" || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
