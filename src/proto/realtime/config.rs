//! Configuration of the apps a realtime server hosts.

use serde::{Deserialize, Serialize};

use crate::limits::{CLIENT_EVENT_BURST, CLIENT_EVENTS_PER_SECOND, MAX_EVENT_DATA_BYTES};
use crate::signing::Secret;

/// One app: credentials, limits and webhook target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub id: String,
    pub key: String,
    #[serde(with = "secret_serde")]
    pub secret: Secret,
    /// Whether clients may send `client-*` events.
    #[serde(default = "defaults::yes")]
    pub client_events: bool,
    /// Sustained client events per second per connection.
    #[serde(default = "defaults::rate")]
    pub client_events_per_second: u32,
    /// Client events a connection may send at once before the sustained rate applies.
    #[serde(default = "defaults::burst")]
    pub client_event_burst: u32,
    /// Largest event `data`, in bytes.
    #[serde(default = "defaults::max_event_bytes")]
    pub max_event_bytes: usize,
    /// Distinct users on one presence channel (Pusher's limit is 100).
    #[serde(default = "defaults::max_presence_members")]
    pub max_presence_members: usize,
    /// Connections of this app at once; more are closed with 4100 (over capacity).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Connections of this app from one client address (an IPv6 /64 counts as one address);
    /// more are closed with 4100. Behind a NAT many users share an address, hence the room.
    #[serde(default = "defaults::max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// Connections of this app one user may have: connections signed in as the user, on a
    /// presence channel as the user, or subscribed to the user's call inbox. A connection past
    /// the cap is refused that sign-in or subscription (`LimitReached`), not closed.
    #[serde(default = "defaults::max_connections_per_user")]
    pub max_connections_per_user: usize,
    /// Channels one connection may be subscribed to at once; more are refused with
    /// `LimitReached`, before any signature is checked. A call needs a handful; the bound keeps
    /// one connection from churning thousands of channels (and their webhooks).
    #[serde(default = "defaults::max_subscriptions_per_connection")]
    pub max_subscriptions_per_connection: usize,
    /// Seconds of silence after which the server pings, announced in `connection_established`.
    #[serde(default = "defaults::activity_timeout")]
    pub activity_timeout_secs: u64,
    /// Seconds the server waits for a pong before closing with 4201.
    #[serde(default = "defaults::pong_timeout")]
    pub pong_timeout_secs: u64,
    /// Where webhooks go; none means no webhooks.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// A deliberate protocol violation (test builds only; never read from configuration).
    #[cfg(feature = "defects")]
    #[serde(skip)]
    pub defect: Option<super::Defect>,
}

impl AppConfig {
    /// An app with every limit at its default.
    pub fn new(id: &str, key: &str, secret: &str) -> AppConfig {
        AppConfig {
            id: id.to_owned(),
            key: key.to_owned(),
            secret: Secret::new(secret),
            client_events: true,
            client_events_per_second: CLIENT_EVENTS_PER_SECOND,
            client_event_burst: CLIENT_EVENT_BURST,
            max_event_bytes: MAX_EVENT_DATA_BYTES,
            max_presence_members: defaults::max_presence_members(),
            max_connections: defaults::max_connections(),
            max_connections_per_address: defaults::max_connections_per_address(),
            max_connections_per_user: defaults::max_connections_per_user(),
            max_subscriptions_per_connection: defaults::max_subscriptions_per_connection(),
            activity_timeout_secs: defaults::activity_timeout(),
            pong_timeout_secs: defaults::pong_timeout(),
            webhook_url: None,
            #[cfg(feature = "defects")]
            defect: None,
        }
    }

    /// The development app `domvia-calls serve` starts with when given no configuration.
    pub fn development() -> AppConfig {
        AppConfig::new("domvia", "domvia-key", "domvia-secret")
    }

    /// Whether this app was given the deliberate defect `d` (always false without `defects`).
    pub fn has_defect(&self, d: super::Defect) -> bool {
        #[cfg(feature = "defects")]
        {
            self.defect == Some(d)
        }
        #[cfg(not(feature = "defects"))]
        {
            let _ = d;
            false
        }
    }

    /// Checks values that would make the app unusable.
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        let nonempty = |what: &str, v: &str| {
            if v.is_empty() || v.contains(char::is_whitespace) {
                Err(format!("app {what} must be non-empty and without spaces"))
            } else {
                Ok(())
            }
        };
        nonempty("id", &self.id)?;
        nonempty("key", &self.key)?;
        nonempty("secret", self.secret.expose())?;
        if self.client_events_per_second == 0 || self.client_event_burst == 0 {
            return Err(format!(
                "app {}: client event rate and burst must be at least 1",
                self.id
            )
            .into());
        }
        if self.max_connections_per_address == 0 || self.max_connections_per_user == 0 {
            return Err(format!("app {}: connection caps must be at least 1", self.id).into());
        }
        if self.activity_timeout_secs == 0 || self.pong_timeout_secs == 0 {
            return Err(format!("app {}: timeouts must be at least 1 s", self.id).into());
        }
        Ok(())
    }
}

mod defaults {
    use crate::limits::{CLIENT_EVENT_BURST, CLIENT_EVENTS_PER_SECOND, MAX_EVENT_DATA_BYTES};

    pub fn yes() -> bool {
        true
    }
    pub fn rate() -> u32 {
        CLIENT_EVENTS_PER_SECOND
    }
    pub fn burst() -> u32 {
        CLIENT_EVENT_BURST
    }
    pub fn max_event_bytes() -> usize {
        MAX_EVENT_DATA_BYTES
    }
    pub fn max_presence_members() -> usize {
        100
    }
    pub fn max_connections() -> usize {
        100_000
    }
    pub fn max_connections_per_address() -> usize {
        1_000
    }
    pub fn max_connections_per_user() -> usize {
        32
    }
    pub fn max_subscriptions_per_connection() -> usize {
        100
    }
    pub fn activity_timeout() -> u64 {
        120
    }
    pub fn pong_timeout() -> u64 {
        30
    }
}

mod secret_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::signing::Secret;

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}
