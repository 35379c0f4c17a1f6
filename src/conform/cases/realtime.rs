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

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "connection.established",
            Connection,
            Must,
            ["TRN-001", "TRN-002"],
            [],
            "A new connection gets pusher:connection_established with a socket_id and activity_timeout",
            established
        ),
        case!(
            "connection.limits-announced",
            Connection,
            Info,
            ["TRN-003"],
            [],
            "Reports the limits extension of connection_established and checks its values are sane",
            limits_announced
        ),
        case!(
            "connection.unknown-app-key",
            Connection,
            Must,
            ["TRN-005", "TRN-014"],
            [],
            "A connection to an unknown app key is closed with a 4000-4099 code so the client stops and reports it (4001 SHOULD)",
            unknown_key
        ),
        case!(
            "connection.missing-protocol",
            Connection,
            Should,
            ["TRN-014"],
            [],
            "A connection without the protocol parameter is refused (4008 SHOULD)",
            missing_protocol
        ),
        case!(
            "connection.malformed-protocol",
            Connection,
            Should,
            ["TRN-014"],
            [],
            "A connection with a non-numeric protocol parameter is refused (4006 SHOULD)",
            malformed_protocol
        ),
        case!(
            "connection.unsupported-protocol",
            Connection,
            Should,
            ["TRN-014"],
            [],
            "A connection asking for protocol 99 is refused (4007 SHOULD)",
            unsupported_protocol
        ),
        case!(
            "connection.ping-pong",
            Connection,
            Must,
            ["TRN-006"],
            [],
            "pusher:ping is answered with pusher:pong",
            ping_pong
        ),
        case!(
            "connection.error-shape",
            Connection,
            Must,
            ["TRN-011", "SEC-004"],
            [],
            "A frame that is not JSON leaves the connection open; a pusher:error for it has a code (or null) and a message",
            error_shape
        ),
        case!(
            "connection.error-type",
            Connection,
            Should,
            ["TRN-012"],
            [],
            "pusher:error carries a stable type name",
            error_type
        ),
        case!(
            "connection.survives-malformed-frame",
            Connection,
            Must,
            ["TRN-013"],
            [],
            "A malformed frame does not close the connection (a pusher:error for it SHOULD come)",
            survives_malformed
        ),
        case!(
            "connection.survives-unknown-event",
            Connection,
            Must,
            ["TRN-013"],
            [],
            "An unknown pusher: event leaves the connection open (a pusher:error for it SHOULD come)",
            survives_unknown_event
        ),
        case!(
            "connection.survives-refused-client-event",
            Connection,
            Must,
            ["TRN-013", "TRN-030"],
            [AppSecret],
            "A refused client event (not subscribed) leaves the connection open (a pusher:error for it SHOULD come)",
            survives_refused_client_event
        ),
        case!(
            "authorization.private-signed",
            Authorization,
            Must,
            ["TRN-020", "TRN-021", "SIGN-001"],
            [AppSecret],
            "A private subscription signed {key}:HMAC(secret, socket_id:channel) succeeds",
            private_signed
        ),
        case!(
            "authorization.private-no-auth",
            Authorization,
            Must,
            ["TRN-020", "TRN-024"],
            [],
            "A private subscription without auth is refused with pusher:subscription_error (AuthError 401 SHOULD)",
            private_no_auth
        ),
        case!(
            "authorization.private-bad-signature",
            Authorization,
            Must,
            ["TRN-020", "SIGN-003", "SEC-001"],
            [AppSecret],
            "A private subscription with a wrong signature is refused",
            private_bad_signature
        ),
        case!(
            "authorization.other-socket",
            Authorization,
            Must,
            ["SIGN-003"],
            [AppSecret],
            "A signature made for another connected socket is refused",
            other_socket
        ),
        case!(
            "authorization.other-channel",
            Authorization,
            Must,
            ["SIGN-003"],
            [AppSecret],
            "A signature made for another channel is refused",
            other_channel
        ),
        case!(
            "authorization.wrong-key",
            Authorization,
            Must,
            ["SIGN-001", "SIGN-003"],
            [AppSecret],
            "An auth whose key part is not the app key is refused",
            wrong_key
        ),
        case!(
            "authorization.presence-signed",
            Authorization,
            Must,
            ["SIGN-002", "TRN-021"],
            [AppSecret, Presence],
            "A presence subscription signs socket:channel:channel_data and lists the member in ids/hash/count",
            presence_signed
        ),
        case!(
            "authorization.presence-tampered-data",
            Authorization,
            Must,
            ["SIGN-002", "SIGN-003"],
            [AppSecret, Presence],
            "Changing channel_data after signing makes the presence subscription fail",
            presence_tampered
        ),
        case!(
            "authorization.presence-no-user-id",
            Authorization,
            Must,
            ["SIGN-004"],
            [AppSecret, Presence],
            "channel_data without user_id is refused even when correctly signed",
            presence_no_user_id
        ),
        case!(
            "authorization.presence-oversized-data",
            Authorization,
            Must,
            ["TRN-026"],
            [AppSecret, Presence],
            "A user_id over 128 bytes is refused with InvalidChannelData before the member is announced",
            presence_oversized
        ),
        case!(
            "authorization.user-signin",
            Authorization,
            Must,
            ["SIGN-006"],
            [AppSecret, UserSignin],
            "pusher:signin signed over socket::user::user_data succeeds; a wrong signature is refused",
            user_signin
        ),
        case!(
            "client_events.relayed",
            ClientEvents,
            Must,
            ["TRN-030", "EVT-001"],
            [AppSecret],
            "A client- event on a private channel reaches the other subscriber",
            relayed
        ),
        case!(
            "client_events.no-echo",
            ClientEvents,
            Must,
            ["TRN-031"],
            [AppSecret],
            "A client event is not delivered back to its sender",
            no_echo
        ),
        case!(
            "client_events.public-channel-refused",
            ClientEvents,
            Must,
            ["TRN-030"],
            [AppSecret],
            "A client event on a public channel is refused and not relayed",
            public_refused
        ),
        case!(
            "client_events.not-subscribed-refused",
            ClientEvents,
            Must,
            ["TRN-030"],
            [AppSecret],
            "A client event on a channel the sender is not subscribed to is not relayed",
            not_subscribed_refused
        ),
        case!(
            "client_events.prefix-required",
            ClientEvents,
            Must,
            ["TRN-030", "EVT-001"],
            [AppSecret],
            "An event named call.offer (without client-) sent by a client is not relayed",
            prefix_required
        ),
        case!(
            "client_events.unsubscribe-stops-delivery",
            ClientEvents,
            Must,
            ["TRN-023"],
            [AppSecret],
            "After pusher:unsubscribe no more events of the channel arrive",
            unsubscribe_stops
        ),
        case!(
            "client_events.meaning-preserved",
            ClientEvents,
            Must,
            ["TRN-033"],
            [AppSecret],
            "Relayed data has the same JSON value (unicode escapes, big integers, nesting)",
            meaning_preserved
        ),
        case!(
            "client_events.byte-exact",
            ClientEvents,
            Should,
            ["TRN-033"],
            [AppSecret],
            "Relayed data keeps its exact bytes (whitespace, key order, escapes)",
            byte_exact
        ),
        case!(
            "client_events.string-data-relayed",
            ClientEvents,
            Must,
            ["TRN-033", "TRN-034"],
            [AppSecret],
            "Data sent as a string holding JSON is relayed with the same meaning",
            string_data
        ),
        case!(
            "presence.user-id-added",
            Presence,
            Must,
            ["TRN-032", "CHAN-011"],
            [AppSecret, Presence],
            "Client events on presence channels carry the sender's verified user_id",
            user_id_added
        ),
        case!(
            "presence.user-id-not-spoofable",
            Presence,
            Must,
            ["TRN-032", "CHAN-011", "EVT-014"],
            [AppSecret, Presence],
            "A user_id the sender puts in its frame is replaced by the verified one",
            user_id_not_spoofable
        ),
        case!(
            "presence.member-added-once-per-user",
            Presence,
            Must,
            ["TRN-022"],
            [AppSecret, Presence],
            "A second connection of a present user causes no member_added",
            member_added_once
        ),
        case!(
            "presence.member-removed-after-last",
            Presence,
            Must,
            ["TRN-022"],
            [AppSecret, Presence],
            "member_removed comes when the user's last connection leaves, not before",
            member_removed_last
        ),
        case!(
            "presence.member-limit",
            Presence,
            Must,
            ["TRN-025"],
            [AppSecret, Presence],
            "The presence channel refuses a user beyond its member limit and still takes present users' other connections",
            member_limit
        ),
        case!(
            "limits.client-event-rate",
            Limits,
            Must,
            ["LIM-001", "LIM-002", "SEC-003"],
            [AppSecret, RateLimit],
            "Client events over the burst are answered with 4301, not relayed, and the connection stays open",
            client_event_rate
        ),
        case!(
            "limits.rate-before-parse",
            Limits,
            Must,
            ["LIM-003", "SEC-003"],
            [AppSecret, RateLimit],
            "Over the limit, an event with unparseable data is refused for the rate (4301), not for its data",
            rate_before_parse
        ),
        case!(
            "limits.event-data-size",
            Limits,
            Must,
            ["LIM-010", "LIM-014"],
            [AppSecret],
            "A client event whose data is over the limit is refused and not relayed; one at the limit is relayed",
            event_data_size
        ),
        case!(
            "limits.frame-size",
            Limits,
            Should,
            ["LIM-011"],
            [],
            "A frame over 32 KiB gets pusher:error and the connection stays open",
            frame_size
        ),
        case!(
            "limits.json-depth",
            Limits,
            Should,
            ["LIM-011"],
            [],
            "JSON nested deeper than 32 levels gets pusher:error and the connection stays open",
            json_depth
        ),
        case!(
            "limits.event-name-length",
            Limits,
            Must,
            ["LIM-012"],
            [AppSecret],
            "A client event name over 200 bytes is not relayed",
            event_name_length
        ),
        case!(
            "limits.channel-name-length",
            Limits,
            Must,
            ["LIM-012", "TRN-024"],
            [AppSecret],
            "A subscription to a channel name over 164 bytes is refused",
            channel_name_length
        ),
        case!(
            "limits.slow-consumer",
            Limits,
            Must,
            ["LIM-013", "SEC-004"],
            [AppSecret, HttpApi],
            "A connection that stops reading is disconnected while others keep working",
            slow_consumer
        ),
    ]
}

