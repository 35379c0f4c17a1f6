//! The HTTP API and webhooks of the realtime server.

use serde_json::{Value, json};

use super::{Case, case, marker, private_pair};
use crate::conform::wire::{
    Conn, Ctx, PROMPT, RETRY_MARKER, Step, WebhookDelivery, decode_data, ensure, unix_now,
};
use crate::signing;

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "http_api.trigger",
            HttpApi,
            Must,
            ["TRN-040", "TRN-042", "EVT-001"],
            [HttpApi, AppSecret],
            "POST /apps/{id}/events reaches every subscriber of the channel",
            trigger
        ),
        case!(
            "http_api.batch-events",
            HttpApi,
            Must,
            ["TRN-040", "TRN-042"],
            [HttpApi, AppSecret],
            "POST /apps/{id}/batch_events delivers every event of the batch",
            batch
        ),
        case!(
            "http_api.socket-id-excluded",
            HttpApi,
            Must,
            ["TRN-042"],
            [HttpApi, AppSecret],
            "An event triggered with socket_id is not delivered to that connection",
            socket_id_excluded
        ),
        case!(
            "http_api.bad-signature",
            HttpApi,
            Must,
            ["TRN-041", "SIGN-010", "SIGN-013"],
            [HttpApi, AppSecret],
            "A request with a wrong auth_signature is answered 401 with a message",
            bad_signature
        ),
        case!(
            "http_api.stale-timestamp",
            HttpApi,
            Must,
            ["SIGN-011", "SEC-007"],
            [HttpApi, AppSecret],
            "Correctly signed requests 605 seconds in the past or future (outside the 600 s window) are answered 401",
            stale_timestamp
        ),
        case!(
            "http_api.body-md5",
            HttpApi,
            Must,
            ["SIGN-012"],
            [HttpApi, AppSecret],
            "A body_md5 that does not match the body, or a body without body_md5, is answered 401",
            body_md5
        ),
        case!(
            "http_api.repeated-parameter",
            HttpApi,
            Must,
            ["SIGN-013"],
            [HttpApi, AppSecret],
            "A request with a repeated query parameter is answered 401",
            repeated_parameter
        ),
        case!(
            "http_api.unknown-key-and-version",
            HttpApi,
            Must,
            ["SIGN-013"],
            [HttpApi, AppSecret],
            "A request with an unknown auth_key is refused (401 SHOULD); one with auth_version 2.0 SHOULD be",
            unknown_key_and_version
        ),
        case!(
            "http_api.oversized-data",
            HttpApi,
            Must,
            ["TRN-041", "LIM-010"],
            [HttpApi, AppSecret],
            "An event whose data is over the size limit is answered 413",
            oversized
        ),
        case!(
            "http_api.channel-queries",
            HttpApi,
            Should,
            ["TRN-040"],
            [HttpApi, AppSecret, Presence],
            "GET channels, channels/{name} and channels/{name}/users answer with JSON",
            channel_queries
        ),
        case!(
            "webhooks.signed",
            Webhooks,
            Must,
            ["TRN-050", "SIGN-020"],
            [Webhooks, AppSecret],
            "Webhooks are POSTed as {time_ms, events} with X-Pusher-Key and a valid X-Pusher-Signature",
            webhooks_signed
        ),
        case!(
            "webhooks.client-event",
            Webhooks,
            Must,
            ["TRN-051"],
            [Webhooks, AppSecret, Presence],
            "A client event on a presence channel is reported with channel, event, data, socket_id and user_id",
            webhook_client_event
        ),
        case!(
            "webhooks.member-events",
            Webhooks,
            Must,
            ["TRN-051"],
            [Webhooks, AppSecret, Presence],
            "member_added and member_removed are reported",
            webhook_member_events
        ),
        case!(
            "webhooks.channel-vacated",
            Webhooks,
            Must,
            ["TRN-051"],
            [Webhooks, AppSecret],
            "channel_occupied and channel_vacated are reported",
            webhook_vacated
        ),
        case!(
            "webhooks.retry",
            Webhooks,
            Should,
            ["TRN-052"],
            [Webhooks, AppSecret],
            "A delivery answered 503 is delivered again",
            webhook_retry
        ),
    ]
}

fn trigger_body(channels: &[&str], name: &str, data: &Value, socket_id: Option<&str>) -> String {
    let mut body = json!({ "name": name, "channels": channels, "data": data.to_string() });
    if let Some(s) = socket_id {
        body["socket_id"] = json!(s);
    }
    body.to_string()
}

