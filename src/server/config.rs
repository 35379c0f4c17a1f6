//! Server configuration: the listen address, the apps, and the shell's queue sizes. Read from a
//! TOML file, then overridden by flags and environment variables in the CLI.

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
    /// How long webhook events are collected into one delivery, in milliseconds.
    #[serde(default = "default_webhook_batch_ms")]
    pub webhook_batch_ms: u64,
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
            webhook_batch_ms: default_webhook_batch_ms(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML configuration file's text.
    pub fn from_toml(text: &str) -> Result<ServerConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Refuses configurations that cannot work: no app, duplicate ids or keys, bad limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.apps.is_empty() {
            return Err("no app configured".into());
        }
        for (i, app) in self.apps.iter().enumerate() {
            app.validate()?;
            if self.apps[..i]
                .iter()
                .any(|o| o.id == app.id || o.key == app.key)
            {
                return Err(format!("app id {} or its key is used twice", app.id));
            }
        }
        if self.outbound_queue == 0 {
            return Err("outbound_queue must be at least 1".into());
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
