//! A traced raw Pusher-protocol connection: what the runner sends is exactly what the case wrote
//! (nothing is corrected), and every wait ends at a deadline or a ping fence.

use super::*;

/// What arrived on a connection.
#[derive(Debug, Clone)]
pub enum Recv {
    Frame {
        value: Value,
        text: String,
    },
    /// The connection ended; the close code if the target sent one.
    Closed(Option<u16>),
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What opening a WebSocket gave.
pub enum Opened {
    Conn(Box<Conn>),
    /// The target answered the upgrade request with an HTTP status instead of switching.
    RefusedAtUpgrade {
        status: u16,
        body: String,
    },
}

/// A raw Pusher-protocol connection to the target, traced.
pub struct Conn {
    pub name: String,
    ws: Ws,
    ctx: Ctx,
    pub socket_id: String,
    /// The parsed `data` of `pusher:connection_established`.
    pub established: Value,
    closed: bool,
}

impl Conn {
    /// Opens `url` without waiting for `connection_established`.
    pub async fn open_url(ctx: &Ctx, name: &str, url: &str) -> Step<Conn> {
        match Conn::try_open_url(ctx, name, url).await? {
            Opened::Conn(c) => Ok(*c),
            Opened::RefusedAtUpgrade { status, body } => Err(errored(format!(
                "{name}: the target refused the WebSocket upgrade of {url} with HTTP {status}: {body}"
            ))),
        }
    }

