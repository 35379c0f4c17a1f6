//! The embedded default target: both reference servers started in-process on loopback ports,
//! with a temporary database, the runner's webhook listener between the realtime server and the
//! trusted server, and the development users. The realtime server listens on two addresses of one
//! hub, which the cluster cases take as two nodes. `domvia-calls conform` without `--target` tests
//! this.

use std::path::PathBuf;
use std::sync::Arc;

use super::target::{Target, TargetUser};
use super::wire::{WebhookLog, listen_webhooks};
use crate::signing::Secret;
use crate::stack::{self, RunningStack, StackConfig};

/// TURN secret of the embedded trusted server when no TURN server is given (it only mints
/// credentials then; no relay runs).
const EMBEDDED_TURN_SECRET: &str = "conform-embedded-turn-secret";

/// The embedded servers and the target that describes them.
pub struct Embedded {
    pub target: Target,
    pub webhooks: Arc<WebhookLog>,
    stack: RunningStack,
    data_dir: PathBuf,
}

/// Options of the embedded servers.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// A deliberate defect of the realtime server (test builds only).
    #[cfg(feature = "defects")]
    pub defect: Option<crate::realtime::Defect>,
    /// A running TURN server (`turn:` URL) and its REST secret: the trusted server mints
    /// credentials for it and the `webrtc.turn-relay` case uses it.
    pub turn: Option<(String, Secret)>,
    /// PEM certificate chain and key: the realtime server speaks TLS and the target's nodes are
    /// `wss://` (its CA must be trusted, e.g. with [`crate::net::trust_ca_pem`]).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Embedded {
    pub async fn start(options: EmbeddedOptions) -> Result<Embedded, crate::error::ToolError> {
        let loopback = "127.0.0.1:0".parse().expect("a socket address");
        let (webhooks, hook_addr) = listen_webhooks(loopback, None).await?;
        let mut cfg = StackConfig::development(loopback, loopback);
        // A second address of the same server stands in for a second node of a cluster.
        cfg.realtime.extra_binds = vec![loopback];
        let data_dir = std::env::temp_dir().join(format!(
            "domvia-conform-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        cfg.trusted.data_dir = data_dir.clone();
        cfg.trusted.stun_urls = vec!["stun:127.0.0.1:3478".into()];
        // Reconcile often, so trusted.records.lost-vacate-reconciled takes a second, not ten.
        cfg.trusted.reconcile_interval_ms = 500;
        let (turn_url, turn_secret) = options.turn.clone().unwrap_or_else(|| {
            (
                "turn:127.0.0.1:3478?transport=udp".into(),
                Secret::new(EMBEDDED_TURN_SECRET),
            )
        });
        cfg.trusted.turn_urls = vec![turn_url.clone()];
        if let Some((cert, key)) = &options.tls {
            cfg.realtime.tls_cert = Some(cert.clone());
            cfg.realtime.tls_key = Some(key.clone());
        }
        let (ws, http) = if options.tls.is_some() {
            ("wss", "https")
        } else {
            ("ws", "http")
        };
        cfg.trusted.turn_secret = Some(turn_secret.clone());
        let app = cfg
            .realtime
            .apps
            .iter_mut()
            .find(|a| a.id == cfg.trusted.app_id)
            .ok_or("the development app is missing")?;
        app.webhook_url = Some(format!("http://{hook_addr}/"));
        #[cfg(feature = "defects")]
        {
            app.defect = options.defect;
        }
        let _ = &options;
        let (app_id, key, secret) = (app.id.clone(), app.key.clone(), app.secret.clone());
        let (rate, burst, max_bytes, max_members) = (
            app.client_events_per_second,
            app.client_event_burst,
            app.max_event_bytes,
            app.max_presence_members,
        );
        let stack = stack::start(cfg).await?;
        let rt = stack.realtime.addr();
        let nodes = stack
            .realtime
            .addrs()
            .iter()
            .map(|a| format!("{ws}://{a}"))
            .collect();
        let tr = stack.trusted.addr();
        webhooks.set_forward(Some(format!("http://{tr}/realtime/webhooks")));
        let mut target = Target::new(nodes, &app_id, &key);
        target.secret = Some(secret);
        target.http_api = Some(format!("{http}://{rt}"));
        target.auth_endpoint = Some(format!("http://{tr}/realtime/auth"));
        target.users = ["alice", "bob", "dave"]
            .iter()
            .map(|u| TargetUser {
                name: (*u).into(),
                token: format!("{u}-token"),
            })
            .collect();
        target.scope = Some("room/chat-room-42".into());
        target.webhook_listen = Some(hook_addr);
        target.turn_secret = Some(turn_secret);
        target.turn = options.turn.is_some().then_some(turn_url);
        target.rate_limit = (rate, burst);
        target.max_event_bytes = max_bytes;
        target.max_presence_members = max_members;
        target.limits_source = crate::conform::target::LimitsSource::Configured;
        target.features = target.infer_features();
        Ok(Embedded {
            target,
            webhooks,
            stack,
            data_dir,
        })
    }

    pub async fn shutdown(self) {
        self.stack.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
