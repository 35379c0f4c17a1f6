//! The reference trusted server's I/O shell: HTTP endpoints (axum), the call store (sqlx), the
//! ring-timeout watchdog and the outbox sender that delivers server events through the realtime
//! HTTP API. Decisions come from [`crate::trusted`]; this module reads, stores and sends.
//!
//! Invariants: one writer lock serializes every read-modify-write of a call record in this process
//! (a deployment with several trusted-server processes would need row locks); server events are
//! written to the outbox in the transaction that decided them and deleted only after the realtime
//! server accepted them, so a crash at any point loses no event and no record.

pub(crate) mod demo;
mod store;

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

/// Everything the trusted server needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedConfig {
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// `sqlite://...` or `postgres://...`; without it, a SQLite file in `data_dir`.
    #[serde(default)]
    pub database_url: Option<String>,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Fixture file (TOML) with users, tokens and scopes; read by the command line into
    /// `directory`.
    #[serde(default)]
    pub fixture: Option<PathBuf>,
    /// Users, tokens and scopes; the demo directory when not given.
    #[serde(skip)]
    pub directory: Option<Directory>,
    /// Base URL of the realtime server's HTTP API.
    #[serde(default = "default_realtime")]
    pub realtime_api_url: String,
    /// The realtime app whose channels this server signs; the development app by default.
    #[serde(default = "default_app_id")]
    pub app_id: String,
    #[serde(default = "default_app_key")]
    pub app_key: String,
    #[serde(default = "default_app_secret", with = "secret_serde")]
    pub app_secret: Secret,
    /// Privacy master key, standard base64 of at least 32 bytes.
    #[serde(default = "default_master_key", with = "secret_serde")]
    pub privacy_master_key: Secret,
    #[serde(default)]
    pub stun_urls: Vec<String>,
    #[serde(default)]
    pub turn_urls: Vec<String>,
    #[serde(default, with = "opt_secret_serde")]
    pub turn_secret: Option<Secret>,
    #[serde(default = "default_turn_ttl")]
    pub turn_ttl_secs: u64,
    /// How often the ring-timeout watchdog looks for expired calls.
    #[serde(default = "default_watchdog_ms")]
    pub watchdog_interval_ms: u64,
    /// Calls one user may place per minute, sustained, and at once (`POST /calls` answers 429
    /// with `Retry-After` beyond that).
    #[serde(default = "default_calls_per_minute")]
    pub calls_per_minute: u32,
    #[serde(default = "default_call_burst")]
    pub call_burst: u32,
    /// How often answered calls are checked against the realtime server's channel occupancy.
    #[serde(default = "default_reconcile_ms")]
    pub reconcile_interval_ms: u64,
    /// The realtime server as browsers reach it (`http://host:port`), for the demo page; the HTTP
    /// API URL by default.
    #[serde(default)]
    pub public_realtime_url: Option<String>,
    /// pusher-js browser bundle (`pusher.min.js`) for the demo page; found in an npm install of
    /// the interop tests by default.
    #[serde(default)]
    pub pusher_js: Option<PathBuf>,
    /// Concurrent HTTP connections and the deadline for a request's headers.
    #[serde(default, with = "crate::server::config::listen_limits")]
    pub listen: crate::server::listen::ListenLimits,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("domvia-data")
}
fn default_realtime() -> String {
    "http://127.0.0.1:6001".into()
}
fn default_app_id() -> String {
    "domvia".into()
}
fn default_app_key() -> String {
    "domvia-key".into()
}
fn default_app_secret() -> Secret {
    Secret::new("domvia-secret")
}
fn default_master_key() -> Secret {
    Secret::new(DEVELOPMENT_MASTER_KEY)
}
fn default_turn_ttl() -> u64 {
    3600
}
fn default_watchdog_ms() -> u64 {
    250
}
fn default_reconcile_ms() -> u64 {
    5_000
}
fn default_calls_per_minute() -> u32 {
    60
}
fn default_call_burst() -> u32 {
    30
}

/// The development privacy master key (32 bytes, base64); printed as a warning when used.
pub const DEVELOPMENT_MASTER_KEY: &str = "ZG9tdmlhLWNhbGxzIGRldmVsb3BtZW50IGtleSAhISE=";

