//! The realtime server's webhook queue, pure (time is an argument): what to deliver to each app's
//! webhook URL, in which batches, and when to try again.
//!
//! Invariants:
//! - per app, at most one batch is in flight, so deliveries reach the receiver in order;
//! - a retry carries the same `time_ms` stamp as the first attempt ([`Batch::time_ms`]), so its
//!   body is byte for byte the same and a receiver that applied the first attempt (and whose
//!   answer was lost) recognises it; only a batch that has been failing for longer than
//!   [`RESTAMP_AFTER_MS`] gets a fresh stamp, so receivers' freshness windows (5 minutes at the
//!   reference trusted server) do not refuse it for ever;
//! - a batch that fails is retried with backoff until it is delivered: the queue never gives up on
//!   an event because the receiver was down (a trusted server that is restarting loses nothing);
//! - memory is bounded per app, in events, separately for events on protected channels
//!   (`private-`, `presence-`: what call records are kept from) and for events on public
//!   channels. Only an authenticated subscriber can cause a protected event, so a flood of
//!   anonymous public subscriptions fills only the public share and never pushes out a call's
//!   events. When a share is full its oldest event is dropped and counted ([`WebhookStats`]).
//!
//! How a shell drives it is documented once, on [`WebhookQueue`].

use std::collections::VecDeque;

use crate::pusher::webhook::{WebhookBody, WebhookEvent};

/// Events per delivery at most.
pub const MAX_BATCH: usize = 100;
/// The first retry's delay; each failure doubles it up to [`MAX_RETRY_DELAY_MS`].
pub const FIRST_RETRY_MS: u64 = 250;
pub const MAX_RETRY_DELAY_MS: u64 = 10_000;
/// A batch failing for this long gets a new `time_ms` stamp on its next attempt.
pub const RESTAMP_AFTER_MS: u64 = 4 * 60 * 1000;

/// How many events an app's queue holds before it drops the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Events on `private-` and `presence-` channels.
    pub protected: usize,
    /// Events on public channels.
    pub public: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            protected: 100_000,
            public: 10_000,
        }
    }
}

/// What happened to an app's webhook events so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookStats {
    pub queued: u64,
    pub delivered: u64,
    /// Failed attempts (each is retried).
    pub failed_attempts: u64,
    /// Events pushed out of a full queue, by share.
    pub dropped_protected: u64,
    pub dropped_public: u64,
}

/// One delivery to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub app: usize,
    pub id: u64,
    pub events: Vec<WebhookEvent>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The delivery's `time_ms`.
    pub time_ms: u64,
}

#[derive(Debug, Clone)]
struct InFlight {
    id: u64,
    events: Vec<WebhookEvent>,
    attempt: u32,
    time_ms: u64,
    /// `None` while a delivery runs; the time of the next attempt after a failure.
    retry_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct AppQueue {
    protected: VecDeque<WebhookEvent>,
    public: VecDeque<WebhookEvent>,
    /// When the oldest waiting event arrived: the batch window counts from it.
    oldest_at_ms: Option<u64>,
    in_flight: Option<InFlight>,
    stats: WebhookStats,
}

/// Every app's queue.
///
/// Drain order for the shell: after [`WebhookQueue::push`], [`WebhookQueue::delivered`] or
/// [`WebhookQueue::failed`], call [`WebhookQueue::poll_batch`] until it returns `None`, then sleep
/// until [`WebhookQueue::poll_timeout`] and poll again.
#[derive(Debug, Clone)]
pub struct WebhookQueue {
    apps: Vec<AppQueue>,
    batch_window_ms: u64,
    limits: QueueLimits,
    next_id: u64,
}

fn is_protected(event: &WebhookEvent) -> bool {
    crate::pusher::ChannelType::of(&event.channel).is_protected()
}

/// Whether the receiver's answer to an attempt (`None`: no answer) means the batch arrived: a
/// 2xx, or 409, which a receiver that applies each body once ([SRV-013]) gives for a body it
/// applied already (the first attempt's answer was lost). Anything else is retried.
pub fn answer_means_delivered(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s) || s == 409)
}

impl Batch {
    /// The body to sign and send.
    pub fn body(&self) -> WebhookBody {
        WebhookBody {
            time_ms: self.time_ms,
            events: self.events.clone(),
        }
    }
}

impl WebhookQueue {
    /// A queue for `apps` apps that collects events for `batch_window_ms` before sending them.
    pub fn new(apps: usize, batch_window_ms: u64, limits: QueueLimits) -> WebhookQueue {
        WebhookQueue {
            apps: vec![AppQueue::default(); apps],
            batch_window_ms,
            limits,
            next_id: 1,
        }
    }

