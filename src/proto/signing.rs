//! Every signature of the protocol (`spec/03-signing.md`), made and verified in one place.
//!
//! - Private channel: HMAC-SHA256 over `{socket_id}:{channel}`; presence adds `:{channel_data}`;
//!   the auth string is `{key}:{hex}`.
//! - User sign-in: `{socket_id}::user::{user_data}`.
//! - HTTP API: `{METHOD}\n{path}\n{query}` with the query's keys lowercased and sorted, values not
//!   escaped, `auth_signature` left out; plus `auth_version=1.0`, a timestamp window and `body_md5`.
//! - Webhooks: HMAC-SHA256 of the raw body, hex, in `X-Pusher-Signature`.
//! - TURN REST credentials (coturn `use-auth-secret`): username `{expiry}:{user_id}`, password
//!   base64 of HMAC-SHA1(secret, username).
//!
//! Invariants: every comparison of a signature or password goes through `Mac::verify_slice`, which
//! is constant-time; the time is always an argument; a [`Secret`] never appears in `Debug` output.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde_json::Value;
use sha1::Sha1;
use sha2::Sha256;

use crate::ids::SocketId;
use crate::limits::HTTP_API_TIMESTAMP_WINDOW_SECS;

/// A shared secret (app secret, TURN secret). Shows as `Secret(..)` in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret's text, for code that must hand it on (e.g. a config file writer).
    pub fn expose(&self) -> &str {
        &self.0
    }
    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A signature, credential or signed request that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("auth value is not of the form `key:signature`")]
    MalformedAuth,
    #[error("auth value names app key `{found}`, not this app's key")]
    WrongKey { found: String },
    #[error("signature does not match (string to sign: {string_to_sign:?})")]
    Mismatch { string_to_sign: String },
    #[error("presence channels need channel_data")]
    MissingChannelData,
    #[error("channel_data is only used with presence channels")]
    UnexpectedChannelData,
    #[error("channel_data is not a JSON object with a string or integer `user_id`: {reason}")]
    BadChannelData { reason: String },
    #[error("user_data is not a JSON object with a non-empty string `id`")]
    BadUserData,
    #[error("query parameter `{name}` is missing")]
    MissingParam { name: &'static str },
    #[error("query parameter `{name}` appears more than once")]
    DuplicateParam { name: String },
    #[error("query string is not valid percent-encoding")]
    BadQuery,
    #[error("auth_version `{found}` is not supported (only 1.0)")]
    UnsupportedVersion { found: String },
    #[error("auth_timestamp `{found}` is not a Unix time in seconds")]
    BadTimestamp { found: String },
    #[error(
        "auth_timestamp is {skew_secs} s away from the server clock, outside ±{HTTP_API_TIMESTAMP_WINDOW_SECS} s"
    )]
    StaleTimestamp { skew_secs: u64 },
    #[error("the request has a body but no body_md5")]
    BodyMd5Missing,
    #[error("body_md5 does not match the body")]
    BodyMd5Mismatch,
    #[error("TURN username is not `expiry:user_id`")]
    MalformedTurnUsername,
    #[error("TURN credential expired at {expiry}")]
    TurnExpired { expiry: u64 },
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        use SignatureError::*;
        match self {
            MalformedAuth => "signature.malformed_auth",
            WrongKey { .. } => "signature.wrong_key",
            Mismatch { .. } => "signature.mismatch",
            MissingChannelData => "signature.missing_channel_data",
            UnexpectedChannelData => "signature.unexpected_channel_data",
            BadChannelData { .. } => "signature.bad_channel_data",
            BadUserData => "signature.bad_user_data",
            MissingParam { .. } => "signature.missing_param",
            DuplicateParam { .. } => "signature.duplicate_param",
            BadQuery => "signature.bad_query",
            UnsupportedVersion { .. } => "signature.unsupported_version",
            BadTimestamp { .. } => "signature.bad_timestamp",
            StaleTimestamp { .. } => "signature.stale_timestamp",
            BodyMd5Missing => "signature.body_md5_missing",
            BodyMd5Mismatch => "signature.body_md5_mismatch",
            MalformedTurnUsername => "signature.malformed_turn_username",
            TurnExpired { .. } => "signature.turn_expired",
        }
    }
}