async fn established(ctx: Ctx) -> Step<Option<String>> {
    let c = Conn::connect(&ctx, "a").await?;
    ensure(
        c.established["activity_timeout"]
            .as_u64()
            .is_some_and(|t| t > 0),
        "connection_established carries activity_timeout in seconds",
        "activity_timeout: a positive integer",
        c.established.to_string(),
    )?;
    c.close().await;
    Ok(None)
}

async fn limits_announced(ctx: Ctx) -> Step<Option<String>> {
    let c = Conn::connect(&ctx, "a").await?;
    let limits = c.established["limits"].clone();
    c.close().await;
    if limits.is_null() {
        return Ok(Some(
            "no limits extension: clients assume the defaults".into(),
        ));
    }
    let rate = limits["client_events_per_second"].as_u64();
    let bytes = limits["max_event_bytes"].as_u64();
    ensure(
        rate.is_some_and(|r| r > 0) && bytes.is_some_and(|b| b > 0),
        "the limits extension holds positive integers",
        "{client_events_per_second: N>0, max_event_bytes: M>0}",
        limits.to_string(),
    )?;
    Ok(Some(format!("announced {limits}")))
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

async fn unknown_key(ctx: Ctx) -> Step<Option<String>> {
    let base = ctx.target.nodes[0].trim_end_matches('/');
    let url = format!("{base}/app/conform-no-such-key?protocol=7&client=conform&version=1");
    // A wrong key is the misconfiguration every app meets once: pusher-js reports it to the app
    // only when a close says "do not reconnect".
    expect_refused(&ctx, &url, 4001, true).await
}

async fn missing_protocol(ctx: Ctx) -> Step<Option<String>> {
    // No Pusher client omits the protocol; refusing it any way is safe.
    expect_refusal(&ctx, "?client=conform&version=1", 4008, false).await
}

async fn malformed_protocol(ctx: Ctx) -> Step<Option<String>> {
    expect_refusal(
        &ctx,
        "?protocol=seven&client=conform&version=1",
        4006,
        false,
    )
    .await
}

async fn unsupported_protocol(ctx: Ctx) -> Step<Option<String>> {
    expect_refusal(&ctx, "?protocol=99&client=conform&version=1", 4007, false).await
}

async fn ping_pong(ctx: Ctx) -> Step<Option<String>> {
    let mut c = Conn::connect(&ctx, "a").await?;
    c.fence().await?;
    c.close().await;
    Ok(None)
}

async fn error_shape(ctx: Ctx) -> Step<Option<String>> {
    let Some(f) = survives(&ctx, "{this is not json").await? else {
        return Ok(Some("no pusher:error to check the shape of".into()));
    };
    check_error_shape(&f)?;
    Ok(None)
}

async fn error_type(ctx: Ctx) -> Step<Option<String>> {
    let Some(f) = survives(&ctx, "[1, 2, 3]").await? else {
        return Ok(Some("no pusher:error to check for a type".into()));
    };
    let data = check_error_shape(&f)?;
    ensure(
        data["type"].as_str().is_some_and(|t| !t.is_empty()),
        "pusher:error data carries a stable `type`",
        r#""type": "frame.not_object" (or another stable name)"#,
        data.to_string(),
    )?;
    Ok(None)
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

async fn survives_malformed(ctx: Ctx) -> Step<Option<String>> {
    survives(&ctx, "{\"event\": \"pusher:subscribe\", \"data\": ").await?;
    Ok(None)
}

async fn survives_unknown_event(ctx: Ctx) -> Step<Option<String>> {
    survives(
        &ctx,
        r#"{"event":"pusher:conform-no-such-event","data":{}}"#,
    )
    .await?;
    Ok(None)
}

async fn survives_refused_client_event(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "refused");
    let frame = json!({"event": "client-conform", "channel": channel, "data": {}}).to_string();
    survives(&ctx, &frame).await?;
    Ok(None)
}

async fn private_signed(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "signed");
    let mut c = Conn::connect(&ctx, "a").await?;
    c.subscribe(&channel, None).await?;
    c.close().await;
    Ok(None)
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
        let code = super::super::wire::decode_data(&f["data"])["code"].clone();
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
    let data = super::super::wire::decode_data(&f["data"]);
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

async fn private_no_auth(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "noauth");
    let mut c = Conn::connect(&ctx, "a").await?;
    let f = refused_subscription(
        &ctx,
        &mut c,
        &channel,
        json!({"channel": channel}),
        "a subscription without auth",
    )
    .await?;
    check_subscription_error(&ctx, &f, "AuthError", 401);
    c.close().await;
    Ok(None)
}