impl TrustedConfig {
    /// The configuration that pairs with the realtime server's development app.
    pub fn development() -> TrustedConfig {
        TrustedConfig {
            bind: default_bind(),
            database_url: None,
            data_dir: default_data_dir(),
            fixture: None,
            directory: None,
            realtime_api_url: default_realtime(),
            app_id: default_app_id(),
            app_key: default_app_key(),
            app_secret: default_app_secret(),
            privacy_master_key: default_master_key(),
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl_secs: default_turn_ttl(),
            watchdog_interval_ms: default_watchdog_ms(),
            reconcile_interval_ms: default_reconcile_ms(),
            calls_per_minute: default_calls_per_minute(),
            call_burst: default_call_burst(),
            public_realtime_url: None,
            pusher_js: None,
            listen: crate::server::listen::ListenLimits::default(),
        }
    }

    fn database_url(&self) -> Result<String, String> {
        match &self.database_url {
            Some(url) => Ok(url.clone()),
            None => {
                std::fs::create_dir_all(&self.data_dir)
                    .map_err(|e| format!("cannot create {}: {e}", self.data_dir.display()))?;
                Ok(format!(
                    "sqlite://{}?mode=rwc",
                    self.data_dir.join("calls.db").display()
                ))
            }
        }
    }

    fn master_key(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(self.privacy_master_key.expose())
            .map_err(|_| "privacy_master_key is not standard base64".to_owned())?;
        if key.len() < 32 {
            return Err("privacy_master_key must be at least 32 bytes".into());
        }
        Ok(key)
    }
}

mod secret_serde {
    use serde::{Deserialize, Deserializer};

    use crate::signing::Secret;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

mod opt_secret_serde {
    use serde::{Deserialize, Deserializer};

    use crate::signing::Secret;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Option::<String>::deserialize(d).map(|o| o.map(Secret::new))
    }
}

struct AppState {
    config: TrustedConfig,
    directory: Directory,
    master_key: Vec<u8>,
    store: Store,
    writer: Mutex<()>,
    outbox_wake: Notify,
    http: reqwest::Client,
    call_limiter: Mutex<crate::trusted::rate::CallRateLimiter>,
}

/// A trusted server running in the background.
pub struct RunningTrusted {
    addr: SocketAddr,
    store: Store,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    http: JoinHandle<std::io::Result<()>>,
}

impl RunningTrusted {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store, for tests and tools that inspect records.
    pub fn store(&self) -> &Store {
        &self.store
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
) -> Result<RunningTrusted, String> {
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

/// Longest `Idempotency-Key` accepted, and how long a key is remembered.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;

async fn create_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(user) = bearer(&state, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first: missing or unknown bearer token",
        );
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && k.is_ascii() => {
            Some(k.to_owned())
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "call.bad_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} ASCII characters"),
            );
        }
    };
    let request_digest = hex::encode(Sha256::digest(&body));
    // A retry of a request that was answered gets the same answer and creates nothing.
    if let Some(key) = &key {
        match replayed_answer(&state, user.id.as_str(), key, &request_digest).await {
            Ok(Some(r)) => return r,
            Ok(None) => {}
            Err(r) => return r,
        }
    }
    let now = unix_ms();
    let limited = state.call_limiter.lock().await.check(user.id.as_str(), now);
    if let Err(retry_after_ms) = limited {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "call.rate_limited",
            format!(
                "too many calls placed; at most {} per minute, try again in {secs} s",
                state.config.calls_per_minute
            ),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }
    let req: CallRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "call.bad_request", e),
    };
    let call_id = CallId::parse(&format!(
        "c{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    ))
    .expect("hex is in the id charset");
    let planned = match plan_call(&state.directory, &user.id, req, call_id, now) {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                crate::trusted::CallRequestError::Invalid(_)
                | crate::trusted::CallRequestError::TooManyInvitees { .. } => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::FORBIDDEN,
            };
            return error(status, e.code(), &e);
        }
    };
    let inboxes: Vec<String> = planned.inboxes.iter().map(ToString::to_string).collect();
    let invitees: Vec<_> = planned
        .inboxes
        .iter()
        .map(|i| i.user_id().clone())
        .collect();
    let r = &planned.record;
    let answer = PlacedCall {
        call_id: r.call_id.clone(),
        channel: r.channel.clone(),
        privacy: r.privacy,
        ring_timeout_ms: r.ring_timeout_ms,
        ring_deadline_ms: r.ring_deadline_ms(),
        callees: invitees.clone(),
        ice_servers: ice_servers(&state.config, user.id.as_str(), now),
    };
    let answer_text = serde_json::to_string(&answer).expect("a placed call serializes");
    let idempotency = key.as_deref().map(|k| {
        (
            user.id.as_str(),
            k,
            request_digest.as_str(),
            answer_text.as_str(),
        )
    });
    match state
        .store
        .insert_call(
            &planned.record,
            &invitees,
            (&inboxes, &planned.invitation),
            idempotency,
        )
        .await
    {
        Ok(true) => {}
        // The same key won a race meanwhile: answer as it was answered.
        Ok(false) => {
            if let Some(key) = &key
                && let Ok(Some(r)) =
                    replayed_answer(&state, user.id.as_str(), key, &request_digest).await
            {
                return r;
            }
            return internal("an idempotent call vanished".into());
        }
        Err(e) => return internal(e),
    }
    state.outbox_wake.notify_one();
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// The stored answer to `(user, key)` if there is one: the same 201 for the same request, 422
/// for another request under the same key.
async fn replayed_answer(
    state: &AppState,
    user: &str,
    key: &str,
    request_digest: &str,
) -> Result<Option<Response>, Response> {
    match state.store.idempotent_answer(user, key).await {
        Ok(None) => Ok(None),
        Ok(Some((digest, _))) if digest != request_digest => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "call.idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )),
        Ok(Some((_, answer))) => {
            let body: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
            let mut r = (StatusCode::CREATED, axum::Json(body)).into_response();
            r.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            Ok(Some(r))
        }
        Err(e) => Err(internal(e)),
    }
}

