//! The trusted server's rules: who gets a channel signed, what a call placement answers, the
//! invitation and ring-timeout paths, call records, and refusal of forged webhooks.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Case, case};
use crate::conform::wire::{Conn, Ctx, PROMPT, Problem, Step, ensure, errored, fail, unix_now};
use crate::session::{Device, Inbox, Signaling};
use crate::signing;

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "trusted.auth.member-signed",
            Trusted,
            Must,
            ["CHAN-020", "SRV-001", "SRV-003", "TRN-020"],
            [Trusted],
            "An invited member gets auth and channel_data (form-encoded and JSON) that the realtime server accepts",
            member_signed
        ),
        case!(
            "trusted.auth.needs-token",
            Trusted,
            Must,
            ["SRV-001", "SRV-002"],
            [Trusted],
            "The auth endpoint answers 403 with a JSON message without a valid bearer token",
            needs_token
        ),
        case!(
            "trusted.auth.outsider-refused",
            Trusted,
            Must,
            ["CHAN-020", "SRV-002"],
            [Trusted],
            "A user outside the call's scope is refused with 403",
            outsider_refused
        ),
        case!(
            "trusted.auth.inbox-own-only",
            Trusted,
            Must,
            ["CHAN-021"],
            [Trusted],
            "A user's own inbox is signed; another user's inbox is refused",
            inbox_own_only
        ),
        case!(
            "trusted.auth.malformed-channel",
            Trusted,
            Must,
            ["CHAN-022", "CHAN-001", "CHAN-004", "CHAN-005"],
            [Trusted],
            "Channel names that do not parse (case variants, empty parts, bad characters, too long) are refused",
            malformed_channel
        ),
        case!(
            "trusted.auth.socket-id-validated",
            Trusted,
            Must,
            ["SRV-004"],
            [Trusted],
            "A socket_id that is not digits.digits is refused before signing",
            socket_id_validated
        ),
        case!(
            "trusted.auth.refusal-reveals-nothing",
            Trusted,
            Must,
            ["SRV-005"],
            [Trusted],
            "An outsider gets the same refusal for a real call of another scope as for a call that does not exist",
            reveals_nothing
        ),
        case!(
            "trusted.calls.place",
            Trusted,
            Must,
            ["SRV-010", "SIGN-030", "SIGN-031"],
            [Trusted],
            "POST /calls answers with call id, channel and ICE servers: time-limited TURN credentials (MUST when it hands out TURN, required with --turn), STUN (SHOULD)",
            place
        ),
        case!(
            "trusted.calls.ice-servers",
            Trusted,
            Should,
            ["SRV-015", "SIGN-030"],
            [Trusted],
            "GET /ice-servers gives a signed-in callee the ICE servers: its own time-limited TURN credentials, STUN",
            ice_servers_for_callee
        ),
        case!(
            "trusted.calls.invitation",
            Trusted,
            Must,
            ["FLOW-001", "EVT-001", "PRIV-012"],
            [Trusted],
            "The callee's inbox receives call.started (server-named, clear) naming the call channel",
            invitation
        ),
        case!(
            "trusted.calls.ring-timeout",
            Trusted,
            Must,
            ["SRV-020", "FLOW-011", "SRV-022", "SRV-014"],
            [Trusted],
            "An unanswered call ends with call.ended {no_answer} and becomes a missed call of the callee",
            ring_timeout
        ),
        case!(
            "trusted.calls.record",
            Trusted,
            Must,
            ["SRV-012", "SRV-011", "SRV-022"],
            [Trusted],
            "A call answered and hung up is recorded with who accepted and why it ended",
            record
        ),
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

/// (name, token) of user `i`: 0 = caller, 1 = callee in the scope, 2 = outsider.
fn user(ctx: &Ctx, i: usize) -> Step<(String, String)> {
    ctx.target
        .users
        .get(i)
        .map(|u| (u.name.clone(), u.token.clone()))
        .ok_or_else(|| Problem::Unsupported(format!("needs at least {} --user", i + 1)))
}