async fn private_bad_signature(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "badsig");
    let mut c = Conn::connect(&ctx, "a").await?;
    let auth = format!("{}:{}", ctx.target.key, "0".repeat(64));
    refused_subscription(
        &ctx,
        &mut c,
        &channel,
        json!({"channel": channel, "auth": auth}),
        "a wrong signature",
    )
    .await?;
    // The same socket can still subscribe correctly afterwards.
    c.subscribe(&channel, None).await?;
    c.close().await;
    Ok(None)
}

async fn other_socket(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "othersock");
    let mut a = Conn::connect(&ctx, "a").await?;
    let mut b = Conn::connect(&ctx, "b").await?;
    // b presents the signature made for a's socket.
    let frame = a.subscribe_frame(&channel, None)?;
    refused_subscription(
        &ctx,
        &mut b,
        &channel,
        frame["data"].clone(),
        "a signature made for another socket",
    )
    .await?;
    a.subscribe(&channel, None).await?;
    a.close().await;
    b.close().await;
    Ok(None)
}

async fn other_channel(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "otherchan");
    let mut c = Conn::connect(&ctx, "a").await?;
    let mut frame = c.subscribe_frame(&format!("{channel}-other"), None)?;
    frame["data"]["channel"] = json!(channel);
    refused_subscription(
        &ctx,
        &mut c,
        &channel,
        frame["data"].clone(),
        "a signature made for another channel",
    )
    .await?;
    c.close().await;
    Ok(None)
}

