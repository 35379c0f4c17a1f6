//! Placing a call: the answer, ICE servers for both sides, the invitation, the ring timeout and the record.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "trusted.calls.place",
            Trusted,
            Must,
            ["SRV-010", "SIGN-030", "SIGN-031"],
            [Trusted],
            "POST /calls answers with call id, channel and ICE servers: time-limited TURN credentials (MUST when it hands out TURN, required with --turn), STUN (SHOULD)",
            place
        ),
        case!(
            "trusted.calls.ice-servers",
            Trusted,
            Should,
            ["SRV-015", "SIGN-030"],
            [Trusted],
            "GET /ice-servers gives a signed-in callee the ICE servers: its own time-limited TURN credentials, STUN",
            ice_servers_for_callee
        ),
        case!(
            "trusted.calls.invitation",
            Trusted,
            Must,
            ["FLOW-001", "EVT-001", "PRIV-012"],
            [Trusted],
            "The callee's inbox receives call.started (server-named, clear) naming the call channel",
            invitation
        ),
        case!(
            "trusted.calls.ring-timeout",
            Trusted,
            Must,
            ["SRV-020", "FLOW-011", "SRV-022", "SRV-014"],
            [Trusted],
            "An unanswered call ends with call.ended {no_answer} and becomes a missed call of the callee",
            ring_timeout
        ),
        case!(
            "trusted.calls.record",
            Trusted,
            Must,
            ["SRV-012", "SRV-011", "SRV-022"],
            [Trusted],
            "A call answered and hung up is recorded with who accepted and why it ended",
            record
        ),
    ]
}

async fn place(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({})).await?;
    let (caller, _) = user(&ctx, 0)?;
    Ok(Some(check_ice_servers(&ctx, &placed, &caller)?))
}

async fn ice_servers_for_callee(ctx: Ctx) -> Step<Option<String>> {
    let (callee, token) = user(&ctx, 1)?;
    let url = format!("{}/ice-servers", base(&ctx)?);
    let anonymous = response(
        &ctx,
        "GET /ice-servers",
        crate::net::http_client().get(&url),
    )
    .await?;
    ensure(
        anonymous.0 == 401 || anonymous.0 == 403,
        "GET /ice-servers without a bearer token is refused",
        "401 or 403",
        format!("{} {}", anonymous.0, anonymous.1),
    )?;
    let got = response(
        &ctx,
        "GET /ice-servers",
        crate::net::http_client().get(&url).bearer_auth(token),
    )
    .await?;
    ensure(
        got.0 == 200,
        "GET /ice-servers answers a signed-in user",
        "200 {ice_servers}",
        format!("{} {}", got.0, got.1),
    )?;
    Ok(Some(check_ice_servers(&ctx, &got.1, &callee)?))
}

async fn invitation(ctx: Ctx) -> Step<Option<String>> {
    let mut inbox = open_inbox(&ctx, 1).await?;
    let placed = place_call(&ctx, json!({})).await?;
    let channel = placed["channel"].as_str().unwrap_or_default().to_owned();
    let f = inbox
        .wait_for("call.started in the callee's inbox", PROMPT, |f| {
            f["event"] == "call.started"
                && crate::conform::wire::decode_data(&f["data"])["channel"] == channel.as_str()
        })
        .await?;
    let data = crate::conform::wire::decode_data(&f["data"]);
    ensure(
        data.get("sealed").is_none() && data["party_id"] == "server",
        "the invitation is a clear server event",
        r#"party_id "server", no sealed member"#,
        data.to_string(),
    )?;
    Ok(None)
}

async fn ring_timeout(ctx: Ctx) -> Step<Option<String>> {
    let placed = place_call(&ctx, json!({"ring_timeout_ms": 5000})).await?;
    let channel = placed["channel"].as_str().unwrap_or_default().to_owned();
    let call_id = placed["call_id"].as_str().unwrap_or_default().to_owned();
    let (callee, token) = user(&ctx, 1)?;
    let mut c = Conn::connect(&ctx, &callee).await?;
    let got = auth(&ctx, Some(&token), &c.socket_id, &channel, false).await?;
    subscribe_with(&mut c, &channel, &got.1).await?;
    let f = c
        .wait_for(
            "call.ended after the 5 s ring timeout",
            Duration::from_secs(15),
            |f| f["event"] == "call.ended",
        )
        .await?;
    let data = crate::conform::wire::decode_data(&f["data"]);
    ensure(
        data["reason"] == "no_answer",
        "the ring timeout ends the call with no_answer",
        "reason no_answer",
        data.to_string(),
    )?;
    let (status, missed) = get(&ctx, &token, "/calls/missed").await?;
    ensure(
        status == 200 && missed.to_string().contains(&call_id),
        "the unanswered call is a missed call of the callee",
        format!("/calls/missed lists {call_id}"),
        format!("{status} {missed}"),
    )?;
    Ok(None)
}

async fn record(ctx: Ctx) -> Step<Option<String>> {
    let (scope, scope_id) = scope(&ctx)?;
    let (callee, _) = user(&ctx, 1)?;
    let (_, caller_token) = user(&ctx, 0)?;
    let inbox = Inbox::open(&device(&ctx, 1)?).await.map_err(errored)?;
    let request = json!({"scope": scope, "scope_id": scope_id, "callees": [callee]});
    let (mut caller, placed) = Signaling::place(&device(&ctx, 0)?, request)
        .await
        .map_err(errored)?;
    let mut bob = inbox
        .next_invitation(PROMPT)
        .await
        .map_err(|e| fail("the callee's device is invited", "an invitation", e))?;
    bob.accept().map_err(errored)?;
    let deadline = Instant::now() + PROMPT;
    loop {
        match caller.next_event(deadline).await.map_err(errored)? {
            Some(crate::call::Action::CreateOffer { .. }) => break,
            Some(_) => {}
            None => {
                return Err(fail(
                    "the caller sees the acceptance",
                    "call.accepted",
                    "nothing",
                ));
            }
        }
    }
    caller.hang_up().map_err(errored)?;
    // The record changes when the target's webhooks reach the trusted server; poll its API.
    let path = format!("/calls/{}", placed.call_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let (_, v) = get(&ctx, &caller_token, &path).await?;
        if v["call"]["end_reason"].is_string() {
            last = v;
            break;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure(
        last["call"]["accepted_by"] == callee.as_str() && last["call"]["end_reason"] == "hangup",
        "the call record says who accepted and why the call ended",
        format!(r#"accepted_by "{callee}", end_reason "hangup""#),
        last.to_string(),
    )?;
    let (_, history) = get(&ctx, &caller_token, "/calls/history").await?;
    ensure(
        history.to_string().contains(placed.call_id.as_str()),
        "the call is in the caller's history",
        placed.call_id.clone(),
        history.to_string(),
    )?;
    caller.close().await;
    bob.close().await;
    Ok(None)
}
