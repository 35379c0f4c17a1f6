//! Both reference servers in one process, wired to each other: the realtime server sends its
//! webhooks to the trusted server, and the trusted server triggers events through the realtime
//! HTTP API. This is what `domvia-calls serve` runs by default and what tests and the conformance
//! runner embed.

use tokio::net::TcpListener;

use crate::server::{self, RunningServer, ServerConfig};
use crate::trusted_server::{self, RunningTrusted, TrustedConfig};

/// Configuration of both roles.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub realtime: ServerConfig,
    pub trusted: TrustedConfig,
}

impl StackConfig {
    /// The development stack on the given addresses (port 0 picks a free port).
    pub fn development(
        realtime: std::net::SocketAddr,
        trusted: std::net::SocketAddr,
    ) -> StackConfig {
        let mut cfg = StackConfig {
            realtime: ServerConfig::default(),
            trusted: TrustedConfig::development(),
        };
        cfg.realtime.bind = realtime;
        cfg.trusted.bind = trusted;
        cfg
    }
}

pub struct RunningStack {
    pub realtime: RunningServer,
    pub trusted: RunningTrusted,
}

impl RunningStack {
    pub async fn shutdown(self) {
        self.trusted.shutdown().await;
        self.realtime.shutdown().await;
    }
}

/// The realtime HTTP API as the trusted server beside it reaches it: over loopback when the
/// realtime server listens on every interface, over TLS when it speaks TLS (the certificate must
/// then name that address, or its CA be trusted with `--ca-file`).
fn api_url(realtime: &RunningServer, tls: bool) -> String {
    let mut addr = realtime.addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

/// Starts both servers. The trusted server's app must be one of the realtime server's apps; that
/// app's webhooks go to the trusted server unless it already has a webhook URL.
pub async fn start(mut cfg: StackConfig) -> Result<RunningStack, crate::error::ToolError> {
    let app = cfg
        .realtime
        .apps
        .iter_mut()
        .find(|a| a.id == cfg.trusted.app_id)
        .ok_or_else(|| {
            format!(
                "the trusted server's app {} is not a realtime app",
                cfg.trusted.app_id
            )
        })?;
    if app.key != cfg.trusted.app_key || app.secret != cfg.trusted.app_secret {
        return Err(format!("app {} has different credentials in the two roles", app.id).into());
    }
    let listener = TcpListener::bind(cfg.trusted.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.trusted.bind))?;
    let trusted_addr = listener.local_addr().map_err(|e| e.to_string())?;
    if app.webhook_url.is_none() {
        app.webhook_url = Some(format!("http://{trusted_addr}/realtime/webhooks"));
    }
    let tls = cfg.realtime.tls();
    let realtime = server::start(cfg.realtime)
        .await
        .map_err(|e| format!("realtime server: {e}"))?;
    cfg.trusted.realtime_api_url = api_url(&realtime, tls);
    let trusted = match trusted_server::start(cfg.trusted, Some(listener)).await {
        Ok(t) => t,
        Err(e) => {
            realtime.shutdown().await;
            return Err(format!("trusted server: {e}").into());
        }
    };
    Ok(RunningStack { realtime, trusted })
}
