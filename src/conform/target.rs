//! What the runner tests: the target's endpoints, credentials and declared features.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::signing::Secret;

/// A capability a target may or may not offer; cases that need an undeclared one are
/// `unsupported`, not failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// The app secret is known, so the runner signs subscriptions itself.
    AppSecret,
    /// Presence channels.
    Presence,
    /// `pusher:signin` (user authentication).
    UserSignin,
    /// Client events are rate limited (the value is [`Target::rate_limit`]).
    RateLimit,
    /// The HTTP API (`--http-api`).
    HttpApi,
    /// Webhooks delivered to the runner's listener (`--webhook-listen`).
    Webhooks,
    /// A trusted server with an auth endpoint and user tokens (`--auth-endpoint`, `--user`).
    Trusted,
    /// Strong-privacy channel keys from the trusted server.
    StrongPrivacy,
    /// A real WebRTC handshake between two reference peers through the target's signaling.
    Webrtc,
    /// A TURN server with REST credentials (`--turn`, `--turn-secret`).
    Turn,
    /// Several nodes of one cluster (more than one `--target`).
    Cluster,
}

impl Feature {
    pub const ALL: [Feature; 11] = [
        Feature::AppSecret,
        Feature::Presence,
        Feature::UserSignin,
        Feature::RateLimit,
        Feature::HttpApi,
        Feature::Webhooks,
        Feature::Trusted,
        Feature::StrongPrivacy,
        Feature::Webrtc,
        Feature::Turn,
        Feature::Cluster,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::AppSecret => "app_secret",
            Feature::Presence => "presence",
            Feature::UserSignin => "user_signin",
            Feature::RateLimit => "rate_limit",
            Feature::HttpApi => "http_api",
            Feature::Webhooks => "webhooks",
            Feature::Trusted => "trusted",
            Feature::StrongPrivacy => "strong_privacy",
            Feature::Webrtc => "webrtc",
            Feature::Turn => "turn",
            Feature::Cluster => "cluster",
        }
    }

    pub fn parse(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Which WebRTC implementation answers the runner's calls in the `webrtc` cases (the caller is
/// always the reference Rust peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondPeer {
    /// The reference Rust peer (webrtc-rs).
    #[default]
    Rust,
    /// Headless Chromium running the demo page with the real pusher-js client.
    Chromium,
    /// aiortc (Python) with its own Pusher-protocol client.
    Aiortc,
}

impl SecondPeer {
    pub fn name(self) -> &'static str {
        match self {
            SecondPeer::Rust => "rust",
            SecondPeer::Chromium => "chromium",
            SecondPeer::Aiortc => "aiortc",
        }
    }
}

/// A `--target` as people paste it, made into a node base URL (`ws://host:port` or
/// `wss://host/prefix`), and the app key it named if it had `/app/KEY` at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUrl {
    pub base: String,
    pub key: Option<String>,
}

