//! The trusted server's settings: what `serve` and a TOML file can set, their defaults, and the
//! checks run before anything starts.

use super::*;

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

    pub(super) fn database_url(&self) -> Result<String, String> {
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

    /// The privacy master key's bytes (the conformance runner, playing the trusted server,
    /// derives channel keys from it as the server does).
    pub fn master_key(&self) -> Result<Vec<u8>, String> {
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
