//! Splitting a large SDP into chunk events and joining them again (`spec/04-events.md`, "Large SDP").
//!
//! Each chunk is a full `call.offer`/`call.answer` with its own `seq`, the same body members, one
//! slice of `sdp` and `chunk {id, index, count}` (2 to 8 chunks). The receiver joins slices in
//! index order and drops a set that is still incomplete [`CHUNK_REASSEMBLY_TIMEOUT_MS`] after its
//! first chunk arrived.
//!
//! Invariants: the assembler keeps at most [`MAX_PENDING_CHUNK_SETS_PER_PARTY`] incomplete sets per
//! party and [`MAX_PARTIES_PER_CALL`] parties, so its memory is bounded by
//! `parties × sets × 8 × data limit`. Time is an argument (milliseconds on any monotonic clock).

use std::collections::BTreeMap;

use crate::event::{
    AnswerBody, CallEvent, ChunkInfo, EventBody, EventError, EventHeader, OfferBody, Sdp, Seq,
};
use crate::ids::{ChunkId, PartyId};
use crate::limits::{
    CHUNK_REASSEMBLY_TIMEOUT_MS, MAX_CHUNKS, MAX_PARTIES_PER_CALL, MAX_PENDING_CHUNK_SETS_PER_PARTY,
};

/// A chunk that cannot be accepted, or an SDP that cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("only call.offer and call.answer carry SDP chunks")]
    NotSdpEvent,
    #[error("the SDP does not fit in {MAX_CHUNKS} chunks of at most {max_data_bytes} bytes")]
    TooLarge { max_data_bytes: usize },
    #[error("chunk seq numbers would pass 2^53-1")]
    SeqOverflow,
    #[error("chunk {index} of set `{id}` differs from the set in {what}")]
    Mismatch {
        id: String,
        index: u8,
        what: &'static str,
    },
    #[error("chunk {index} of set `{id}` arrived twice")]
    Duplicate { id: String, index: u8 },
    #[error("party {party} has more than {MAX_PENDING_CHUNK_SETS_PER_PARTY} incomplete chunk sets")]
    TooManyPending { party: String },
    #[error("more than {MAX_PARTIES_PER_CALL} parties are sending chunks")]
    TooManyParties,
    #[error("the joined event is invalid: {0}")]
    Joined(EventError),
}

impl ChunkError {
    /// The requirement of `spec/` the chunk breaks, if one names it.
    pub fn requirement(&self) -> Option<&'static str> {
        match self {
            ChunkError::NotSdpEvent | ChunkError::TooLarge { .. } => Some("EVT-080"),
            ChunkError::Mismatch { .. } | ChunkError::Duplicate { .. } => Some("EVT-082"),
            ChunkError::TooManyPending { .. } | ChunkError::TooManyParties => Some("EVT-083"),
            ChunkError::SeqOverflow => Some("EVT-016"),
            ChunkError::Joined(e) => e.requirement(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ChunkError::NotSdpEvent => "chunk.not_sdp_event",
            ChunkError::TooLarge { .. } => "chunk.too_large",
            ChunkError::SeqOverflow => "chunk.seq_overflow",
            ChunkError::Mismatch { .. } => "chunk.mismatch",
            ChunkError::Duplicate { .. } => "chunk.duplicate",
            ChunkError::TooManyPending { .. } => "chunk.too_many_pending",
            ChunkError::TooManyParties => "chunk.too_many_parties",
            ChunkError::Joined(_) => "chunk.joined_invalid",
        }
    }
}

/// The SDP of an offer or answer and a way to rebuild the body around another slice.
fn sdp_parts(body: &EventBody) -> Option<(&Sdp, Option<&ChunkInfo>)> {
    match body {
        EventBody::Offer(b) => Some((&b.sdp, b.chunk.as_ref())),
        EventBody::Answer(b) => Some((&b.sdp, b.chunk.as_ref())),
        _ => None,
    }
}

