//! Server configuration: the listen address, the apps, and the shell's queue sizes. Read from a
//! TOML file, then overridden by flags and environment variables in the CLI.

use crate::error::ConfigError;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::realtime::AppConfig;

/// Everything `start` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// More addresses served by the same hub (one process), e.g. as the nodes of the
    /// conformance kit's cluster cases.
    #[serde(default)]
    pub extra_binds: Vec<SocketAddr>,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Frames queued per connection before it counts as a slow consumer.
    #[serde(default = "default_outbound_queue")]
    pub outbound_queue: usize,
    /// Bytes queued per connection before it counts as a slow consumer: the bound that holds
    /// memory when frames are large (100 frames of 10 KB fill 1 MiB).
    #[serde(default = "default_outbound_queue_bytes")]
    pub outbound_queue_bytes: usize,
    /// How long webhook events are collected into one delivery, in milliseconds.
    #[serde(default = "default_webhook_batch_ms")]
    pub webhook_batch_ms: u64,
    /// Concurrent HTTP connections and the deadline for a request's headers, per listener.
    #[serde(default, with = "listen_limits")]
    pub listen: super::listen::ListenLimits,
    /// PEM certificate chain: with `tls_key`, every listener speaks TLS (`wss://`, `https://`).
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6001))
}

fn default_outbound_queue() -> usize {
    1024
}

fn default_outbound_queue_bytes() -> usize {
    1024 * 1024
}

fn default_webhook_batch_ms() -> u64 {
    50
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: default_bind(),
            extra_binds: Vec::new(),
            apps: vec![AppConfig::development()],
            outbound_queue: default_outbound_queue(),
            outbound_queue_bytes: default_outbound_queue_bytes(),
            webhook_batch_ms: default_webhook_batch_ms(),
            listen: super::listen::ListenLimits::default(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML configuration file's text.
    pub fn from_toml(text: &str) -> Result<ServerConfig, crate::error::ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Refuses configurations that cannot work: no app, duplicate ids or keys, bad limits.
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        if self.apps.is_empty() {
            return Err("no app configured".into());
        }
        for (i, app) in self.apps.iter().enumerate() {
            app.validate()?;
            if self.apps[..i]
                .iter()
                .any(|o| o.id == app.id || o.key == app.key)
            {
                return Err(format!("app id {} or its key is used twice", app.id).into());
            }
        }
        if self.outbound_queue == 0 {
            return Err("outbound_queue must be at least 1".into());
        }
        if self.outbound_queue_bytes < 64 * 1024 {
            return Err(
                "outbound_queue_bytes must be at least 65536 (a frame may be 32 KiB)".into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together: give both or neither".into());
        }
        Ok(())
    }

    /// Whether the listeners speak TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}

/// `listen = { max_connections = N, header_read_timeout_ms = M }` in TOML.
pub(crate) mod listen_limits {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    use crate::server::listen::ListenLimits;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Form {
        max_connections: Option<usize>,
        header_read_timeout_ms: Option<u64>,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ListenLimits, D::Error> {
        let f = Form::deserialize(d)?;
        let default = ListenLimits::default();
        Ok(ListenLimits {
            max_connections: f.max_connections.unwrap_or(default.max_connections),
            header_read_timeout: f
                .header_read_timeout_ms
                .map_or(default.header_read_timeout, Duration::from_millis),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_defaults_and_overrides() {
        let cfg = ServerConfig::from_toml(
            r#"
            bind = "127.0.0.1:7000"
            [[apps]]
            id = "a"
            key = "ka"
            secret = "sa"
            client_events_per_second = 5
            webhook_url = "http://127.0.0.1:9000/hooks"
            [[apps]]
            id = "b"
            key = "kb"
            secret = "sb"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.bind.port(), 7000);
        assert_eq!(cfg.apps[0].client_events_per_second, 5);
        assert_eq!(cfg.apps[0].client_event_burst, 10);
        assert_eq!(cfg.apps[1].webhook_url, None);
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_duplicates_are_refused() {
        assert!(ServerConfig::from_toml("bnd = \"127.0.0.1:1\"").is_err());
        let dup = ServerConfig::from_toml(
            "[[apps]]\nid='a'\nkey='k'\nsecret='s'\n[[apps]]\nid='b'\nkey='k'\nsecret='s'\n",
        )
        .unwrap();
        assert!(dup.validate().is_err());
        assert!(ServerConfig::from_toml("").unwrap().validate().is_err());
    }
}
