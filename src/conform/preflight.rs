//! Before any case runs against a deployment: one look at each setting the run was given, so
//! that a wrong key, secret, address, token or webhook URL stops the run with one message naming
//! the setting to fix, instead of failing dozens of cases whose titles blame the server.
//!
//! Checked in this order, each only if given: every target node answers a WebSocket connection
//! with `pusher:connection_established` for the key; the secret signs a private-channel
//! subscription the server accepts; the HTTP API takes a signed request; the auth endpoint
//! signs each user's inbox with their token; a subscription makes a webhook reach the listener.
//! The run does not check what the cases check (codes, formats): a server that answers in an
//! unexpected way here is left to the cases, which say more.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::conform::target::Target;
use crate::conform::wire::{Conn, Ctx, Problem, Recv, WebhookLog, decode_data, urlencode};

/// How long a webhook may take to reach the listener (Pusher batches them for a few seconds).
const WEBHOOK_WAIT: Duration = Duration::from_secs(8);

/// One message for the person running the kit: what is wrong and which setting fixes it.
fn stop(message: impl Into<String>) -> String {
    message.into()
}

fn problem_text(p: Problem) -> String {
    match p {
        Problem::Fail(f) => format!("{} (got {})", f.message, f.actual),
        Problem::Unsupported(r) | Problem::Errored(r) => r,
    }
}

/// Runs the checks; `Err` is the message that should stop the run.
pub async fn check(
    target: &Arc<Target>,
    ctx: &Ctx,
    webhooks: Option<&Arc<WebhookLog>>,
) -> Result<(), crate::error::ConfigError> {
    for node in 0..target.nodes.len() {
        check_node(target, ctx, node).await?;
    }
    if target.secret.is_some() {
        check_secret(target, ctx).await?;
    }
    if target.http_api.is_some() && target.secret.is_some() {
        check_http_api(target, ctx).await?;
    }
    if target.auth_endpoint.is_some() {
        check_auth_endpoint(target, ctx).await?;
    }
    if let (Some(log), Some(addr)) = (webhooks, target.webhook_listen)
        && target.secret.is_some()
    {
        check_webhooks(target, ctx, log, addr).await?;
    }
    Ok(())
}

async fn check_node(target: &Target, ctx: &Ctx, node: usize) -> Result<(), String> {
    let url = format!("{}?protocol=7", target.app_url(node));
    let mut conn = Conn::open_url(ctx, "target", &url).await.map_err(|p| {
        stop(format!(
            "{}. Is the server running, and is --target {} right?",
            problem_text(p).trim_start_matches("target: "),
            target.nodes[node]
        ))
    })?;
    let deadline = tokio::time::Instant::now() + crate::conform::wire::PROMPT;
    let first = conn.recv(deadline).await.map_err(problem_text);
    conn.close().await;
    let key_unknown = || {
        stop(format!(
            "the server at {} does not know the app key {:?}: give the key it serves with --key",
            target.nodes[node], target.key
        ))
    };
    match first {
        Ok(Some(Recv::Frame { value, text })) => {
            if value["event"] == "pusher:connection_established" {
                return Ok(());
            }
            if decode_data(&value["data"])["code"] == 4001 {
                return Err(key_unknown());
            }
            Err(stop(format!(
                "{url} did not establish a Pusher connection: it sent {text}. Check --target and --key"
            )))
        }
        Ok(Some(Recv::Closed(Some(4001)))) => Err(key_unknown()),
        Ok(Some(Recv::Closed(code))) => Err(stop(format!(
            "{url} closed the connection (code {code:?}) before establishing it. Check --target and --key"
        ))),
        Ok(None) => Err(stop(format!(
            "{url} accepted the WebSocket but sent nothing within {:?}: is it a Pusher protocol 7 server?",
            crate::conform::wire::PROMPT
        ))),
        Err(e) => Err(stop(format!("{url}: {e}"))),
    }
}

