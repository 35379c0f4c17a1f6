//! Protocol limits, in one place so the parsers, the schemas and the spec quote the same numbers.
//!
//! Every value here is normative (see `spec/06-limits.md`); changing one is a protocol change.

/// Highest protocol version this crate speaks; the `v` header field.
pub const PROTOCOL_VERSION: u64 = 1;

/// Pusher's limit on a channel name, in bytes (all allowed characters are ASCII).
pub const MAX_CHANNEL_NAME_LEN: usize = 164;

/// Length bounds of `scope_id`, `call_id` and `user_id` tokens.
pub const MAX_ID_TOKEN_LEN: usize = 64;

/// Length bound of the `scope` token (`[a-z][a-z0-9_]{0,31}`).
pub const MAX_SCOPE_LEN: usize = 32;

/// Length bounds of a device `party_id` (the reserved `server` is the only shorter value).
pub const MIN_PARTY_ID_LEN: usize = 8;
pub const MAX_PARTY_ID_LEN: usize = 64;

/// Largest integer JavaScript reads exactly (2^53 − 1); bounds `seq` and `sent_at_ms`.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Largest serialized event `data`, in bytes (Pusher's 10 KB).
pub const MAX_EVENT_DATA_BYTES: usize = 10 * 1024;

/// Largest whole Pusher frame accepted before parsing: the data limit plus room for the envelope
/// fields (`event`, `channel`, `user_id`) and JSON-string escaping of the data.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// Pusher's limit on an event name.
pub const MAX_EVENT_NAME_LEN: usize = 200;

/// Deepest JSON nesting accepted inside a frame. Call events nest at most four levels; this leaves
/// room for app data on non-call events while refusing pathological inputs before recursion.
pub const MAX_JSON_DEPTH: usize = 32;

/// Ring timeout bounds and default for `call.started`, in milliseconds.
pub const DEFAULT_RING_TIMEOUT_MS: u64 = 60_000;
pub const MIN_RING_TIMEOUT_MS: u64 = 5_000;
pub const MAX_RING_TIMEOUT_MS: u64 = 300_000;

/// Largest `callees` list of one `call.started`.
pub const MAX_CALLEES: usize = 32;

/// Candidates per `call.ice_candidate` batch.
pub const MAX_CANDIDATES_PER_EVENT: usize = 20;

/// Longest `candidate` attribute string.
pub const MAX_CANDIDATE_LEN: usize = 1024;

/// Longest `sdp_mid` and `username_fragment`.
pub const MAX_SDP_MID_LEN: usize = 64;
pub const MAX_UFRAG_LEN: usize = 256;

/// Chunking of large SDP: at most this many chunks per set.
pub const MAX_CHUNKS: u8 = 8;

/// Longest whole SDP (after joining chunks).
pub const MAX_SDP_BYTES: usize = MAX_CHUNKS as usize * MAX_EVENT_DATA_BYTES;

/// An incomplete chunk set is dropped this long after its first chunk arrived.
pub const CHUNK_REASSEMBLY_TIMEOUT_MS: u64 = 30_000;

/// Incomplete chunk sets one receiver keeps per sending party; more is misbehaviour.
pub const MAX_PENDING_CHUNK_SETS_PER_PARTY: usize = 4;

/// Parties one receiver tracks per call (sequence numbers, chunk sets); more is misbehaviour.
pub const MAX_PARTIES_PER_CALL: usize = 64;

/// Client events per connection: sustained rate per second and burst.
pub const CLIENT_EVENTS_PER_SECOND: u32 = 10;
pub const CLIENT_EVENT_BURST: u32 = 10;

/// A device still connecting media this long after the call was accepted ends it with
/// `ice_failed` ([MEDIA-007]): an ICE agent without a usable candidate pair may otherwise wait
/// for ever.
pub const MEDIA_CONNECT_TIMEOUT_MS: u64 = 20_000;

/// A caller repeating `call.started` without a trusted server waits at least this long between
/// repeats.
pub const MIN_STARTED_REPEAT_INTERVAL_MS: u64 = 2_000;

/// HTTP API request timestamps are accepted within this many seconds of the server's clock.
pub const HTTP_API_TIMESTAMP_WINDOW_SECS: u64 = 600;

/// Presence `channel_data` limits (Pusher's): the user id and the serialized `user_info`.
pub const MAX_PRESENCE_USER_ID_LEN: usize = 128;
pub const MAX_PRESENCE_USER_INFO_BYTES: usize = 1024;

/// Users one call invites at most: a call without `callees` invites every other member of its
/// scope, and a scope larger than this cannot be called as a whole ([SRV-017]).
pub const MAX_INVITEES: usize = 256;

/// How long a client collects local ICE candidates into one `call.ice_candidate` event: a client
/// choice, not a protocol limit, shared by the reference client and the demo page so both batch
/// alike.
pub const CANDIDATE_BATCH_WINDOW_MS: u64 = 30;