fn with_slice(body: &EventBody, sdp: Sdp, chunk: Option<ChunkInfo>) -> EventBody {
    match body {
        EventBody::Offer(b) => EventBody::Offer(OfferBody {
            sdp,
            chunk,
            ..b.clone()
        }),
        EventBody::Answer(b) => EventBody::Answer(AnswerBody {
            sdp,
            chunk,
            ..b.clone()
        }),
        other => other.clone(),
    }
}

/// Cuts `s` into `count` non-empty pieces of nearly equal byte length, on char boundaries.
fn slices(s: &str, count: usize) -> Option<Vec<&str>> {
    let mut out = Vec::with_capacity(count);
    let mut start = 0;
    for i in 1..=count {
        let mut end = if i == count {
            s.len()
        } else {
            s.len() * i / count
        };
        while !s.is_char_boundary(end) {
            end += 1;
        }
        if end <= start {
            return None;
        }
        out.push(&s[start..end]);
        start = end;
    }
    Some(out)
}

/// Splits an offer or answer whose data is larger than `max_data_bytes` into chunk events with
/// consecutive `seq` numbers starting at the event's own. `measure` returns the size the event will
/// have on the wire (for a strong-privacy call: after sealing). An event that already fits is
/// returned alone and unchanged.
pub fn split_sdp(
    event: &CallEvent,
    chunk_id: &ChunkId,
    max_data_bytes: usize,
    measure: impl Fn(&CallEvent) -> usize,
) -> Result<Vec<CallEvent>, ChunkError> {
    let (sdp, _) = sdp_parts(event.body()).ok_or(ChunkError::NotSdpEvent)?;
    if measure(event) <= max_data_bytes {
        return Ok(vec![event.clone()]);
    }
    let first = event.header().seq.get();
    for count in 2..=MAX_CHUNKS {
        Seq::new(first + u64::from(count) - 1).ok_or(ChunkError::SeqOverflow)?;
        let Some(pieces) = slices(sdp.as_str(), usize::from(count)) else {
            break;
        };
        let mut out = Vec::with_capacity(pieces.len());
        for (index, piece) in (0u8..).zip(pieces) {
            let header = EventHeader {
                seq: Seq::new(first + u64::from(index)).ok_or(ChunkError::SeqOverflow)?,
                ..event.header().clone()
            };
            let chunk = ChunkInfo {
                id: chunk_id.clone(),
                index,
                count,
            };
            let slice = Sdp::parse(piece).map_err(|e| {
                ChunkError::Joined(EventError::InvalidField {
                    path: "sdp".into(),
                    reason: e.to_string(),
                })
            })?;
            let body = with_slice(event.body(), slice, Some(chunk));
            let chunk_event =
                CallEvent::new(event.origin(), header, body).map_err(ChunkError::Joined)?;
            out.push(chunk_event);
        }
        if out.iter().all(|e| measure(e) <= max_data_bytes) {
            return Ok(out);
        }
    }
    Err(ChunkError::TooLarge { max_data_bytes })
}

#[derive(Debug)]
struct PendingSet {
    first_at_ms: u64,
    template: CallEvent,
    slices: Vec<Option<String>>,
    latest: EventHeader,
}

/// Joins chunk sets from every party of one call.
#[derive(Debug, Default)]
pub struct ChunkAssembler {
    pending: BTreeMap<(PartyId, ChunkId), PendingSet>,
}