async fn realtime_webhooks(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = unix_ms();
    let parsed = match webhook::verify(
        &state.config.app_key,
        &state.config.app_secret,
        header("x-pusher-key"),
        header("x-pusher-signature"),
        &body,
        now,
    ) {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                webhook::WebhookError::Malformed(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            return error(status, e.code(), &e);
        }
    };
    let digest = hex::encode(Sha256::digest(&body));
    // The whole delivery under the writer lock and in one transaction with its digest: applied
    // completely and remembered, or not at all (a retry after a timeout is then applied).
    let _guard = state.writer.lock().await;
    let mut delivery = match state.store.begin_delivery(&digest, now).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return error(
                StatusCode::CONFLICT,
                "webhook.replayed",
                "this delivery was already applied",
            );
        }
        Err(e) => return internal(e),
    };
    let mut applied = 0;
    for ev in &parsed.events {
        let Ok(channel) = crate::channel::CallChannel::parse(&ev.channel) else {
            continue;
        };
        let mut record = match delivery.load_call(channel.call_id().as_str()).await {
            Ok(Some(r)) if r.channel == channel => r,
            Ok(_) => continue,
            Err(e) => return internal(e),
        };
        let outcome = apply_webhook(&mut record, &state.directory, ev, parsed.time_ms);
        if outcome.log.is_empty() {
            continue;
        }
        if let Err(e) = delivery.save_outcome(&record, &outcome).await {
            return internal(e);
        }
        applied += 1;
    }
    if let Err(e) = delivery.commit().await {
        return internal(e);
    }
    state.outbox_wake.notify_one();
    axum::Json(json!({ "applied": applied })).into_response()
}

/// `limit` (1..=200, 50 by default) and `cursor` of a paged listing, or why they are invalid
/// (`(code, message)`).
fn page_params(query: &str) -> Result<(u32, Option<store::Cursor>), (&'static str, String)> {
    let params = signing::parse_query(query).map_err(|e| ("page.bad_query", e.to_string()))?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = match get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(("page.bad_limit", format!("limit must be 1 to {MAX_PAGE}")));
            }
        },
    };
    let cursor = match get("cursor") {
        None | Some("") => None,
        Some(c) => Some(store::Cursor::decode(c).ok_or((
            "page.bad_cursor",
            "cursor is not one this server handed out".to_owned(),
        ))?),
    };
    Ok((limit, cursor))
}

/// Entries per page of history and missed calls, by default and at most.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

/// Which paged listing of a user's calls.
#[derive(Clone, Copy)]
enum Listing {
    History,
    Missed,
}

async fn history(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    paged(&state, &headers, query, Listing::History).await
}

async fn missed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    paged(&state, &headers, query, Listing::Missed).await
}

/// One page of a signed-in user's history or missed calls ([SRV-024]).
async fn paged(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<String>,
    listing: Listing,
) -> Response {
    let Some(user) = bearer(state, headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first",
        );
    };
    let (limit, cursor) = match page_params(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, message),
    };
    let (user, cursor) = (user.id.as_str(), cursor.as_ref());
    let (key, page) = match listing {
        Listing::History => ("calls", state.store.history(user, limit, cursor).await),
        Listing::Missed => ("missed", state.store.missed(user, limit, cursor).await),
    };
    match page {
        Ok((entries, next)) => axum::Json(json!({
            key: entries,
            "next_cursor": next.map(|c| c.encode()),
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn call_detail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(user) = bearer(&state, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first",
        );
    };
    let record = match state.store.load_call(&id).await {
        Ok(Some(r)) if r.may_join(&state.directory, &user.id) => r,
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "call.not_found",
                format!("no call {id} of yours"),
            );
        }
        Err(e) => return internal(e),
    };
    match state.store.log(&id).await {
        Ok(log) => axum::Json(json!({ "call": record, "log": log })).into_response(),
        Err(e) => internal(e),
    }
}