fn hmac_sha256(secret: &Secret, msg: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.bytes()).expect("HMAC takes any key");
    mac.update(msg.as_bytes());
    mac
}

/// Lowercase hex HMAC-SHA256 of `msg`.
pub fn hmac_sha256_hex(secret: &Secret, msg: &str) -> String {
    hex::encode(hmac_sha256(secret, msg).finalize().into_bytes())
}

/// Verifies a hex HMAC-SHA256 in constant time. Upper- and lowercase hex are both accepted.
fn verify_hex(secret: &Secret, msg: &str, signature_hex: &str) -> Result<(), SignatureError> {
    let mismatch = || SignatureError::Mismatch {
        string_to_sign: msg.to_owned(),
    };
    let sig = hex::decode(signature_hex).map_err(|_| mismatch())?;
    hmac_sha256(secret, msg)
        .verify_slice(&sig)
        .map_err(|_| mismatch())
}

/// Splits `key:signature` and checks the key.
fn split_auth<'a>(app_key: &str, auth: &'a str) -> Result<&'a str, SignatureError> {
    let (key, sig) = auth.split_once(':').ok_or(SignatureError::MalformedAuth)?;
    if key != app_key {
        return Err(SignatureError::WrongKey {
            found: key.to_owned(),
        });
    }
    Ok(sig)
}

/// A presence member as declared in `channel_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceMember {
    /// The user id; an integer `user_id` is kept as its decimal text.
    pub user_id: String,
    pub user_info: Option<Value>,
}

/// Reads presence `channel_data`.
pub fn parse_channel_data(channel_data: &str) -> Result<PresenceMember, SignatureError> {
    let bad = |reason: &str| SignatureError::BadChannelData {
        reason: reason.to_owned(),
    };
    let value: Value = serde_json::from_str(channel_data).map_err(|e| bad(&e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(bad("not an object"));
    };
    let user_id = match obj.remove("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => return Err(bad("user_id is not a non-empty string or an integer")),
        None => return Err(bad("user_id is missing")),
    };
    Ok(PresenceMember {
        user_id,
        user_info: obj.remove("user_info"),
    })
}

/// The string a channel authorization signs.
pub fn channel_string_to_sign(
    socket_id: &SocketId,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The `auth` value authorizing `socket_id` on `channel`.
pub fn sign_channel(
    app_key: &str,
    secret: &Secret,
    socket_id: &SocketId,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let msg = channel_string_to_sign(socket_id, channel, channel_data);
    format!("{app_key}:{}", hmac_sha256_hex(secret, &msg))
}

/// Verifies a subscription's `auth` (and, on presence channels, that `channel_data` is present and
/// well formed). Returns the presence member, if any.
pub fn verify_channel(
    app_key: &str,
    secret: &Secret,
    socket_id: &SocketId,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> Result<Option<PresenceMember>, SignatureError> {
    let is_presence =
        crate::pusher::ChannelType::of(channel) == crate::pusher::ChannelType::Presence;
    let member = match (is_presence, channel_data) {
        (true, None) => return Err(SignatureError::MissingChannelData),
        (false, Some(_)) => return Err(SignatureError::UnexpectedChannelData),
        (true, Some(d)) => Some(parse_channel_data(d)?),
        (false, None) => None,
    };
    let sig = split_auth(app_key, auth)?;
    verify_hex(
        secret,
        &channel_string_to_sign(socket_id, channel, channel_data),
        sig,
    )?;
    Ok(member)
}

/// The string a user sign-in signs.
pub fn user_string_to_sign(socket_id: &SocketId, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

fn check_user_data(user_data: &str) -> Result<String, SignatureError> {
    match serde_json::from_str::<Value>(user_data) {
        Ok(Value::Object(obj)) => match obj.get("id") {
            Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            _ => Err(SignatureError::BadUserData),
        },
        _ => Err(SignatureError::BadUserData),
    }
}

/// The `auth` value of a user sign-in.
pub fn sign_user(app_key: &str, secret: &Secret, socket_id: &SocketId, user_data: &str) -> String {
    let msg = user_string_to_sign(socket_id, user_data);
    format!("{app_key}:{}", hmac_sha256_hex(secret, &msg))
}

/// Verifies a `pusher:signin`; returns the signed-in user's id.
pub fn verify_user(
    app_key: &str,
    secret: &Secret,
    socket_id: &SocketId,
    user_data: &str,
    auth: &str,
) -> Result<String, SignatureError> {
    let id = check_user_data(user_data)?;
    let sig = split_auth(app_key, auth)?;
    verify_hex(secret, &user_string_to_sign(socket_id, user_data), sig)?;
    Ok(id)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn form_decode(s: &str) -> Result<String, SignatureError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(SignatureError::BadQuery)?;
                let hex = std::str::from_utf8(hex).map_err(|_| SignatureError::BadQuery)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| SignatureError::BadQuery)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| SignatureError::BadQuery)
}

/// Parses a raw query string into decoded `(key, value)` pairs, refusing duplicate keys (compared
/// case-insensitively, as the signature lowercases them).
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, SignatureError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (form_decode(k)?, form_decode(v)?);
        if params.iter().any(|(pk, _)| pk.eq_ignore_ascii_case(&k)) {
            return Err(SignatureError::DuplicateParam { name: k });
        }
        params.push((k, v));
    }
    Ok(params)
}

