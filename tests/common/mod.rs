//! Helpers shared by the integration tests: a started reference server and a minimal raw
//! Pusher-protocol client over a real WebSocket. Every wait has a deadline and fails loudly.
#![allow(dead_code)]

#[cfg(feature = "media")]
pub mod calls;
pub mod interop;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use domvia_calls::ids::SocketId;
use domvia_calls::realtime::AppConfig;
use domvia_calls::server::{self, RunningServer, ServerConfig};
use domvia_calls::signing::{self, Secret};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP_ID: &str = "test-app";
pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";
pub const WAIT: Duration = Duration::from_secs(5);

pub fn app() -> AppConfig {
    AppConfig::new(APP_ID, KEY, SECRET)
}

pub async fn start_with(apps: Vec<AppConfig>, outbound_queue: usize) -> RunningServer {
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        apps,
        outbound_queue,
        webhook_batch_ms: 20,
        ..ServerConfig::default()
    };
    server::start(config).await.expect("server starts")
}

pub async fn start() -> RunningServer {
    start_with(vec![app()], 1024).await
}

/// What the next message on a socket was.
#[derive(Debug)]
pub enum Received {
    Frame(Value),
    Closed(Option<u16>),
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
}

impl Client {
    pub async fn raw(
        addr: SocketAddr,
        path_and_query: &str,
    ) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let url = format!("ws://{addr}{path_and_query}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        ws
    }

    pub async fn connect(addr: SocketAddr) -> Client {
        let ws = Self::raw(
            addr,
            &format!("/app/{KEY}?protocol=7&client=test&version=1"),
        )
        .await;
        let mut c = Client {
            ws,
            socket_id: String::new(),
        };
        let f = c.expect("pusher:connection_established").await;
        let data: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
        c.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::Text(s.into())).await.expect("send");
    }

    pub async fn send_binary(&mut self, b: &[u8]) {
        self.ws
            .send(Message::Binary(b.to_vec().into()))
            .await
            .expect("send");
    }

    /// The next frame or close, failing the test after `WAIT`.
    pub async fn next(&mut self) -> Received {
        self.next_within(WAIT).await
    }

    /// The next frame or close, failing the test after `deadline`.
    pub async fn next_within(&mut self, deadline: Duration) -> Received {
        loop {
            let msg = tokio::time::timeout(deadline, self.ws.next())
                .await
                .expect("a message within the deadline");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Received::Frame(serde_json::from_str(&t).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    pub async fn next_frame(&mut self) -> Value {
        match self.next().await {
            Received::Frame(f) => f,
            Received::Closed(code) => {
                panic!("connection closed ({code:?}) while a frame was expected")
            }
        }
    }

    /// The next frame, which must be `event`.
    pub async fn expect(&mut self, event: &str) -> Value {
        let f = self.next_frame().await;
        assert_eq!(f["event"], event, "unexpected frame {f}");
        f
    }

    /// The close code the server ends the connection with, skipping frames before it.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.next().await {
                return code;
            }
        }
    }

    /// `pusher:error` data, which must come next.
    pub async fn expect_error(&mut self) -> Value {
        let f = self.expect("pusher:error").await;
        match &f["data"] {
            Value::String(s) => serde_json::from_str(s).unwrap(),
            v => v.clone(),
        }
    }

    pub fn auth(&self, channel: &str, channel_data: Option<&str>) -> String {
        let socket = SocketId::parse(&self.socket_id).unwrap();
        signing::sign_channel(KEY, &Secret::new(SECRET), &socket, channel, channel_data)
    }

    /// Subscribes (signing when needed) and waits for success.
    pub async fn subscribe(&mut self, channel: &str, user: Option<&str>) -> Value {
        let mut data = json!({ "channel": channel });
        if let Some(user) = user {
            let cd = json!({ "user_id": user, "user_info": { "name": user } }).to_string();
            data["auth"] = json!(self.auth(channel, Some(&cd)));
            data["channel_data"] = json!(cd);
        } else if channel.starts_with("private-") {
            data["auth"] = json!(self.auth(channel, None));
        }
        self.send(json!({ "event": "pusher:subscribe", "data": data }))
            .await;
        let f = self.expect("pusher_internal:subscription_succeeded").await;
        serde_json::from_str(f["data"].as_str().unwrap()).unwrap()
    }

    /// Two clients, both subscribed to the private or public `channel`.
    pub async fn pair(addr: SocketAddr, channel: &str) -> (Client, Client) {
        let mut a = Client::connect(addr).await;
        let mut b = Client::connect(addr).await;
        a.subscribe(channel, None).await;
        b.subscribe(channel, None).await;
        (a, b)
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// A signed HTTP API request; returns status and JSON body.
pub async fn http_api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    params: &str,
    body: &str,
) -> (u16, Value) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let params = signing::parse_query(params).unwrap();
    let signed = signing::sign_http_request(
        KEY,
        &Secret::new(SECRET),
        method,
        path,
        params,
        body.as_bytes(),
        now,
    );
    let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!("http://{addr}{path}?{}", query.join("&"));
    let client = domvia_calls::net::http_client();
    let req = match method {
        "GET" => client.get(url),
        _ => client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    };
    let resp = req.send().await.expect("http api answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A unique empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "domvia-{tag}-{}-{:x}",
        std::process::id(),
        rand_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}
