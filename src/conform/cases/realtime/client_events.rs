//! Client events: relayed to the others and never echoed, refused where they do not belong, and their data relayed with its meaning (and bytes) intact.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
}

async fn relayed(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "relay").await?;
    a.trigger(&channel, "client-conform", &marker(1)).await?;
    let f = receive(&mut b, &channel, "client-conform").await?;
    ensure(
        crate::conform::wire::decode_data(&f["data"]) == marker(1),
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

async fn meaning_preserved(ctx: Ctx) -> Step<Option<String>> {
    let (mut a, mut b, channel) = private_pair(&ctx, "meaning").await?;
    send_raw_event(&mut a, &channel, TRICKY_DATA).await?;
    let f = receive(&mut b, &channel, "client-conform").await?;
    let sent: Value = serde_json::from_str(TRICKY_DATA).map_err(|e| errored(e.to_string()))?;
    let got = crate::conform::wire::decode_data(&f["data"]);
    ensure(
        got == sent,
        "relayed data means the same JSON value",
        sent.to_string(),
        got.to_string(),
    )?;
    Ok(None)
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
        crate::conform::wire::decode_data(&f["data"]) == marker(7),
        "string data holding JSON arrives with the same meaning",
        inner,
        f.to_string(),
    )?;
    Ok(None)
}