async fn wrong_key(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "wrongkey");
    let mut c = Conn::connect(&ctx, "a").await?;
    let mut frame = c.subscribe_frame(&channel, None)?;
    let auth = frame["data"]["auth"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sig = auth.rsplit(':').next().unwrap_or_default();
    frame["data"]["auth"] = json!(format!("conform-wrong-key:{sig}"));
    refused_subscription(
        &ctx,
        &mut c,
        &channel,
        frame["data"].clone(),
        "an auth with another key",
    )
    .await?;
    c.close().await;
    Ok(None)
}

async fn presence_signed(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("presence-", "signed");
    let mut a = Conn::connect(&ctx, "a").await?;
    a.subscribe(&channel, Some(("conform-alice", json!({"name": "Alice"}))))
        .await?;
    let mut b = Conn::connect(&ctx, "b").await?;
    let data = b
        .subscribe(&channel, Some(("conform-bob", json!({}))))
        .await?;
    let p = &data["presence"];
    let mut ids: Vec<&str> = p["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ids.sort();
    ensure(
        ids == ["conform-alice", "conform-bob"]
            && p["count"] == 2
            && p["hash"]["conform-alice"] == json!({"name": "Alice"}),
        "subscription_succeeded on presence lists every member, the new one included",
        r#"{"presence":{"ids":["conform-alice","conform-bob"],"hash":{"conform-alice":{"name":"Alice"},...},"count":2}}"#,
        data.to_string(),
    )?;
    a.close().await;
    b.close().await;
    Ok(None)
}

async fn presence_tampered(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("presence-", "tampered");
    let mut c = Conn::connect(&ctx, "a").await?;
    let mut frame = c.subscribe_frame(&channel, Some(("conform-alice", json!({}))))?;
    frame["data"]["channel_data"] =
        json!(json!({"user_id": "conform-mallory", "user_info": {}}).to_string());
    refused_subscription(
        &ctx,
        &mut c,
        &channel,
        frame["data"].clone(),
        "channel_data changed after signing",
    )
    .await?;
    c.close().await;
    Ok(None)
}

async fn presence_no_user_id(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("presence-", "nouser");
    let mut c = Conn::connect(&ctx, "a").await?;
    let channel_data = json!({"user_info": {"name": "nobody"}}).to_string();
    let socket = SocketId::parse(&c.socket_id).map_err(|e| errored(e.to_string()))?;
    let auth = signing::sign_channel(
        &ctx.target.key,
        ctx.secret()?,
        &socket,
        &channel,
        Some(&channel_data),
    );
    let data = json!({"channel": channel, "auth": auth, "channel_data": channel_data});
    refused_subscription(
        &ctx,
        &mut c,
        &channel,
        data,
        "presence channel_data without user_id",
    )
    .await?;
    c.close().await;
    Ok(None)
}

async fn presence_oversized(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("presence-", "oversized");
    let mut watcher = Conn::connect(&ctx, "watcher").await?;
    watcher
        .subscribe(&channel, Some(("conform-watcher", json!({}))))
        .await?;
    let mut c = Conn::connect(&ctx, "a").await?;
    let long_id = "u".repeat(129);
    let frame = c.subscribe_frame(&channel, Some((&long_id, json!({}))))?;
    c.send_json(&frame).await?;
    let f = c
        .expect_subscription_refused(&channel, "a user_id of 129 bytes")
        .await;
    // Presence data must be bounded ([TRN-026]); Pusher's 128 bytes is the SHOULD, as a server
    // with a larger bound harms no client.
    let refused = match f {
        Ok(f) => {
            ensure(
                f["event"] == "pusher:subscription_error",
                "a refused presence subscription is answered with pusher:subscription_error [TRN-024]",
                format!("pusher:subscription_error on {channel}"),
                f.to_string(),
            )?;
            check_subscription_error(&ctx, &f, "InvalidChannelData", 400);
            true
        }
        Err(Problem::Fail(f)) if f.actual.contains("subscription_succeeded") => {
            ctx.should(
                false,
                "a user_id over 128 bytes is refused with InvalidChannelData",
                "pusher:subscription_error of type InvalidChannelData",
                f.actual,
            );
            false
        }
        Err(other) => return Err(other),
    };
    let before = watcher.fence().await?;
    if refused {
        ensure(
            !before
                .iter()
                .any(|f| f["event"] == "pusher_internal:member_added"),
            "a refused member is never announced",
            "no member_added",
            format!("{before:?}"),
        )?;
    }
    Ok(None)
}

async fn user_signin(ctx: Ctx) -> Step<Option<String>> {
    let mut c = Conn::connect(&ctx, "a").await?;
    let user_data = json!({"id": "conform-alice", "user_info": {}}).to_string();
    let socket = SocketId::parse(&c.socket_id).map_err(|e| errored(e.to_string()))?;
    let good = signing::sign_user(&ctx.target.key, ctx.secret()?, &socket, &user_data);
    let bad = format!("{}:{}", ctx.target.key, "1".repeat(64));
    c.send_json(&json!({"event": "pusher:signin", "data": {"user_data": user_data, "auth": bad}}))
        .await?;
    let f = c
        .wait_for(
            "the answer to a wrongly signed pusher:signin",
            PROMPT,
            |f| f["event"] == "pusher:signin_success" || f["event"] == "pusher:error",
        )
        .await?;
    ensure(
        f["event"] == "pusher:error",
        "a wrongly signed sign-in is refused",
        "pusher:error",
        f.to_string(),
    )?;
    c.send_json(&json!({"event": "pusher:signin", "data": {"user_data": user_data, "auth": good}}))
        .await?;
    let f = c
        .wait_for("the answer to a signed pusher:signin", PROMPT, |f| {
            f["event"] == "pusher:signin_success" || f["event"] == "pusher:error"
        })
        .await?;
    ensure(
        f["event"] == "pusher:signin_success",
        "a correctly signed sign-in succeeds",
        "pusher:signin_success",
        f.to_string(),
    )?;
    c.close().await;
    Ok(None)
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

async fn relayed(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "relay").await?;
    a.trigger(&channel, "client-conform", &marker(1)).await?;
    let f = receive(&mut b, &channel, "client-conform").await?;
    ensure(
        super::super::wire::decode_data(&f["data"]) == marker(1),
        "the relayed event carries the sent data",
        marker(1).to_string(),
        f.to_string(),
    )?;
    Ok(None)
}

async fn no_echo(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "echo").await?;
    a.trigger(&channel, "client-conform", &marker(2)).await?;
    receive(&mut b, &channel, "client-conform").await?;
    receives_nothing(
        &mut a,
        &channel,
        "client-conform",
        "the sender does not get its own client event back",
    )
    .await?;
    Ok(None)
}