    /// Opens `url`; a refusal at the HTTP upgrade is an answer here, not an error (a server may
    /// refuse a connection there instead of closing it with a Pusher code).
    pub async fn try_open_url(ctx: &Ctx, name: &str, url: &str) -> Step<Opened> {
        use tokio_tungstenite::tungstenite::Error as WsError;
        ctx.note(name, "!", &format!("connect {url}"));
        let ws = match tokio::time::timeout(PROMPT, crate::net::connect_websocket(url))
            .await
            .map_err(|_| errored(format!("{name}: connecting to {url} took over {PROMPT:?}")))?
        {
            Ok(ws) => ws,
            Err(WsError::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).chars().take(200).collect())
                    .unwrap_or_default();
                ctx.note(name, "!", &format!("upgrade refused: HTTP {status} {body}"));
                return Ok(Opened::RefusedAtUpgrade { status, body });
            }
            Err(e) => return Err(errored(format!("{name}: cannot connect to {url}: {e}"))),
        };
        Ok(Opened::Conn(Box::new(Conn {
            name: name.to_owned(),
            ws,
            ctx: ctx.clone(),
            socket_id: String::new(),
            established: Value::Null,
            closed: false,
        })))
    }

    /// Connects to node 0 and waits for `pusher:connection_established`.
    pub async fn connect(ctx: &Ctx, name: &str) -> Step<Conn> {
        Conn::connect_node(ctx, name, 0).await
    }

    /// Connects to node `node` and waits for `pusher:connection_established`.
    pub async fn connect_node(ctx: &Ctx, name: &str, node: usize) -> Step<Conn> {
        let url = format!(
            "{}?protocol=7&client=domvia-calls-conform&version={}",
            ctx.target.app_url(node),
            env!("CARGO_PKG_VERSION")
        );
        let mut c = Conn::open_url(ctx, name, &url).await?;
        let f = c
            .wait_for("pusher:connection_established", PROMPT, |f| {
                f["event"] == "pusher:connection_established"
            })
            .await?;
        let data = decode_data(&f["data"]);
        let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
        ensure(
            SocketId::parse(&socket_id).is_ok(),
            "connection_established carries a socket_id of the form digits.digits",
            "socket_id like \"123.456\"",
            f.to_string(),
        )?;
        c.socket_id = socket_id;
        c.established = data;
        Ok(c)
    }

    pub async fn send_json(&mut self, v: &Value) -> Step<()> {
        self.send_text(&v.to_string()).await
    }

    pub async fn send_text(&mut self, text: &str) -> Step<()> {
        self.ctx.note(&self.name, ">", text);
        self.send_message(Message::Text(text.to_owned().into()))
            .await
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) -> Step<()> {
        self.ctx
            .note(&self.name, ">", &format!("binary {} bytes", bytes.len()));
        self.send_message(Message::Binary(bytes.to_vec().into()))
            .await
    }

    /// Sends any WebSocket message (raw frames included); a send on a connection the target
    /// already closed is not an error here: the next receive reports the close.
    pub async fn send_message(&mut self, m: Message) -> Step<()> {
        if let Err(e) = self.ws.send(m).await {
            self.ctx.note(&self.name, "!", &format!("send failed: {e}"));
        }
        Ok(())
    }

    /// Sends `pusher:subscribe` for `channel`, signing it with the app secret; on presence
    /// channels `member` gives `(user_id, user_info)`.
    pub async fn send_subscribe(
        &mut self,
        channel: &str,
        member: Option<(&str, Value)>,
    ) -> Step<()> {
        let frame = self.subscribe_frame(channel, member)?;
        self.send_json(&frame).await
    }

    /// The signed `pusher:subscribe` frame for `channel`.
    pub fn subscribe_frame(&self, channel: &str, member: Option<(&str, Value)>) -> Step<Value> {
        let channel_data =
            member.map(|(id, info)| json!({"user_id": id, "user_info": info}).to_string());
        let mut data = json!({ "channel": channel });
        if channel.starts_with("private-") || channel.starts_with("presence-") {
            let socket = SocketId::parse(&self.socket_id).map_err(|e| errored(e.to_string()))?;
            let auth = signing::sign_channel(
                &self.ctx.target.key,
                self.ctx.secret()?,
                &socket,
                channel,
                channel_data.as_deref(),
            );
            data["auth"] = json!(auth);
        }
        if let Some(cd) = channel_data {
            data["channel_data"] = json!(cd);
        }
        Ok(json!({ "event": "pusher:subscribe", "data": data }))
    }

    /// Subscribes and waits for `subscription_succeeded`; returns its data.
    pub async fn subscribe(&mut self, channel: &str, member: Option<(&str, Value)>) -> Step<Value> {
        self.send_subscribe(channel, member).await?;
        self.expect_subscribed(channel).await
    }

    /// Waits for the outcome of a subscription to `channel`, which must succeed.
    pub async fn expect_subscribed(&mut self, channel: &str) -> Step<Value> {
        let f = self
            .wait_for(
                &format!("pusher_internal:subscription_succeeded for {channel}"),
                PROMPT,
                |f| {
                    f["channel"] == channel
                        && (f["event"] == "pusher_internal:subscription_succeeded"
                            || f["event"] == "pusher:subscription_error")
                },
            )
            .await?;
        ensure(
            f["event"] == "pusher_internal:subscription_succeeded",
            format!("a correctly signed subscription to {channel} succeeds"),
            "pusher_internal:subscription_succeeded",
            f.to_string(),
        )?;
        Ok(decode_data(&f["data"]))
    }

    /// Waits for the refusal of a subscription to `channel`; returns the frame.
    pub async fn expect_subscription_refused(&mut self, channel: &str, why: &str) -> Step<Value> {
        let f = self
            .wait_for(
                &format!("the outcome of subscribing to {channel}"),
                PROMPT,
                |f| {
                    f["channel"] == channel
                        && (f["event"] == "pusher_internal:subscription_succeeded"
                            || f["event"] == "pusher:subscription_error")
                        || f["event"] == "pusher:error"
                },
            )
            .await?;
        ensure(
            f["event"] != "pusher_internal:subscription_succeeded",
            format!("the target refuses {why}"),
            format!("pusher:subscription_error on {channel}"),
            f.to_string(),
        )?;
        Ok(f)
    }

    /// Sends a client event with `data` as a JSON object.
    pub async fn trigger(&mut self, channel: &str, event: &str, data: &Value) -> Step<()> {
        self.send_json(&json!({ "event": event, "channel": channel, "data": data }))
            .await
    }

    /// The next frame or close before `deadline`; `None` when the deadline passed first.
    /// `pusher:ping` from the target is answered and skipped.
    pub async fn recv(&mut self, deadline: Instant) -> Step<Option<Recv>> {
        if self.closed {
            return Ok(Some(Recv::Closed(None)));
        }
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(m) => m,
            };
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let text = t.to_string();
                    self.ctx.note(&self.name, "<", &text);
                    let value: Value = match serde_json::from_str(&text) {
                        Ok(v) => v,
                        Err(e) => {
                            return Err(fail(
                                "the target sends JSON text frames",
                                "a JSON object",
                                format!("{text:?} ({e})"),
                            ));
                        }
                    };
                    if value["event"] == "pusher:ping" {
                        let pong = json!({"event": "pusher:pong", "data": {}}).to_string();
                        let _ = self.ws.send(Message::Text(pong.into())).await;
                        continue;
                    }
                    self.ctx.check_schema(&self.name, &value);
                    return Ok(Some(Recv::Frame { value, text }));
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    self.ctx.note(
                        &self.name,
                        "!",
                        &format!("closed by target: {code:?} {reason}"),
                    );
                    self.closed = true;
                    return Ok(Some(Recv::Closed(code)));
                }
                Some(Ok(Message::Binary(b))) => {
                    self.ctx
                        .note(&self.name, "<", &format!("binary {} bytes", b.len()));
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.ctx
                        .note(&self.name, "!", &format!("connection failed: {e}"));
                    self.closed = true;
                    return Ok(Some(Recv::Closed(None)));
                }
                None => {
                    self.ctx
                        .note(&self.name, "!", "connection ended without a close frame");
                    self.closed = true;
                    return Ok(Some(Recv::Closed(None)));
                }
            }
        }
    }

    /// Waits up to `within` for a frame matching `pred`, skipping others; fails on a close or
    /// when the deadline passes, naming `what` and the frames that did arrive.
    pub async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Step<Value> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match self.recv(deadline).await? {
                Some(Recv::Frame { value, .. }) if pred(&value) => return Ok(value),
                Some(Recv::Frame { text, .. }) => seen.push(text),
                Some(Recv::Closed(code)) => {
                    return Err(fail(
                        format!("{} expected {what}", self.name),
                        what.to_owned(),
                        format!("connection closed (code {code:?}) after {seen:?}"),
                    ));
                }
                None => {
                    self.ctx
                        .note(&self.name, "!", &format!("no {what} within {within:?}"));
                    return Err(fail(
                        format!("{} expected {what} within {within:?}", self.name),
                        what.to_owned(),
                        if seen.is_empty() {
                            "nothing".to_owned()
                        } else {
                            seen.join("\n")
                        },
                    ));
                }
            }
        }
    }

    /// Waits for the next frame matching `pred` and returns its raw text too.
    pub async fn wait_for_raw(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Step<(Value, String)> {
        let deadline = Instant::now() + within;
        loop {
            match self.recv(deadline).await? {
                Some(Recv::Frame { value, text }) if pred(&value) => return Ok((value, text)),
                Some(Recv::Frame { .. }) => {}
                Some(Recv::Closed(code)) => {
                    return Err(fail(
                        format!("{} expected {what}", self.name),
                        what.to_owned(),
                        format!("connection closed (code {code:?})"),
                    ));
                }
                None => {
                    return Err(fail(
                        format!("{} expected {what} within {within:?}", self.name),
                        what.to_owned(),
                        "nothing",
                    ));
                }
            }
        }
    }

    /// Waits for the target to end the connection; returns the close code (skipping frames).
    pub async fn wait_close(&mut self, within: Duration) -> Step<Option<u16>> {
        let deadline = Instant::now() + within;
        loop {
            match self.recv(deadline).await? {
                Some(Recv::Closed(code)) => return Ok(code),
                Some(Recv::Frame { .. }) => {}
                None => {
                    return Err(fail(
                        format!("{} expected the target to close the connection", self.name),
                        "a close frame",
                        format!("connection still open after {within:?}"),
                    ));
                }
            }
        }
    }

    /// Sends `pusher:ping` and returns every frame that arrived before the `pusher:pong`: the
    /// target handles a connection's frames in order, so anything caused by earlier frames that
    /// has not arrived by then is taken as not sent. Fails if the connection closes or no pong
    /// comes.
    pub async fn fence(&mut self) -> Step<Vec<Value>> {
        self.send_json(&json!({"event": "pusher:ping", "data": {}}))
            .await?;
        let deadline = Instant::now() + PROMPT;
        let mut before = Vec::new();
        loop {
            match self.recv(deadline).await? {
                Some(Recv::Frame { value, .. }) if value["event"] == "pusher:pong" => {
                    return Ok(before);
                }
                Some(Recv::Frame { value, .. }) => before.push(value),
                Some(Recv::Closed(code)) => {
                    return Err(fail(
                        format!("{} stays open", self.name),
                        "pusher:pong to pusher:ping",
                        format!("connection closed (code {code:?}) after {before:?}"),
                    ));
                }
                None => {
                    return Err(fail(
                        format!("{} gets pusher:pong", self.name),
                        "pusher:pong to pusher:ping",
                        format!("no pong within {PROMPT:?}; frames: {before:?}"),
                    ));
                }
            }
        }
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }

    /// Drops the TCP connection without a close handshake.
    pub fn abort(self) {
        drop(self);
    }
}

/// `data` as an object: Pusher sends it as a JSON string, or an object.
pub fn decode_data(data: &Value) -> Value {
    match data {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| data.clone()),
        v => v.clone(),
    }
}

/// The `pusher:error` data of a frame, if it is one.
pub fn error_data(frame: &Value) -> Option<Value> {
    (frame["event"] == "pusher:error").then(|| decode_data(&frame["data"]))
}
