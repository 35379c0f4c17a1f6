//! The call endpoints: placing a call (rate limited, idempotent), the realtime server's
//! webhooks, history and missed-call listings, one call's record, and the users' own reports of
//! accept, decline and end.

use super::*;

/// Longest `Idempotency-Key` accepted, and how long a key is remembered.
pub(super) const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
pub(super) const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;

pub(super) async fn create_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(user) = bearer(&state, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first: missing or unknown bearer token",
        );
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && k.is_ascii() => {
            Some(k.to_owned())
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "call.bad_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} ASCII characters"),
            );
        }
    };
    let request_digest = hex::encode(Sha256::digest(&body));
    // A retry of a request that was answered gets the same answer and creates nothing.
    if let Some(key) = &key {
        match replayed_answer(&state, user.id.as_str(), key, &request_digest).await {
            Ok(Some(r)) => return r,
            Ok(None) => {}
            Err(r) => return r,
        }
    }
    let now = unix_ms();
    let limited = state.call_limiter.lock().await.check(user.id.as_str(), now);
    if let Err(retry_after_ms) = limited {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "call.rate_limited",
            format!(
                "too many calls placed; at most {} per minute, try again in {secs} s",
                state.config.calls_per_minute
            ),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }
    let req: CallRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "call.bad_request", e),
    };
    let call_id = state.call_ids.next();
    let planned = match plan_call(&state.directory, &user.id, req, call_id, now) {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                crate::trusted::CallRequestError::Invalid(_)
                | crate::trusted::CallRequestError::TooManyInvitees { .. } => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::FORBIDDEN,
            };
            return error(status, e.code(), &e);
        }
    };
    let inboxes: Vec<String> = planned.inboxes.iter().map(ToString::to_string).collect();
    let invitees: Vec<_> = planned
        .inboxes
        .iter()
        .map(|i| i.user_id().clone())
        .collect();
    let r = &planned.record;
    let answer = PlacedCall {
        call_id: r.call_id.clone(),
        channel: r.channel.clone(),
        privacy: r.privacy,
        ring_timeout_ms: r.ring_timeout_ms,
        ring_deadline_ms: r.ring_deadline_ms(),
        callees: invitees.clone(),
        ice_servers: ice_servers(&state.config, user.id.as_str(), now),
    };
    let answer_text = serde_json::to_string(&answer).expect("a placed call serializes");
    let idempotency = key.as_deref().map(|k| {
        (
            user.id.as_str(),
            k,
            request_digest.as_str(),
            answer_text.as_str(),
        )
    });
    match state
        .store
        .insert_call(
            &planned.record,
            &invitees,
            (&inboxes, &planned.invitation),
            idempotency,
        )
        .await
    {
        Ok(true) => {}
        // The same key won a race meanwhile: answer as it was answered.
        Ok(false) => {
            if let Some(key) = &key
                && let Ok(Some(r)) =
                    replayed_answer(&state, user.id.as_str(), key, &request_digest).await
            {
                return r;
            }
            return internal("an idempotent call vanished".into());
        }
        Err(e) => return internal(e),
    }
    state.outbox_wake.notify_one();
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// The stored answer to `(user, key)` if there is one: the same 201 for the same request, 422
/// for another request under the same key.
pub(super) async fn replayed_answer(
    state: &AppState,
    user: &str,
    key: &str,
    request_digest: &str,
) -> Result<Option<Response>, Response> {
    match state.store.idempotent_answer(user, key).await {
        Ok(None) => Ok(None),
        Ok(Some((digest, _))) if digest != request_digest => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "call.idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )),
        Ok(Some((_, answer))) => {
            let body: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
            let mut r = (StatusCode::CREATED, axum::Json(body)).into_response();
            r.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            Ok(Some(r))
        }
        Err(e) => Err(internal(e)),
    }
}

pub(super) async fn realtime_webhooks(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = unix_ms();
    let parsed = match webhook::verify(
        &state.config.app_key,
        &state.config.app_secret,
        header("x-pusher-key"),
        header("x-pusher-signature"),
        &body,
        now,
    ) {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                webhook::WebhookError::Malformed(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            return error(status, e.code(), &e);
        }
    };
    let digest = hex::encode(Sha256::digest(&body));
    // The whole delivery under the writer lock and in one transaction with its digest: applied
    // completely and remembered, or not at all (a retry after a timeout is then applied).
    let _guard = state.writer.lock().await;
    let mut delivery = match state.store.begin_delivery(&digest, now).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return error(
                StatusCode::CONFLICT,
                "webhook.replayed",
                "this delivery was already applied",
            );
        }
        Err(e) => return internal(e),
    };
    let mut applied = 0;
    for ev in &parsed.events {
        let Ok(channel) = crate::channel::CallChannel::parse(&ev.channel) else {
            continue;
        };
        let mut record = match delivery.load_call(channel.call_id().as_str()).await {
            Ok(Some(r)) if r.channel == channel => r,
            Ok(_) => continue,
            Err(e) => return internal(e),
        };
        let outcome = apply_webhook(&mut record, &state.directory, ev, parsed.time_ms);
        if outcome.log.is_empty() {
            continue;
        }
        if let Err(e) = delivery.save_outcome(&record, &outcome).await {
            return internal(e);
        }
        applied += 1;
    }
    if let Err(e) = delivery.commit().await {
        return internal(e);
    }
    state.outbox_wake.notify_one();
    axum::Json(json!({ "applied": applied })).into_response()
}

