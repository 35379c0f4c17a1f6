//! Connection, authorization, client events, presence and limits: the Pusher protocol as the
//! call signaling relies on it.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Case, case, check_error_shape, marker, private_pair};
use crate::conform::wire::{
    Conn, Ctx, Opened, PROMPT, Problem, Recv, Step, ensure, error_data, errored, fail,
};
use crate::ids::SocketId;
use crate::pusher::PusherCode;
use crate::signing;

mod authorization;
mod client_events;
mod connection;
mod limits;
mod presence;

/// Every realtime case, area by area; each area's file lists its cases beside their bodies.
pub fn cases() -> Vec<Case> {
    let mut all = connection::cases();
    all.extend(authorization::cases());
    all.extend(client_events::cases());
    all.extend(presence::cases());
    all.extend(limits::cases());
    all
}

/// How a connection the target must not keep was ended.
enum Ending {
    Closed(Option<u16>),
    RefusedAtUpgrade(u16),
}

/// Opens `url` and waits for the target to end the connection.
async fn ending(ctx: &Ctx, url: &str) -> Step<Ending> {
    match Conn::try_open_url(ctx, "a", url).await? {
        Opened::RefusedAtUpgrade { status, .. } => Ok(Ending::RefusedAtUpgrade(status)),
        Opened::Conn(mut c) => Ok(Ending::Closed(c.wait_close(PROMPT).await?)),
    }
}

/// A connection the protocol says to close with `code` ([TRN-005]). What a client experiences
/// decides the levels: pusher-js gives up on 4000-4099, backs off on 4100-4199 and retries at
/// once on 4200-4299, so a close of another reconnect class fails; the exact code within the
/// class is a SHOULD. A refusal at the HTTP upgrade is still a refusal: it passes (as a broken
/// SHOULD) unless `upgrade_refusal_hides_why`, where the client would then retry forever without
/// the app learning why.
async fn expect_refusal(
    ctx: &Ctx,
    query: &str,
    code: u16,
    upgrade_refusal_hides_why: bool,
) -> Step<Option<String>> {
    let url = format!("{}{query}", ctx.target.app_url(0));
    expect_refused(ctx, &url, code, upgrade_refusal_hides_why).await
}

async fn expect_refused(
    ctx: &Ctx,
    url: &str,
    code: u16,
    upgrade_refusal_hides_why: bool,
) -> Step<Option<String>> {
    let want = PusherCode(code);
    let ended = match ending(ctx, url).await {
        // Accepted and kept open: only a MUST where a real client would be misled (the unknown
        // key); the protocol parameter cases are SHOULDs, as no Pusher client omits or
        // misstates it.
        Err(Problem::Fail(f)) if !upgrade_refusal_hides_why && f.actual.contains("still open") => {
            ctx.should(
                false,
                format!("the target refuses the connection (close code {code})"),
                format!("close code {code}"),
                "the connection was accepted and kept open",
            );
            return Ok(Some("accepted and kept open".into()));
        }
        other => other?,
    };
    match ended {
        Ending::RefusedAtUpgrade(status) => {
            ensure(
                !upgrade_refusal_hides_why,
                format!(
                    "the target refuses with HTTP {status} at the upgrade instead of closing with {code}: a Pusher client sees a network failure and keeps retrying, so the app never learns why"
                ),
                format!("close code {code} (reconnect class {:?})", want.reconnect()),
                format!("HTTP {status} at the WebSocket upgrade"),
            )?;
            ctx.should(
                false,
                format!(
                    "refused at the HTTP upgrade (HTTP {status}) instead of closing with {code}"
                ),
                format!("close code {code}"),
                format!("HTTP {status} at the WebSocket upgrade"),
            );
            Ok(Some(format!("refused at the upgrade with HTTP {status}")))
        }
        Ending::Closed(got) => {
            let got_class = got.map(|c| PusherCode(c).reconnect());
            ensure(
                got_class == Some(want.reconnect()),
                format!(
                    "the target closes with a code of {code}'s reconnect class ({:?}): clients decide from it whether to retry",
                    want.reconnect()
                ),
                format!("close code {code}"),
                match got {
                    Some(c) => format!("close code {c} (class {got_class:?})"),
                    None => "the connection ended without a close frame: a Pusher client sees a network failure and retries forever".to_owned(),
                },
            )?;
            ctx.should(
                got == Some(code),
                format!("the target closes with {code}"),
                format!("close code {code}"),
                format!("close code {got:?}"),
            );
            Ok(None)
        }
    }
}

