//! The reference trusted server's I/O shell: HTTP endpoints (axum), the call store (sqlx), the
//! ring-timeout watchdog and the outbox sender that delivers server events through the realtime
//! HTTP API. Decisions come from [`crate::trusted`]; this module reads, stores and sends.
//!
//! Invariants: one writer lock serializes every read-modify-write of a call record in this process
//! (a deployment with several trusted-server processes would need row locks); server events are
//! written to the outbox in the transaction that decided them and deleted only after the realtime
//! server accepted them, so a crash at any point loses no event and no record.

mod background;
mod calls;
mod config;
pub(crate) mod demo;
mod store;

use background::{outbox_sender, reconciler, watchdog};
use calls::{call_action, call_detail, create_call, history, missed, realtime_webhooks};
pub use config::{DEVELOPMENT_MASTER_KEY, TrustedConfig};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, oneshot};
use tokio::task::JoinHandle;

pub use demo::pusher_js_path;
pub use store::{Cursor, OutboxCounts, Store};

use crate::ids::CallId;
use crate::signing::{self, Secret};
use crate::trusted::api::{IceServer, IceServerList, PlacedCall};
use crate::trusted::{
    CallRequest, Directory, SigningApp, User, UserAction, apply_user_action, apply_webhook,
    authorize, end_vacated, expire_if_due, outbox, plan_call, webhook,
};

struct AppState {
    config: TrustedConfig,
    directory: Directory,
    master_key: Vec<u8>,
    store: Store,
    writer: Mutex<()>,
    outbox_wake: Notify,
    http: reqwest::Client,
    call_limiter: Mutex<crate::trusted::rate::CallRateLimiter>,
    call_ids: calls::CallIds,
}

/// A trusted server running in the background.
pub struct RunningTrusted {
    addr: SocketAddr,
    store: Store,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    http: JoinHandle<std::io::Result<()>>,
    call_ids: calls::CallIds,
}

impl RunningTrusted {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store, for tests and tools that inspect records.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes the next `POST /calls` use `id` instead of a random call id. The client-role
    /// runner plays this server and needs to know which of two crossing calls wins the glare
    /// rule (the lower call id); nothing else sets it.
    pub fn use_next_call_id(&self, id: CallId) {
        self.call_ids.preset(id);
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.http).await;
        for t in &self.tasks {
            t.abort();
        }
        self.store.close().await;
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the trusted server on `listener` (or on `config.bind`).
pub async fn start(
    config: TrustedConfig,
    listener: Option<TcpListener>,
) -> Result<RunningTrusted, crate::error::ToolError> {
    let directory = config.directory.clone().unwrap_or_else(Directory::demo);
    directory.validate()?;
    let master_key = config.master_key()?;
    let store = Store::connect(&config.database_url()?).await?;
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.bind)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?,
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config_calls = (config.calls_per_minute, config.call_burst);
    let state = Arc::new(AppState {
        http: crate::net::http_client_builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?,
        config,
        directory,
        master_key,
        store: store.clone(),
        writer: Mutex::new(()),
        outbox_wake: Notify::new(),
        call_limiter: Mutex::new(crate::trusted::rate::CallRateLimiter::new(
            config_calls.0,
            config_calls.1,
        )),
        call_ids: calls::CallIds::default(),
    });
    let router = Router::new()
        .route("/realtime/auth", post(realtime_auth))
        .route("/realtime/webhooks", post(realtime_webhooks))
        .route("/calls", post(create_call))
        .route("/calls/history", get(history))
        .route("/calls/missed", get(missed))
        .route("/calls/{id}", get(call_detail))
        .route("/calls/{id}/{action}", post(call_action))
        .route("/ice-servers", get(ice_servers_for_user))
        .route("/", get(demo::front))
        .route("/demo", get(demo::redirect))
        .route("/demo/", get(demo::page))
        .route("/demo/call.js", get(demo::script))
        .route("/demo/pusher.min.js", get(demo::pusher_js))
        .route("/demo/envelope.js", get(demo::envelope))
        .route("/demo/libsodium.js", get(demo::libsodium))
        .route("/demo/libsodium-wrappers.js", get(demo::libsodium_wrappers))
        .route("/demo/config", get(demo::config))
        .with_state(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = state.config.listen;
    let http = tokio::spawn(crate::server::listen::serve(
        crate::server::listen::no_delay(listener),
        router,
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    let tasks = vec![
        tokio::spawn(watchdog(state.clone())),
        tokio::spawn(outbox_sender(state.clone())),
        tokio::spawn(reconciler(state.clone())),
    ];
    tracing::info!(%addr, "trusted server listening");
    Ok(RunningTrusted {
        addr,
        store,
        stop: Some(stop),
        tasks,
        http,
        call_ids: state.call_ids.clone(),
    })
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(json!({ "error": message.to_string(), "code": code })),
    )
        .into_response()
}

fn internal(e: String) -> Response {
    tracing::error!(error = %e, "trusted server failure");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

fn bearer<'a>(state: &'a AppState, headers: &HeaderMap) -> Option<&'a User> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?;
    state.directory.user_by_token(token.trim())
}

/// `socket_id` and `channel_name` from a form-encoded (pusher-js) or JSON body.
pub(crate) fn auth_params(headers: &HeaderMap, body: &[u8]) -> Option<(String, String)> {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        let v: Value = serde_json::from_slice(body).ok()?;
        return Some((
            v["socket_id"].as_str()?.to_owned(),
            v["channel_name"].as_str()?.to_owned(),
        ));
    }
    let params = signing::parse_query(std::str::from_utf8(body).ok()?).ok()?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Some((get("socket_id")?, get("channel_name")?))
}

