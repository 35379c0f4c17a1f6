//! Webhook delivery: events the hub emits are collected per app for a short window, sent as one
//! signed POST (`{"time_ms", "events"}` with `X-Pusher-Key` and `X-Pusher-Signature`), and retried
//! with exponential backoff when the receiver fails or answers with a non-2xx status.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::realtime::AppConfig;
use crate::signing;

/// Attempts per batch, and the delay before the first retry (doubled each time).
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Events per delivery at most.
const MAX_BATCH: usize = 100;

/// Starts the sender; returns the queue the hub task feeds.
pub fn spawn(apps: Vec<AppConfig>, batch_ms: u64) -> mpsc::Sender<(usize, Value)> {
    let (tx, rx) = mpsc::channel(8192);
    tokio::spawn(run(apps, batch_ms, rx));
    tx
}

async fn run(apps: Vec<AppConfig>, batch_ms: u64, mut rx: mpsc::Receiver<(usize, Value)>) {
    let client = crate::net::http_client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client with a preconfigured TLS backend builds");
    while let Some((app, first)) = rx.recv().await {
        let mut pending: HashMap<usize, Vec<Value>> = HashMap::new();
        pending.entry(app).or_default().push(first);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(batch_ms);
        while pending.values().all(|v| v.len() < MAX_BATCH) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((app, event))) => pending.entry(app).or_default().push(event),
                Ok(None) | Err(_) => break,
            }
        }
        for (app, events) in pending {
            let cfg = apps[app].clone();
            let client = client.clone();
            tokio::spawn(deliver(client, cfg, events));
        }
    }
}

async fn deliver(client: reqwest::Client, app: AppConfig, events: Vec<Value>) {
    let Some(url) = app.webhook_url.clone() else {
        return;
    };
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = json!({ "time_ms": time_ms, "events": events }).to_string();
    let signature = if app.has_defect(crate::realtime::Defect::BadWebhookSignature) {
        signing::sign_webhook(&signing::Secret::new("not-the-app-secret"), body.as_bytes())
    } else {
        signing::sign_webhook(&app.secret, body.as_bytes())
    };
    let mut delay = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let result = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-pusher-key", &app.key)
            .header("x-pusher-signature", &signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => {
                tracing::warn!(app = %app.id, attempt, status = %resp.status(), "webhook refused")
            }
            Err(e) => tracing::warn!(app = %app.id, attempt, error = %e, "webhook delivery failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    tracing::error!(app = %app.id, "webhook batch dropped after {ATTEMPTS} attempts");
}