    /// Queues one event of app `app`.
    pub fn push(&mut self, app: usize, event: WebhookEvent, now_ms: u64) {
        let Some(q) = self.apps.get_mut(app) else {
            return;
        };
        q.stats.queued += 1;
        q.oldest_at_ms.get_or_insert(now_ms);
        if is_protected(&event) {
            if q.protected.len() >= self.limits.protected {
                q.protected.pop_front();
                q.stats.dropped_protected += 1;
            }
            q.protected.push_back(event);
        } else {
            if q.public.len() >= self.limits.public {
                q.public.pop_front();
                q.stats.dropped_public += 1;
            }
            q.public.push_back(event);
        }
    }

    /// The next delivery to start, if one is due: a retry whose time has come, or a new batch of
    /// an idle app whose window has passed (or that has a full batch waiting).
    pub fn poll_batch(&mut self, now_ms: u64) -> Option<Batch> {
        for (app, q) in self.apps.iter_mut().enumerate() {
            if let Some(f) = &mut q.in_flight {
                if f.retry_at_ms.is_some_and(|t| t <= now_ms) {
                    f.retry_at_ms = None;
                    f.attempt += 1;
                    if now_ms.saturating_sub(f.time_ms) > RESTAMP_AFTER_MS {
                        f.time_ms = now_ms;
                    }
                    return Some(Batch {
                        app,
                        id: f.id,
                        events: f.events.clone(),
                        attempt: f.attempt,
                        time_ms: f.time_ms,
                    });
                }
                continue;
            }
            let waiting = q.protected.len() + q.public.len();
            let window_over = q
                .oldest_at_ms
                .is_some_and(|t| now_ms >= t.saturating_add(self.batch_window_ms));
            if waiting == 0 || !(window_over || waiting >= MAX_BATCH) {
                continue;
            }
            // Events of calls first; public channels' events fill what is left.
            let mut events = Vec::with_capacity(waiting.min(MAX_BATCH));
            while events.len() < MAX_BATCH {
                match q.protected.pop_front().or_else(|| q.public.pop_front()) {
                    Some(e) => events.push(e),
                    None => break,
                }
            }
            q.oldest_at_ms = (!q.protected.is_empty() || !q.public.is_empty()).then_some(now_ms);
            let id = self.next_id;
            self.next_id += 1;
            q.in_flight = Some(InFlight {
                id,
                events: events.clone(),
                attempt: 1,
                time_ms: now_ms,
                retry_at_ms: None,
            });
            return Some(Batch {
                app,
                id,
                events,
                attempt: 1,
                time_ms: now_ms,
            });
        }
        None
    }

    /// The receiver took batch `id` of `app`.
    pub fn delivered(&mut self, app: usize, id: u64) {
        if let Some(q) = self.apps.get_mut(app)
            && let Some(f) = q.in_flight.take_if(|f| f.id == id)
        {
            q.stats.delivered += f.events.len() as u64;
        }
    }

    /// Batch `id` of `app` was refused or could not be sent: it is tried again after a backoff.
    pub fn failed(&mut self, app: usize, id: u64, now_ms: u64) {
        if let Some(q) = self.apps.get_mut(app)
            && let Some(f) = q.in_flight.as_mut().filter(|f| f.id == id)
        {
            q.stats.failed_attempts += 1;
            let shift = f.attempt.saturating_sub(1).min(16);
            let delay = FIRST_RETRY_MS
                .saturating_mul(1u64 << shift)
                .min(MAX_RETRY_DELAY_MS);
            f.retry_at_ms = Some(now_ms.saturating_add(delay));
        }
    }