/// Normalises the forms a user gives for a node: `ws://host:port`, `wss://host`,
/// `ws://host/app/KEY`, each with or without `?protocol=7...` and a trailing `/`. A path before
/// `/app/KEY` is kept (a server behind a reverse proxy under a prefix). Anything else is refused
/// with a message naming the expected form, so `/app/KEY/app/KEY` is never built.
pub fn normalize_node(given: &str) -> Result<NodeUrl, crate::error::ConfigError> {
    const FORM: &str =
        "ws://HOST[:PORT][/PREFIX] or wss://HOST[:PORT][/PREFIX], optionally ending in /app/KEY";
    let trimmed = given.trim();
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| format!("--target {given:?} has no scheme; expected {FORM}"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "http" || scheme == "https" {
        let ws = if scheme == "http" { "ws" } else { "wss" };
        return Err(format!(
            "--target {given:?} is an HTTP URL; the WebSocket endpoint is {ws}://{rest} (the HTTP API goes to --http-api); expected {FORM}"
        ).into());
    }
    if scheme != "ws" && scheme != "wss" {
        return Err(format!("--target {given:?} has scheme {scheme:?}; expected {FORM}").into());
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains('@') {
        return Err(format!("--target {given:?} has no host; expected {FORM}").into());
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (prefix, key) = match segments.as_slice() {
        [before @ .., "app", key] => (before, Some((*key).to_owned())),
        [.., "app"] => {
            return Err(
                format!("--target {given:?} ends in /app without a key; expected {FORM}").into(),
            );
        }
        all => (all, None),
    };
    if prefix.contains(&"app") {
        return Err(
            format!("--target {given:?} names /app/ more than once; expected {FORM}").into(),
        );
    }
    let mut base = format!("{scheme}://{host}");
    for p in prefix {
        base.push('/');
        base.push_str(p);
    }
    Ok(NodeUrl { base, key })
}

/// Where the limits the kit holds the target to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitsSource {
    /// The protocol's defaults (10 events/s, burst 10, 10 KiB).
    Default,
    /// The `limits` extension of the target's `connection_established`.
    Announced,
    /// `--rate-limit`, `--max-event-bytes` or the config file.
    Configured,
}

impl Target {
    /// Takes the limits the target announced (`connection_established`'s `limits`) unless the
    /// user configured them. Returns whether they were taken.
    pub fn adopt_announced_limits(&mut self, limits: &serde_json::Value) -> bool {
        if self.limits_source == LimitsSource::Configured || !limits.is_object() {
            return false;
        }
        let mut taken = false;
        if let Some(r) = limits["client_events_per_second"]
            .as_u64()
            .filter(|r| *r > 0)
        {
            // The extension names no burst; Pusher's limiter allows one of the rate.
            let r = r.min(u64::from(u32::MAX)) as u32;
            self.rate_limit = (r, r);
            taken = true;
        }
        if let Some(b) = limits["max_event_bytes"].as_u64().filter(|b| *b > 0) {
            self.max_event_bytes = b as usize;
            taken = true;
        }
        if taken {
            self.limits_source = LimitsSource::Announced;
        }
        taken
    }
}

/// A user the trusted server knows, with the bearer token that signs them in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetUser {
    pub name: String,
    pub token: String,
}

/// Everything the runner knows about the implementation under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// WebSocket base URLs of the nodes (`ws://host:port`), at least one.
    pub nodes: Vec<String>,
    pub app_id: String,
    pub key: String,
    pub secret: Option<Secret>,
    /// HTTP API base URL (`http://host:port`).
    pub http_api: Option<String>,
    /// The trusted server's channel authorization endpoint.
    pub auth_endpoint: Option<String>,
    /// Trusted-server users; the first two must share a call scope, and `scope` names it.
    pub users: Vec<TargetUser>,
    /// A call scope (`type/id`, e.g. `room/chat-room-42`) that the first two users belong to
    /// and the third (if any) does not.
    pub scope: Option<String>,
    /// Where the runner listens for the target's webhooks.
    pub webhook_listen: Option<SocketAddr>,
    /// Where received webhooks are passed on unchanged (for a deployment whose trusted server
    /// also needs them).
    pub webhook_forward: Option<String>,
    pub turn: Option<String>,
    pub turn_secret: Option<Secret>,
    /// Client events per second and burst the target enforces.
    pub rate_limit: (u32, u32),
    /// Largest event `data` the target accepts.
    pub max_event_bytes: usize,
    /// Distinct users a presence channel takes.
    pub max_presence_members: usize,
    /// Where `rate_limit` and `max_event_bytes` come from: the user's settings win over what the
    /// target announces in `connection_established`, which wins over the protocol's defaults.
    pub limits_source: LimitsSource,
    pub features: BTreeSet<Feature>,
    /// The callee of the `webrtc` cases.
    pub second_peer: SecondPeer,
    /// pusher-js for the demo page when the second peer is Chromium.
    pub pusher_js: Option<std::path::PathBuf>,
}

impl Target {
    /// A target on `nodes` with Pusher's default limits; features are inferred by
    /// [`Target::infer_features`].
    pub fn new(nodes: Vec<String>, app_id: &str, key: &str) -> Target {
        Target {
            nodes,
            app_id: app_id.to_owned(),
            key: key.to_owned(),
            secret: None,
            http_api: None,
            auth_endpoint: None,
            users: Vec::new(),
            scope: None,
            webhook_listen: None,
            webhook_forward: None,
            turn: None,
            turn_secret: None,
            rate_limit: (
                crate::limits::CLIENT_EVENTS_PER_SECOND,
                crate::limits::CLIENT_EVENT_BURST,
            ),
            max_event_bytes: crate::limits::MAX_EVENT_DATA_BYTES,
            max_presence_members: 100,
            limits_source: LimitsSource::Default,
            features: BTreeSet::new(),
            second_peer: SecondPeer::Rust,
            pusher_js: None,
        }
    }