/// The string an HTTP API request signs: method, path and the sorted, lowercased, unescaped query
/// without `auth_signature`.
pub fn http_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(String, &str)> = params
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    sorted.sort();
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        query.join("&")
    )
}

/// Lowercase hex MD5 of a request body.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Adds `auth_key`, `auth_timestamp`, `auth_version`, `body_md5` (for a non-empty body) and
/// `auth_signature` to `params`, as a client of the HTTP API does.
pub fn sign_http_request(
    app_key: &str,
    secret: &Secret,
    method: &str,
    path: &str,
    mut params: Vec<(String, String)>,
    body: &[u8],
    timestamp: u64,
) -> Vec<(String, String)> {
    params.push(("auth_key".into(), app_key.into()));
    params.push(("auth_timestamp".into(), timestamp.to_string()));
    params.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        params.push(("body_md5".into(), body_md5(body)));
    }
    let sig = hmac_sha256_hex(secret, &http_string_to_sign(method, path, &params));
    params.push(("auth_signature".into(), sig));
    params
}

/// Verifies an HTTP API request as received: checks the key, version, timestamp window (against
/// `now_unix`), body hash and signature, in that order.
pub fn verify_http_request(
    app_key: &str,
    secret: &Secret,
    method: &str,
    path: &str,
    raw_query: &str,
    body: &[u8],
    now_unix: u64,
) -> Result<(), SignatureError> {
    let params = parse_query(raw_query)?;
    let get = |name: &'static str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let need = |name: &'static str| get(name).ok_or(SignatureError::MissingParam { name });
    let key = need("auth_key")?;
    if key != app_key {
        return Err(SignatureError::WrongKey {
            found: key.to_owned(),
        });
    }
    let version = need("auth_version")?;
    if version != "1.0" {
        return Err(SignatureError::UnsupportedVersion {
            found: version.to_owned(),
        });
    }
    let ts_text = need("auth_timestamp")?;
    let ts: u64 = ts_text.parse().map_err(|_| SignatureError::BadTimestamp {
        found: ts_text.to_owned(),
    })?;
    let skew_secs = ts.abs_diff(now_unix);
    if skew_secs > HTTP_API_TIMESTAMP_WINDOW_SECS {
        return Err(SignatureError::StaleTimestamp { skew_secs });
    }
    match get("body_md5") {
        None if !body.is_empty() => return Err(SignatureError::BodyMd5Missing),
        Some(md5) if !md5.eq_ignore_ascii_case(&body_md5(body)) => {
            return Err(SignatureError::BodyMd5Mismatch);
        }
        _ => {}
    }
    let sig = need("auth_signature")?;
    verify_hex(secret, &http_string_to_sign(method, path, &params), sig)
}

/// `X-Pusher-Signature` of a webhook body.
pub fn sign_webhook(secret: &Secret, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.bytes()).expect("HMAC takes any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Verifies a webhook delivery's `X-Pusher-Key` and `X-Pusher-Signature` against the raw body.
pub fn verify_webhook(
    app_key: &str,
    secret: &Secret,
    header_key: &str,
    header_signature: &str,
    body: &[u8],
) -> Result<(), SignatureError> {
    if header_key != app_key {
        return Err(SignatureError::WrongKey {
            found: header_key.to_owned(),
        });
    }
    let mismatch = || SignatureError::Mismatch {
        string_to_sign: "<raw request body>".to_owned(),
    };
    let sig = hex::decode(header_signature).map_err(|_| mismatch())?;
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| mismatch())
}

