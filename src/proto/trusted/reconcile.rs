//! When an answered call is closed because the realtime server reports its channel empty
//! ([SRV-019]), pure: the shell asks the realtime HTTP API about each open call and feeds the
//! answers here with the time; this says which calls to close.
//!
//! Invariant: a call is closed only after two observations of an empty channel at least
//! `interval_ms` apart, so a moment between one party leaving and rejoining (a reconnect) does
//! not end a call; any observation of an occupied channel starts over.

use std::collections::{HashMap, HashSet};

/// The observations so far, per open call.
#[derive(Debug, Clone, Default)]
pub struct Reconciler {
    interval_ms: u64,
    empty_since: HashMap<String, u64>,
}

impl Reconciler {
    pub fn new(interval_ms: u64) -> Reconciler {
        Reconciler {
            interval_ms,
            empty_since: HashMap::new(),
        }
    }

    /// Forgets calls that are no longer open.
    pub fn retain_open(&mut self, open: &HashSet<String>) {
        self.empty_since.retain(|id, _| open.contains(id));
    }

    /// The realtime server says whether `call_id`'s channel is `occupied` at `now_ms`; true when
    /// the call is to be closed now.
    pub fn observe(&mut self, call_id: &str, occupied: bool, now_ms: u64) -> bool {
        if occupied {
            self.empty_since.remove(call_id);
            return false;
        }
        match self.empty_since.get(call_id) {
            Some(since) if now_ms.saturating_sub(*since) >= self.interval_ms => {
                self.empty_since.remove(call_id);
                true
            }
            Some(_) => false,
            None => {
                self.empty_since.insert(call_id.to_owned(), now_ms);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_empty_observations_an_interval_apart_close_a_call() {
        let mut r = Reconciler::new(1_000);
        assert!(!r.observe("c", false, 0), "one look is not enough");
        assert!(!r.observe("c", false, 999), "too soon");
        assert!(r.observe("c", false, 1_000));
        // Someone back in between starts over.
        assert!(!r.observe("d", false, 0));
        assert!(!r.observe("d", true, 500));
        assert!(!r.observe("d", false, 1_000));
        assert!(r.observe("d", false, 2_000));
        // Calls no longer open are forgotten.
        assert!(!r.observe("e", false, 0));
        r.retain_open(&HashSet::new());
        assert!(
            !r.observe("e", false, 5_000),
            "forgotten, so this is a first look"
        );
    }
}
