//! The webhook listener a run points the target's webhooks at: deliveries are verified, kept in
//! order, and waited for with deadlines.

use super::*;

/// One webhook delivery as received.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub key: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// Whether the listener refused it on purpose (to see the target retry).
    pub refused: bool,
}

/// Webhook deliveries received by the runner's listener, in order.
#[derive(Default)]
pub struct WebhookLog {
    deliveries: Mutex<Vec<WebhookDelivery>>,
    /// Channels whose first delivery was refused with 503 already.
    refused_once: Mutex<Vec<String>>,
    /// Where deliveries are passed on unchanged.
    forward: Mutex<Option<String>>,
    arrived: Notify,
}

/// Deliveries naming a channel that contains this are refused once with 503.
pub const RETRY_MARKER: &str = "conform-retry";

impl WebhookLog {
    /// Passes every later delivery on to `url` (the deployment's own webhook receiver).
    pub fn set_forward(&self, url: Option<String>) {
        if let Ok(mut f) = self.forward.lock() {
            *f = url;
        }
    }

    fn forward_url(&self) -> Option<String> {
        self.forward.lock().ok().and_then(|f| f.clone())
    }

    /// Records a delivery; returns whether to refuse it (first delivery for a retry channel).
    fn record(&self, key: String, signature: String, body: Vec<u8>) -> bool {
        let text = String::from_utf8_lossy(&body);
        let mut refuse = false;
        if let Some(at) = text.find(RETRY_MARKER) {
            let tail: String = text[at..].chars().take_while(|c| *c != '"').collect();
            if let Ok(mut r) = self.refused_once.lock()
                && !r.contains(&tail)
            {
                r.push(tail);
                refuse = true;
            }
        }
        if let Ok(mut d) = self.deliveries.lock() {
            d.push(WebhookDelivery {
                key,
                signature,
                body,
                refused: refuse,
            });
        }
        self.arrived.notify_waiters();
        refuse
    }

    /// Waits up to `within` for a delivery (refused ones included) for which `pred` holds.
    pub async fn wait_for(
        &self,
        ctx: &Ctx,
        what: &str,
        within: Duration,
        pred: impl Fn(&WebhookDelivery) -> bool,
    ) -> Step<WebhookDelivery> {
        let deadline = Instant::now() + within;
        let mut checked = 0;
        loop {
            let notified = self.arrived.notified();
            let found = {
                let d = self
                    .deliveries
                    .lock()
                    .map_err(|_| errored("webhook log poisoned"))?;
                let hit = d[checked..].iter().find(|x| pred(x)).cloned();
                checked = d.len();
                hit
            };
            if let Some(hit) = found {
                ctx.note("webhooks", "<", &String::from_utf8_lossy(&hit.body));
                return Ok(hit);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(fail(
                    format!("the target delivers {what} as a webhook"),
                    what.to_owned(),
                    format!("no matching delivery within {within:?}"),
                ));
            }
        }
    }
}

/// Starts the webhook listener on `addr`, forwarding every delivery to `forward` if given.
pub async fn listen_webhooks(
    addr: std::net::SocketAddr,
    forward: Option<String>,
) -> Result<(Arc<WebhookLog>, std::net::SocketAddr), crate::error::ToolError> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let log = Arc::new(WebhookLog::default());
    log.set_forward(forward);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for webhooks on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let state = (log.clone(), crate::net::http_client());
    let app = axum::Router::new()
        .fallback(axum::routing::post(
            |axum::extract::State((log, client)): axum::extract::State<(
                Arc<WebhookLog>,
                reqwest::Client,
            )>,
             headers: HeaderMap,
             body: Bytes| async move {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let (key, signature) = (header("x-pusher-key"), header("x-pusher-signature"));
                if let Some(url) = log.forward_url() {
                    let _ = client
                        .post(url)
                        .header("content-type", "application/json")
                        .header("x-pusher-key", &key)
                        .header("x-pusher-signature", &signature)
                        .body(body.clone())
                        .send()
                        .await;
                }
                if log.record(key, signature, body.to_vec()) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            },
        ))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((log, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        let target = Target::new(vec!["ws://127.0.0.1:1".into()], "app", "key");
        Ctx::new(
            Arc::new(target),
            1,
            None,
            Arc::new(Schemas::compile().unwrap()),
        )
    }

    #[test]
    fn long_frames_are_clipped_in_traces_and_say_so() {
        let ctx = ctx().with_trace_text_bytes(8);
        ctx.note("a", ">", "short");
        ctx.note("a", ">", "exactly8");
        ctx.note("a", "<", "one two three");
        ctx.note("a", "<", "ééééé");
        let texts: Vec<String> = ctx.take_trace().into_iter().map(|t| t.text).collect();
        assert_eq!(texts, ["short", "exactly8", "one two …", "éééé…"]);
    }
}
