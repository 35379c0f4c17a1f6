//! The runner's side of the wire: a traced raw Pusher-protocol connection, the signed HTTP API
//! client, the webhook listener, and the per-case context that records the trace and checks
//! every received call event against the generated schemas.
//!
//! Every wait has a deadline and ends as soon as what it waits for arrives; absence is proved
//! with a ping fence (the target answers `pusher:ping` in order) rather than with a sleep.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::target::Target;
use super::verdict::Failure;
use crate::event::EventKind;
use crate::ids::SocketId;
use crate::signing::{self, Secret};

/// Longest wait for something the target should do promptly.
pub const PROMPT: Duration = Duration::from_secs(5);
/// Largest frame text kept in a trace entry unless the run asks for more.
pub const TRACE_TEXT_BYTES: usize = 1024;

/// Why a case step did not go on.
#[derive(Debug, Clone)]
pub enum Problem {
    Fail(Failure),
    Unsupported(String),
    Errored(String),
}

pub type Step<T> = Result<T, Problem>;

/// A failed expectation.
pub fn fail(
    message: impl Into<String>,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Problem {
    Problem::Fail(Failure {
        message: message.into(),
        expected: expected.into(),
        actual: actual.into(),
    })
}

/// Fails with `message` unless `cond` holds.
pub fn ensure(
    cond: bool,
    message: impl Into<String>,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Step<()> {
    if cond {
        Ok(())
    } else {
        Err(fail(message, expected, actual))
    }
}

/// The kit could not carry out a step.
pub fn errored(message: impl Into<String>) -> Problem {
    Problem::Errored(message.into())
}

/// One line of a wire trace.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TraceEntry {
    /// Milliseconds since the case began.
    pub at_ms: u64,
    /// The connection or endpoint, as the case named it.
    pub conn: String,
    /// `>` sent by the kit, `<` received, `!` a note (close, timeout, HTTP status).
    pub dir: String,
    pub text: String,
}

/// Per-case state shared by the case's connections.
#[derive(Clone)]
pub struct Ctx {
    pub target: Arc<Target>,
    pub seed: u64,
    pub webhooks: Option<Arc<WebhookLog>>,
    trace: Arc<Mutex<Vec<TraceEntry>>>,
    schema_violations: Arc<Mutex<Vec<String>>>,
    /// SHOULDs the target broke while doing what the case requires.
    deviations: Arc<Mutex<Vec<Failure>>>,
    schemas: Arc<Schemas>,
    began: Instant,
    trace_text_bytes: usize,
}

impl Ctx {
    pub(super) fn new(
        target: Arc<Target>,
        seed: u64,
        webhooks: Option<Arc<WebhookLog>>,
        schemas: Arc<Schemas>,
    ) -> Ctx {
        Ctx {
            target,
            seed,
            webhooks,
            trace: Arc::default(),
            schema_violations: Arc::default(),
            deviations: Arc::default(),
            schemas,
            began: Instant::now(),
            trace_text_bytes: TRACE_TEXT_BYTES,
        }
    }

    /// Keeps up to `bytes` of each frame's text in the trace.
    pub(super) fn with_trace_text_bytes(mut self, bytes: usize) -> Ctx {
        self.trace_text_bytes = bytes;
        self
    }

    pub fn note(&self, conn: &str, dir: &str, text: &str) {
        let mut cut = text.len().min(self.trace_text_bytes);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let clipped = cut < text.len();
        let mut text = text[..cut].to_owned();
        if clipped {
            text.push('…');
        }
        let entry = TraceEntry {
            at_ms: self.began.elapsed().as_millis() as u64,
            conn: conn.to_owned(),
            dir: dir.to_owned(),
            text,
        };
        if let Ok(mut t) = self.trace.lock() {
            t.push(entry);
        }
    }

    pub(super) fn take_trace(&self) -> Vec<TraceEntry> {
        self.trace
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }

    /// Records a broken SHOULD unless `cond` holds, and lets the case go on: a case that then
    /// passes is `non_strict`. Returns `cond`.
    pub fn should(
        &self,
        cond: bool,
        message: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> bool {
        if !cond {
            let f = Failure {
                message: message.into(),
                expected: expected.into(),
                actual: actual.into(),
            };
            self.note("kit", "!", &format!("SHOULD broken: {}", f.message));
            if let Ok(mut d) = self.deviations.lock() {
                d.push(f);
            }
        }
        cond
    }

    pub(super) fn take_deviations(&self) -> Vec<Failure> {
        self.deviations
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    pub(super) fn take_schema_violations(&self) -> Vec<String> {
        self.schema_violations
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// A tap that writes a reference client's frames into this case's trace as `conn`.
    pub fn tap(&self, conn: &str) -> crate::client::WireTap {
        use crate::client::WireDirection;
        let (ctx, conn) = (self.clone(), conn.to_owned());
        crate::client::WireTap(Arc::new(move |direction, text| {
            let dir = match direction {
                WireDirection::Sent => ">",
                WireDirection::Received => "<",
                WireDirection::Note => "!",
            };
            ctx.note(&conn, dir, text);
        }))
    }

    /// The app secret, or `unsupported` for targets tested without it.
    pub fn secret(&self) -> Step<&Secret> {
        self.target
            .secret
            .as_ref()
            .ok_or_else(|| Problem::Unsupported("needs the app secret (--secret)".into()))
    }

    /// A fresh channel name unique to this run and case.
    pub fn unique(&self, prefix: &str, tag: &str) -> String {
        format!("{prefix}conform-{tag}-{:x}", rand::random::<u64>())
    }

    /// Checks a received call event against its generated schema, recording violations.
    fn check_schema(&self, conn: &str, frame: &Value) {
        let Some(event) = frame["event"].as_str() else {
            return;
        };
        let Some(logical) = event
            .strip_prefix("client-")
            .unwrap_or(event)
            .strip_prefix("call.")
        else {
            return;
        };
        let data = match &frame["data"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            v => v.clone(),
        };
        if let Some(problem) = self.schemas.check(logical, &data) {
            self.note(conn, "!", &format!("schema: {event}: {problem}"));
            if let Ok(mut v) = self.schema_violations.lock() {
                v.push(format!(
                    "{conn} received {event} that breaks its schema: {problem}"
                ));
            }
        }
    }

    /// Sends a signed HTTP API request; `tweak` may change the signed parameters (to break them).
    pub async fn http_api(
        &self,
        method: &str,
        path: &str,
        body: &str,
        tweak: impl FnOnce(&mut Vec<(String, String)>),
    ) -> Step<(u16, String)> {
        self.http_api_custom(method, path, body, body, unix_now(), tweak, false)
            .await
    }

    /// An HTTP API request signed as if its body were `signed_body` at `timestamp`; `tweak`
    /// changes the parameters after signing, and `resign` signs them again afterwards (so only
    /// what the tweak changed is wrong).
    #[allow(clippy::too_many_arguments)]
    pub async fn http_api_custom(
        &self,
        method: &str,
        path: &str,
        body: &str,
        signed_body: &str,
        timestamp: u64,
        tweak: impl FnOnce(&mut Vec<(String, String)>),
        resign: bool,
    ) -> Step<(u16, String)> {
        let base = self
            .target
            .http_api
            .as_deref()
            .ok_or_else(|| Problem::Unsupported("needs the HTTP API (--http-api)".into()))?;
        let path = format!("/apps/{}{path}", self.target.app_id);
        let secret = self.secret()?;
        let mut signed = signing::sign_http_request(
            &self.target.key,
            secret,
            method,
            &path,
            Vec::new(),
            signed_body.as_bytes(),
            timestamp,
        );
        tweak(&mut signed);
        if resign {
            signed.retain(|(k, _)| k != "auth_signature");
            let sig = signing::hmac_sha256_hex(
                secret,
                &signing::http_string_to_sign(method, &path, &signed),
            );
            signed.push(("auth_signature".into(), sig));
        }
        let query: Vec<String> = signed
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        let url = format!("{}{path}?{}", base.trim_end_matches('/'), query.join("&"));
        self.note("http", ">", &format!("{method} {path} {body}"));
        let client = crate::net::http_client();
        let req = match method {
            "GET" => client.get(&url),
            _ => client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        };
        let resp = tokio::time::timeout(PROMPT, req.send())
            .await
            .map_err(|_| {
                errored(format!(
                    "HTTP API did not answer {method} {path} in {PROMPT:?}"
                ))
            })?
            .map_err(|e| errored(format!("HTTP API request failed: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        self.note("http", "<", &format!("{status} {text}"));
        Ok((status, text))
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The generated JSON Schemas, compiled once per run.
pub struct Schemas {
    events: BTreeMap<&'static str, jsonschema::Validator>,
    sealed: jsonschema::Validator,
}

impl Schemas {
    pub fn compile() -> Result<Schemas, String> {
        let compile = |v: &Value| jsonschema::validator_for(v).map_err(|e| e.to_string());
        let mut events = BTreeMap::new();
        for kind in EventKind::ALL {
            let logical = kind.name().trim_start_matches("call.");
            events.insert(logical, compile(&crate::schema::event_schema(kind))?);
        }
        Ok(Schemas {
            events,
            sealed: compile(&crate::schema::sealed_schema())?,
        })
    }

    /// Why `data` breaks the schema of `call.{logical}`, if it does.
    pub fn check(&self, logical: &str, data: &Value) -> Option<String> {
        let validator = if data.get("sealed").is_some() {
            &self.sealed
        } else {
            match self.events.get(logical) {
                Some(v) => v,
                None => return Some(format!("call.{logical} is not a call event")),
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(data)
            .take(3)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}

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

/// One webhook delivery as received.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub key: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// Whether the listener refused it on purpose (to see the target retry).
    pub refused: bool,
}

/// Webhook deliveries received by the runner's listener, in order.
#[derive(Default)]
pub struct WebhookLog {
    deliveries: Mutex<Vec<WebhookDelivery>>,
    /// Channels whose first delivery was refused with 503 already.
    refused_once: Mutex<Vec<String>>,
    /// Where deliveries are passed on unchanged.
    forward: Mutex<Option<String>>,
    arrived: Notify,
}

/// Deliveries naming a channel that contains this are refused once with 503.
pub const RETRY_MARKER: &str = "conform-retry";

impl WebhookLog {
    /// Passes every later delivery on to `url` (the deployment's own webhook receiver).
    pub fn set_forward(&self, url: Option<String>) {
        if let Ok(mut f) = self.forward.lock() {
            *f = url;
        }
    }

    fn forward_url(&self) -> Option<String> {
        self.forward.lock().ok().and_then(|f| f.clone())
    }

    /// Records a delivery; returns whether to refuse it (first delivery for a retry channel).
    fn record(&self, key: String, signature: String, body: Vec<u8>) -> bool {
        let text = String::from_utf8_lossy(&body);
        let mut refuse = false;
        if let Some(at) = text.find(RETRY_MARKER) {
            let tail: String = text[at..].chars().take_while(|c| *c != '"').collect();
            if let Ok(mut r) = self.refused_once.lock()
                && !r.contains(&tail)
            {
                r.push(tail);
                refuse = true;
            }
        }
        if let Ok(mut d) = self.deliveries.lock() {
            d.push(WebhookDelivery {
                key,
                signature,
                body,
                refused: refuse,
            });
        }
        self.arrived.notify_waiters();
        refuse
    }

    /// Waits up to `within` for a delivery (refused ones included) for which `pred` holds.
    pub async fn wait_for(
        &self,
        ctx: &Ctx,
        what: &str,
        within: Duration,
        pred: impl Fn(&WebhookDelivery) -> bool,
    ) -> Step<WebhookDelivery> {
        let deadline = Instant::now() + within;
        let mut checked = 0;
        loop {
            let notified = self.arrived.notified();
            let found = {
                let d = self
                    .deliveries
                    .lock()
                    .map_err(|_| errored("webhook log poisoned"))?;
                let hit = d[checked..].iter().find(|x| pred(x)).cloned();
                checked = d.len();
                hit
            };
            if let Some(hit) = found {
                ctx.note("webhooks", "<", &String::from_utf8_lossy(&hit.body));
                return Ok(hit);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(fail(
                    format!("the target delivers {what} as a webhook"),
                    what.to_owned(),
                    format!("no matching delivery within {within:?}"),
                ));
            }
        }
    }
}

/// Starts the webhook listener on `addr`, forwarding every delivery to `forward` if given.
pub async fn listen_webhooks(
    addr: std::net::SocketAddr,
    forward: Option<String>,
) -> Result<(Arc<WebhookLog>, std::net::SocketAddr), String> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let log = Arc::new(WebhookLog::default());
    log.set_forward(forward);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for webhooks on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let state = (log.clone(), crate::net::http_client());
    let app = axum::Router::new()
        .fallback(axum::routing::post(
            |axum::extract::State((log, client)): axum::extract::State<(
                Arc<WebhookLog>,
                reqwest::Client,
            )>,
             headers: HeaderMap,
             body: Bytes| async move {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let (key, signature) = (header("x-pusher-key"), header("x-pusher-signature"));
                if let Some(url) = log.forward_url() {
                    let _ = client
                        .post(url)
                        .header("content-type", "application/json")
                        .header("x-pusher-key", &key)
                        .header("x-pusher-signature", &signature)
                        .body(body.clone())
                        .send()
                        .await;
                }
                if log.record(key, signature, body.to_vec()) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            },
        ))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((log, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        let target = Target::new(vec!["ws://127.0.0.1:1".into()], "app", "key");
        Ctx::new(
            Arc::new(target),
            1,
            None,
            Arc::new(Schemas::compile().unwrap()),
        )
    }

    #[test]
    fn long_frames_are_clipped_in_traces_and_say_so() {
        let ctx = ctx().with_trace_text_bytes(8);
        ctx.note("a", ">", "short");
        ctx.note("a", ">", "exactly8");
        ctx.note("a", "<", "one two three");
        ctx.note("a", "<", "ééééé");
        let texts: Vec<String> = ctx.take_trace().into_iter().map(|t| t.text).collect();
        assert_eq!(texts, ["short", "exactly8", "one two …", "éééé…"]);
    }
}