/// Judges an HTTP API answer. A success must be `want` (200). A refusal must be a refusal (a
/// 4xx: the request did nothing, which is what keeps the app safe) with a body naming the
/// problem; the exact status is a SHOULD, since a server SDK only tells the app "refused".
async fn expect_status(ctx: &Ctx, got: (u16, String), want: u16, why: &str) -> Step<()> {
    if want < 400 {
        return ensure(
            got.0 == want,
            why.to_owned(),
            format!("HTTP {want}"),
            format!("HTTP {} {}", got.0, got.1),
        );
    }
    ensure(
        (400..500).contains(&got.0),
        format!("{why} (any 4xx refusal; the request must have no effect)"),
        format!("HTTP {want} (or another 4xx)"),
        format!("HTTP {} {}", got.0, got.1),
    )?;
    ctx.should(
        got.0 == want,
        format!("{why}: the status is exactly {want}"),
        format!("HTTP {want}"),
        format!("HTTP {}", got.0),
    );
    ctx.should(
        !got.1.trim().is_empty(),
        format!("{why}: the body names the problem"),
        "a body naming the problem",
        "an empty body",
    );
    Ok(())
}

async fn trigger(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "trigger").await?;
    let body = trigger_body(&[&channel], "conform-server-event", &marker(20), None);
    let got = ctx.http_api("POST", "/events", &body, |_| {}).await?;
    expect_status(&ctx, got, 200, "a signed trigger is accepted").await?;
    for c in [&mut a, &mut b] {
        let f = c
            .wait_for("the triggered event", PROMPT, |f| {
                f["event"] == "conform-server-event" && f["channel"] == channel
            })
            .await?;
        ensure(
            decode_data(&f["data"]) == marker(20),
            "the triggered data arrives",
            marker(20).to_string(),
            f.to_string(),
        )?;
    }
    Ok(None)
}

async fn batch(ctx: Ctx) -> Step<Option<String>> {
    let (_a, mut b, channel) = private_pair(&ctx, "batch").await?;
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"name": format!("conform-batch-{i}"), "channel": channel, "data": marker(i).to_string()}))
        .collect();
    let got = ctx
        .http_api(
            "POST",
            "/batch_events",
            &json!({ "batch": events }).to_string(),
            |_| {},
        )
        .await?;
    expect_status(&ctx, got, 200, "a signed batch is accepted").await?;
    for i in 0..3 {
        let name = format!("conform-batch-{i}");
        b.wait_for(&name, PROMPT, |f| f["event"] == name.as_str())
            .await?;
    }
    Ok(None)
}

async fn socket_id_excluded(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "exclude").await?;
    let body = trigger_body(
        &[&channel],
        "conform-excluded",
        &marker(21),
        Some(&a.socket_id),
    );
    let got = ctx.http_api("POST", "/events", &body, |_| {}).await?;
    expect_status(&ctx, got, 200, "a trigger with socket_id is accepted").await?;
    b.wait_for("the triggered event", PROMPT, |f| {
        f["event"] == "conform-excluded"
    })
    .await?;
    let before = a.fence().await?;
    ensure(
        !before.iter().any(|f| f["event"] == "conform-excluded"),
        "the connection named by socket_id does not get the event",
        "nothing for the excluded socket",
        format!("{before:?}"),
    )?;
    Ok(None)
}

fn set(params: &mut [(String, String)], key: &str, value: &str) {
    for (k, v) in params.iter_mut() {
        if k == key {
            *v = value.to_owned();
        }
    }
}

async fn bad_signature(ctx: Ctx) -> Step<Option<String>> {
    let body = trigger_body(&["conform-nobody"], "conform-x", &marker(0), None);
    let got = ctx
        .http_api("POST", "/events", &body, |p| {
            set(p, "auth_signature", &"0".repeat(64))
        })
        .await?;
    expect_status(&ctx, got, 401, "a wrong signature is answered 401").await?;
    Ok(None)
}

async fn stale_timestamp(ctx: Ctx) -> Step<Option<String>> {
    let body = trigger_body(&["conform-nobody"], "conform-x", &marker(0), None);
    // 605, not 601: auth_timestamp has one-second resolution, so the server's clock can tick
    // between signing and checking, and a request signed 601 s ahead is then exactly 600 s
    // ahead of it, which the rule allows (seen against sockudo over wss://).
    for (label, ts) in [
        ("605 s old", unix_now() - 605),
        ("605 s ahead", unix_now() + 605),
    ] {
        let got = ctx
            .http_api_custom("POST", "/events", &body, &body, ts, |_| {}, false)
            .await?;
        expect_status(
            &ctx,
            got,
            401,
            &format!("a request signed {label} is answered 401"),
        )
        .await?;
    }
    let got = ctx
        .http_api_custom(
            "POST",
            "/events",
            &body,
            &body,
            unix_now() - 30,
            |_| {},
            false,
        )
        .await?;
    expect_status(&ctx, got, 200, "a request 30 s old is still accepted").await?;
    Ok(None)
}