impl ChunkAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of incomplete sets held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Drops sets whose first chunk is at least the reassembly timeout old; returns what it dropped.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(PartyId, ChunkId)> {
        let stale: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, s)| now_ms.saturating_sub(s.first_at_ms) >= CHUNK_REASSEMBLY_TIMEOUT_MS)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            self.pending.remove(k);
        }
        stale
    }

    /// Takes one received event. Events without `chunk` pass through; a chunk completing its set
    /// yields the joined event (with the header of the chunk with the highest `seq`); other chunks
    /// yield `None`.
    pub fn push(&mut self, event: CallEvent, now_ms: u64) -> Result<Option<CallEvent>, ChunkError> {
        self.expire(now_ms);
        let Some((sdp, Some(chunk))) = sdp_parts(event.body()) else {
            return Ok(Some(event));
        };
        let (sdp, chunk) = (sdp.as_str().to_owned(), chunk.clone());
        let party = event.header().party_id.clone();
        let key = (party.clone(), chunk.id.clone());
        if !self.pending.contains_key(&key) {
            let parties_sets = self.pending.keys().filter(|(p, _)| *p == party).count();
            if parties_sets >= MAX_PENDING_CHUNK_SETS_PER_PARTY {
                return Err(ChunkError::TooManyPending {
                    party: party.to_string(),
                });
            }
            let parties = {
                let mut ps: Vec<_> = self.pending.keys().map(|(p, _)| p).collect();
                ps.dedup();
                ps.len()
            };
            if parties_sets == 0 && parties >= MAX_PARTIES_PER_CALL {
                return Err(ChunkError::TooManyParties);
            }
            self.pending.insert(
                key.clone(),
                PendingSet {
                    first_at_ms: now_ms,
                    template: event.clone(),
                    slices: vec![None; usize::from(chunk.count)],
                    latest: event.header().clone(),
                },
            );
        }
        let set = self.pending.get_mut(&key).expect("inserted above");
        let mismatch = |what| ChunkError::Mismatch {
            id: chunk.id.to_string(),
            index: chunk.index,
            what,
        };
        if usize::from(chunk.count) != set.slices.len() {
            return Err(mismatch("count"));
        }
        // Compare every body member but the slice itself by blanking `sdp` and `chunk` on both.
        let blank = Sdp::parse("-").expect("a one-character SDP slice is valid");
        let same_body = with_slice(set.template.body(), blank.clone(), None)
            == with_slice(event.body(), blank, None);
        if !same_body {
            return Err(mismatch("body fields"));
        }
        let (t, h) = (set.template.header(), event.header());
        if (&t.call_id, &t.user_id) != (&h.call_id, &h.user_id)
            || set.template.origin() != event.origin()
        {
            return Err(mismatch("header"));
        }
        let slot = &mut set.slices[usize::from(chunk.index)];
        if slot.is_some() {
            return Err(ChunkError::Duplicate {
                id: chunk.id.to_string(),
                index: chunk.index,
            });
        }
        *slot = Some(sdp);
        if h.seq > set.latest.seq {
            set.latest = h.clone();
        }
        if set.slices.iter().any(Option::is_none) {
            return Ok(None);
        }
        let set = self.pending.remove(&key).expect("present");
        let joined: String = set.slices.into_iter().flatten().collect();
        let sdp = Sdp::parse(&joined).map_err(|e| {
            ChunkError::Joined(EventError::InvalidField {
                path: "sdp".into(),
                reason: e.to_string(),
            })
        })?;
        let body = with_slice(set.template.body(), sdp, None);
        CallEvent::new(set.template.origin(), set.latest, body)
            .map(Some)
            .map_err(ChunkError::Joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Origin, ProtocolVersion, UnixMillis};
    use crate::ids::{CallId, DevicePartyId, UserId};
    use proptest::prelude::*;

    fn offer(sdp: &str, seq: u64) -> CallEvent {
        let header = EventHeader {
            v: ProtocolVersion,
            call_id: CallId::parse("call-1").unwrap(),
            party_id: PartyId::parse("alice-phone").unwrap(),
            user_id: UserId::parse("alice").unwrap(),
            seq: Seq::new(seq).unwrap(),
            sent_at_ms: UnixMillis::new(0).unwrap(),
        };
        let body = EventBody::Offer(OfferBody {
            to_party_id: DevicePartyId::parse("bob-laptop").unwrap(),
            sdp: Sdp::parse(sdp).unwrap(),
            negotiation_id: 1,
            ice_restart: false,
            chunk: None,
        });
        CallEvent::new(Origin::Client, header, body).unwrap()
    }

    fn wire_len(e: &CallEvent) -> usize {
        serde_json::to_vec(&e.to_data()).unwrap().len()
    }

    fn big_sdp(lines: usize) -> String {
        let mut s = String::from("v=0\r\n");
        for i in 0..lines {
            s.push_str(&format!(
                "a=candidate-like-line-{i}: some payload text here\r\n"
            ));
        }
        s
    }

    #[test]
    fn small_events_are_not_split() {
        let e = offer("v=0\r\n", 1);
        assert_eq!(
            split_sdp(&e, &ChunkId::parse("c1").unwrap(), 10_240, wire_len).unwrap(),
            vec![e]
        );
    }

    #[test]
    fn split_then_join_in_any_order_restores_the_event() {
        let e = offer(&big_sdp(600), 10);
        let chunks = split_sdp(&e, &ChunkId::parse("c1").unwrap(), 10_240, wire_len).unwrap();
        assert!(chunks.len() > 1 && chunks.len() <= 8);
        assert!(chunks.iter().all(|c| wire_len(c) <= 10_240));
        let mut asm = ChunkAssembler::new();
        let mut out = None;
        for c in chunks.iter().rev() {
            out = asm.push(c.clone(), 0).unwrap();
        }
        let joined = out.expect("complete");
        assert_eq!(joined.body(), e.body());
        assert_eq!(
            joined.header().seq.get(),
            10 + chunks.len() as u64 - 1,
            "the joined event carries the highest seq"
        );
        assert_eq!(asm.pending(), 0);
    }

    #[test]
    fn incomplete_sets_expire_after_thirty_seconds() {
        let e = offer(&big_sdp(600), 1);
        let chunks = split_sdp(&e, &ChunkId::parse("c1").unwrap(), 10_240, wire_len).unwrap();
        let mut asm = ChunkAssembler::new();
        assert_eq!(asm.push(chunks[0].clone(), 1_000).unwrap(), None);
        assert!(asm.expire(30_999).is_empty());
        assert_eq!(asm.expire(31_000).len(), 1);
        // The rest of the set now starts a new, incomplete set.
        assert_eq!(asm.push(chunks[1].clone(), 31_000).unwrap(), None);
    }

    #[test]
    fn duplicates_and_mismatches_are_refused() {
        let e = offer(&big_sdp(600), 1);
        let chunks = split_sdp(&e, &ChunkId::parse("c1").unwrap(), 10_240, wire_len).unwrap();
        let mut asm = ChunkAssembler::new();
        asm.push(chunks[0].clone(), 0).unwrap();
        assert_eq!(
            asm.push(chunks[0].clone(), 0).unwrap_err().code(),
            "chunk.duplicate"
        );
        let (origin, header, body) = chunks[1].clone().into_parts();
        let EventBody::Offer(mut b) = body else {
            unreachable!()
        };
        b.negotiation_id = 2;
        let other = CallEvent::new(origin, header, EventBody::Offer(b)).unwrap();
        assert_eq!(asm.push(other, 0).unwrap_err().code(), "chunk.mismatch");
    }

    #[test]
    fn pending_sets_per_party_are_bounded() {
        let e = offer(&big_sdp(600), 1);
        let mut asm = ChunkAssembler::new();
        for i in 0..MAX_PENDING_CHUNK_SETS_PER_PARTY {
            let id = ChunkId::parse(&format!("set{i}")).unwrap();
            let c = split_sdp(&e, &id, 10_240, wire_len).unwrap();
            asm.push(c[0].clone(), 0).unwrap();
        }
        let c = split_sdp(&e, &ChunkId::parse("one-more").unwrap(), 10_240, wire_len).unwrap();
        assert_eq!(
            asm.push(c[0].clone(), 0).unwrap_err().code(),
            "chunk.too_many_pending"
        );
    }

    #[test]
    fn oversized_sdp_is_refused_when_splitting() {
        let e = offer(&big_sdp(600), 1);
        assert_eq!(
            split_sdp(&e, &ChunkId::parse("c").unwrap(), 1_000, wire_len)
                .unwrap_err()
                .code(),
            "chunk.too_large"
        );
    }

    proptest! {
        #[test]
        fn slicing_covers_the_text_exactly(s in "v=0\r\n\\PC{20,400}", count in 2usize..=8) {
            if let Some(parts) = slices(&s, count) {
                prop_assert_eq!(parts.len(), count);
                prop_assert_eq!(parts.concat(), s);
            }
        }
    }
}
