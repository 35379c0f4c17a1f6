//! Incoming webhooks from the realtime server: verified over the raw bytes before anything else,
//! then checked for freshness, then parsed (`spec/03-signing.md` [SIGN-021]).

use crate::signing::{self, Secret, SignatureError};

/// Deliveries older or newer than this (by their `time_ms`) are refused as stale.
pub const MAX_WEBHOOK_AGE_MS: u64 = 5 * 60 * 1000;

pub use crate::pusher::webhook::{WebhookBody, WebhookEvent, WebhookKind};

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    #[error("missing X-Pusher-Key or X-Pusher-Signature header")]
    MissingHeaders,
    #[error("bad signature: {0}")]
    Signature(SignatureError),
    #[error("delivery time_ms is {age_ms} ms away from now, more than {MAX_WEBHOOK_AGE_MS}")]
    Stale { age_ms: u64 },
    #[error("body is not a webhook: {0}")]
    Malformed(String),
}

impl WebhookError {
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MissingHeaders => "webhook.missing_headers",
            WebhookError::Signature(e) => e.code(),
            WebhookError::Stale { .. } => "webhook.stale",
            WebhookError::Malformed(_) => "webhook.malformed",
        }
    }
}

/// Verifies a delivery and parses it. `now_ms` is the wall clock in Unix milliseconds.
pub fn verify(
    app_key: &str,
    secret: &Secret,
    header_key: Option<&str>,
    header_signature: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> Result<WebhookBody, WebhookError> {
    let (Some(key), Some(sig)) = (header_key, header_signature) else {
        return Err(WebhookError::MissingHeaders);
    };
    signing::verify_webhook(app_key, secret, key, sig, body).map_err(WebhookError::Signature)?;
    let parsed: WebhookBody =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let age_ms = parsed.time_ms.abs_diff(now_ms);
    if age_ms > MAX_WEBHOOK_AGE_MS {
        return Err(WebhookError::Stale { age_ms });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_then_freshness_then_shape() {
        let secret = Secret::new("s");
        let body = br#"{"time_ms":1000000,"events":[{"name":"member_added","channel":"presence-a","user_id":"u"}]}"#;
        let sig = signing::sign_webhook(&secret, body);
        let ok = verify("k", &secret, Some("k"), Some(&sig), body, 1_000_000).unwrap();
        assert_eq!(ok.events[0].user_id.as_deref(), Some("u"));
        let err = |key, s: Option<&str>, b: &[u8], now| {
            verify("k", &secret, key, s, b, now).unwrap_err().code()
        };
        assert_eq!(
            err(Some("k"), None, body, 1_000_000),
            "webhook.missing_headers"
        );
        assert_eq!(
            err(Some("k"), Some(&sig), b"{}", 1_000_000),
            "signature.mismatch"
        );
        assert_eq!(
            err(Some("x"), Some(&sig), body, 1_000_000),
            "signature.wrong_key"
        );
        assert_eq!(
            err(
                Some("k"),
                Some(&sig),
                body,
                1_000_000 + MAX_WEBHOOK_AGE_MS + 1
            ),
            "webhook.stale"
        );
        let junk = b"[1]";
        let junk_sig = signing::sign_webhook(&secret, junk);
        assert_eq!(
            err(Some("k"), Some(&junk_sig), junk, 0),
            "webhook.malformed"
        );
    }
}
