//! A device of a user and what it asks of the trusted server: its realtime client, typed
//! requests, ICE servers and the retried reports of its user's actions.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::SessionError;
use crate::call_endpoint::{ActionReport, ReportNext};
use crate::client::{Auth, ClientConfig, RealtimeClient};
use crate::ids::{DevicePartyId, UserId};
use crate::trusted::api::IceServerList;

/// One device of a user, with the endpoints it talks to.
#[derive(Debug, Clone)]
pub struct Device {
    /// `ws://host:port/app/{key}`.
    pub realtime_url: String,
    /// The trusted server's base URL, `http://host:port`.
    pub trusted_url: String,
    pub token: String,
    pub user: UserId,
    /// Test-only: one deliberate protocol violation of this device's client.
    #[cfg(feature = "defects")]
    pub defect: Option<crate::client_defect::ClientDefect>,
}

impl Device {
    /// A device of `user`, talking to these servers with the bearer `token`.
    pub fn new(
        realtime_url: &str,
        trusted_url: &str,
        token: &str,
        user: &str,
    ) -> Result<Device, SessionError> {
        let invalid = |what, value: &str, e: &dyn std::fmt::Display| SessionError::InvalidId {
            what,
            value: value.to_owned(),
            reason: e.to_string(),
        };
        Ok(Device {
            realtime_url: realtime_url.to_owned(),
            trusted_url: trusted_url.to_owned(),
            token: token.to_owned(),
            user: UserId::parse(user).map_err(|e| invalid("user id", user, &e))?,
            #[cfg(feature = "defects")]
            defect: None,
        })
    }

    /// A new random party id for one call ([EVT-012]: never reused across calls): the user id's
    /// party-safe characters for reading logs, then 64 random bits.
    pub fn new_party(&self) -> DevicePartyId {
        let readable: String = self
            .user
            .as_str()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(40)
            .collect();
        #[cfg(feature = "defects")]
        if self.defect == Some(crate::client_defect::ClientDefect::ReusePartyId) {
            return DevicePartyId::parse(&format!("{readable}-reused-party"))
                .expect("party-safe characters");
        }
        let party = format!("{readable}-{:016x}", rand::random::<u64>());
        DevicePartyId::parse(&party).expect("party-safe characters, 18 to 57 of them")
    }

    pub(super) async fn client(&self) -> Result<RealtimeClient, SessionError> {
        #[allow(unused_mut)]
        let mut config = ClientConfig::new(
            self.realtime_url.clone(),
            Auth::Endpoint {
                url: format!("{}/realtime/auth", self.trusted_url),
                token: self.token.clone(),
            },
        );
        #[cfg(feature = "defects")]
        {
            config.defect = self.defect;
        }
        RealtimeClient::connect(config)
            .await
            .map_err(SessionError::Realtime)
    }
}

impl Device {
    /// A request to the trusted server as this device's user; its answer read as `T`, or an
    /// error that names the request, the status and what the server said.
    pub(super) async fn trusted<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, SessionError> {
        let failed = |status: Option<u16>, detail: String| SessionError::Trusted {
            request: format!("{method} {path}"),
            status,
            detail,
        };
        let mut req = crate::net::http_client()
            .request(method.clone(), format!("{}{path}", self.trusted_url))
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| failed(None, e.to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| failed(Some(status.as_u16()), e.to_string()))?;
        if !status.is_success() {
            return Err(failed(Some(status.as_u16()), text));
        }
        serde_json::from_str(&text).map_err(|e| {
            SessionError::Protocol(format!(
                "the trusted server's answer to {method} {path}: {e}"
            ))
        })
    }

    /// `GET /ice-servers`: STUN and fresh TURN credentials for this user (for an app's own
    /// WebRTC stack; the reference peer gets them itself).
    pub async fn ice_servers(&self) -> Result<IceServerList, SessionError> {
        self.trusted(reqwest::Method::GET, "/ice-servers", None)
            .await
    }
}

/// Posts one action report until [`ActionReport::after_attempt`] says to stop. The trusted
/// server applies a repeated report once ([SRV-025]), so a retry after a lost answer is harmless.
pub(super) async fn report_until_acknowledged(device: &Device, path: &str, body: Option<Value>) {
    let started = Instant::now();
    for attempt in 1.. {
        let mut req = crate::net::http_client()
            .post(format!("{}{path}", device.trusted_url))
            .header("authorization", format!("Bearer {}", device.token))
            .timeout(Duration::from_secs(10));
        if let Some(body) = &body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let (status, what) = match req.send().await {
            Ok(resp) => (
                Some(resp.status().as_u16()),
                format!("status {}", resp.status()),
            ),
            Err(e) => (None, e.to_string()),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match ActionReport::after_attempt(status, attempt, elapsed_ms) {
            ReportNext::Done => return,
            ReportNext::Refused => {
                tracing::warn!(path, %what, "the trusted server refused a call action report");
                return;
            }
            ReportNext::GiveUp => {
                tracing::warn!(path, %what, "gave up reporting a call action to the trusted server");
                return;
            }
            ReportNext::RetryAfter(ms) => {
                tracing::debug!(path, %what, "call action report not acknowledged; retrying");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }
}