async fn body_md5(ctx: Ctx) -> Step<Option<String>> {
    let body = trigger_body(&["conform-nobody"], "conform-x", &marker(0), None);
    let other = trigger_body(&["conform-nobody"], "conform-y", &marker(1), None);
    let got = ctx
        .http_api_custom("POST", "/events", &body, &other, unix_now(), |_| {}, false)
        .await?;
    expect_status(&ctx, got, 401, "a body_md5 of another body is answered 401").await?;
    let got = ctx
        .http_api_custom("POST", "/events", &body, "", unix_now(), |_| {}, false)
        .await?;
    expect_status(
        &ctx,
        got,
        401,
        "a non-empty body without body_md5 is answered 401",
    )
    .await?;
    Ok(None)
}

async fn repeated_parameter(ctx: Ctx) -> Step<Option<String>> {
    let body = trigger_body(&["conform-nobody"], "conform-x", &marker(0), None);
    let got = ctx
        .http_api("POST", "/events", &body, |p| {
            p.push(("auth_version".into(), "1.0".into()))
        })
        .await?;
    expect_status(&ctx, got, 401, "a repeated parameter is answered 401").await?;
    Ok(None)
}

async fn unknown_key_and_version(ctx: Ctx) -> Step<Option<String>> {
    let body = trigger_body(&["conform-nobody"], "conform-x", &marker(0), None);
    let now = unix_now();
    let got = ctx
        .http_api_custom(
            "POST",
            "/events",
            &body,
            &body,
            now,
            |p| set(p, "auth_key", "conform-unknown-key"),
            true,
        )
        .await?;
    expect_status(&ctx, got, 401, "an unknown auth_key is answered 401").await?;
    // auth_version is inside the signed string, so a correctly signed request that names 2.0 is
    // still authentic: accepting it endangers nothing, refusing it is a SHOULD.
    let got = ctx
        .http_api_custom(
            "POST",
            "/events",
            &body,
            &body,
            now,
            |p| set(p, "auth_version", "2.0"),
            true,
        )
        .await?;
    ctx.should(
        (400..500).contains(&got.0),
        "a correctly signed request with auth_version 2.0 is refused",
        "HTTP 401",
        format!("HTTP {} {}", got.0, got.1),
    );
    Ok(None)
}

async fn oversized(ctx: Ctx) -> Step<Option<String>> {
    let data = json!({ "pad": "x".repeat(ctx.target.max_event_bytes) });
    let body = trigger_body(&["conform-nobody"], "conform-big", &data, None);
    let got = ctx.http_api("POST", "/events", &body, |_| {}).await?;
    expect_status(&ctx, got, 413, "event data over the limit is answered 413").await?;
    Ok(None)
}

async fn channel_queries(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("presence-", "query");
    let mut a = Conn::connect(&ctx, "a").await?;
    a.subscribe(&channel, Some(("conform-alice", json!({}))))
        .await?;
    let (status, text) = ctx.http_api("GET", "/channels", "", |_| {}).await?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    ensure(
        status == 200 && v["channels"].is_object(),
        "GET channels lists channels",
        r#"200 {"channels":{...}}"#,
        format!("{status} {text}"),
    )?;
    let (status, text) = ctx
        .http_api("GET", &format!("/channels/{channel}"), "", |_| {})
        .await?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    ensure(
        status == 200 && v["occupied"] == true,
        "GET channels/{name} says the channel is occupied",
        r#"200 {"occupied":true}"#,
        format!("{status} {text}"),
    )?;
    let (status, text) = ctx
        .http_api("GET", &format!("/channels/{channel}/users"), "", |_| {})
        .await?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    ensure(
        status == 200 && v["users"] == json!([{"id": "conform-alice"}]),
        "GET channels/{name}/users lists the presence members",
        r#"200 {"users":[{"id":"conform-alice"}]}"#,
        format!("{status} {text}"),
    )?;
    Ok(None)
}

