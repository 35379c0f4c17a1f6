//! Connecting: the handshake, protocol versions, errors, and a connection that survives bad input.

use super::*;

pub(super) fn cases() -> Vec<Case> {
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