async fn public_refused(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("", "public");
    let mut a = Conn::connect(&ctx, "a").await?;
    let mut b = Conn::connect(&ctx, "b").await?;
    a.subscribe(&channel, None).await?;
    b.subscribe(&channel, None).await?;
    a.trigger(&channel, "client-conform", &marker(3)).await?;
    a.fence().await?;
    receives_nothing(
        &mut b,
        &channel,
        "client-conform",
        "client events on public channels are not relayed",
    )
    .await?;
    Ok(None)
}

async fn not_subscribed_refused(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "notsub");
    let mut a = Conn::connect(&ctx, "a").await?;
    let mut b = Conn::connect(&ctx, "b").await?;
    b.subscribe(&channel, None).await?;
    a.trigger(&channel, "client-conform", &marker(4)).await?;
    a.fence().await?;
    receives_nothing(
        &mut b,
        &channel,
        "client-conform",
        "a client event from a connection not subscribed to the channel is not relayed",
    )
    .await
    .map(|_| None)
}

async fn prefix_required(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "prefix").await?;
    a.trigger(&channel, "call.offer", &marker(5)).await?;
    a.fence().await?;
    receives_nothing(
        &mut b,
        &channel,
        "call.offer",
        "a client cannot send server-named call.* events",
    )
    .await?;
    Ok(None)
}