/// The events of a delivery named `name` on `channel`.
fn events_in(d: &WebhookDelivery, name: &str, channel: &str) -> Vec<Value> {
    serde_json::from_slice::<Value>(&d.body)
        .ok()
        .and_then(|b| b["events"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["name"] == name && e["channel"] == channel)
        .collect()
}

async fn webhook(ctx: &Ctx, name: &str, channel: &str) -> Step<(WebhookDelivery, Value)> {
    let log = ctx
        .webhooks
        .clone()
        .ok_or_else(|| super::super::wire::Problem::Unsupported("needs --webhook-listen".into()))?;
    let d = log
        .wait_for(ctx, &format!("{name} for {channel}"), PROMPT * 2, |d| {
            !d.refused && !events_in(d, name, channel).is_empty()
        })
        .await?;
    let e = events_in(&d, name, channel).remove(0);
    Ok((d, e))
}

async fn webhooks_signed(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "hooksigned");
    let mut a = Conn::connect(&ctx, "a").await?;
    a.subscribe(&channel, None).await?;
    let (d, _) = webhook(&ctx, "channel_occupied", &channel).await?;
    let body: Value = serde_json::from_slice(&d.body).unwrap_or(Value::Null);
    ensure(
        body["time_ms"].is_u64() && body["events"].is_array(),
        "a webhook body is {time_ms, events}",
        r#"{"time_ms": N, "events": [...]}"#,
        String::from_utf8_lossy(&d.body).into_owned(),
    )?;
    ensure(
        d.key == ctx.target.key,
        "X-Pusher-Key is the app key",
        ctx.target.key.clone(),
        d.key.clone(),
    )?;
    let valid = signing::verify_webhook(
        &ctx.target.key,
        ctx.secret()?,
        &d.key,
        &d.signature,
        &d.body,
    )
    .is_ok();
    ensure(
        valid,
        "X-Pusher-Signature is the hex HMAC-SHA256 of the raw body keyed with the app secret",
        signing::sign_webhook(ctx.secret()?, &d.body),
        d.signature.clone(),
    )?;
    Ok(None)
}

async fn webhook_client_event(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("presence-", "hookevent");
    let mut a = Conn::connect(&ctx, "alice").await?;
    let mut b = Conn::connect(&ctx, "bob").await?;
    a.subscribe(&channel, Some(("conform-alice", json!({}))))
        .await?;
    b.subscribe(&channel, Some(("conform-bob", json!({}))))
        .await?;
    a.trigger(&channel, "client-conform", &marker(30)).await?;
    let (_, e) = webhook(&ctx, "client_event", &channel).await?;
    let expected = format!(
        r#"{{"name":"client_event","channel":"{channel}","event":"client-conform","data":"{}","socket_id":"{}","user_id":"conform-alice"}}"#,
        marker(30),
        a.socket_id
    );
    // What a trusted server records a call from: which event, from which connection, and on a
    // presence channel whose verified identity ([TRN-051]; the identity rule of call records).
    ensure(
        e["event"] == "client-conform" && e["socket_id"] == a.socket_id.as_str(),
        "client_event webhooks carry the event name and the sender's socket_id",
        expected.clone(),
        e.to_string(),
    )?;
    ensure(
        e["user_id"] == "conform-alice",
        "a presence channel's client_event webhook carries the sender's verified user_id: without it a trusted server cannot tell who accepted or ended a call",
        expected.clone(),
        e.to_string(),
    )?;
    // Pusher sends data as a string; a receiver can read an object as well (as [TRN-034] asks
    // of event receivers), so the form is a SHOULD and the meaning a MUST.
    let data: Value = match &e["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    ensure(
        data == marker(30),
        "the client_event webhook carries the event's data",
        expected.clone(),
        e.to_string(),
    )?;
    ctx.should(
        e["data"].is_string(),
        "the client_event webhook carries data as a string, as Pusher does",
        expected,
        e.to_string(),
    );
    Ok(None)
}

async fn webhook_member_events(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("presence-", "hookmember");
    let mut a = Conn::connect(&ctx, "alice").await?;
    a.subscribe(&channel, Some(("conform-alice", json!({}))))
        .await?;
    let (_, e) = webhook(&ctx, "member_added", &channel).await?;
    ensure(
        e["user_id"] == "conform-alice",
        "member_added names the user",
        "conform-alice",
        e.to_string(),
    )?;
    a.send_json(&json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
        .await?;
    let (_, e) = webhook(&ctx, "member_removed", &channel).await?;
    ensure(
        e["user_id"] == "conform-alice",
        "member_removed names the user",
        "conform-alice",
        e.to_string(),
    )?;
    Ok(None)
}

async fn webhook_vacated(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "hookvacated");
    let mut a = Conn::connect(&ctx, "a").await?;
    a.subscribe(&channel, None).await?;
    webhook(&ctx, "channel_occupied", &channel).await?;
    a.close().await;
    webhook(&ctx, "channel_vacated", &channel).await?;
    Ok(None)
}

async fn webhook_retry(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", RETRY_MARKER);
    let mut a = Conn::connect(&ctx, "a").await?;
    a.subscribe(&channel, None).await?;
    // The listener refuses the first delivery naming this channel; a retry must follow.
    webhook(&ctx, "channel_occupied", &channel).await?;
    Ok(None)
}
