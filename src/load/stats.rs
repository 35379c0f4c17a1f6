//! What a load run measured, kept and summed without I/O: latency samples and their percentiles,
//! the delivery ledger of one call (sent, delivered, lost, duplicated, out of order), and the
//! totals of a run. Times are microseconds on the run's own clock, passed in by the shell.
//!
//! Invariant: every event a call sends is counted exactly once at the end of the call, as
//! delivered or lost; a second arrival is a duplicate and never a second delivery.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Latency samples in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<u64>);

/// Percentiles of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Samples {
    pub fn push(&mut self, micros: u64) {
        self.0.push(micros);
    }

    pub fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nearest-rank percentiles (the sample at rank ⌈p·n⌉), so a reported p99 is a latency that
    /// really occurred.
    pub fn percentiles(&self) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles::default();
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let at = |p: f64| {
            let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1] as f64 / 1000.0
        };
        Percentiles {
            count: sorted.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: sorted[sorted.len() - 1] as f64 / 1000.0,
        }
    }
}

/// One event a call sent and expects the other party to receive.
#[derive(Debug, Clone)]
struct Sent {
    kind: String,
    /// When the script meant to send it, and when it did.
    scheduled_us: u64,
    sent_us: u64,
    received: bool,
}

/// What arriving told about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival; latencies from the scheduled and the actual send, in microseconds.
    Delivered { from_scheduled: u64, from_sent: u64 },
    /// It had arrived before.
    Duplicate,
    /// Not an event this call sent (another run's, or one the ledger never saw).
    Unknown,
}

/// The delivery ledger of one call: keyed by sender party and `seq`.
#[derive(Debug, Default)]
pub struct Ledger {
    sent: HashMap<(String, u64), Sent>,
    /// Highest seq received from each sender so far (out-of-order detection).
    highest: HashMap<String, u64>,
    out_of_order: BTreeMap<String, usize>,
    duplicated: BTreeMap<String, usize>,
}

impl Ledger {
    pub fn sent(&mut self, party: &str, seq: u64, kind: &str, scheduled_us: u64, sent_us: u64) {
        self.sent.insert(
            (party.to_owned(), seq),
            Sent {
                kind: kind.to_owned(),
                scheduled_us,
                sent_us,
                received: false,
            },
        );
    }

    pub fn received(&mut self, party: &str, seq: u64, at_us: u64) -> Arrival {
        let Some(s) = self.sent.get_mut(&(party.to_owned(), seq)) else {
            return Arrival::Unknown;
        };
        if s.received {
            *self.duplicated.entry(s.kind.clone()).or_default() += 1;
            return Arrival::Duplicate;
        }
        s.received = true;
        let highest = self.highest.entry(party.to_owned()).or_insert(0);
        if seq < *highest {
            *self.out_of_order.entry(s.kind.clone()).or_default() += 1;
        }
        *highest = (*highest).max(seq);
        Arrival::Delivered {
            from_scheduled: at_us.saturating_sub(s.scheduled_us),
            from_sent: at_us.saturating_sub(s.sent_us),
        }
    }

    /// Whether every event sent so far has arrived.
    pub fn all_received(&self) -> bool {
        self.sent.values().all(|s| s.received)
    }

    /// The kind of the event `party` sent with `seq`, if this call sent it.
    pub fn kind_of(&self, party: &str, seq: u64) -> Option<&str> {
        self.sent
            .get(&(party.to_owned(), seq))
            .map(|s| s.kind.as_str())
    }

    /// Adds this call's counts to `totals`: every sent event once, as delivered or lost.
    pub fn close_into(self, totals: &mut Totals) {
        for s in self.sent.into_values() {
            let k = totals.kinds.entry(s.kind).or_default();
            k.sent += 1;
            if s.received {
                k.delivered += 1;
            } else {
                k.lost += 1;
            }
        }
        for (kind, n) in self.duplicated {
            totals.kinds.entry(kind).or_default().duplicated += n;
        }
        for (kind, n) in self.out_of_order {
            totals.kinds.entry(kind).or_default().out_of_order += n;
        }
    }
}

/// Counts and latencies of one event kind.
#[derive(Debug, Clone, Default)]
pub struct KindTotals {
    pub sent: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub out_of_order: usize,
    pub from_scheduled: Samples,
    pub from_sent: Samples,
}

impl KindTotals {
    fn add(&mut self, o: &KindTotals) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.from_scheduled.extend(&o.from_scheduled);
        self.from_sent.extend(&o.from_sent);
    }
}

/// Everything a run (or one step of a saturation search) measured.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub kinds: BTreeMap<String, KindTotals>,
    /// Call setup: the call's scheduled start to the answer delivered at the caller, and the
    /// first subscription sent to the same.
    pub setup_from_scheduled: Samples,
    pub setup_from_start: Samples,
    pub calls_completed: usize,
    /// Calls that stalled (an expected event never came) or could not start.
    pub calls_failed: usize,
    pub failures: BTreeMap<String, usize>,
    /// `pusher:error` 4301 frames (client event over the rate limit).
    pub rate_refused: usize,
    /// How late the generator sent what it meant to send, microseconds.
    pub schedule_lag: Samples,
    /// Per second of the run: delivery latencies from the scheduled send.
    pub per_second: BTreeMap<u64, Samples>,
}

impl Totals {
    pub fn delivered(&mut self, kind: &str, from_scheduled: u64, from_sent: u64, at_us: u64) {
        let k = self.kinds.entry(kind.to_owned()).or_default();
        k.from_scheduled.push(from_scheduled);
        k.from_sent.push(from_sent);
        self.per_second
            .entry(at_us / 1_000_000)
            .or_default()
            .push(from_scheduled);
    }

