//! One load connection: a WebSocket to the target as one user, with the subscriptions signed
//! by the generator itself (it holds the app secret) and `pusher:ping` answered as it reads.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::ids::SocketId;
use crate::net::{WebSocket, connect_websocket_with};
use crate::pusher::{ConnectionEstablished, ErrorData, Frame, FrameLimits};
use crate::signing::{Secret, sign_channel};

/// How long a connection or subscription may take before the run gives up on it.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Conn {
    ws: WebSocket,
    socket_id: SocketId,
    pub user: String,
    /// The largest event data the target announced (`limits.max_event_bytes`), if it did.
    pub max_event_bytes: Option<usize>,
    /// `pusher:error` 4301 frames seen since the last look.
    pub rate_refused: usize,
    limits: FrameLimits,
}

impl Conn {
    /// Connects to `url` (`ws://host:port/app/KEY?protocol=7...`) as `user`.
    pub async fn open(url: &str, user: &str) -> Result<Conn, String> {
        let config = crate::net::call_signaling_config();
        let ws = tokio::time::timeout(HANDSHAKE, connect_websocket_with(url, Some(config)))
            .await
            .map_err(|_| format!("connecting to {url} timed out"))?
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let mut conn = Conn {
            ws,
            socket_id: SocketId::parse("0.0").expect("a valid socket id"),
            user: user.to_owned(),
            max_event_bytes: None,
            rate_refused: 0,
            limits: FrameLimits::default(),
        };
        let established = tokio::time::timeout(HANDSHAKE, async {
            loop {
                match conn.next_frame().await? {
                    f if f.event == "pusher:connection_established" => return Ok(f),
                    f if f.event == "pusher:error" => {
                        return Err(format!("refused: {}", ErrorData::from_frame(&f).message));
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| "no pusher:connection_established".to_owned())??;
        let info = ConnectionEstablished::from_frame(&established).map_err(|e| e.to_string())?;
        conn.socket_id = SocketId::parse(&info.socket_id)
            .map_err(|e| format!("socket id {:?}: {e}", info.socket_id))?;
        conn.max_event_bytes = info.max_event_bytes;
        Ok(conn)
    }

    /// Subscribes to `channel`, signing it with the app's key and secret (presence channels as
    /// this connection's user), and waits for the confirmation.
    pub async fn subscribe(
        &mut self,
        key: &str,
        secret: &Secret,
        channel: &str,
    ) -> Result<(), String> {
        self.request_subscription(key, secret, channel).await?;
        tokio::time::timeout(HANDSHAKE, async {
            loop {
                let f = self.next_frame().await?;
                if f.channel.as_deref() != Some(channel) {
                    continue;
                }
                match f.event.as_str() {
                    "pusher_internal:subscription_succeeded" => return Ok(()),
                    "pusher:subscription_error" => {
                        return Err(format!("subscribing to {channel} was refused"));
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| format!("no confirmation of {channel}"))?
    }

    /// Sends the subscription request for `channel` without waiting.
    pub async fn request_subscription(
        &mut self,
        key: &str,
        secret: &Secret,
        channel: &str,
    ) -> Result<(), String> {
        let mut data = json!({"channel": channel});
        if channel.starts_with("presence-") {
            let member = json!({"user_id": self.user, "user_info": {}}).to_string();
            data["auth"] = json!(sign_channel(
                key,
                secret,
                &self.socket_id,
                channel,
                Some(&member)
            ));
            data["channel_data"] = json!(member);
        } else if channel.starts_with("private-") {
            data["auth"] = json!(sign_channel(key, secret, &self.socket_id, channel, None));
        }
        self.send_json(&json!({"event": "pusher:subscribe", "data": data}))
            .await
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> Result<(), String> {
        self.send_json(&json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
            .await
    }

    /// Queues client event `event` on `channel`; it leaves with the next [`Conn::flush`] (so the
    /// events one step of a call produces share a write).
    pub async fn queue_trigger(
        &mut self,
        channel: &str,
        event: &str,
        data: &Value,
    ) -> Result<(), String> {
        // Serialized from borrows: `json!` would deep-copy the data (an SDP is kilobytes).
        #[derive(serde::Serialize)]
        struct ClientEvent<'a> {
            event: &'a str,
            channel: &'a str,
            data: &'a Value,
        }
        let frame = serde_json::to_string(&ClientEvent {
            event,
            channel,
            data,
        })
        .map_err(|e| format!("cannot encode {event}: {e}"))?;
        self.ws
            .feed(Message::Text(frame.into()))
            .await
            .map_err(|e| format!("send failed: {e}"))
    }

    /// Writes out what was queued.
    pub async fn flush(&mut self) -> Result<(), String> {
        SinkExt::flush(&mut self.ws)
            .await
            .map_err(|e| format!("send failed: {e}"))
    }

    async fn send_json(&mut self, v: &Value) -> Result<(), String> {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .map_err(|e| format!("send failed: {e}"))
    }

    /// The next frame for the app: pings are answered and 4301 refusals counted on the way.
    pub async fn next_frame(&mut self) -> Result<Frame, String> {
        self.next_frame_at().await.map(|(frame, _)| frame)
    }

    /// The next frame for the app and when its message was read off the socket (before parsing,
    /// so the generator's own parsing is not counted as the server's latency).
    pub async fn next_frame_at(&mut self) -> Result<(Frame, tokio::time::Instant), String> {
        loop {
            let msg = self
                .ws
                .next()
                .await
                .ok_or("the connection closed")?
                .map_err(|e| format!("the connection failed: {e}"))?;
            let read_at = tokio::time::Instant::now();
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(c) => {
                    return Err(format!(
                        "the server closed the connection{}",
                        c.map(|c| format!(" ({} {})", u16::from(c.code), c.reason))
                            .unwrap_or_default()
                    ));
                }
                _ => continue,
            };
            let frame = Frame::parse(text.as_bytes(), &self.limits)
                .map_err(|e| format!("an unreadable frame: {e}"))?;
            match frame.event.as_str() {
                "pusher:ping" => {
                    self.send_json(&json!({"event": "pusher:pong", "data": {}}))
                        .await?;
                }
                "pusher:error" if ErrorData::from_frame(&frame).code == Some(4301) => {
                    self.rate_refused += 1;
                }
                _ => return Ok((frame, read_at)),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