async fn check_secret(target: &Target, ctx: &Ctx) -> Result<(), String> {
    let mut conn = Conn::connect(ctx, "preflight")
        .await
        .map_err(|p| stop(problem_text(p)))?;
    let channel = ctx.unique("private-", "preflight");
    let sent = conn.send_subscribe(&channel, None).await;
    let answer = match sent {
        Ok(()) => conn
            .wait_for(
                "the subscription's answer",
                crate::conform::wire::PROMPT,
                |f| f["channel"] == channel.as_str() || f["event"] == "pusher:error",
            )
            .await
            .map_err(problem_text),
        Err(p) => Err(problem_text(p)),
    };
    conn.close().await;
    match answer {
        Ok(f) if f["event"] == "pusher_internal:subscription_succeeded" => Ok(()),
        Ok(f) => {
            let data = decode_data(&f["data"]);
            let why = data["error"]
                .as_str()
                .or(data["message"].as_str())
                .map_or_else(|| f.to_string(), str::to_owned);
            Err(stop(format!(
                "the server refused a private subscription signed with the app secret you gave \
                 ({why}): the secret does not match app {:?}'s. Set DOMVIA_CONFORM_SECRET (or \
                 --secret) to the app's secret",
                target.app_id
            )))
        }
        Err(e) => Err(stop(format!(
            "no answer to a private subscription signed with the app secret: {e}"
        ))),
    }
}

async fn check_http_api(target: &Target, ctx: &Ctx) -> Result<(), String> {
    let base = target.http_api.clone().unwrap_or_default();
    let (status, body) = ctx
        .http_api("GET", "/channels", "", |_| {})
        .await
        .map_err(|p| {
            stop(format!(
                "cannot reach the HTTP API at {base}: {}. Check --http-api",
                problem_text(p)
            ))
        })?;
    match status {
        200 => Ok(()),
        401 | 403 => Err(stop(format!(
            "the HTTP API at {base} refused a request signed with the key and secret you gave \
             ({status} {body}): check --key and DOMVIA_CONFORM_SECRET (or --secret)"
        ))),
        404 => Err(stop(format!(
            "the HTTP API at {base} has no app {:?} ({status} {body}): check --app-id and --http-api",
            target.app_id
        ))),
        _ => Err(stop(format!(
            "the HTTP API at {base} answered GET /apps/{}/channels with {status} {body}: check --http-api",
            target.app_id
        ))),
    }
}

async fn check_auth_endpoint(target: &Target, ctx: &Ctx) -> Result<(), String> {
    let url = target.auth_endpoint.clone().unwrap_or_default();
    let conn = Conn::connect(ctx, "preflight")
        .await
        .map_err(|p| stop(problem_text(p)))?;
    let socket_id = conn.socket_id.clone();
    conn.close().await;
    for user in target.users.iter().take(2) {
        let inbox = format!("private-call-inbox.{}", user.name);
        let resp = crate::net::http_client()
            .post(&url)
            .bearer_auth(&user.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "socket_id={}&channel_name={}",
                urlencode(&socket_id),
                urlencode(&inbox)
            ))
            .timeout(crate::conform::wire::PROMPT)
            .send()
            .await
            .map_err(|e| {
                stop(format!(
                    "cannot reach the auth endpoint {url}: {e}. Check --auth-endpoint"
                ))
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let granted = status == 200
            && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["auth"].is_string());
        if !granted {
            return Err(stop(format!(
                "the auth endpoint {url} did not sign user {:?}'s own inbox {inbox} with the token \
                 given ({status} {body}): check --user {}=TOKEN and --auth-endpoint",
                user.name, user.name
            )));
        }
    }
    Ok(())
}

async fn check_webhooks(
    target: &Target,
    ctx: &Ctx,
    log: &Arc<WebhookLog>,
    addr: std::net::SocketAddr,
) -> Result<(), String> {
    let mut conn = Conn::connect(ctx, "preflight")
        .await
        .map_err(|p| stop(problem_text(p)))?;
    let channel = ctx.unique("private-", "preflight-webhook");
    let subscribed = conn.subscribe(&channel, None).await;
    let arrived = match subscribed {
        Ok(_) => log
            .wait_for(ctx, "any webhook", WEBHOOK_WAIT, |_| true)
            .await
            .is_ok(),
        Err(_) => false,
    };
    conn.close().await;
    if arrived {
        return Ok(());
    }
    Err(stop(format!(
        "no webhook reached --webhook-listen {addr} within {WEBHOOK_WAIT:?} of a subscription to \
         {channel}: point app {:?}'s webhook URL at http://{addr}/ (the reference server: \
         `serve --webhook-url http://{addr}/`, and pass --webhook-forward with your trusted \
         server's webhook URL so it keeps receiving them), or leave out --webhook-listen to skip \
         the webhook cases",
        target.app_id
    )))
}
