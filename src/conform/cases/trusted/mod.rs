//! The trusted server's rules: who gets a channel signed, what a call placement answers, the
//! invitation and ring-timeout paths, call records, and refusal of forged webhooks.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Case, case};
use crate::conform::wire::{Conn, Ctx, PROMPT, Problem, Step, ensure, errored, fail, unix_now};
use crate::session::{Device, Inbox, Signaling};
use crate::signing;

mod auth;
mod calls;
mod records;

/// Every trusted-server case, area by area; each area's file lists its cases beside their bodies.
pub fn cases() -> Vec<Case> {
    let mut all = auth::cases();
    all.extend(calls::cases());
    all.extend(records::cases());
    all
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

fn device(ctx: &Ctx, i: usize) -> Step<Device> {
    let (name, token) = user(ctx, i)?;
    Device::new(&ctx.target.app_url(0), &base(ctx)?, &token, &name).map_err(errored)
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