async fn unsubscribe_stops(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "unsub").await?;
    b.send_json(&json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
        .await?;
    b.fence().await?;
    a.trigger(&channel, "client-conform", &marker(6)).await?;
    a.fence().await?;
    receives_nothing(
        &mut b,
        &channel,
        "client-conform",
        "no events arrive after unsubscribing",
    )
    .await?;
    Ok(None)
}

const TRICKY_DATA: &str = r#"{"z":1,"a":{"deep":[1,2,{"x":null}]},"uni":"caf\u00e9 \ud83d\udcde","big":9007199254740991,"neg":-0.5e-3,"esc":"line\nbreak \"quoted\" \/slash"}"#;

async fn send_raw_event(a: &mut Conn, channel: &str, data_text: &str) -> Step<()> {
    a.send_text(&format!(
        r#"{{"event":"client-conform","channel":"{channel}","data":{data_text}}}"#
    ))
    .await
}

async fn meaning_preserved(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "meaning").await?;
    send_raw_event(&mut a, &channel, TRICKY_DATA).await?;
    let f = receive(&mut b, &channel, "client-conform").await?;
    let sent: Value = serde_json::from_str(TRICKY_DATA).map_err(|e| errored(e.to_string()))?;
    let got = super::super::wire::decode_data(&f["data"]);
    ensure(
        got == sent,
        "relayed data means the same JSON value",
        sent.to_string(),
        got.to_string(),
    )?;
    Ok(None)
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

async fn byte_exact(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "bytes").await?;
    let spaced = TRICKY_DATA.replace(",\"", ", \"");
    send_raw_event(&mut a, &channel, &spaced).await?;
    let (_, text) = b
        .wait_for_raw("client-conform", PROMPT, |f| {
            f["event"] == "client-conform" && f["channel"] == channel
        })
        .await?;
    let got = raw_data(&text).unwrap_or_default();
    // A server may relay data as a JSON string holding the same text; both keep the bytes.
    let unwrapped = serde_json::from_str::<String>(&got).unwrap_or(got.clone());
    ensure(
        got == spaced || unwrapped == spaced,
        "relayed data keeps its bytes",
        spaced.clone(),
        got,
    )?;
    Ok(None)
}

async fn string_data(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "strdata").await?;
    let inner = marker(7).to_string();
    a.send_json(&json!({"event": "client-conform", "channel": channel, "data": inner}))
        .await?;
    let f = receive(&mut b, &channel, "client-conform").await?;
    ensure(
        super::super::wire::decode_data(&f["data"]) == marker(7),
        "string data holding JSON arrives with the same meaning",
        inner,
        f.to_string(),
    )?;
    Ok(None)
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

async fn user_id_added(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = presence_pair(&ctx, "userid").await?;
    a.trigger(&channel, "client-conform", &marker(8)).await?;
    let f = receive(&mut b, &channel, "client-conform").await?;
    ensure(
        f["user_id"] == "conform-alice",
        "the relayed event names the verified sender",
        r#""user_id": "conform-alice""#,
        f.to_string(),
    )?;
    Ok(None)
}

async fn user_id_not_spoofable(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = presence_pair(&ctx, "spoof").await?;
    a.send_json(&json!({"event": "client-conform", "channel": channel, "user_id": "conform-bob", "data": marker(9)})).await?;
    let f = receive(&mut b, &channel, "client-conform").await?;
    ensure(
        f["user_id"] == "conform-alice",
        "the relayed user_id is the verified one, not the asserted one",
        r#""user_id": "conform-alice""#,
        f.to_string(),
    )?;
    Ok(None)
}

async fn member_added_once(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, _b, channel) = presence_pair(&ctx, "once").await?;
    a.wait_for("member_added for conform-bob", PROMPT, |f| {
        f["event"] == "pusher_internal:member_added" && f["channel"] == channel
    })
    .await?;
    let mut b2 = Conn::connect(&ctx, "bob-tab2").await?;
    b2.subscribe(&channel, Some(("conform-bob", json!({}))))
        .await?;
    receives_nothing(
        &mut a,
        &channel,
        "pusher_internal:member_added",
        "a second connection of a present user announces nothing",
    )
    .await?;
    Ok(None)
}

async fn member_removed_last(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, b, channel) = presence_pair(&ctx, "last").await?;
    let mut b2 = Conn::connect(&ctx, "bob-tab2").await?;
    b2.subscribe(&channel, Some(("conform-bob", json!({}))))
        .await?;
    b.close().await;
    receives_nothing(
        &mut a,
        &channel,
        "pusher_internal:member_removed",
        "a user with a connection left is still present",
    )
    .await?;
    b2.send_json(&json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
        .await?;
    let f = a
        .wait_for("member_removed for conform-bob", PROMPT, |f| {
            f["event"] == "pusher_internal:member_removed" && f["channel"] == channel
        })
        .await?;
    ensure(
        super::super::wire::decode_data(&f["data"])["user_id"] == "conform-bob",
        "member_removed names the user who left",
        r#"{"user_id":"conform-bob"}"#,
        f.to_string(),
    )?;
    Ok(None)
}

