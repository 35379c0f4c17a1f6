//! Presence: the server-verified user id, member events once per user, and the member limit.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
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
        crate::conform::wire::decode_data(&f["data"])["user_id"] == "conform-bob",
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
