//! Runs the language-neutral vectors of `conformance/vectors/` against this crate's core.
//!
//! A vector file is `{"vectors": NAME, "format": 1, "groups": [{"op": OP, ..., "cases": [...]}]}`;
//! group members are shared by every case of the group. `conformance/README.md` documents each op.
//! This module only interprets the JSON it is given (no file access), so tests, the CLI and fuzzers
//! share it. A case passes when the core's result equals the expectation exactly: the same output,
//! or the same stable error code.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::channel::{CallChannel, ChannelKind, ChannelName};
use crate::envelope::{ChannelKey, PrivacyGuard, associated_data, open, seal, sealed_plaintext};
use crate::event::{Incoming, Privacy, parse_event, parse_frame};
use crate::ids::{CallId, Scope, ScopeId, SocketId};
use crate::pusher::{Frame, FrameData, FrameLimits};
use crate::signing::{self, Secret};

/// Outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub file: String,
    pub op: String,
    pub id: String,
    /// `None` when the case passed; otherwise what differed.
    pub failure: Option<String>,
}

type Outcome = Result<(), String>;

fn s<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("vector lacks string `{key}`"))
}

fn opt_s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn u(v: &Value, key: &str) -> Result<u64, String> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("vector lacks integer `{key}`"))
}

fn eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Outcome {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

/// Compares a result with `expect_error` (a code) or success.
fn expect_code<T>(case: &Value, got: Result<T, String>) -> Result<Option<T>, String> {
    match (opt_s(case, "error"), got) {
        (None, Ok(v)) => Ok(Some(v)),
        (Some(want), Err(code)) => eq("error", code.as_str(), want).map(|_| None),
        (None, Err(code)) => Err(format!("unexpected error {code}")),
        (Some(want), Ok(_)) => Err(format!("accepted, expected error {want}")),
    }
}

fn object(v: &Value) -> Result<Map<String, Value>, String> {
    v.as_object()
        .cloned()
        .ok_or_else(|| "expected a JSON object".to_owned())
}

fn run_parse_channel_name(_: &Value, case: &Value) -> Outcome {
    let name = s(case, "name")?;
    let got = ChannelName::parse(name).map_err(|e| e.code());
    let Some(parsed) = expect_code(case, got)? else {
        return Ok(());
    };
    eq("rendered name", parsed.to_string().as_str(), name)?;
    let parts = match &parsed {
        ChannelName::Call(c) => json!({
            "type": "call",
            "kind": match c.kind() { ChannelKind::Private => "private", ChannelKind::Presence => "presence" },
            "scope": c.scope().as_str(),
            "scope_id": c.scope_id().as_str(),
            "call_id": c.call_id().as_str(),
        }),
        ChannelName::Inbox(i) => json!({"type": "inbox", "user_id": i.user_id().as_str()}),
    };
    eq("parts", &parts, &case["parts"])
}

fn run_build_call_channel(_: &Value, case: &Value) -> Outcome {
    let parts = &case["parts"];
    let kind = match s(parts, "kind")? {
        "private" => ChannelKind::Private,
        "presence" => ChannelKind::Presence,
        other => return Err(format!("unknown kind {other}")),
    };
    let built = (|| {
        let scope =
            Scope::parse(s(parts, "scope")?).map_err(|e| format!("channel.scope.{}", e.code()))?;
        let scope_id = ScopeId::parse(s(parts, "scope_id")?)
            .map_err(|e| format!("channel.scope_id.{}", e.code()))?;
        let call_id = CallId::parse(s(parts, "call_id")?)
            .map_err(|e| format!("channel.call_id.{}", e.code()))?;
        CallChannel::new(kind, scope, scope_id, call_id).map_err(|e| e.code())
    })();
    if let Some(c) = expect_code(case, built)? {
        eq("name", c.to_string().as_str(), s(case, "name")?)?;
    }
    Ok(())
}

fn raw_frame(case: &Value) -> Result<Vec<u8>, String> {
    if let Some(b64) = opt_s(case, "raw_base64") {
        return STANDARD.decode(b64).map_err(|e| e.to_string());
    }
    if let Some(repeat) = case.get("raw_repeat") {
        // {"prefix", "unit", "times", "suffix"}: lets a vector describe a huge frame compactly.
        let times = u(repeat, "times")?;
        if times > 1 << 20 {
            return Err("raw_repeat.times above 2^20".into());
        }
        let times = times as usize;
        let mut out = s(repeat, "prefix")?.to_owned();
        out.push_str(&s(repeat, "unit")?.repeat(times));
        out.push_str(s(repeat, "suffix")?);
        return Ok(out.into_bytes());
    }
    Ok(s(case, "raw")?.as_bytes().to_vec())
}

fn run_parse_frame(_: &Value, case: &Value) -> Outcome {
    let raw = raw_frame(case)?;
    let got = Frame::parse(&raw, &FrameLimits::default()).map_err(|e| e.code().to_owned());
    let Some(frame) = expect_code(case, got)? else {
        return Ok(());
    };
    eq("event", frame.event.as_str(), s(&case["frame"], "event")?)?;
    eq(
        "channel",
        frame.channel.as_deref(),
        opt_s(&case["frame"], "channel"),
    )?;
    let data_form = match &frame.data {
        None => "absent",
        Some(FrameData::Text(_)) => "string",
        Some(FrameData::Json(_)) => "json",
    };
    eq("data form", data_form, s(&case["frame"], "data_form")?)
}

/// Builds the frame an event vector describes: `data` may be an object or a string.
pub fn event_frame(group: &Value, case: &Value) -> Result<Frame, crate::error::ConfigError> {
    let channel = opt_s(case, "channel").or_else(|| opt_s(group, "channel"));
    let data = match &case["data"] {
        Value::String(t) => FrameData::Text(t.clone()),
        Value::Null => return Err("vector lacks `data`".into()),
        v => FrameData::json(v),
    };
    Ok(Frame {
        event: s(case, "event")?.to_owned(),
        channel: channel.map(str::to_owned),
        data: Some(data),
        user_id: opt_s(case, "user_id").map(str::to_owned),
    })
}

fn run_parse_event(group: &Value, case: &Value) -> Outcome {
    let frame = event_frame(group, case)?;
    let parsed = parse_frame(&frame);
    if let (Err(e), Some(field)) = (&parsed, opt_s(case, "field")) {
        eq("field", e.field(), Some(field))?;
    }
    let got = parsed.map_err(|e| e.code().to_owned());
    let Some((_, incoming)) = expect_code(case, got)? else {
        return Ok(());
    };
    eq("kind", incoming.kind().name(), s(case, "kind")?)?;
    let sealed = matches!(incoming, Incoming::Sealed(_));
    eq(
        "sealed",
        sealed,
        case.get("sealed").and_then(Value::as_bool).unwrap_or(false),
    )?;
    if let (Incoming::Clear(e), Some(normalized)) = (&incoming, case.get("normalized")) {
        eq("normalized data", &Value::Object(e.to_data()), normalized)?;
    }
    Ok(())
}

fn secret(group: &Value, case: &Value) -> Result<Secret, String> {
    opt_s(case, "secret")
        .or_else(|| opt_s(group, "secret"))
        .map(Secret::new)
        .ok_or_else(|| "vector lacks `secret`".into())
}

fn app_key<'a>(group: &'a Value, case: &'a Value) -> Result<&'a str, String> {
    opt_s(case, "app_key")
        .or_else(|| opt_s(group, "app_key"))
        .ok_or_else(|| "vector lacks `app_key`".into())
}

fn socket(case: &Value) -> Result<SocketId, String> {
    SocketId::parse(s(case, "socket_id")?).map_err(|e| e.to_string())
}

fn run_sign_channel(group: &Value, case: &Value) -> Outcome {
    let (sock, channel, data) = (
        socket(case)?,
        s(case, "channel")?,
        opt_s(case, "channel_data"),
    );
    eq(
        "string_to_sign",
        signing::channel_string_to_sign(&sock, channel, data).as_str(),
        s(case, "string_to_sign")?,
    )?;
    let auth = signing::sign_channel(
        app_key(group, case)?,
        &secret(group, case)?,
        &sock,
        channel,
        data,
    );
    eq("auth", auth.as_str(), s(case, "auth")?)?;
    signing::verify_channel(
        app_key(group, case)?,
        &secret(group, case)?,
        &sock,
        channel,
        data,
        &auth,
    )
    .map(|_| ())
    .map_err(|e| format!("own signature did not verify: {e}"))
}

fn run_verify_channel(group: &Value, case: &Value) -> Outcome {
    let got = signing::verify_channel(
        app_key(group, case)?,
        &secret(group, case)?,
        &socket(case)?,
        s(case, "channel")?,
        opt_s(case, "channel_data"),
        s(case, "auth")?,
    )
    .map_err(|e| e.code().to_owned());
    expect_code(case, got).map(|_| ())
}

fn run_sign_user(group: &Value, case: &Value) -> Outcome {
    let (sock, data) = (socket(case)?, s(case, "user_data")?);
    eq(
        "string_to_sign",
        signing::user_string_to_sign(&sock, data).as_str(),
        s(case, "string_to_sign")?,
    )?;
    let auth = signing::sign_user(app_key(group, case)?, &secret(group, case)?, &sock, data);
    eq("auth", auth.as_str(), s(case, "auth")?)
}

fn run_verify_user(group: &Value, case: &Value) -> Outcome {
    let got = signing::verify_user(
        app_key(group, case)?,
        &secret(group, case)?,
        &socket(case)?,
        s(case, "user_data")?,
        s(case, "auth")?,
    )
    .map_err(|e| e.code().to_owned());
    expect_code(case, got).map(|_| ())
}

fn run_sign_http(group: &Value, case: &Value) -> Outcome {
    let params = signing::parse_query(s(case, "params")?).map_err(|e| e.to_string())?;
    let body = s(case, "body")?.as_bytes();
    let signed = signing::sign_http_request(
        app_key(group, case)?,
        &secret(group, case)?,
        s(case, "method")?,
        s(case, "path")?,
        params,
        body,
        u(case, "timestamp")?,
    );
    let string_to_sign =
        signing::http_string_to_sign(s(case, "method")?, s(case, "path")?, &signed);
    eq(
        "string_to_sign",
        string_to_sign.as_str(),
        s(case, "string_to_sign")?,
    )?;
    let get = |k: &str| signed.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    eq("body_md5", get("body_md5"), opt_s(case, "body_md5"))?;
    eq(
        "auth_signature",
        get("auth_signature"),
        opt_s(case, "auth_signature"),
    )
}

fn run_verify_http(group: &Value, case: &Value) -> Outcome {
    let got = signing::verify_http_request(
        app_key(group, case)?,
        &secret(group, case)?,
        s(case, "method")?,
        s(case, "path")?,
        s(case, "query")?,
        s(case, "body")?.as_bytes(),
        u(case, "now")?,
    )
    .map_err(|e| e.code().to_owned());
    expect_code(case, got).map(|_| ())
}

fn run_sign_webhook(group: &Value, case: &Value) -> Outcome {
    let sig = signing::sign_webhook(&secret(group, case)?, s(case, "body")?.as_bytes());
    eq("signature", sig.as_str(), s(case, "signature")?)
}

fn run_verify_webhook(group: &Value, case: &Value) -> Outcome {
    let got = signing::verify_webhook(
        app_key(group, case)?,
        &secret(group, case)?,
        s(case, "header_key")?,
        s(case, "header_signature")?,
        s(case, "body")?.as_bytes(),
    )
    .map_err(|e| e.code().to_owned());
    expect_code(case, got).map(|_| ())
}

fn run_turn_credential(group: &Value, case: &Value) -> Outcome {
    let cred = signing::turn_credential(
        &secret(group, case)?,
        s(case, "user_id")?,
        u(case, "expiry")?,
    );
    eq("username", cred.username.as_str(), s(case, "username")?)?;
    eq("password", cred.password.as_str(), s(case, "password")?)
}

fn run_verify_turn(group: &Value, case: &Value) -> Outcome {
    let got = signing::verify_turn_credential(
        &secret(group, case)?,
        s(case, "username")?,
        s(case, "password")?,
        u(case, "now")?,
    )
    .map_err(|e| e.code().to_owned());
    expect_code(case, got).map(|_| ())
}

fn channel_key(case: &Value) -> Result<ChannelKey, String> {
    ChannelKey::from_shared_secret(s(case, "shared_secret")?).map_err(|e| e.to_string())
}

fn call_channel(group: &Value, case: &Value) -> Result<CallChannel, String> {
    let name = opt_s(case, "channel")
        .or_else(|| opt_s(group, "channel"))
        .ok_or("vector lacks `channel`")?;
    CallChannel::parse(name).map_err(|e| e.to_string())
}

fn run_derive_key(group: &Value, case: &Value) -> Outcome {
    let master = STANDARD
        .decode(s(case, "master_key")?)
        .map_err(|e| e.to_string())?;
    let key = ChannelKey::derive(&master, &call_channel(group, case)?);
    eq(
        "shared_secret",
        key.shared_secret().as_str(),
        s(case, "shared_secret")?,
    )?;
    eq("kid", key.kid(), s(case, "kid")?)
}

fn run_seal(group: &Value, case: &Value) -> Outcome {
    let key = channel_key(case)?;
    let channel = call_channel(group, case)?;
    let Incoming::Clear(event) =
        parse_event(s(case, "event")?, &object(&case["data"])?).map_err(|e| e.to_string())?
    else {
        return Err("`data` of a seal vector must be clear".into());
    };
    let nonce: [u8; 24] = URL_SAFE_NO_PAD
        .decode(s(case, "nonce")?)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or("nonce must be 24 bytes of base64url")?;
    eq(
        "aad",
        associated_data(event.kind(), &channel, event.header()).as_str(),
        s(case, "aad")?,
    )?;
    eq(
        "plaintext",
        String::from_utf8_lossy(&sealed_plaintext(&event)).as_ref(),
        s(case, "plaintext")?,
    )?;
    let sealed = seal(&key, &channel, &event, nonce).map_err(|e| e.to_string())?;
    eq(
        "sealed data",
        &Value::Object(sealed.to_data()),
        &case["sealed_data"],
    )
}

fn run_open(group: &Value, case: &Value) -> Outcome {
    let key = channel_key(case)?;
    let channel = call_channel(group, case)?;
    let got = parse_event(s(case, "event")?, &object(&case["data"])?)
        .map_err(|e| e.code().to_owned())
        .and_then(|incoming| match incoming {
            Incoming::Sealed(sealed) => {
                open(&key, &channel, &sealed).map_err(|e| e.code().to_owned())
            }
            Incoming::Clear(_) => Err("not sealed".to_owned()),
        });
    if let Some(event) = expect_code(case, got)? {
        eq(
            "opened data",
            &Value::Object(event.to_data()),
            &case["opened"],
        )?;
    }
    Ok(())
}

fn run_guard(group: &Value, case: &Value) -> Outcome {
    let privacy = match s(case, "privacy")? {
        "strong" => Privacy::Strong,
        "standard" => Privacy::Standard,
        other => return Err(format!("unknown privacy {other}")),
    };
    let mut guard = PrivacyGuard::new(call_channel(group, case)?, privacy);
    for k in case["keys"].as_array().into_iter().flatten() {
        let key = ChannelKey::from_shared_secret(k.as_str().ok_or("keys are strings")?)
            .map_err(|e| e.to_string())?;
        guard.install_key(key);
    }
    for (i, step) in case["steps"]
        .as_array()
        .ok_or("vector lacks `steps`")?
        .iter()
        .enumerate()
    {
        let got = parse_event(s(step, "event")?, &object(&step["data"])?)
            .map_err(|e| e.code().to_owned())
            .and_then(|incoming| guard.receive(incoming).map_err(|e| e.code().to_owned()));
        expect_code(step, got).map_err(|e| format!("step {i}: {e}"))?;
    }
    Ok(())
}

type Runner = fn(&Value, &Value) -> Outcome;

/// Every op a vector group may name.
pub const OPS: [(&str, Runner); 19] = [
    ("parse_channel_name", run_parse_channel_name),
    ("build_call_channel", run_build_call_channel),
    ("parse_frame", run_parse_frame),
    ("parse_event", run_parse_event),
    ("sign_channel", run_sign_channel),
    ("verify_channel", run_verify_channel),
    ("sign_user", run_sign_user),
    ("verify_user", run_verify_user),
    ("sign_http", run_sign_http),
    ("verify_http", run_verify_http),
    ("sign_webhook", run_sign_webhook),
    ("verify_webhook", run_verify_webhook),
    ("turn_credential", run_turn_credential),
    ("verify_turn", run_verify_turn),
    ("derive_key", run_derive_key),
    ("seal", run_seal),
    ("open", run_open),
    ("guard", run_guard),
    ("parse_event_data", run_parse_event_data),
];

/// Like `parse_event` but without a channel: only the rules checkable from the event alone.
fn run_parse_event_data(_: &Value, case: &Value) -> Outcome {
    let got =
        parse_event(s(case, "event")?, &object(&case["data"])?).map_err(|e| e.code().to_owned());
    expect_code(case, got).map(|_| ())
}

/// Runs every case of one vector file.
pub fn run_file(file: &str, doc: &Value) -> Vec<CaseResult> {
    let mut out = Vec::new();
    let groups = doc["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        out.push(CaseResult {
            file: file.to_owned(),
            op: String::new(),
            id: String::new(),
            failure: Some("file has no `groups`".into()),
        });
    }
    for group in &groups {
        let op = group["op"].as_str().unwrap_or_default().to_owned();
        let runner = OPS.iter().find(|(name, _)| *name == op).map(|(_, r)| *r);
        for (i, case) in group["cases"].as_array().into_iter().flatten().enumerate() {
            let id = opt_s(case, "id").map_or_else(|| format!("#{i}"), str::to_owned);
            let failure = match runner {
                Some(run) => run(group, case).err(),
                None => Some(format!("unknown op `{op}`")),
            };
            out.push(CaseResult {
                file: file.to_owned(),
                op: op.clone(),
                id,
                failure,
            });
        }
    }
    out
}