async fn member_limit(ctx: Ctx) -> Step<Option<String>> {
    let limit = ctx.target.max_presence_members;
    let channel = ctx.unique("presence-", "limit");
    let mut conns = Vec::with_capacity(limit);
    for i in 0..limit {
        let mut c = Conn::connect(&ctx, &format!("member{i}")).await?;
        c.send_subscribe(&channel, Some((&format!("conform-u{i}"), json!({}))))
            .await?;
        conns.push(c);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        c.expect_subscribed(&channel)
            .await
            .map_err(|_| errored(format!("member {i} of {limit} could not join")))?;
    }
    let mut extra = Conn::connect(&ctx, "one-too-many").await?;
    let frame = extra.subscribe_frame(&channel, Some(("conform-extra", json!({}))))?;
    let f = refused_subscription(
        &ctx,
        &mut extra,
        &channel,
        frame["data"].clone(),
        &format!("user {} on a channel of {limit}", limit + 1),
    )
    .await?;
    check_subscription_error(&ctx, &f, "LimitReached", 403);
    let mut again = Conn::connect(&ctx, "member0-tab2").await?;
    again
        .subscribe(&channel, Some(("conform-u0", json!({}))))
        .await?;
    for c in conns {
        c.abort();
    }
    Ok(Some(format!("limit {limit} members")))
}

async fn client_event_rate(ctx: Ctx) -> Step<Option<String>> {
    let (rate, burst) = ctx.target.rate_limit;
    let (mut a, mut b, channel) = private_pair(&ctx, "rate").await?;
    // Send well over the burst at once: a sustained-rate refill during sending is allowed for.
    let sent = burst * 3 + 10;
    let started = Instant::now();
    for n in 0..sent {
        a.trigger(&channel, "client-conform", &marker(u64::from(n)))
            .await?;
    }
    let before = a.fence().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let refusals = before
        .iter()
        .filter(|f| error_data(f).is_some_and(|d| d["code"] == 4301))
        .count();
    let b_frames = b.fence().await?;
    let relayed = b_frames
        .iter()
        .filter(|f| f["event"] == "client-conform")
        .count();
    // Never more than the rate plus the burst in any one-second window.
    let allowed = burst as usize + (elapsed.max(1.0) * f64::from(rate)).ceil() as usize;
    ensure(
        refusals > 0,
        "events over the limit are answered with pusher:error 4301",
        "at least one pusher:error with code 4301",
        format!("{refusals} refusals for {sent} events sent in {elapsed:.3} s"),
    )?;
    ensure(
        relayed <= allowed && relayed + refusals == sent as usize,
        "events over the limit are not relayed; the others are",
        format!("at most {allowed} relayed, relayed + refused = {sent}"),
        format!("{relayed} relayed, {refusals} refused"),
    )?;
    // Still open and working: any limiter (a token bucket, a 1 s window) lets an event through
    // again within a second of the burst; 200 ms of margin covers timer and network jitter.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    a.trigger(&channel, "client-conform", &marker(999)).await?;
    b.wait_for(
        "a client event 1.2 s after the burst, once any limiter lets events through again",
        PROMPT,
        |f| {
            f["event"] == "client-conform"
                && super::super::wire::decode_data(&f["data"])["conform"] == 999
        },
    )
    .await?;
    Ok(Some(format!(
        "{relayed} of {sent} relayed, {refusals} refused with 4301"
    )))
}

async fn event_data_size(ctx: Ctx) -> Step<Option<String>> {
    let max = ctx.target.max_event_bytes;
    let (mut a, mut b, channel) = private_pair(&ctx, "size").await?;
    // {"pad":"..."} with the padding sized to make the serialized data exactly `max` bytes.
    let at_limit = json!({ "pad": "x".repeat(max - 10) }).to_string();
    let over = json!({ "pad": "x".repeat(max - 9) }).to_string();
    debug_assert_eq!(at_limit.len(), max);
    send_raw_event(&mut a, &channel, &over).await?;
    let before = a.fence().await?;
    ensure(
        before.iter().any(|f| f["event"] == "pusher:error"),
        format!("data of {} bytes is refused with pusher:error", over.len()),
        "pusher:error",
        format!("{before:?}"),
    )?;
    receives_nothing(
        &mut b,
        &channel,
        "client-conform",
        "oversized data is not relayed",
    )
    .await?;
    send_raw_event(&mut a, &channel, &at_limit).await?;
    receive(&mut b, &channel, "client-conform").await?;
    Ok(None)
}

async fn frame_size(ctx: Ctx) -> Step<Option<String>> {
    let mut c = Conn::connect(&ctx, "a").await?;
    let frame =
        json!({"event": "client-conform", "data": {"pad": "x".repeat(40 * 1024)}}).to_string();
    c.send_text(&frame).await?;
    let before = c.fence().await?;
    let err = before
        .iter()
        .find(|f| f["event"] == "pusher:error")
        .cloned();
    ensure(
        err.is_some(),
        "a 40 KiB frame gets pusher:error",
        "pusher:error, connection open",
        format!("{before:?}"),
    )?;
    Ok(None)
}