    /// The features the given endpoints and credentials make possible; presence, user sign-in,
    /// rate limiting and WebRTC are assumed, as every Pusher-compatible server has them.
    pub fn infer_features(&self) -> BTreeSet<Feature> {
        let mut f = BTreeSet::from([
            Feature::Presence,
            Feature::UserSignin,
            Feature::RateLimit,
            Feature::Webrtc,
        ]);
        if self.secret.is_some() {
            f.insert(Feature::AppSecret);
        }
        if self.http_api.is_some() && self.secret.is_some() {
            f.insert(Feature::HttpApi);
        }
        if self.webhook_listen.is_some() && self.secret.is_some() {
            f.insert(Feature::Webhooks);
        }
        if self.auth_endpoint.is_some() && self.users.len() >= 2 {
            f.insert(Feature::Trusted);
            f.insert(Feature::StrongPrivacy);
        }
        if self.turn.is_some() && self.turn_secret.is_some() {
            f.insert(Feature::Turn);
        }
        if self.nodes.len() > 1 {
            f.insert(Feature::Cluster);
        }
        f
    }

    /// The trusted server's base URL, from the auth endpoint (`.../realtime/auth`).
    pub fn trusted_base(&self) -> Option<String> {
        self.auth_endpoint.as_ref().map(|u| {
            u.strip_suffix("/realtime/auth")
                .unwrap_or(u.trim_end_matches('/'))
                .to_owned()
        })
    }

    /// `ws://node/app/{key}` for node `i`.
    pub fn app_url(&self, node: usize) -> String {
        let base = self.nodes[node % self.nodes.len()].trim_end_matches('/');
        format!("{base}/app/{}", self.key)
    }

    /// What the target is, without secrets, for reports.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "nodes": self.nodes,
            "app_id": self.app_id,
            "key": self.key,
            "http_api": self.http_api,
            "auth_endpoint": self.auth_endpoint,
            "users": self.users.iter().map(|u| &u.name).collect::<Vec<_>>(),
            "webhook_listen": self.webhook_listen,
            "turn": self.turn,
            "second_peer": self.second_peer,
            "rate_limit": format!("{}/{}", self.rate_limit.0, self.rate_limit.1),
            "max_event_bytes": self.max_event_bytes,
            "limits_source": self.limits_source,
            "features": self.features.iter().map(|f| f.name()).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> (String, Option<String>) {
        let n = normalize_node(s).unwrap();
        (n.base, n.key)
    }

    #[test]
    fn pasted_target_forms_become_one_base() {
        let plain = ("ws://127.0.0.1:6001".to_owned(), None);
        assert_eq!(node("ws://127.0.0.1:6001"), plain);
        assert_eq!(node("ws://127.0.0.1:6001/"), plain);
        assert_eq!(node(" ws://127.0.0.1:6001?protocol=7 "), plain);
        let keyed = ("ws://127.0.0.1:6001".to_owned(), Some("KEY".to_owned()));
        assert_eq!(node("ws://127.0.0.1:6001/app/KEY"), keyed);
        assert_eq!(node("ws://127.0.0.1:6001/app/KEY/"), keyed);
        assert_eq!(
            node("ws://127.0.0.1:6001/app/KEY?protocol=7&client=js&version=8"),
            keyed
        );
        assert_eq!(
            node("wss://example.org"),
            ("wss://example.org".to_owned(), None)
        );
        assert_eq!(
            node("WSS://example.org/realtime/app/k1"),
            (
                "wss://example.org/realtime".to_owned(),
                Some("k1".to_owned())
            )
        );
    }

    #[test]
    fn other_forms_are_refused_with_the_expected_form() {
        for bad in [
            "127.0.0.1:6001",
            "http://127.0.0.1:6001",
            "https://example.org/app/k",
            "tcp://x",
            "ws://",
            "ws://h/app",
            "ws://h/app/k/app/k",
        ] {
            let e = normalize_node(bad).unwrap_err();
            assert!(e.0.contains("expected ws://HOST"), "{bad}: {e}");
        }
        assert!(
            normalize_node("http://h:1")
                .unwrap_err()
                .0
                .contains("ws://h:1")
        );
    }

    #[test]
    fn app_urls_never_repeat_the_app_path() {
        let n = normalize_node("ws://h:1/app/K").unwrap();
        let t = Target::new(vec![n.base], "1", "K");
        assert_eq!(t.app_url(0), "ws://h:1/app/K");
    }
}