/// `limit` (1..=200, 50 by default) and `cursor` of a paged listing, or why they are invalid
/// (`(code, message)`).
pub(super) fn page_params(
    query: &str,
) -> Result<(u32, Option<store::Cursor>), (&'static str, String)> {
    let params = signing::parse_query(query).map_err(|e| ("page.bad_query", e.to_string()))?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = match get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(("page.bad_limit", format!("limit must be 1 to {MAX_PAGE}")));
            }
        },
    };
    let cursor = match get("cursor") {
        None | Some("") => None,
        Some(c) => Some(store::Cursor::decode(c).ok_or((
            "page.bad_cursor",
            "cursor is not one this server handed out".to_owned(),
        ))?),
    };
    Ok((limit, cursor))
}

/// Entries per page of history and missed calls, by default and at most.
pub(super) const DEFAULT_PAGE: u32 = 50;
pub(super) const MAX_PAGE: u32 = 200;

/// Which paged listing of a user's calls.
#[derive(Clone, Copy)]
pub(super) enum Listing {
    History,
    Missed,
}

pub(super) async fn history(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    paged(&state, &headers, query, Listing::History).await
}

pub(super) async fn missed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    paged(&state, &headers, query, Listing::Missed).await
}

/// One page of a signed-in user's history or missed calls ([SRV-024]).
pub(super) async fn paged(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<String>,
    listing: Listing,
) -> Response {
    let Some(user) = bearer(state, headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first",
        );
    };
    let (limit, cursor) = match page_params(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, message),
    };
    let (user, cursor) = (user.id.as_str(), cursor.as_ref());
    let (key, page) = match listing {
        Listing::History => ("calls", state.store.history(user, limit, cursor).await),
        Listing::Missed => ("missed", state.store.missed(user, limit, cursor).await),
    };
    match page {
        Ok((entries, next)) => axum::Json(json!({
            key: entries,
            "next_cursor": next.map(|c| c.encode()),
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

pub(super) async fn call_detail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(user) = bearer(&state, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first",
        );
    };
    let record = match state.store.load_call(&id).await {
        Ok(Some(r)) if r.may_join(&state.directory, &user.id) => r,
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "call.not_found",
                format!("no call {id} of yours"),
            );
        }
        Err(e) => return internal(e),
    };
    match state.store.log(&id).await {
        Ok(log) => axum::Json(json!({ "call": record, "log": log })).into_response(),
        Err(e) => internal(e),
    }
}

/// `POST /calls/{id}/accept|decline|end`: a signed-in party reports what it did, so calls on
/// private channels (whose client events carry no verified identity) are recorded too. Bodies:
/// none, `{"busy": bool}`, `{"reason": "hangup"}`.
pub(super) async fn call_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(user) = bearer(&state, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "auth.not_signed_in",
            "sign in first: missing or unknown bearer token",
        );
    };
    let fields: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::BAD_REQUEST, "call.bad_request", e),
        }
    };
    let action = match action.as_str() {
        "accept" => UserAction::Accept,
        "decline" => UserAction::Decline {
            busy: fields["busy"].as_bool().unwrap_or(false),
        },
        "end" => match serde_json::from_value(fields["reason"].clone()) {
            Ok(reason) => UserAction::End { reason },
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "call.bad_request",
                    "end needs {\"reason\": one of the call.ended reasons}",
                );
            }
        },
        other => {
            return error(
                StatusCode::NOT_FOUND,
                "call.unknown_action",
                format!("{other} is not accept, decline or end"),
            );
        }
    };
    let _guard = state.writer.lock().await;
    let mut record = match state.store.load_call(&id).await {
        Ok(Some(r)) if r.may_join(&state.directory, &user.id) => r,
        // Calls the user may not join are reported as unknown, like calls that do not exist.
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "call.not_found",
                format!("no call {id} of yours"),
            );
        }
        Err(e) => return internal(e),
    };
    let outcome = apply_user_action(&mut record, &state.directory, &user.id, &action, unix_ms());
    if let Err(e) = state.store.save_outcome(&record, &outcome).await {
        return internal(e);
    }
    state.outbox_wake.notify_one();
    axum::Json(json!({
        "state": record.state,
        "log": outcome.log.iter().map(|l| l.kind.as_str()).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Where call ids come from: fresh random ones, unless an id was queued with
/// [`RunningTrusted::use_next_call_id`].
#[derive(Clone, Default)]
pub(super) struct CallIds(Arc<std::sync::Mutex<std::collections::VecDeque<CallId>>>);

impl CallIds {
    pub(super) fn preset(&self, id: CallId) {
        self.queued().push_back(id);
    }

    pub(super) fn next(&self) -> CallId {
        self.queued().pop_front().unwrap_or_else(|| {
            CallId::parse(&format!(
                "c{:016x}{:08x}",
                rand::random::<u64>(),
                rand::random::<u32>()
            ))
            .expect("hex is in the id charset")
        })
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<CallId>> {
        // A poisoned queue still holds valid ids.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