async fn realtime_auth(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = bearer(&state, &headers);
    let Some((socket_id, channel)) = auth_params(&headers, &body) else {
        return error(
            StatusCode::FORBIDDEN,
            "auth.bad_request",
            "send socket_id and channel_name, form-encoded or as JSON",
        );
    };
    // Only look up a call for call channels a signed-in user names.
    let call = match crate::channel::CallChannel::parse(&channel) {
        Ok(c) if user.is_some() => match state.store.load_call(c.call_id().as_str()).await {
            Ok(call) => call,
            Err(e) => return internal(e),
        },
        _ => None,
    };
    let app = SigningApp {
        key: state.config.app_key.clone(),
        secret: state.config.app_secret.clone(),
    };
    match authorize(
        &app,
        &state.directory,
        &state.master_key,
        user,
        &socket_id,
        &channel,
        call.as_ref(),
    ) {
        Ok(resp) => axum::Json(resp).into_response(),
        Err(denial) => error(StatusCode::FORBIDDEN, denial.code(), &denial),
    }
}

fn ice_servers(config: &TrustedConfig, user: &str, now_ms: u64) -> Vec<IceServer> {
    let mut servers = Vec::new();
    if !config.stun_urls.is_empty() {
        servers.push(IceServer {
            urls: config.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let (false, Some(secret)) = (config.turn_urls.is_empty(), &config.turn_secret) {
        let cred = signing::turn_credential(secret, user, now_ms / 1000 + config.turn_ttl_secs);
        servers.push(IceServer {
            urls: config.turn_urls.clone(),
            username: Some(cred.username),
            credential: Some(cred.password),
        });
    }
    servers
}

/// `GET /ice-servers`: STUN and fresh TURN credentials for the signed-in user, for a callee (the
/// caller gets them from `POST /calls`).
async fn ice_servers_for_user(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(user) = bearer(&state, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first: missing or unknown bearer token",
        );
    };
    axum::Json(IceServerList {
        ice_servers: ice_servers(&state.config, user.id.as_str(), unix_ms()),
    })
    .into_response()
}