/// Sends `bad` and checks the connection survives it (the MUST of [TRN-013]: the ping fence
/// after it is answered); a `pusher:error` answer is its SHOULD. Returns that error, if any.
async fn survives(ctx: &Ctx, bad: &str) -> Step<Option<Value>> {
    let mut c = Conn::connect(ctx, "a").await?;
    c.send_text(bad).await?;
    let before = c.fence().await.map_err(|p| match p {
        Problem::Fail(f) => fail(
            "the connection survives bad input (a client's bug must not cost it its connection)",
            "pusher:pong to the ping after the bad input",
            f.actual,
        ),
        other => other,
    })?;
    let error = before
        .iter()
        .find(|f| f["event"] == "pusher:error")
        .cloned();
    ctx.should(
        error.is_some(),
        "the target answers bad input with pusher:error",
        "pusher:error before the pong",
        format!("{before:?}"),
    );
    if let Some(e) = &error {
        check_error_shape(e)?;
    }
    c.close().await;
    Ok(error)
}

/// Subscribes with `data` and expects a refusal; returns the refusing frame. The refusal MUST be
/// `pusher:subscription_error` on that channel ([TRN-024]): pusher-js reports a failed
/// subscription to the app only from that event, so a `pusher:error` instead leaves the app
/// waiting for a subscription that never comes.
async fn refused_subscription(
    _ctx: &Ctx,
    c: &mut Conn,
    channel: &str,
    data: Value,
    why: &str,
) -> Step<Value> {
    c.send_json(&json!({"event": "pusher:subscribe", "data": data}))
        .await?;
    subscription_refusal(c, channel, why).await
}

/// Waits for the refusal of a subscription to `channel` (see [`refused_subscription`]).
async fn subscription_refusal(c: &mut Conn, channel: &str, why: &str) -> Step<Value> {
    let f = c.expect_subscription_refused(channel, why).await?;
    if f["event"] == "pusher:error" {
        let code = crate::conform::wire::decode_data(&f["data"])["code"].clone();
        return Err(fail(
            format!(
                "the target refuses {why} with pusher:error {code} instead of pusher:subscription_error: pusher-js then never tells the app the subscription failed [TRN-024]"
            ),
            format!("pusher:subscription_error on {channel}"),
            f.to_string(),
        ));
    }
    Ok(f)
}

/// The refusal's data names its kind and HTTP-like status ([TRN-024]'s SHOULD): apps read them
/// to tell an expired token from a full channel.
fn check_subscription_error(ctx: &Ctx, f: &Value, kind: &str, status: u64) {
    let data = crate::conform::wire::decode_data(&f["data"]);
    ctx.should(
        data["type"] == kind && data["error"].as_str().is_some_and(|e| !e.is_empty()),
        format!("the subscription_error names its type {kind} and the problem"),
        format!(r#"{{"type":"{kind}","error":"...","status":{status}}}"#),
        f.to_string(),
    );
    ctx.should(
        data["status"] == status,
        format!("the subscription_error carries status {status}"),
        format!("\"status\": {status}"),
        f.to_string(),
    );
}

/// Waits on `to` for the client event `event` on `channel`.
async fn receive(to: &mut Conn, channel: &str, event: &str) -> Step<Value> {
    to.wait_for(&format!("{event} on {channel}"), PROMPT, |f| {
        f["event"] == event && f["channel"] == channel
    })
    .await
}

/// Proves `c` receives no `event` on `channel`: the ping fence after the action.
async fn receives_nothing(c: &mut Conn, channel: &str, event: &str, why: &str) -> Step<()> {
    let before = c.fence().await?;
    let stray: Vec<&Value> = before
        .iter()
        .filter(|f| f["event"] == event && f["channel"] == channel)
        .collect();
    ensure(
        stray.is_empty(),
        why.to_owned(),
        format!("no {event} on {channel}"),
        format!("{stray:?}"),
    )
}

const TRICKY_DATA: &str = r#"{"z":1,"a":{"deep":[1,2,{"x":null}]},"uni":"caf\u00e9 \ud83d\udcde","big":9007199254740991,"neg":-0.5e-3,"esc":"line\nbreak \"quoted\" \/slash"}"#;

async fn send_raw_event(a: &mut Conn, channel: &str, data_text: &str) -> Step<()> {
    a.send_text(&format!(
        r#"{{"event":"client-conform","channel":"{channel}","data":{data_text}}}"#
    ))
    .await
}

/// The raw `data` text of a frame's text: the bytes after `"data":` up to the matching end.
fn raw_data(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct F<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    serde_json::from_str::<F>(text)
        .ok()
        .map(|f| f.data.get().to_owned())
}

async fn presence_pair(ctx: &Ctx, tag: &str) -> Step<(Conn, Conn, String)> {
    let channel = ctx.unique("presence-", tag);
    let mut a = Conn::connect(ctx, "alice").await?;
    let mut b = Conn::connect(ctx, "bob").await?;
    a.subscribe(&channel, Some(("conform-alice", json!({}))))
        .await?;
    b.subscribe(&channel, Some(("conform-bob", json!({}))))
        .await?;
    Ok((a, b, channel))
}