    /// When [`WebhookQueue::poll_batch`] may next return something, if anything waits.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.apps
            .iter()
            .filter_map(|q| match &q.in_flight {
                Some(f) => f.retry_at_ms,
                None => q
                    .oldest_at_ms
                    .map(|t| t.saturating_add(self.batch_window_ms)),
            })
            .min()
    }

    pub fn stats(&self, app: usize) -> WebhookStats {
        self.apps.get(app).map(|q| q.stats).unwrap_or_default()
    }

    /// Events waiting or in flight for `app`.
    pub fn pending(&self, app: usize) -> usize {
        self.apps.get(app).map_or(0, |q| {
            q.protected.len() + q.public.len() + q.in_flight.as_ref().map_or(0, |f| f.events.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(channel: &str, n: u64) -> WebhookEvent {
        WebhookEvent::client_event(channel, "client-n", n.to_string(), "1.2", None)
    }

    fn ns(b: &Batch) -> Vec<u64> {
        b.events
            .iter()
            .map(|e| e.data.as_ref().unwrap().as_str().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn a_conflict_means_applied_before_and_other_answers_are_retried() {
        for (status, delivered) in [
            (Some(200), true),
            (Some(204), true),
            (Some(409), true),
            (Some(400), false),
            (Some(401), false),
            (Some(500), false),
            (Some(503), false),
            (None, false),
        ] {
            assert_eq!(answer_means_delivered(status), delivered, "{status:?}");
        }
    }

    #[test]
    fn batches_wait_for_the_window_and_keep_order() {
        let mut q = WebhookQueue::new(1, 50, QueueLimits::default());
        q.push(0, ev("presence-a", 1), 1_000);
        q.push(0, ev("presence-a", 2), 1_010);
        assert_eq!(q.poll_batch(1_049), None);
        assert_eq!(q.poll_timeout(), Some(1_050));
        let b = q.poll_batch(1_050).unwrap();
        assert_eq!((ns(&b), b.attempt), (vec![1, 2], 1));
        q.push(0, ev("presence-a", 3), 1_060);
        assert_eq!(q.poll_batch(2_000), None, "one batch in flight per app");
        q.delivered(0, b.id);
        assert_eq!(ns(&q.poll_batch(2_000).unwrap()), [3]);
        assert_eq!(q.stats(0).delivered, 2);
    }

    #[test]
    fn a_failing_receiver_gets_the_same_batch_again_with_backoff_for_ever() {
        let mut q = WebhookQueue::new(1, 0, QueueLimits::default());
        q.push(0, ev("private-x", 7), 0);
        let mut b = q.poll_batch(0).unwrap();
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..30 {
            q.failed(0, b.id, now);
            let due = q.poll_timeout().unwrap();
            delays.push(due - now);
            assert_eq!(q.poll_batch(due - 1), None);
            now = due;
            b = q.poll_batch(now).unwrap();
            assert_eq!(ns(&b), [7]);
            if now <= RESTAMP_AFTER_MS {
                assert_eq!(b.time_ms, 0, "retries keep the first stamp");
            }
        }
        assert_eq!(&delays[..3], [250, 500, 1_000]);
        assert_eq!(*delays.last().unwrap(), MAX_RETRY_DELAY_MS);
        assert_eq!(b.attempt, 31);
        q.delivered(0, b.id);
        assert_eq!(q.pending(0), 0);
        assert_eq!(q.stats(0).failed_attempts, 30);
    }

    #[test]
    fn a_batch_failing_past_the_freshness_margin_gets_a_new_stamp() {
        let mut q = WebhookQueue::new(1, 0, QueueLimits::default());
        q.push(0, ev("private-x", 1), 0);
        let b = q.poll_batch(0).unwrap();
        q.failed(0, b.id, RESTAMP_AFTER_MS + 1);
        let again = q.poll_batch(RESTAMP_AFTER_MS + 1_000).unwrap();
        assert_eq!(again.time_ms, RESTAMP_AFTER_MS + 1_000);
    }

    #[test]
    fn a_public_flood_never_pushes_out_a_calls_events() {
        let limits = QueueLimits {
            protected: 10,
            public: 5,
        };
        let mut q = WebhookQueue::new(1, 0, limits);
        q.push(0, ev("presence-call.room.r.c", 0), 0);
        for n in 1..=1_000 {
            q.push(0, ev(&format!("flood-{n}"), n), 0);
        }
        q.push(0, ev("presence-call.room.r.c", 1_001), 0);
        let s = q.stats(0);
        assert_eq!((s.dropped_public, s.dropped_protected), (995, 0));
        let b = q.poll_batch(0).unwrap();
        assert_eq!(&ns(&b)[..2], [0, 1_001], "call events first");
        assert_eq!(b.events.len(), 7);
        // A full protected share drops its own oldest event, counted.
        for n in 0..11 {
            q.push(0, ev("private-y", n), 1);
        }
        assert_eq!(q.stats(0).dropped_protected, 1);
    }

    #[test]
    fn apps_do_not_wait_for_each_other() {
        let mut q = WebhookQueue::new(2, 0, QueueLimits::default());
        q.push(0, ev("private-a", 1), 0);
        q.push(1, ev("private-b", 2), 0);
        let a = q.poll_batch(0).unwrap();
        let b = q.poll_batch(0).unwrap();
        assert_eq!((a.app, b.app), (0, 1));
        q.failed(0, a.id, 0);
        q.push(1, ev("private-b", 3), 0);
        q.delivered(1, b.id);
        assert_eq!(q.poll_batch(0).map(|x| x.app), Some(1));
    }

    #[test]
    fn a_full_batch_goes_before_the_window_ends() {
        let mut q = WebhookQueue::new(1, 60_000, QueueLimits::default());
        for n in 0..MAX_BATCH as u64 {
            q.push(0, ev("private-z", n), 0);
        }
        assert_eq!(q.poll_batch(1).unwrap().events.len(), MAX_BATCH);
    }
}
