//! What the trusted server does with server events it could not deliver: the retry policy of the
//! outbox, pure (time is an argument).
//!
//! Invariants: every entry is retried on its own schedule, so one entry the realtime server
//! refuses never delays another; an entry is given up on (dead-lettered, kept with its reason)
//! only when the realtime server refused it as malformed several times in a row, never because the
//! realtime server was unreachable or overloaded; an HTTP API request names at most
//! [`MAX_CHANNELS_PER_TRIGGER`] channels (Pusher's limit), so larger fan-outs are split when
//! they are stored.

/// Channels one `POST /apps/{id}/events` may name.
pub const MAX_CHANNELS_PER_TRIGGER: usize = 100;
/// The first retry's delay; each failure doubles it up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: u64 = 250;
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// Refusals of one entry as a bad request before it is dead-lettered: a request the realtime
/// server keeps calling malformed will not become well formed by waiting, but one refusal may be
/// a configuration being fixed (a rotated secret), so it gets a few tries first.
pub const REFUSALS_BEFORE_DEAD_LETTER: u32 = 5;

/// How one attempt to deliver an entry failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// No answer: connection refused, reset, timed out.
    Unreachable,
    /// An HTTP status other than 2xx.
    Status(u16),
}

impl SendFailure {
    /// Whether waiting can help: network failures, 5xx, 408 and 429 are temporary; other 4xx mean
    /// the request itself was refused.
    pub fn is_temporary(self) -> bool {
        match self {
            SendFailure::Unreachable => true,
            SendFailure::Status(s) => s >= 500 || s == 408 || s == 429,
        }
    }
}

/// What to do with an entry after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this time (Unix ms).
    At(u64),
    /// Stop trying; keep the entry, visible, with the reason.
    DeadLetter,
}

/// The decision after attempt number `attempts` (1 for the first) failed with `failure` at
/// `now_ms`. `refusals` counts the failures of this entry that were refusals, this one included.
pub fn after_failure(attempts: u32, refusals: u32, failure: SendFailure, now_ms: u64) -> Retry {
    if !failure.is_temporary() && refusals >= REFUSALS_BEFORE_DEAD_LETTER {
        return Retry::DeadLetter;
    }
    let shift = attempts.saturating_sub(1).min(16);
    let backoff = FIRST_BACKOFF_MS
        .saturating_mul(1u64 << shift)
        .min(MAX_BACKOFF_MS);
    Retry::At(now_ms.saturating_add(backoff))
}

/// Splits a fan-out into groups the HTTP API accepts, in order.
pub fn split_channels(channels: &[String]) -> Vec<Vec<String>> {
    channels
        .chunks(MAX_CHANNELS_PER_TRIGGER)
        .map(<[String]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_failures_back_off_and_never_give_up() {
        let mut at = Vec::new();
        for attempt in 1..=40 {
            match after_failure(attempt, 0, SendFailure::Unreachable, 1_000) {
                Retry::At(t) => at.push(t - 1_000),
                Retry::DeadLetter => panic!("attempt {attempt} gave up on an unreachable server"),
            }
        }
        assert_eq!(&at[..4], [250, 500, 1_000, 2_000]);
        assert!(at.iter().all(|d| *d <= MAX_BACKOFF_MS));
        assert_eq!(*at.last().unwrap(), MAX_BACKOFF_MS);
        for status in [500, 502, 503, 408, 429] {
            assert!(matches!(
                after_failure(9, 9, SendFailure::Status(status), 0),
                Retry::At(_)
            ));
        }
    }

    #[test]
    fn a_request_refused_again_and_again_is_dead_lettered() {
        for status in [400, 401, 413] {
            let f = SendFailure::Status(status);
            assert!(matches!(after_failure(1, 1, f, 0), Retry::At(_)));
            assert_eq!(
                after_failure(7, REFUSALS_BEFORE_DEAD_LETTER, f, 0),
                Retry::DeadLetter
            );
        }
    }

    #[test]
    fn fan_outs_are_split_at_the_api_limit_in_order() {
        let channels: Vec<String> = (0..250).map(|i| format!("c{i}")).collect();
        let groups = split_channels(&channels);
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert_eq!(groups.concat(), channels);
        assert!(split_channels(&[]).is_empty());
    }
}