fn scope(ctx: &Ctx) -> Step<(String, String)> {
    let s = ctx.target.scope.clone().ok_or_else(|| {
        Problem::Unsupported("needs --scope TYPE/ID shared by the first two users".into())
    })?;
    let (t, id) = s
        .split_once('/')
        .ok_or_else(|| errored(format!("--scope {s} is not TYPE/ID")))?;
    Ok((t.to_owned(), id.to_owned()))
}

fn base(ctx: &Ctx) -> Step<String> {
    ctx.target
        .trusted_base()
        .ok_or_else(|| Problem::Unsupported("needs --auth-endpoint".into()))
}

async fn response(ctx: &Ctx, what: &str, req: reqwest::RequestBuilder) -> Step<(u16, Value)> {
    let resp = tokio::time::timeout(PROMPT, req.send())
        .await
        .map_err(|_| errored(format!("{what}: no answer within {PROMPT:?}")))?
        .map_err(|e| errored(format!("{what}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    ctx.note("trusted", "<", &format!("{what}: {status} {text}"));
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Asks the auth endpoint to sign `channel` for `socket_id` as the holder of `token`.
async fn auth(
    ctx: &Ctx,
    token: Option<&str>,
    socket_id: &str,
    channel: &str,
    as_json: bool,
) -> Step<(u16, Value)> {
    let url = ctx
        .target
        .auth_endpoint
        .clone()
        .ok_or_else(|| Problem::Unsupported("needs --auth-endpoint".into()))?;
    ctx.note(
        "trusted",
        ">",
        &format!("POST auth {channel} socket {socket_id} json={as_json}"),
    );
    let mut req = crate::net::http_client().post(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req = if as_json {
        req.header("content-type", "application/json")
            .body(json!({"socket_id": socket_id, "channel_name": channel}).to_string())
    } else {
        req.header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "socket_id={}&channel_name={}",
                crate::conform::wire::urlencode(socket_id),
                crate::conform::wire::urlencode(channel)
            ))
    };
    response(ctx, "auth", req).await
}

async fn get(ctx: &Ctx, token: &str, path: &str) -> Step<(u16, Value)> {
    let req = crate::net::http_client()
        .get(format!("{}{path}", base(ctx)?))
        .bearer_auth(token);
    response(ctx, &format!("GET {path}"), req).await
}

/// Places a call from user 0 to user 1 in the scope; returns the answer.
async fn place_call(ctx: &Ctx, extra: Value) -> Step<Value> {
    let (_, token) = user(ctx, 0)?;
    let (callee, _) = user(ctx, 1)?;
    let (scope, scope_id) = scope(ctx)?;
    let mut body = json!({"scope": scope, "scope_id": scope_id, "callees": [callee]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let mut attempt = 0;
    let (status, v) = loop {
        ctx.note("trusted", ">", &format!("POST /calls {body}"));
        let req = crate::net::http_client()
            .post(format!("{}/calls", base(ctx)?))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string());
        let (status, v) = response(ctx, "POST /calls", req).await?;
        // A rate limit on call creation is allowed ([SRV-018]); the kit waits as a client would.
        attempt += 1;
        if status != 429 || attempt > 3 {
            break (status, v);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    ensure(
        (200..300).contains(&status) && v["channel"].is_string() && v["call_id"].is_string(),
        "POST /calls places the call",
        "2xx with call_id and channel",
        format!("{status} {v}"),
    )?;
    Ok(v)
}

fn refused(got: &(u16, Value), why: &str) -> Step<()> {
    ensure(
        got.0 == 403 && !got.1.is_null() && got.1.as_object().is_some_and(|o| !o.is_empty()),
        why.to_owned(),
        "403 with a JSON message",
        format!("{} {}", got.0, got.1),
    )
}

/// Subscribes `c` to `channel` with what the auth endpoint answered.
async fn subscribe_with(c: &mut Conn, channel: &str, answer: &Value) -> Step<Value> {
    let mut data = json!({"channel": channel, "auth": answer["auth"]});
    if let Some(cd) = answer.get("channel_data") {
        data["channel_data"] = cd.clone();
    }
    c.send_json(&json!({"event": "pusher:subscribe", "data": data}))
        .await?;
    c.expect_subscribed(channel).await
}

async fn member_signed(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({})).await?;
    let channel = placed["channel"].as_str().unwrap_or_default().to_owned();
    let (callee, token) = user(&ctx, 1)?;
    for as_json in [false, true] {
        let mut c = Conn::connect(&ctx, &callee).await?;
        let got = auth(&ctx, Some(&token), &c.socket_id, &channel, as_json).await?;
        ensure(
            got.0 == 200 && got.1["auth"].is_string(),
            format!(
                "an invited member's request ({}) is signed",
                if as_json { "JSON" } else { "form-encoded" }
            ),
            "200 {auth, channel_data}",
            format!("{} {}", got.0, got.1),
        )?;
        if channel.starts_with("presence-") {
            let cd: Value = got.1["channel_data"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            ensure(
                cd["user_id"] == callee.as_str(),
                "presence channel_data names the signed-in user",
                format!("user_id {callee}"),
                got.1.to_string(),
            )?;
        }
        subscribe_with(&mut c, &channel, &got.1).await?;
        c.close().await;
    }
    Ok(None)
}

async fn needs_token(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({})).await?;
    let channel = placed["channel"].as_str().unwrap_or_default();
    let got = auth(&ctx, None, "1234.5678", channel, false).await?;
    refused(&got, "a request without a token is refused")?;
    let got = auth(
        &ctx,
        Some("conform-not-a-token"),
        "1234.5678",
        channel,
        false,
    )
    .await?;
    refused(&got, "a request with an unknown token is refused")?;
    Ok(None)
}

async fn outsider_refused(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({})).await?;
    let (_, token) = user(&ctx, 2)?;
    let got = auth(
        &ctx,
        Some(&token),
        "1234.5678",
        placed["channel"].as_str().unwrap_or_default(),
        false,
    )
    .await?;
    refused(&got, "a user outside the scope is refused")?;
    Ok(None)
}

async fn inbox_own_only(ctx: Ctx) -> Step<Option<String>> {
    let (me, token) = user(&ctx, 1)?;
    let (other, _) = user(&ctx, 0)?;
    let mut c = Conn::connect(&ctx, &me).await?;
    let own = format!("private-call-inbox.{me}");
    let got = auth(&ctx, Some(&token), &c.socket_id, &own, false).await?;
    ensure(
        got.0 == 200,
        "a user's own inbox is signed",
        "200",
        format!("{} {}", got.0, got.1),
    )?;
    subscribe_with(&mut c, &own, &got.1).await?;
    let got = auth(
        &ctx,
        Some(&token),
        &c.socket_id,
        &format!("private-call-inbox.{other}"),
        false,
    )
    .await?;
    refused(&got, "another user's inbox is refused")?;
    Ok(None)
}

async fn malformed_channel(ctx: Ctx) -> Step<Option<String>> {
    let (_, token) = user(&ctx, 0)?;
    let (scope, scope_id) = scope(&ctx)?;
    let names = [
        format!("PRIVATE-call.{scope}.{scope_id}.call-1"),
        format!("private-Call.{scope}.{scope_id}.call-1"),
        format!("private-call.{scope}..call-1"),
        format!("private-call.{scope}.{scope_id}.call 1"),
        format!("private-call.{scope}.{scope_id}.call-1.extra"),
        format!("private-call.{scope}.{scope_id}.{}", "c".repeat(160)),
        "private-call-inbox.".to_owned(),
        "private-something-else".to_owned(),
    ];
    for name in names {
        let got = auth(&ctx, Some(&token), "1234.5678", &name, false).await?;
        refused(&got, &format!("the malformed channel {name:?} is refused"))?;
    }
    Ok(None)
}

async fn socket_id_validated(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({})).await?;
    let (_, token) = user(&ctx, 1)?;
    for socket in ["1234", "a.b", "1234.5678.9", "1234.5678:private-x", ""] {
        let got = auth(
            &ctx,
            Some(&token),
            socket,
            placed["channel"].as_str().unwrap_or_default(),
            false,
        )
        .await?;
        ensure(
            (400..500).contains(&got.0) && got.1.get("auth").is_none(),
            format!("socket_id {socket:?} is refused"),
            "4xx without auth",
            format!("{} {}", got.0, got.1),
        )?;
    }
    Ok(None)
}

async fn reveals_nothing(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({})).await?;
    let real = placed["channel"].as_str().unwrap_or_default().to_owned();
    let call_id = placed["call_id"].as_str().unwrap_or_default().to_owned();
    let fake_id = format!("call-{:016x}", rand::random::<u64>());
    let fake = real.replace(&call_id, &fake_id);
    let (_, token) = user(&ctx, 2)?;
    let a = auth(&ctx, Some(&token), "1234.5678", &real, false).await?;
    let b = auth(&ctx, Some(&token), "1234.5678", &fake, false).await?;
    let normalize = |v: &Value, id: &str| v.to_string().replace(id, "CALL");
    ensure(
        a.0 == b.0 && normalize(&a.1, &call_id) == normalize(&b.1, &fake_id),
        "a refusal does not tell a real call of another scope from an unknown one",
        format!("{} {}", b.0, b.1),
        format!("{} {}", a.0, a.1),
    )?;
    Ok(None)
}

/// Checks the `ice_servers` of an answer: a list (MUST); a STUN server in it (SHOULD: calls across
/// NAT need address discovery, but a TURN server's allocations discover addresses too, and a
/// LAN-only deployment needs neither); and a TURN server whose REST credential belongs to `who`
/// and expires within a day (MUST when it is there, and required when the run was told the
/// deployment has TURN with `--turn`; with the TURN secret, the password is checked too).
/// Returns what was found, for the case's note.
fn check_ice_servers(ctx: &Ctx, answer: &Value, who: &str) -> Step<String> {
    ensure(
        answer["ice_servers"].is_array(),
        "the answer has an ice_servers list",
        "ice_servers: [...]",
        answer.to_string(),
    )?;
    let servers = answer["ice_servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let urls = |s: &Value| {
        s["urls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    ctx.should(
        servers
            .iter()
            .any(|s| urls(s).iter().any(|u| u.starts_with("stun:"))),
        "the answer lists a STUN server",
        "ice_servers with a stun: URL",
        answer.to_string(),
    );
    let turn = servers.iter().find(|s| {
        urls(s)
            .iter()
            .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
    });
    let Some(turn) = turn else {
        if ctx
            .target
            .features
            .contains(&crate::conform::target::Feature::Turn)
        {
            return Err(fail(
                "the answer lists a TURN server with credentials (the run was given --turn)",
                "ice_servers with a turn: URL",
                answer.to_string(),
            ));
        }
        return Ok("no TURN server in the answer (required only with --turn)".into());
    };
    let username = turn["username"].as_str().unwrap_or_default();
    let (expiry, named) = username.split_once(':').unwrap_or(("", ""));
    let expiry: u64 = expiry.parse().unwrap_or(0);
    let now = unix_now();
    ensure(
        named == who && expiry > now && expiry <= now + 24 * 3600,
        "TURN username is {expiry_unix}:{user_id} of the signed-in user, expiring within a day",
        format!("<unix time in (now, now+24h]>:{who}"),
        username.to_owned(),
    )?;
    if let Some(secret) = &ctx.target.turn_secret {
        let want = signing::turn_credential(secret, named, expiry).password;
        ensure(
            turn["credential"] == want.as_str(),
            "TURN password is base64(HMAC-SHA1(secret, username))",
            want,
            turn["credential"].to_string(),
        )?;
    }
    Ok(format!("TURN credential valid for {} s", expiry - now))
}

async fn place(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({})).await?;
    let (caller, _) = user(&ctx, 0)?;
    Ok(Some(check_ice_servers(&ctx, &placed, &caller)?))
}

async fn ice_servers_for_callee(ctx: Ctx) -> Step<Option<String>> {
    let (callee, token) = user(&ctx, 1)?;
    let url = format!("{}/ice-servers", base(&ctx)?);
    let anonymous = response(
        &ctx,
        "GET /ice-servers",
        crate::net::http_client().get(&url),
    )
    .await?;
    ensure(
        anonymous.0 == 401 || anonymous.0 == 403,
        "GET /ice-servers without a bearer token is refused",
        "401 or 403",
        format!("{} {}", anonymous.0, anonymous.1),
    )?;
    let got = response(
        &ctx,
        "GET /ice-servers",
        crate::net::http_client().get(&url).bearer_auth(token),
    )
    .await?;
    ensure(
        got.0 == 200,
        "GET /ice-servers answers a signed-in user",
        "200 {ice_servers}",
        format!("{} {}", got.0, got.1),
    )?;
    Ok(Some(check_ice_servers(&ctx, &got.1, &callee)?))
}

async fn open_inbox(ctx: &Ctx, i: usize) -> Step<Conn> {
    let (name, token) = user(ctx, i)?;
    let mut c = Conn::connect(ctx, &format!("{name}-inbox")).await?;
    let inbox = format!("private-call-inbox.{name}");
    let got = auth(ctx, Some(&token), &c.socket_id, &inbox, false).await?;
    ensure(
        got.0 == 200,
        "the inbox is signed",
        "200",
        format!("{} {}", got.0, got.1),
    )?;
    subscribe_with(&mut c, &inbox, &got.1).await?;
    Ok(c)
}

async fn invitation(ctx: Ctx) -> Step<Option<String>> {
    let mut inbox = open_inbox(&ctx, 1).await?;
    let placed = place_call(&ctx, json!({})).await?;
    let channel = placed["channel"].as_str().unwrap_or_default().to_owned();
    let f = inbox
        .wait_for("call.started in the callee's inbox", PROMPT, |f| {
            f["event"] == "call.started"
                && crate::conform::wire::decode_data(&f["data"])["channel"] == channel.as_str()
        })
        .await?;
    let data = crate::conform::wire::decode_data(&f["data"]);
    ensure(
        data.get("sealed").is_none() && data["party_id"] == "server",
        "the invitation is a clear server event",
        r#"party_id "server", no sealed member"#,
        data.to_string(),
    )?;
    Ok(None)
}

async fn ring_timeout(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({"ring_timeout_ms": 5000})).await?;
    let channel = placed["channel"].as_str().unwrap_or_default().to_owned();
    let call_id = placed["call_id"].as_str().unwrap_or_default().to_owned();
    let (callee, token) = user(&ctx, 1)?;
    let mut c = Conn::connect(&ctx, &callee).await?;
    let got = auth(&ctx, Some(&token), &c.socket_id, &channel, false).await?;
    subscribe_with(&mut c, &channel, &got.1).await?;
    let f = c
        .wait_for(
            "call.ended after the 5 s ring timeout",
            Duration::from_secs(15),
            |f| f["event"] == "call.ended",
        )
        .await?;
    let data = crate::conform::wire::decode_data(&f["data"]);
    ensure(
        data["reason"] == "no_answer",
        "the ring timeout ends the call with no_answer",
        "reason no_answer",
        data.to_string(),
    )?;
    let (status, missed) = get(&ctx, &token, "/calls/missed").await?;
    ensure(
        status == 200 && missed.to_string().contains(&call_id),
        "the unanswered call is a missed call of the callee",
        format!("/calls/missed lists {call_id}"),
        format!("{status} {missed}"),
    )?;
    Ok(None)
}

fn device(ctx: &Ctx, i: usize) -> Step<Device> {
    let (name, token) = user(ctx, i)?;
    Device::new(&ctx.target.app_url(0), &base(ctx)?, &token, &name).map_err(errored)
}

async fn record(ctx: Ctx) -> Step<Option<String>> {
    let (scope, scope_id) = scope(&ctx)?;
    let (callee, _) = user(&ctx, 1)?;
    let (_, caller_token) = user(&ctx, 0)?;
    let inbox = Inbox::open(&device(&ctx, 1)?).await.map_err(errored)?;
    let request = json!({"scope": scope, "scope_id": scope_id, "callees": [callee]});
    let (mut caller, placed) = Signaling::place(&device(&ctx, 0)?, request)
        .await
        .map_err(errored)?;
    let mut bob = inbox
        .next_invitation(PROMPT)
        .await
        .map_err(|e| fail("the callee's device is invited", "an invitation", e))?;
    bob.accept().map_err(errored)?;
    let deadline = Instant::now() + PROMPT;
    loop {
        match caller.next_event(deadline).await.map_err(errored)? {
            Some(crate::call::Action::CreateOffer { .. }) => break,
            Some(_) => {}
            None => {
                return Err(fail(
                    "the caller sees the acceptance",
                    "call.accepted",
                    "nothing",
                ));
            }
        }
    }
    caller.hang_up().map_err(errored)?;
    // The record changes when the target's webhooks reach the trusted server; poll its API.
    let path = format!("/calls/{}", placed.call_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let (_, v) = get(&ctx, &caller_token, &path).await?;
        if v["call"]["end_reason"].is_string() {
            last = v;
            break;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure(
        last["call"]["accepted_by"] == callee.as_str() && last["call"]["end_reason"] == "hangup",
        "the call record says who accepted and why the call ended",
        format!(r#"accepted_by "{callee}", end_reason "hangup""#),
        last.to_string(),
    )?;
    let (_, history) = get(&ctx, &caller_token, "/calls/history").await?;
    ensure(
        history.to_string().contains(placed.call_id.as_str()),
        "the call is in the caller's history",
        placed.call_id.clone(),
        history.to_string(),
    )?;
    caller.close().await;
    bob.close().await;
    Ok(None)
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

/// A signed webhook delivery to the trusted server reporting that `sender` sent the call event
/// `event` on `channel`; `verified` is the `user_id` the realtime server adds (presence only).
async fn post_client_event(
    ctx: &Ctx,
    channel: &str,
    event: &str,
    sender: &str,
    verified: bool,
) -> Step<(u16, Value, String)> {
    let call_id = channel.rsplit('.').next().unwrap_or_default();
    let data = json!({"v": 1, "call_id": call_id, "party_id": format!("{sender}-conform-0001"),
        "user_id": sender, "seq": 1, "sent_at_ms": unix_now() * 1000});
    let mut ev = json!({"name": "client_event", "channel": channel, "event": event,
        "data": data.to_string(), "socket_id": "1.1"});
    if verified {
        ev["user_id"] = json!(sender);
    }
    let body = json!({"time_ms": unix_now() * 1000, "events": [ev]}).to_string();
    let (status, v) = post_delivery(ctx, &body).await?;
    Ok((status, v, body))
}

async fn post_delivery(ctx: &Ctx, body: &str) -> Step<(u16, Value)> {
    let secret = ctx.secret()?.clone();
    ctx.note("trusted", ">", &format!("POST /realtime/webhooks {body}"));
    let req = crate::net::http_client()
        .post(format!("{}/realtime/webhooks", base(ctx)?))
        .header("content-type", "application/json")
        .header("x-pusher-key", ctx.target.key.clone())
        .header(
            "x-pusher-signature",
            signing::sign_webhook(&secret, body.as_bytes()),
        )
        .body(body.to_owned());
    response(ctx, "webhook", req).await
}

/// Polls `GET /calls/{id}` as user 0 until `done` holds or `within` passes; the last answer.
async fn call_until(
    ctx: &Ctx,
    call_id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Step<Value> {
    let (_, token) = user(ctx, 0)?;
    let path = format!("/calls/{call_id}");
    let deadline = Instant::now() + within;
    loop {
        let (_, v) = get(ctx, &token, &path).await?;
        if done(&v) || Instant::now() >= deadline {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