/// A time-limited TURN credential for coturn's `use-auth-secret` mode.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for TurnCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnCredential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn hmac_sha1(secret: &Secret, msg: &str) -> Hmac<Sha1> {
    let mut mac = <Hmac<Sha1>>::new_from_slice(secret.bytes()).expect("HMAC takes any key");
    mac.update(msg.as_bytes());
    mac
}

/// Mints the credential of `user_id` valid until `expiry_unix`.
pub fn turn_credential(secret: &Secret, user_id: &str, expiry_unix: u64) -> TurnCredential {
    let username = format!("{expiry_unix}:{user_id}");
    let password = STANDARD.encode(hmac_sha1(secret, &username).finalize().into_bytes());
    TurnCredential { username, password }
}

/// Checks a TURN credential as coturn does: the password must match and the expiry must not have
/// passed at `now_unix`. Returns the user id.
pub fn verify_turn_credential(
    secret: &Secret,
    username: &str,
    password: &str,
    now_unix: u64,
) -> Result<String, SignatureError> {
    let (expiry, user) = username
        .split_once(':')
        .ok_or(SignatureError::MalformedTurnUsername)?;
    let expiry: u64 = expiry
        .parse()
        .map_err(|_| SignatureError::MalformedTurnUsername)?;
    let mismatch = || SignatureError::Mismatch {
        string_to_sign: username.to_owned(),
    };
    let given = STANDARD.decode(password).map_err(|_| mismatch())?;
    hmac_sha1(secret, username)
        .verify_slice(&given)
        .map_err(|_| mismatch())?;
    if expiry <= now_unix {
        return Err(SignatureError::TurnExpired { expiry });
    }
    Ok(user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        // [SEC-002]: logging a config or an error must not leak the key.
        let shown = format!("{:?}", Secret::new("s3cret-value"));
        assert!(!shown.contains("s3cret"), "{shown}");
        let key = crate::envelope::ChannelKey::from_bytes([7; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.shared_secret()), "{shown}");
    }

    // Pusher's published worked examples ("Generating authentication and authorization strings"
    // and "HTTP API reference"): key 278d425bdf160c739803, secret 7ad3773142a6692b25b8.
    const KEY: &str = "278d425bdf160c739803";
    fn secret() -> Secret {
        Secret::new("7ad3773142a6692b25b8")
    }
    fn socket() -> SocketId {
        SocketId::parse("1234.1234").unwrap()
    }

    #[test]
    fn reproduces_pusher_private_channel_example() {
        let auth = sign_channel(KEY, &secret(), &socket(), "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        verify_channel(KEY, &secret(), &socket(), "private-foobar", None, &auth).unwrap();
    }

    #[test]
    fn reproduces_pusher_presence_channel_example() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
        let auth = sign_channel(KEY, &secret(), &socket(), "presence-foobar", Some(data));
        assert_eq!(
            auth,
            "278d425bdf160c739803:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"
        );
        let member = verify_channel(
            KEY,
            &secret(),
            &socket(),
            "presence-foobar",
            Some(data),
            &auth,
        )
        .unwrap()
        .unwrap();
        assert_eq!(member.user_id, "10");
    }

    #[test]
    fn reproduces_pusher_http_api_example() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
        let params = sign_http_request(
            KEY,
            &secret(),
            "POST",
            "/apps/3/events",
            vec![],
            body,
            1353088179,
        );
        let sig = &params.last().unwrap().1;
        assert_eq!(
            sig,
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let query = query.join("&");
        verify_http_request(
            KEY,
            &secret(),
            "POST",
            "/apps/3/events",
            &query,
            body,
            1353088179 + 600,
        )
        .unwrap();
        let stale = verify_http_request(
            KEY,
            &secret(),
            "POST",
            "/apps/3/events",
            &query,
            body,
            1353088179 + 601,
        );
        assert_eq!(stale.unwrap_err().code(), "signature.stale_timestamp");
        let tampered = verify_http_request(
            KEY,
            &secret(),
            "POST",
            "/apps/3/events",
            &query,
            b"{}",
            1353088179,
        );
        assert_eq!(tampered.unwrap_err().code(), "signature.body_md5_mismatch");
    }

    #[test]
    fn signatures_for_another_socket_or_channel_fail() {
        let auth = sign_channel(KEY, &secret(), &socket(), "private-foobar", None);
        let other = SocketId::parse("1234.1235").unwrap();
        let err = verify_channel(KEY, &secret(), &other, "private-foobar", None, &auth);
        assert_eq!(err.unwrap_err().code(), "signature.mismatch");
        let err = verify_channel(KEY, &secret(), &socket(), "private-foobaz", None, &auth);
        assert_eq!(err.unwrap_err().code(), "signature.mismatch");
        let err = verify_channel(
            "otherkey",
            &secret(),
            &socket(),
            "private-foobar",
            None,
            &auth,
        );
        assert_eq!(err.unwrap_err().code(), "signature.wrong_key");
        let err = verify_channel(KEY, &secret(), &socket(), "private-foobar", None, "nocolon");
        assert_eq!(err.unwrap_err().code(), "signature.malformed_auth");
    }

    #[test]
    fn tampered_presence_data_fails() {
        let data = r#"{"user_id":"alice"}"#;
        let auth = sign_channel(KEY, &secret(), &socket(), "presence-x", Some(data));
        let forged = r#"{"user_id":"mallory"}"#;
        let err = verify_channel(KEY, &secret(), &socket(), "presence-x", Some(forged), &auth);
        assert_eq!(err.unwrap_err().code(), "signature.mismatch");
        let err = verify_channel(KEY, &secret(), &socket(), "presence-x", None, &auth);
        assert_eq!(err.unwrap_err().code(), "signature.missing_channel_data");
    }

    #[test]
    fn user_sign_in_round_trip() {
        let data = r#"{"id":"12345"}"#;
        let auth = sign_user(KEY, &secret(), &socket(), data);
        assert_eq!(
            verify_user(KEY, &secret(), &socket(), data, &auth).unwrap(),
            "12345"
        );
        let err = verify_user(KEY, &secret(), &socket(), r#"{"id":""}"#, &auth);
        assert_eq!(err.unwrap_err().code(), "signature.bad_user_data");
    }

    #[test]
    fn query_decoding_and_ordering() {
        let params = parse_query("b=2&A=1&name=Something+else&x=%2F").unwrap();
        assert_eq!(
            http_string_to_sign("get", "/p", &params),
            "GET\n/p\na=1&b=2&name=Something else&x=/"
        );
        assert_eq!(
            parse_query("a=1&A=2").unwrap_err().code(),
            "signature.duplicate_param"
        );
        assert_eq!(
            parse_query("a=%zz").unwrap_err().code(),
            "signature.bad_query"
        );
    }

    #[test]
    fn webhook_and_turn() {
        let body = br#"{"time_ms":1,"events":[]}"#;
        let sig = sign_webhook(&secret(), body);
        verify_webhook(KEY, &secret(), KEY, &sig, body).unwrap();
        assert!(verify_webhook(KEY, &secret(), KEY, &sig, b"{}").is_err());
        let cred = turn_credential(&Secret::new("turn-secret"), "alice", 2_000);
        assert_eq!(cred.username, "2000:alice");
        assert_eq!(
            verify_turn_credential(
                &Secret::new("turn-secret"),
                &cred.username,
                &cred.password,
                1_999
            )
            .unwrap(),
            "alice"
        );
        let expired = verify_turn_credential(
            &Secret::new("turn-secret"),
            &cred.username,
            &cred.password,
            2_000,
        );
        assert_eq!(expired.unwrap_err().code(), "signature.turn_expired");
        let wrong =
            verify_turn_credential(&Secret::new("other"), &cred.username, &cred.password, 0);
        assert_eq!(wrong.unwrap_err().code(), "signature.mismatch");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = format!("{:?}", secret());
        assert!(!s.contains("7ad3"));
        let cred = turn_credential(&secret(), "u", 1);
        assert!(!format!("{cred:?}").contains(&cred.password));
    }
}
