//! Records from webhooks and reports: forged webhooks refused, retries applied once, unverified acceptances ignored, lost vacates reconciled, and the strong-privacy channel key.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "trusted.webhooks.forged-refused",
            Trusted,
            Must,
            ["SRV-011", "SRV-013", "SIGN-021", "SEC-007"],
            [Trusted, AppSecret],
            "Forged, stale and replayed webhook deliveries are refused",
            forged_webhooks
        ),
        case!(
            "trusted.webhooks.retry-applied-once",
            Trusted,
            Must,
            ["SRV-013", "SRV-011"],
            [Trusted, AppSecret],
            "A delivery sent again (its answer lost) is applied once: the call is accepted once, nothing doubles",
            retry_applied_once
        ),
        case!(
            "trusted.records.forged-private-acceptance-ignored",
            Trusted,
            Must,
            ["SRV-016"],
            [Trusted, AppSecret],
            "An acceptance whose user_id nobody verified (a private channel's client event) leaves the call ringing; a verified one on a presence channel counts",
            forged_private_acceptance
        ),
        case!(
            "trusted.records.lost-vacate-reconciled",
            Trusted,
            Must,
            ["SRV-019"],
            [Trusted, AppSecret],
            "An answered call whose channel_vacated never arrives is closed (as answered, not missed) once the channel is empty",
            lost_vacate_reconciled
        ),
        case!(
            "trusted.privacy.shared-secret",
            Trusted,
            Must,
            ["PRIV-002", "SRV-003"],
            [Trusted, StrongPrivacy],
            "A strong-privacy call's members get shared_secret (32 bytes, base64); outsiders get nothing",
            shared_secret
        ),
    ]
}

async fn forged_webhooks(ctx: Ctx) -> Step<Option<String>> {
    let url = format!("{}/realtime/webhooks", base(&ctx)?);
    let secret = ctx.secret()?.clone();
    let post = |body: String, signature: String| {
        crate::net::http_client()
            .post(url.clone())
            .header("content-type", "application/json")
            .header("x-pusher-key", ctx.target.key.clone())
            .header("x-pusher-signature", signature)
            .body(body)
    };
    let event = json!({"name": "channel_vacated", "channel": ctx.unique("private-", "forged")});
    let now_ms = unix_now() * 1000;
    let body = json!({"time_ms": now_ms, "events": [event]}).to_string();
    let got = response(&ctx, "forged webhook", post(body.clone(), "0".repeat(64))).await?;
    ensure(
        got.0 == 401,
        "a webhook with a wrong signature is refused",
        "401",
        format!("{} {}", got.0, got.1),
    )?;
    let stale = json!({"time_ms": now_ms - 10 * 60 * 1000, "events": [event]}).to_string();
    let got = response(
        &ctx,
        "stale webhook",
        post(
            stale.clone(),
            signing::sign_webhook(&secret, stale.as_bytes()),
        ),
    )
    .await?;
    ensure(
        (400..500).contains(&got.0),
        "a signed webhook 10 minutes old is refused",
        "4xx",
        format!("{} {}", got.0, got.1),
    )?;
    let got = response(
        &ctx,
        "webhook",
        post(
            body.clone(),
            signing::sign_webhook(&secret, body.as_bytes()),
        ),
    )
    .await?;
    ensure(
        got.0 == 200,
        "a fresh, signed webhook is accepted",
        "200",
        format!("{} {}", got.0, got.1),
    )?;
    let got = response(
        &ctx,
        "replayed webhook",
        post(
            body.clone(),
            signing::sign_webhook(&secret, body.as_bytes()),
        ),
    )
    .await?;
    ensure(
        (400..500).contains(&got.0),
        "the same delivery replayed is refused",
        "4xx (409)",
        format!("{} {}", got.0, got.1),
    )?;
    Ok(None)
}

async fn retry_applied_once(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({})).await?;
    let (channel, call_id) = (
        placed["channel"].as_str().unwrap_or_default().to_owned(),
        placed["call_id"].as_str().unwrap_or_default().to_owned(),
    );
    let (callee, _) = user(&ctx, 1)?;
    let (first, _, body) =
        post_client_event(&ctx, &channel, "client-call.accepted", &callee, true).await?;
    ensure(
        first == 200,
        "a fresh, signed delivery of a verified acceptance is applied",
        "200",
        first.to_string(),
    )?;
    let (again, v) = post_delivery(&ctx, &body).await?;
    ensure(
        again < 500,
        "the same delivery sent again is answered (applied-already), not failed",
        "2xx or 409",
        format!("{again} {v}"),
    )?;
    let v = call_until(&ctx, &call_id, Duration::ZERO, |_| true).await?;
    let accepted_entries = v["log"]
        .as_array()
        .map(|l| l.iter().filter(|e| e["kind"] == "accepted").count());
    ensure(
        v["call"]["state"] == "active"
            && v["call"]["accepted_by"] == callee.as_str()
            && accepted_entries.is_none_or(|n| n == 1),
        "the call is accepted once",
        format!(r#"state "active", accepted_by "{callee}", one "accepted" in the log"#),
        v.to_string(),
    )?;
    Ok(None)
}