async fn json_depth(ctx: Ctx) -> Step<Option<String>> {
    let mut c = Conn::connect(&ctx, "a").await?;
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    c.send_text(&format!(
        r#"{{"event":"client-conform","channel":"private-x","data":{{"d":{deep}}}}}"#
    ))
    .await?;
    let before = c.fence().await?;
    ensure(
        before.iter().any(|f| f["event"] == "pusher:error"),
        "JSON nested 42 levels deep gets pusher:error",
        "pusher:error, connection open",
        format!("{before:?}"),
    )?;
    Ok(None)
}

async fn event_name_length(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "name").await?;
    let name = format!("client-{}", "n".repeat(194));
    a.trigger(&channel, &name, &marker(10)).await?;
    a.fence().await?;
    receives_nothing(
        &mut b,
        &channel,
        &name,
        "an event name over 200 bytes is not relayed",
    )
    .await?;
    Ok(None)
}

async fn channel_name_length(ctx: Ctx) -> Step<Option<String>> {
    let channel = format!("private-{}", "c".repeat(157));
    let mut c = Conn::connect(&ctx, "a").await?;
    let frame = c.subscribe_frame(&channel, None)?;
    c.send_json(&frame).await?;
    subscription_refusal(&mut c, &channel, "a channel name of 165 bytes").await?;
    Ok(None)
}

async fn slow_consumer(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("", "slow");
    let mut slow = Conn::connect(&ctx, "slow").await?;
    slow.subscribe(&channel, None).await?;
    let (mut s1, mut s2, sentinel_channel) = private_pair(&ctx, "sentinel").await?;
    // 100 events of 9 KB per request; stop as soon as the target gives up on the reader.
    let pad = "x".repeat(9000);
    let batch: Vec<Value> = (0..10)
        .map(|_| json!({"name": "conform-flood", "channel": channel, "data": json!({"pad": pad}).to_string()}))
        .collect();
    let body = json!({ "batch": batch }).to_string();
    let mut sent_bytes = 0usize;
    let budget = 256 * 1024 * 1024;
    let info_path = format!("/channels/{channel}");
    for round in 1.. {
        if sent_bytes >= budget {
            break;
        }
        let (status, text) = ctx.http_api("POST", "/batch_events", &body, |_| {}).await?;
        ensure(
            status == 200,
            "the HTTP API accepts the batch",
            "200",
            format!("{status} {text}"),
        )?;
        sent_bytes += body.len();
        // Every 20 batches, ask whether the target already ended the unread connection (the
        // channel is then vacated); a target without channel info gets the whole budget.
        if round % 20 == 0 {
            let (status, text) = ctx.http_api("GET", &info_path, "", |_| {}).await?;
            if status == 200 && text.contains("\"occupied\":false") {
                break;
            }
        }
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    // Now read: the connection must end (after whatever was buffered).
    let mut ended = false;
    let mut frames = 0usize;
    while let Some(r) = slow.recv(deadline).await? {
        match r {
            Recv::Closed(_) => {
                ended = true;
                break;
            }
            Recv::Frame { .. } => frames += 1,
        }
    }
    ensure(
        ended,
        "the target disconnects a consumer that stops reading",
        "the connection ends",
        format!(
            "still open after {} MB sent and {frames} frames read",
            sent_bytes / 1_000_000
        ),
    )?;
    s1.trigger(&sentinel_channel, "client-conform", &marker(11))
        .await?;
    receive(&mut s2, &sentinel_channel, "client-conform").await?;
    Ok(Some(format!(
        "disconnected after {} MB sent, {frames} frames read",
        sent_bytes / 1_000_000
    )))
}

async fn rate_before_parse(ctx: Ctx) -> Step<Option<String>> {
    let (_, burst) = ctx.target.rate_limit;
    let (mut a, _b, channel) = private_pair(&ctx, "ratefirst").await?;
    // Frames that are JSON, with data that is a string not holding JSON. A server that limits
    // first refuses those over the burst with 4301; one that parses data first answers every
    // one with a data error instead.
    let sent = burst * 3;
    for _ in 0..sent {
        a.send_json(
            &json!({"event": "client-conform", "channel": channel, "data": "{\"broken\": ["}),
        )
        .await?;
    }
    let before = a.fence().await?;
    let errors: Vec<Value> = before.iter().filter_map(error_data).collect();
    let limited = errors.iter().filter(|e| e["code"] == 4301).count();
    ensure(
        limited > 0,
        "events over the limit are refused for the rate even when their data cannot be parsed",
        "pusher:error 4301 for the events over the burst",
        format!("{sent} sent; errors: {errors:?}"),
    )?;
    Ok(Some(format!("{limited} of {sent} refused with 4301")))
}
