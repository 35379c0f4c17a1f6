//! Signed subscriptions to private and presence channels, and user sign-in: what a forged, replayed or misdirected signature gets.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
}

async fn private_signed(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "signed");
    let mut c = Conn::connect(&ctx, "a").await?;
    c.subscribe(&channel, None).await?;
    c.close().await;
    Ok(None)
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