async fn forged_private_acceptance(ctx: Ctx) -> Step<Option<String>> {
    let (callee, _) = user(&ctx, 1)?;
    let private = place_call(&ctx, json!({"kind": "private"})).await?;
    let channel = private["channel"].as_str().unwrap_or_default().to_owned();
    if !channel.starts_with("private-") {
        return Err(Problem::Unsupported(
            "the trusted server does not place calls on private channels (\"kind\": \"private\")"
                .into(),
        ));
    }
    // What the realtime server reports when the caller sends an acceptance naming the callee on
    // a private channel: no server-added user_id, only the event's own claim.
    post_client_event(&ctx, &channel, "client-call.accepted", &callee, false).await?;
    // The control: the same acceptance, verified, on a presence call is applied, so the
    // deliveries do reach the records.
    let presence = place_call(&ctx, json!({})).await?;
    let presence_channel = presence["channel"].as_str().unwrap_or_default().to_owned();
    post_client_event(
        &ctx,
        &presence_channel,
        "client-call.accepted",
        &callee,
        true,
    )
    .await?;
    let control = call_until(
        &ctx,
        presence["call_id"].as_str().unwrap_or_default(),
        Duration::from_secs(5),
        |v| v["call"]["state"] == "active",
    )
    .await?;
    ensure(
        control["call"]["state"] == "active",
        "a verified acceptance is recorded (the control)",
        "active",
        control.to_string(),
    )?;
    let forged = call_until(
        &ctx,
        private["call_id"].as_str().unwrap_or_default(),
        Duration::ZERO,
        |_| true,
    )
    .await?;
    ensure(
        forged["call"]["state"] == "ringing" && forged["call"]["accepted_by"].is_null(),
        "an acceptance nobody verified changes nothing: the callee never answered",
        r#"state "ringing", accepted_by null"#,
        forged.to_string(),
    )?;
    Ok(None)
}

async fn lost_vacate_reconciled(ctx: Ctx) -> Step<Option<String>> {
    let (callee, _) = user(&ctx, 1)?;
    let placed = place_call(&ctx, json!({})).await?;
    let (channel, call_id) = (
        placed["channel"].as_str().unwrap_or_default().to_owned(),
        placed["call_id"].as_str().unwrap_or_default().to_owned(),
    );
    // Answered (a verified acceptance), then everybody gone without a call.ended: here nobody
    // ever subscribes, so the channel_vacated that would close the record never comes.
    post_client_event(&ctx, &channel, "client-call.accepted", &callee, true).await?;
    let began = Instant::now();
    let v = call_until(&ctx, &call_id, Duration::from_secs(40), |v| {
        v["call"]["state"] == "ended"
    })
    .await?;
    ensure(
        v["call"]["state"] == "ended" && v["call"]["accepted_by"] == callee.as_str(),
        "an answered call whose channel is empty is closed as answered",
        r#"state "ended" with accepted_by kept"#,
        v.to_string(),
    )?;
    let (_, token) = user(&ctx, 1)?;
    let (_, missed) = get(&ctx, &token, "/calls/missed").await?;
    ensure(
        !missed.to_string().contains(&call_id),
        "a reconciled answered call is not a missed call",
        "no missed call",
        missed.to_string(),
    )?;
    Ok(Some(format!(
        "closed {} ms after it was answered",
        began.elapsed().as_millis()
    )))
}

async fn shared_secret(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({"privacy": "strong"})).await?;
    let channel = placed["channel"].as_str().unwrap_or_default().to_owned();
    let (_, token) = user(&ctx, 1)?;
    let c = Conn::connect(&ctx, "callee").await?;
    let got = auth(&ctx, Some(&token), &c.socket_id, &channel, false).await?;
    let secret = got.1["shared_secret"].as_str().unwrap_or_default();
    ensure(
        got.0 == 200 && crate::envelope::ChannelKey::from_shared_secret(secret).is_ok(),
        "a member of a strong-privacy call gets the channel key",
        "shared_secret: standard base64 of 32 bytes",
        format!("{} {}", got.0, got.1),
    )?;
    let (_, outsider) = user(&ctx, 2)?;
    let got = auth(&ctx, Some(&outsider), &c.socket_id, &channel, false).await?;
    refused(&got, "an outsider does not get the channel key")?;
    ensure(
        got.1.get("shared_secret").is_none(),
        "a refusal carries no key",
        "no shared_secret",
        got.1.to_string(),
    )?;
    Ok(None)
}
