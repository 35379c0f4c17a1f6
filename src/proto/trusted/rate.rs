//! Per-user rate limit of call creation (`POST /calls`), pure: a token bucket per user, with time
//! as an argument. Applied before any other work on the request ([SRV-018]).
//!
//! Invariant: memory is bounded: at most [`MAX_TRACKED_USERS`] buckets; the one idle longest is
//! forgotten first (a forgotten user starts with a full bucket, which is the lenient direction).

use std::collections::HashMap;

/// Users whose buckets are kept at once.
pub const MAX_TRACKED_USERS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Calls per minute and burst, per user.
#[derive(Debug, Clone)]
pub struct CallRateLimiter {
    per_minute: u32,
    burst: u32,
    buckets: HashMap<String, Bucket>,
}

impl CallRateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> CallRateLimiter {
        CallRateLimiter {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one call for `user` at `now_ms`; `Err(retry_after_ms)` when the user is over the
    /// limit (nothing is taken then).
    pub fn check(&mut self, user: &str, now_ms: u64) -> Result<(), u64> {
        let rate_per_ms = f64::from(self.per_minute) / 60_000.0;
        let burst = f64::from(self.burst);
        if !self.buckets.contains_key(user)
            && self.buckets.len() >= MAX_TRACKED_USERS
            && let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at_ms)
                .map(|(u, _)| u.clone())
        {
            self.buckets.remove(&oldest);
        }
        let b = self.buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.at_ms) as f64;
        b.tokens = (b.tokens + elapsed * rate_per_ms).min(burst);
        b.at_ms = b.at_ms.max(now_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate_per_ms).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate_then_a_wait() {
        let mut l = CallRateLimiter::new(6, 3);
        for _ in 0..3 {
            assert_eq!(l.check("alice", 0), Ok(()));
        }
        let wait = l.check("alice", 0).unwrap_err();
        assert_eq!(wait, 10_000, "one call per 10 s at 6 per minute");
        assert_eq!(l.check("bob", 0), Ok(()), "users are limited separately");
        assert!(l.check("alice", 9_999).is_err());
        assert_eq!(l.check("alice", 10_000), Ok(()));
        // 3000 attempts in a second give the burst and nothing more.
        let mut l = CallRateLimiter::new(10, 5);
        let taken = (0..3000)
            .filter(|i| l.check("mallory", i / 3).is_ok())
            .count();
        assert_eq!(taken, 5);
    }
}
