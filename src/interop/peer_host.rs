//! What the conformance runner serves its independent peers when the call under test has no
//! trusted server in the loop: the demo page and pusher-js (for Chromium), the target's realtime
//! address, a channel authorization endpoint that signs with the app secret, and `/ice-servers`.
//!
//! The bearer token a peer sends is taken as its user id: the host only serves the runner's own
//! peers on 127.0.0.1, for the length of one case.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::ids::SocketId;
use crate::signing::{self, Secret};
use crate::trusted_server::demo::{PAGE, SCRIPT, pusher_js_path};

/// What the host serves.
#[derive(Debug, Clone)]
pub struct PeerHostConfig {
    /// The target node, `ws://host:port`.
    pub realtime: String,
    pub key: String,
    pub secret: Secret,
    /// pusher-js for the page; found in an npm install of the interop tests by default.
    pub pusher_js: Option<PathBuf>,
    /// What `/ice-servers` answers, as the trusted server would.
    pub ice_servers: Value,
}

/// A running host; stops when dropped.
pub struct PeerHost {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

fn text(content_type: &'static str, body: impl IntoResponse) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn auth(State(cfg): State<Arc<PeerHostConfig>>, headers: HeaderMap, body: Bytes) -> Response {
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let params = crate::trusted_server::auth_params(&headers, &body);
    let (Some(user), Some((socket_id, channel))) = (user, params) else {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "send a bearer token, socket_id and channel_name"})),
        )
            .into_response();
    };
    let Ok(socket) = SocketId::parse(&socket_id) else {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "socket_id is not digits.digits"})),
        )
            .into_response();
    };
    let channel_data = (crate::pusher::ChannelType::of(&channel)
        == crate::pusher::ChannelType::Presence)
        .then(|| json!({"user_id": user, "user_info": {}}).to_string());
    let mut answer = json!({
        "auth": signing::sign_channel(&cfg.key, &cfg.secret, &socket, &channel, channel_data.as_deref())
    });
    if let Some(cd) = channel_data {
        answer["channel_data"] = json!(cd);
    }
    axum::Json(answer).into_response()
}

async fn config(State(cfg): State<Arc<PeerHostConfig>>) -> Response {
    let url = reqwest::Url::parse(&cfg.realtime).ok();
    match url
        .as_ref()
        .and_then(|u| Some((u.host_str()?, u.port_or_known_default()?)))
    {
        Some((host, port)) => {
            let tls = url
                .as_ref()
                .is_some_and(|u| matches!(u.scheme(), "wss" | "https"));
            axum::Json(
                json!({"realtime": {"host": host, "port": port, "key": cfg.key, "tls": tls}}),
            )
            .into_response()
        }
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the target {} has no host and port", cfg.realtime),
        )
            .into_response(),
    }
}

async fn pusher_js(State(cfg): State<Arc<PeerHostConfig>>) -> Response {
    match pusher_js_path(cfg.pusher_js.as_ref()).map(std::fs::read) {
        Some(Ok(bytes)) => text("text/javascript; charset=utf-8", bytes),
        _ => (StatusCode::NOT_FOUND, "// pusher-js not found\n").into_response(),
    }
}

impl PeerHost {
    /// Starts the host on an ephemeral port of 127.0.0.1.
    pub async fn start(cfg: PeerHostConfig) -> Result<PeerHost, crate::error::ToolError> {
        let ice = cfg.ice_servers.clone();
        let router = Router::new()
            .route(
                "/demo/",
                get(|| async { text("text/html; charset=utf-8", PAGE) }),
            )
            .route(
                "/demo/call.js",
                get(|| async { text("text/javascript; charset=utf-8", SCRIPT) }),
            )
            .route("/demo/pusher.min.js", get(pusher_js))
            .route("/demo/config", get(config))
            .route("/realtime/auth", post(auth))
            .route(
                "/ice-servers",
                get(move || async move { axum::Json(json!({"ice_servers": ice})) }),
            )
            .with_state(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(PeerHost { addr, _stop: stop })
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}