    pub fn failed(&mut self, why: &str) {
        self.calls_failed += 1;
        *self.failures.entry(why.to_owned()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Totals) {
        for (kind, o) in other.kinds {
            self.kinds.entry(kind).or_default().add(&o);
        }
        self.setup_from_scheduled
            .extend(&other.setup_from_scheduled);
        self.setup_from_start.extend(&other.setup_from_start);
        self.calls_completed += other.calls_completed;
        self.calls_failed += other.calls_failed;
        for (why, n) in other.failures {
            *self.failures.entry(why).or_default() += n;
        }
        self.rate_refused += other.rate_refused;
        self.schedule_lag.extend(&other.schedule_lag);
        for (second, s) in other.per_second {
            self.per_second.entry(second).or_default().extend(&s);
        }
    }

    /// All kinds together.
    pub fn all(&self) -> KindTotals {
        let mut all = KindTotals::default();
        for k in self.kinds.values() {
            all.add(k);
        }
        all
    }
}

/// One step of a saturation search: the rate tried and whether it held.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    pub calls_per_second: f64,
    pub events_per_second: f64,
    pub p99_ms: f64,
    pub lost: usize,
    pub failed_calls: usize,
    pub generator_trusted: bool,
}

impl Step {
    /// A rate holds when p99 stays within the bound and nothing is lost or fails.
    pub fn held(&self, p99_bound_ms: f64) -> bool {
        self.p99_ms <= p99_bound_ms && self.lost == 0 && self.failed_calls == 0
    }
}

/// The next rate of a saturation search after `steps`, or `None` when the search is over: the
/// last step did not hold, the generator could not be trusted, or `max_rate` was passed. Each
/// step multiplies the rate by `factor`.
pub fn next_rate(steps: &[Step], p99_bound_ms: f64, factor: f64, max_rate: f64) -> Option<f64> {
    let last = steps.last()?;
    if !last.held(p99_bound_ms) || !last.generator_trusted {
        return None;
    }
    let next = last.calls_per_second * factor;
    (next <= max_rate).then_some(next)
}

/// The highest rate that held, if any did, among steps tried in rising order.
pub fn saturation(steps: &[Step], p99_bound_ms: f64) -> Option<Step> {
    steps
        .iter()
        .take_while(|s| s.held(p99_bound_ms) && s.generator_trusted)
        .last()
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_samples_that_occurred() {
        let mut s = Samples::default();
        for us in 1..=1000u64 {
            s.push(us * 1000);
        }
        let p = s.percentiles();
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p90, 900.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.p999, 999.0);
        assert_eq!(p.max, 1000.0);
        assert_eq!(Samples::default().percentiles().count, 0);
    }

    #[test]
    fn every_sent_event_is_delivered_or_lost_once() {
        let mut ledger = Ledger::default();
        ledger.sent("a", 1, "client-call.started", 0, 10);
        ledger.sent("a", 2, "client-call.offer", 100, 150);
        ledger.sent("a", 3, "client-call.offer", 100, 160);
        ledger.sent("b", 1, "client-call.ringing", 200, 200);
        assert_eq!(
            ledger.received("a", 1, 1_010),
            Arrival::Delivered {
                from_scheduled: 1_010,
                from_sent: 1_000
            }
        );
        // seq 3 before seq 2: the late 2 is out of order.
        assert!(matches!(
            ledger.received("a", 3, 2_000),
            Arrival::Delivered { .. }
        ));
        assert!(matches!(
            ledger.received("a", 2, 2_100),
            Arrival::Delivered { .. }
        ));
        assert_eq!(ledger.received("a", 2, 2_200), Arrival::Duplicate);
        assert_eq!(ledger.received("z", 9, 2_300), Arrival::Unknown);
        let mut totals = Totals::default();
        ledger.close_into(&mut totals);
        let offer = &totals.kinds["client-call.offer"];
        assert_eq!((offer.sent, offer.delivered, offer.lost), (2, 2, 0));
        assert_eq!((offer.duplicated, offer.out_of_order), (1, 1));
        let ringing = &totals.kinds["client-call.ringing"];
        assert_eq!((ringing.sent, ringing.delivered, ringing.lost), (1, 0, 1));
        let all = totals.all();
        assert_eq!((all.sent, all.delivered, all.lost), (4, 3, 1));
    }

    #[test]
    fn the_search_stops_at_the_first_rate_that_did_not_hold() {
        let step = |rate: f64, p99: f64, lost: usize| Step {
            calls_per_second: rate,
            events_per_second: rate * 20.0,
            p99_ms: p99,
            lost,
            failed_calls: 0,
            generator_trusted: true,
        };
        let mut steps = vec![step(10.0, 2.0, 0)];
        assert_eq!(next_rate(&steps, 50.0, 2.0, 1000.0), Some(20.0));
        steps.push(step(20.0, 4.0, 0));
        steps.push(step(40.0, 80.0, 0));
        assert_eq!(next_rate(&steps, 50.0, 2.0, 1000.0), None);
        assert_eq!(
            saturation(&steps, 50.0).map(|s| s.calls_per_second),
            Some(20.0)
        );
        // Loss ends the search too, whatever the latency.
        let lossy = vec![step(10.0, 2.0, 3)];
        assert_eq!(next_rate(&lossy, 50.0, 2.0, 1000.0), None);
        assert_eq!(saturation(&lossy, 50.0), None);
        // An untrusted generator ends it without blaming the server.
        let mut busy = step(10.0, 2.0, 0);
        busy.generator_trusted = false;
        assert_eq!(next_rate(&[busy], 50.0, 2.0, 1000.0), None);
        // And the ceiling.
        assert_eq!(next_rate(&[step(600.0, 1.0, 0)], 50.0, 2.0, 1000.0), None);
    }
}
