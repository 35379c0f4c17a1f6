//! Webhook delivery, the shell around [`WebhookQueue`]: events the hub emits go into the queue,
//! each batch it hands out is sent as one signed POST (`{"time_ms", "events"}` with
//! `X-Pusher-Key` and `X-Pusher-Signature`), and the outcome goes back to it. The queue decides
//! batching, order, retries and what to drop; this loop only moves bytes and time.
//!
//! Invariant: the hub never waits for webhooks and never drops one itself; the queue bounds the
//! memory and every drop is counted and logged (at most every [`DROP_LOG_INTERVAL`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::pusher::webhook::WebhookEvent;
use crate::realtime::AppConfig;
use crate::realtime::webhook_queue::{
    Batch, QueueLimits, WebhookQueue, WebhookStats, answer_means_delivered,
};
use crate::signing;

/// How long one delivery may take before it counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a growing drop count is logged.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the sender reports about each app, readable while it runs.
pub type SharedStats = Arc<Mutex<Vec<WebhookStats>>>;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the sender; returns the queue the hub task feeds and the live statistics.
pub fn spawn(
    apps: Vec<AppConfig>,
    batch_ms: u64,
    limits: QueueLimits,
) -> (mpsc::UnboundedSender<(usize, WebhookEvent)>, SharedStats) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stats: SharedStats = Arc::new(Mutex::new(vec![WebhookStats::default(); apps.len()]));
    tokio::spawn(run(apps, batch_ms, limits, rx, stats.clone()));
    (tx, stats)
}

async fn run(
    apps: Vec<AppConfig>,
    batch_ms: u64,
    limits: QueueLimits,
    mut events: mpsc::UnboundedReceiver<(usize, WebhookEvent)>,
    stats: SharedStats,
) {
    let client = crate::net::http_client_builder()
        .timeout(DELIVERY_TIMEOUT)
        .build()
        .expect("an HTTP client with a preconfigured TLS backend builds");
    let mut queue = WebhookQueue::new(apps.len(), batch_ms, limits);
    let (done_tx, mut done) = mpsc::unbounded_channel::<(usize, u64, bool)>();
    let mut logged_drops = vec![0u64; apps.len()];
    let mut next_drop_log = tokio::time::Instant::now();
    loop {
        while let Some(batch) = queue.poll_batch(unix_ms()) {
            let app = apps[batch.app].clone();
            let (client, done_tx) = (client.clone(), done_tx.clone());
            tokio::spawn(async move {
                let (index, id) = (batch.app, batch.id);
                let ok = deliver(&client, &app, batch).await;
                let _ = done_tx.send((index, id, ok));
            });
        }
        if let Ok(mut s) = stats.lock() {
            for (i, slot) in s.iter_mut().enumerate() {
                *slot = queue.stats(i);
            }
        }
        if tokio::time::Instant::now() >= next_drop_log {
            for (i, app) in apps.iter().enumerate() {
                let s = queue.stats(i);
                let dropped = s.dropped_protected + s.dropped_public;
                if dropped > logged_drops[i] {
                    tracing::error!(
                        app = %app.id,
                        dropped_protected = s.dropped_protected,
                        dropped_public = s.dropped_public,
                        pending = queue.pending(i),
                        "webhook queue full: oldest events dropped"
                    );
                    logged_drops[i] = dropped;
                    next_drop_log = tokio::time::Instant::now() + DROP_LOG_INTERVAL;
                }
            }
        }
        let wake = queue.poll_timeout().map(|t| {
            tokio::time::Instant::now() + Duration::from_millis(t.saturating_sub(unix_ms()))
        });
        tokio::select! {
            event = events.recv() => match event {
                Some((app, e)) => {
                    if apps.get(app).is_some_and(|a| a.webhook_url.is_some()) {
                        queue.push(app, e, unix_ms());
                    }
                }
                None => return,
            },
            Some((app, id, ok)) = done.recv() => {
                if ok {
                    queue.delivered(app, id);
                } else {
                    queue.failed(app, id, unix_ms());
                }
            }
            _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {}
        }
    }
}

/// One attempt; whether the answer means delivered is the queue's rule
/// ([`answer_means_delivered`]).
async fn deliver(client: &reqwest::Client, app: &AppConfig, batch: Batch) -> bool {
    let Some(url) = app.webhook_url.clone() else {
        return true;
    };
    let body = serde_json::to_string(&batch.body()).expect("a webhook body serializes");
    let signature = if app.has_defect(crate::realtime::Defect::BadWebhookSignature) {
        signing::sign_webhook(&signing::Secret::new("not-the-app-secret"), body.as_bytes())
    } else {
        signing::sign_webhook(&app.secret, body.as_bytes())
    };
    let result = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-pusher-key", &app.key)
        .header("x-pusher-signature", &signature)
        .body(body)
        .send()
        .await;
    match result {
        Ok(resp) if answer_means_delivered(Some(resp.status().as_u16())) => true,
        Ok(resp) => {
            tracing::warn!(app = %app.id, attempt = batch.attempt, status = %resp.status(), "webhook refused; will retry");
            false
        }
        Err(e) => {
            tracing::warn!(app = %app.id, attempt = batch.attempt, error = %e, "webhook delivery failed; will retry");
            false
        }
    }
}
