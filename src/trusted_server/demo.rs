//! The demo call page (`/demo`): a browser client that signs in as a user of the directory, uses
//! the real pusher-js client for signaling and `RTCPeerConnection` for media. The page and its
//! script are compiled in; pusher-js is read from an npm install at request time, since it is not
//! ours to ship.
//!
//! Invariant: the only files these routes read from disk are the pusher-js bundle at a configured
//! or well-known path and the two libsodium bundles of the same npm install (for strong
//! privacy); no part of a request names a file.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::AppState;

pub(crate) const PAGE: &str = include_str!("../demo/index.html");
pub(crate) const SCRIPT: &str = include_str!("../demo/call.js");
pub(crate) const ENVELOPE: &str = include_str!("../demo/envelope.js");

/// Where an `npm ci` of the interop tests or of an app puts the browser bundle, relative to the
/// working directory.
const PUSHER_JS_CANDIDATES: [&str; 2] = [
    "tests/interop/pusher-js/node_modules/pusher-js/dist/web/pusher.min.js",
    "node_modules/pusher-js/dist/web/pusher.min.js",
];

/// The pusher-js bundle the page loads: the configured file, else the first well-known path that
/// exists.
pub fn pusher_js_path(configured: Option<&PathBuf>) -> Option<PathBuf> {
    match configured {
        Some(p) => Some(p.clone()),
        None => PUSHER_JS_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    }
}

pub(super) async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// The server's address typed into a browser leads to the demo page, not a bare 404.
pub(super) async fn front() -> Redirect {
    Redirect::to("/demo/")
}

pub(super) async fn redirect() -> Redirect {
    Redirect::permanent("/demo/")
}

pub(super) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub(super) async fn envelope() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        ENVELOPE,
    )
        .into_response()
}

/// One of libsodium-wrappers' two browser files, from the `node_modules` that holds pusher-js
/// (`npm ci --prefix tests/interop/pusher-js` installs both). Without them the page still works
/// and declines strong-privacy calls as `incompatible`.
fn libsodium_file(state: &AppState, package: &str) -> Response {
    let path = pusher_js_path(state.config.pusher_js.as_ref())
        .and_then(|p| p.ancestors().nth(4).map(PathBuf::from))
        .map(|modules| modules.join(format!("{package}/dist/modules/{package}.js")));
    match path.map(|p| std::fs::read(&p)) {
        Some(Ok(bytes)) => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            bytes,
        )
            .into_response(),
        _ => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            format!("// {package} not found beside pusher-js: strong-privacy calls are declined\n"),
        )
            .into_response(),
    }
}

pub(super) async fn libsodium(State(state): State<Arc<AppState>>) -> Response {
    libsodium_file(&state, "libsodium")
}

pub(super) async fn libsodium_wrappers(State(state): State<Arc<AppState>>) -> Response {
    libsodium_file(&state, "libsodium-wrappers")
}

pub(super) async fn pusher_js(State(state): State<Arc<AppState>>) -> Response {
    let path = pusher_js_path(state.config.pusher_js.as_ref());
    match path.map(|p| (std::fs::read(&p), p)) {
        Some((Ok(bytes), _)) => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            bytes,
        )
            .into_response(),
        Some((Err(e), p)) => (
            StatusCode::NOT_FOUND,
            format!("// cannot read pusher-js at {}: {e}\n", p.display()),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "// pusher-js not found: run `npm ci --prefix tests/interop/pusher-js` in the \
             domvia-calls checkout, or start the server with --pusher-js FILE\n",
        )
            .into_response(),
    }
}

/// Where the page finds the realtime server: `public_realtime_url`, else the HTTP API's address
/// (the same listener serves WebSockets).
pub(super) async fn config(State(state): State<Arc<AppState>>) -> Response {
    let base = state
        .config
        .public_realtime_url
        .as_deref()
        .unwrap_or(&state.config.realtime_api_url);
    match reqwest::Url::parse(base) {
        Ok(url) if url.host_str().is_some() => axum::Json(json!({
            "realtime": {
                "host": url.host_str(),
                "port": url.port_or_known_default(),
                "key": state.config.app_key,
                "tls": matches!(url.scheme(), "wss" | "https"),
            }
        }))
        .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "error": format!("the realtime URL {base} has no host"), "code": "demo.config" })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::SCRIPT;
    use crate::limits;

    /// The number a `const NAME = N;` line of the page's script gives.
    fn js_const(name: &str) -> u64 {
        let line = SCRIPT
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("const {name} = ")))
            .unwrap_or_else(|| panic!("call.js has no const {name}"));
        line.trim_end_matches(';').parse().unwrap()
    }

    /// The page copies the protocol's limits by hand (pusher-js does not pass on what a server
    /// announces); they must be the ones `limits.rs` defines.
    #[test]
    fn the_demo_page_uses_the_protocol_limits() {
        assert_eq!(
            js_const("MAX_EVENT_BYTES"),
            limits::MAX_EVENT_DATA_BYTES as u64
        );
        assert_eq!(js_const("MAX_CHUNKS"), u64::from(limits::MAX_CHUNKS));
        assert_eq!(
            js_const("MAX_CANDIDATES_PER_EVENT"),
            limits::MAX_CANDIDATES_PER_EVENT as u64
        );
        assert_eq!(
            js_const("CONNECT_TIMEOUT_MS"),
            limits::MEDIA_CONNECT_TIMEOUT_MS
        );
        assert_eq!(
            js_const("CHUNK_TIMEOUT_MS"),
            limits::CHUNK_REASSEMBLY_TIMEOUT_MS
        );
        assert_eq!(
            js_const("CANDIDATE_WINDOW_MS"),
            limits::CANDIDATE_BATCH_WINDOW_MS
        );
        // Pacing: the default rate when a server announces none, and the same margin and
        // pause after a refusal as the Rust client.
        assert_eq!(
            js_const("CLIENT_EVENTS_PER_SECOND"),
            u64::from(limits::CLIENT_EVENTS_PER_SECOND)
        );
        assert_eq!(
            js_const("THROTTLE_PAUSE_MS"),
            crate::pusher_client::THROTTLE_PAUSE_MS
        );
        let safety = SCRIPT
            .lines()
            .find_map(|l| l.trim().strip_prefix("const PACING_SAFETY = "))
            .and_then(|v| v.trim_end_matches(';').parse::<f64>().ok());
        assert_eq!(safety, Some(crate::pusher_client::PACING_SAFETY));
    }
}
