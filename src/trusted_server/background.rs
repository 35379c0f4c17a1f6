//! The trusted server's background loops: the ring-timeout watchdog, the outbox sender that
//! delivers server events through the realtime HTTP API, and the reconciler that closes records
//! of channels the realtime server reports empty.

use super::calls::IDEMPOTENCY_TTL_MS;
use super::*;

/// Ends ringing calls whose deadline passed. Runs at start too, so calls that were ringing when
/// the process died are handled as soon as it is back.
pub(super) async fn watchdog(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(state.config.watchdog_interval_ms));
    let mut last_prune = 0u64;
    loop {
        tick.tick().await;
        let now = unix_ms();
        // Twice the freshness window: a delivery older than that is refused before its digest
        // would be looked up.
        if now.saturating_sub(last_prune) >= webhook::MAX_WEBHOOK_AGE_MS {
            last_prune = now;
            if let Err(e) = state
                .store
                .prune_deliveries(now.saturating_sub(2 * webhook::MAX_WEBHOOK_AGE_MS))
                .await
            {
                tracing::error!(error = %e, "pruning webhook digests failed");
            }
            if let Err(e) = state
                .store
                .prune_call_requests(now.saturating_sub(IDEMPOTENCY_TTL_MS))
                .await
            {
                tracing::error!(error = %e, "pruning idempotency keys failed");
            }
        }
        let due = match state.store.due_calls(now).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "watchdog query failed");
                continue;
            }
        };
        for call in due {
            let _guard = state.writer.lock().await;
            // Reload under the lock: a webhook may have accepted it meanwhile.
            let Ok(Some(mut record)) = state.store.load_call(call.call_id.as_str()).await else {
                continue;
            };
            if let Some(outcome) = expire_if_due(&mut record, &state.directory, now)
                && let Err(e) = state.store.save_outcome(&record, &outcome).await
            {
                tracing::error!(error = %e, call = %record.call_id, "could not record the ring timeout");
            }
            state.outbox_wake.notify_one();
        }
    }
}

/// Sends outbox entries through the realtime HTTP API, oldest first. Each entry has its own
/// retry schedule ([`crate::trusted::outbox`]): a failing entry waits without holding up the
/// others, and one the realtime server keeps refusing is dead-lettered with its reason.
pub(super) async fn outbox_sender(state: Arc<AppState>) {
    loop {
        let now = unix_ms();
        let due = match state.store.due_outbox(now, 50).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "outbox query failed");
                Vec::new()
            }
        };
        for entry in &due {
            let result = trigger(&state, &entry.channels, &entry.event, &entry.data).await;
            let stored = match result {
                Ok(()) => state.store.outbox_done(&entry.id).await,
                Err(failure) => {
                    let attempts = entry.attempts + 1;
                    let refusals = entry.refusals + u32::from(!failure.0.is_temporary());
                    let retry = outbox::after_failure(attempts, refusals, failure.0, unix_ms());
                    let retry_at = match retry {
                        outbox::Retry::At(t) => {
                            tracing::warn!(error = %failure.1, event = %entry.event, attempts, "realtime API did not take an outbox entry; will retry");
                            Some(t)
                        }
                        outbox::Retry::DeadLetter => {
                            tracing::error!(error = %failure.1, event = %entry.event, attempts, channels = ?entry.channels, "outbox entry dead-lettered: the realtime API keeps refusing it");
                            None
                        }
                    };
                    state
                        .store
                        .outbox_failed(
                            &entry.id,
                            (attempts, refusals),
                            retry_at,
                            unix_ms(),
                            &failure.1,
                        )
                        .await
                }
            };
            if let Err(e) = stored {
                tracing::error!(error = %e, "outbox update failed");
            }
        }
        if due.len() < 50 {
            // Sleep until the next entry is due (or a new one is written), at most a second.
            let next = state.store.next_outbox_due().await.ok().flatten();
            let wait = next.map_or(Duration::from_secs(1), |t| {
                Duration::from_millis(t.saturating_sub(unix_ms()).clamp(10, 1_000))
            });
            let _ = tokio::time::timeout(wait, state.outbox_wake.notified()).await;
        }
    }
}

/// Checks answered calls against the realtime server: a call whose channel the realtime server
/// reports empty twice in a row (one interval apart) is closed as `ended: unknown`, so a lost
/// `channel_vacated` or `member_removed` webhook cannot leave a call active for ever.
pub(super) async fn reconciler(state: Arc<AppState>) {
    let interval = state.config.reconcile_interval_ms.max(100);
    let mut decide = crate::trusted::reconcile::Reconciler::new(interval);
    loop {
        tokio::time::sleep(Duration::from_millis(interval)).await;
        let Ok(active) = state.store.active_calls().await else {
            continue;
        };
        decide.retain_open(&active.iter().map(|r| r.call_id.to_string()).collect());
        for record in active {
            let channel = record.channel.to_string();
            let occupied = match channel_occupied(&state, &channel).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, %channel, "cannot reconcile with the realtime server");
                    continue;
                }
            };
            let id = record.call_id.to_string();
            let now = unix_ms();
            if !decide.observe(&id, occupied, now) {
                continue;
            }
            let _guard = state.writer.lock().await;
            let Ok(Some(mut fresh)) = state.store.load_call(&id).await else {
                continue;
            };
            let outcome = end_vacated(
                &mut fresh,
                &state.directory,
                "reconciled: the realtime server reports the channel empty",
                now,
            );
            if !outcome.log.is_empty() {
                tracing::info!(call = %id, "closed an answered call whose channel is empty");
                if let Err(e) = state.store.save_outcome(&fresh, &outcome).await {
                    tracing::error!(error = %e, "could not record a reconciled call");
                }
            }
        }
    }
}

/// The realtime HTTP API URL of `path`, signed for `method` and `body` now ([SIGN-010]).
pub(super) fn signed_api_url(state: &AppState, method: &str, path: &str, body: &[u8]) -> String {
    let params = signing::sign_http_request(
        &state.config.app_key,
        &state.config.app_secret,
        method,
        path,
        Vec::new(),
        body,
        unix_ms() / 1000,
    );
    // Every signed parameter is hex, digits or `1.0`: nothing to escape.
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}{path}?{}",
        state.config.realtime_api_url.trim_end_matches('/'),
        query.join("&")
    )
}

/// `GET /apps/{id}/channels/{name}` on the realtime server: whether anyone is subscribed.
pub(super) async fn channel_occupied(state: &AppState, channel: &str) -> Result<bool, String> {
    let path = format!("/apps/{}/channels/{channel}", state.config.app_id);
    let resp = state
        .http
        .get(signed_api_url(state, "GET", &path, b""))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{}", resp.status()));
    }
    let v: Value = serde_json::from_str(&resp.text().await.map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    v["occupied"]
        .as_bool()
        .ok_or_else(|| format!("no occupied member in {v}"))
}

/// One signed `POST /apps/{id}/events`.
pub(super) async fn trigger(
    state: &AppState,
    channels: &[String],
    event: &str,
    data: &str,
) -> Result<(), (outbox::SendFailure, String)> {
    let path = format!("/apps/{}/events", state.config.app_id);
    let body = json!({ "name": event, "channels": channels, "data": data }).to_string();
    let resp = state
        .http
        .post(signed_api_url(state, "POST", &path, body.as_bytes()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| (outbox::SendFailure::Unreachable, e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err((
            outbox::SendFailure::Status(status.as_u16()),
            format!("{status} {}", resp.text().await.unwrap_or_default()),
        ))
    }
}