/// `POST /calls/{id}/accept|decline|end`: a signed-in party reports what it did, so calls on
/// private channels (whose client events carry no verified identity) are recorded too. Bodies:
/// none, `{"busy": bool}`, `{"reason": "hangup"}`.
async fn call_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(user) = bearer(&state, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first: missing or unknown bearer token",
        );
    };
    let fields: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::BAD_REQUEST, "call.bad_request", e),
        }
    };
    let action = match action.as_str() {
        "accept" => UserAction::Accept,
        "decline" => UserAction::Decline {
            busy: fields["busy"].as_bool().unwrap_or(false),
        },
        "end" => match serde_json::from_value(fields["reason"].clone()) {
            Ok(reason) => UserAction::End { reason },
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "call.bad_request",
                    "end needs {\"reason\": one of the call.ended reasons}",
                );
            }
        },
        other => {
            return error(
                StatusCode::NOT_FOUND,
                "call.unknown_action",
                format!("{other} is not accept, decline or end"),
            );
        }
    };
    let _guard = state.writer.lock().await;
    let mut record = match state.store.load_call(&id).await {
        Ok(Some(r)) if r.may_join(&state.directory, &user.id) => r,
        // Calls the user may not join are reported as unknown, like calls that do not exist.
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "call.not_found",
                format!("no call {id} of yours"),
            );
        }
        Err(e) => return internal(e),
    };
    let outcome = apply_user_action(&mut record, &state.directory, &user.id, &action, unix_ms());
    if let Err(e) = state.store.save_outcome(&record, &outcome).await {
        return internal(e);
    }
    state.outbox_wake.notify_one();
    axum::Json(json!({
        "state": record.state,
        "log": outcome.log.iter().map(|l| l.kind.as_str()).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Ends ringing calls whose deadline passed. Runs at start too, so calls that were ringing when
/// the process died are handled as soon as it is back.
async fn watchdog(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(state.config.watchdog_interval_ms));
    let mut last_prune = 0u64;
    loop {
        tick.tick().await;
        let now = unix_ms();
        // Twice the freshness window: a delivery older than that is refused before its digest
        // would be looked up.
        if now.saturating_sub(last_prune) >= webhook::MAX_WEBHOOK_AGE_MS {
            last_prune = now;
            if let Err(e) = state
                .store
                .prune_deliveries(now.saturating_sub(2 * webhook::MAX_WEBHOOK_AGE_MS))
                .await
            {
                tracing::error!(error = %e, "pruning webhook digests failed");
            }
            if let Err(e) = state
                .store
                .prune_call_requests(now.saturating_sub(IDEMPOTENCY_TTL_MS))
                .await
            {
                tracing::error!(error = %e, "pruning idempotency keys failed");
            }
        }
        let due = match state.store.due_calls(now).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "watchdog query failed");
                continue;
            }
        };
        for call in due {
            let _guard = state.writer.lock().await;
            // Reload under the lock: a webhook may have accepted it meanwhile.
            let Ok(Some(mut record)) = state.store.load_call(call.call_id.as_str()).await else {
                continue;
            };
            if let Some(outcome) = expire_if_due(&mut record, &state.directory, now)
                && let Err(e) = state.store.save_outcome(&record, &outcome).await
            {
                tracing::error!(error = %e, call = %record.call_id, "could not record the ring timeout");
            }
            state.outbox_wake.notify_one();
        }
    }
}

