//! Channel authorization: who gets a channel signed, and what a refusal reveals.

use super::*;

pub(super) fn cases() -> Vec<Case> {
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
    ]
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
