//! Per-party sequence numbers: a receiver accepts an event only if its `seq` is above every `seq`
//! it has accepted from the same party in the same call.
//!
//! Invariant: the tracker holds at most [`MAX_PARTIES_PER_CALL`] parties, so a peer inventing
//! party ids cannot grow it without bound.

use std::collections::BTreeMap;

use crate::event::Seq;
use crate::ids::PartyId;
use crate::limits::MAX_PARTIES_PER_CALL;

/// A `seq` a receiver must refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeqError {
    #[error(
        "seq {seq} from party {party} is not above the last accepted seq {last} (replay or reorder)"
    )]
    NotIncreasing { party: String, seq: u64, last: u64 },
    #[error("more than {MAX_PARTIES_PER_CALL} parties in one call")]
    TooManyParties,
}

impl SeqError {
    pub fn code(&self) -> &'static str {
        match self {
            SeqError::NotIncreasing { .. } => "seq.not_increasing",
            SeqError::TooManyParties => "seq.too_many_parties",
        }
    }
}

/// The highest accepted `seq` of each party of one call.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    last: BTreeMap<PartyId, Seq>,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `seq` without recording it.
    pub fn check(&self, party: &PartyId, seq: Seq) -> Result<(), SeqError> {
        match self.last.get(party) {
            Some(&last) if seq <= last => Err(SeqError::NotIncreasing {
                party: party.to_string(),
                seq: seq.get(),
                last: last.get(),
            }),
            None if self.last.len() >= MAX_PARTIES_PER_CALL => Err(SeqError::TooManyParties),
            _ => Ok(()),
        }
    }

    /// Checks `seq` and, if it is acceptable, records it as the party's last.
    pub fn accept(&mut self, party: &PartyId, seq: Seq) -> Result<(), SeqError> {
        self.check(party, seq)?;
        self.last.insert(party.clone(), seq);
        Ok(())
    }

    pub fn last(&self, party: &PartyId) -> Option<Seq> {
        self.last.get(party).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn party(s: &str) -> PartyId {
        PartyId::parse(s).unwrap()
    }

    #[test]
    fn replays_and_reorders_are_refused_per_party() {
        let mut t = SeqTracker::new();
        let (a, b) = (party("party-aaaa"), party("party-bbbb"));
        t.accept(&a, Seq::new(5).unwrap()).unwrap();
        t.accept(&b, Seq::new(1).unwrap()).unwrap();
        assert_eq!(
            t.accept(&a, Seq::new(5).unwrap()).unwrap_err().code(),
            "seq.not_increasing"
        );
        assert!(t.accept(&a, Seq::new(4).unwrap()).is_err());
        t.accept(&a, Seq::new(9).unwrap()).unwrap();
        assert_eq!(t.last(&a), Seq::new(9));
    }

    #[test]
    fn party_count_is_bounded() {
        let mut t = SeqTracker::new();
        for i in 0..MAX_PARTIES_PER_CALL {
            t.accept(&party(&format!("party-{i:04}")), Seq::new(1).unwrap())
                .unwrap();
        }
        assert_eq!(
            t.accept(&party("party-extra"), Seq::new(1).unwrap()),
            Err(SeqError::TooManyParties)
        );
    }

    proptest! {
        #[test]
        fn a_party_never_gets_a_seq_accepted_twice(seqs in proptest::collection::vec(0u64..50, 1..60)) {
            let mut t = SeqTracker::new();
            let p = party("party-prop");
            let mut accepted = Vec::new();
            for s in seqs {
                if t.accept(&p, Seq::new(s).unwrap()).is_ok() {
                    accepted.push(s);
                }
            }
            prop_assert!(accepted.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