/// Sends outbox entries through the realtime HTTP API, oldest first. Each entry has its own
/// retry schedule ([`crate::trusted::outbox`]): a failing entry waits without holding up the
/// others, and one the realtime server keeps refusing is dead-lettered with its reason.
async fn outbox_sender(state: Arc<AppState>) {
    loop {
        let now = unix_ms();
        let due = match state.store.due_outbox(now, 50).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "outbox query failed");
                Vec::new()
            }
        };
        for entry in &due {
            let result = trigger(&state, &entry.channels, &entry.event, &entry.data).await;
            let stored = match result {
                Ok(()) => state.store.outbox_done(&entry.id).await,
                Err(failure) => {
                    let attempts = entry.attempts + 1;
                    let refusals = entry.refusals + u32::from(!failure.0.is_temporary());
                    let retry = outbox::after_failure(attempts, refusals, failure.0, unix_ms());
                    let retry_at = match retry {
                        outbox::Retry::At(t) => {
                            tracing::warn!(error = %failure.1, event = %entry.event, attempts, "realtime API did not take an outbox entry; will retry");
                            Some(t)
                        }
                        outbox::Retry::DeadLetter => {
                            tracing::error!(error = %failure.1, event = %entry.event, attempts, channels = ?entry.channels, "outbox entry dead-lettered: the realtime API keeps refusing it");
                            None
                        }
                    };
                    state
                        .store
                        .outbox_failed(
                            &entry.id,
                            (attempts, refusals),
                            retry_at,
                            unix_ms(),
                            &failure.1,
                        )
                        .await
                }
            };
            if let Err(e) = stored {
                tracing::error!(error = %e, "outbox update failed");
            }
        }
        if due.len() < 50 {
            // Sleep until the next entry is due (or a new one is written), at most a second.
            let next = state.store.next_outbox_due().await.ok().flatten();
            let wait = next.map_or(Duration::from_secs(1), |t| {
                Duration::from_millis(t.saturating_sub(unix_ms()).clamp(10, 1_000))
            });
            let _ = tokio::time::timeout(wait, state.outbox_wake.notified()).await;
        }
    }
}

/// Checks answered calls against the realtime server: a call whose channel the realtime server
/// reports empty twice in a row (one interval apart) is closed as `ended: unknown`, so a lost
/// `channel_vacated` or `member_removed` webhook cannot leave a call active for ever.
async fn reconciler(state: Arc<AppState>) {
    let interval = state.config.reconcile_interval_ms.max(100);
    let mut decide = crate::trusted::reconcile::Reconciler::new(interval);
    loop {
        tokio::time::sleep(Duration::from_millis(interval)).await;
        let Ok(active) = state.store.active_calls().await else {
            continue;
        };
        decide.retain_open(&active.iter().map(|r| r.call_id.to_string()).collect());
        for record in active {
            let channel = record.channel.to_string();
            let occupied = match channel_occupied(&state, &channel).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, %channel, "cannot reconcile with the realtime server");
                    continue;
                }
            };
            let id = record.call_id.to_string();
            let now = unix_ms();
            if !decide.observe(&id, occupied, now) {
                continue;
            }
            let _guard = state.writer.lock().await;
            let Ok(Some(mut fresh)) = state.store.load_call(&id).await else {
                continue;
            };
            let outcome = end_vacated(
                &mut fresh,
                &state.directory,
                "reconciled: the realtime server reports the channel empty",
                now,
            );
            if !outcome.log.is_empty() {
                tracing::info!(call = %id, "closed an answered call whose channel is empty");
                if let Err(e) = state.store.save_outcome(&fresh, &outcome).await {
                    tracing::error!(error = %e, "could not record a reconciled call");
                }
            }
        }
    }
}

/// The realtime HTTP API URL of `path`, signed for `method` and `body` now ([SIGN-010]).
fn signed_api_url(state: &AppState, method: &str, path: &str, body: &[u8]) -> String {
    let params = signing::sign_http_request(
        &state.config.app_key,
        &state.config.app_secret,
        method,
        path,
        Vec::new(),
        body,
        unix_ms() / 1000,
    );
    // Every signed parameter is hex, digits or `1.0`: nothing to escape.
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}{path}?{}",
        state.config.realtime_api_url.trim_end_matches('/'),
        query.join("&")
    )
}

/// `GET /apps/{id}/channels/{name}` on the realtime server: whether anyone is subscribed.
async fn channel_occupied(state: &AppState, channel: &str) -> Result<bool, String> {
    let path = format!("/apps/{}/channels/{channel}", state.config.app_id);
    let resp = state
        .http
        .get(signed_api_url(state, "GET", &path, b""))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{}", resp.status()));
    }
    let v: Value = serde_json::from_str(&resp.text().await.map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    v["occupied"]
        .as_bool()
        .ok_or_else(|| format!("no occupied member in {v}"))
}

/// One signed `POST /apps/{id}/events`.
async fn trigger(
    state: &AppState,
    channels: &[String],
    event: &str,
    data: &str,
) -> Result<(), (outbox::SendFailure, String)> {
    let path = format!("/apps/{}/events", state.config.app_id);
    let body = json!({ "name": event, "channels": channels, "data": data }).to_string();
    let resp = state
        .http
        .post(signed_api_url(state, "POST", &path, body.as_bytes()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| (outbox::SendFailure::Unreachable, e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err((
            outbox::SendFailure::Status(status.as_u16()),
            format!("{status} {}", resp.text().await.unwrap_or_default()),
        ))
    }
}
