//! Limits applied before work: client-event rate, sizes, depth, name lengths, and slow consumers.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
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
                && crate::conform::wire::decode_data(&f["data"])["conform"] == 999
        },
    )
    .await?;
    Ok(Some(format!(
        "{relayed} of {sent} relayed, {refusals} refused with 4301"
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
