//! One call of a load run, between two pooled connections: the reference call endpoints (the
//! same pure machines the reference client runs) decide every event, this task carries them over
//! the two sockets and times each one from when it was meant to leave to when it arrived.
//!
//! The flow: both parties subscribe to a fresh call channel (presence or private); the caller sends
//! `call.started`; the callee rings and accepts at once; the caller offers, the callee answers
//! (both SDPs of `sdp_bytes`, chunked under the target's announced limit); each side sends its
//! candidates with `end_of_candidates`; then each side sends a media-state change every
//! `media_state_every` while the call is held, and the caller hangs up.

use std::time::Duration;

use tokio::time::Instant;

use super::LoadOptions;
use super::conn::Conn;
use super::stats::{Arrival, Ledger, Totals};
use crate::call::{Action, CallMachine};
use crate::call_endpoint::{CallEndpoint, EndpointOutput};
use crate::channel::CallChannel;
use crate::event::{
    AudioState, CandidateLine, IceCandidate, Incoming, MediaSelection, MediaStateBody, Privacy,
    RingTimeoutMs, ScreenState, SdpMid, VideoState, parse_frame,
};
use crate::ids::{DevicePartyId, UserId};
use crate::pusher::{Frame, FrameData};

/// The two connections a call runs on.
pub struct Pair {
    pub caller: Conn,
    pub callee: Conn,
}

/// Which side of the pair.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Callee,
}

/// The run's clock: microseconds and milliseconds since the run began.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
    fn ms(&self) -> u64 {
        self.us() / 1000
    }
    pub fn at_us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0).as_micros() as u64
    }
}

/// What every call of a run sends alike, built once.
pub struct Template {
    offer: String,
    answer: String,
    caller_candidates: Vec<IceCandidate>,
    callee_candidates: Vec<IceCandidate>,
}

impl Template {
    pub fn new(opts: &LoadOptions) -> Template {
        Template {
            offer: sdp_of(opts.sdp_bytes, "caller"),
            answer: sdp_of(opts.sdp_bytes, "callee"),
            caller_candidates: candidates(opts.candidates, 1),
            callee_candidates: candidates(opts.candidates, 2),
        }
    }
}

/// A call's state as this task drives it.
struct Run<'a> {
    opts: &'a LoadOptions,
    template: &'a Template,
    clock: Clock,
    channel: String,
    ledger: Ledger,
    totals: Totals,
    caller: CallEndpoint,
    callee: Option<CallEndpoint>,
    callee_party: DevicePartyId,
    callee_user: UserId,
    /// When the caller's answer arrived (setup done), and when the caller hung up.
    answered_at: Option<Instant>,
    ended_at: Option<Instant>,
    callee_ended: bool,
    media_states_sent: u32,
}

/// Runs call number `k`, scheduled to start at `scheduled`; returns the pair for the next call
/// (or `None` if a connection broke) and what the call measured.
pub async fn run_call(
    mut pair: Pair,
    k: u64,
    scheduled: Instant,
    clock: Clock,
    opts: &LoadOptions,
    template: &Template,
) -> (Option<Pair>, Totals) {
    let started = Instant::now();
    let kind = if opts.presence { "presence" } else { "private" };
    let channel = format!("{kind}-call.load.{}.c{k}", opts.scope_id);
    let mut totals = Totals::default();
    totals
        .schedule_lag
        .push(clock.at_us(started).saturating_sub(clock.at_us(scheduled)));
    let setup = async {
        // Callee first, so the caller's call.started has somewhere to go.
        pair.callee
            .subscribe(&opts.key, &opts.secret, &channel)
            .await?;
        pair.caller
            .subscribe(&opts.key, &opts.secret, &channel)
            .await?;
        Ok::<(), String>(())
    };
    if let Err(e) = setup.await {
        totals.failed(&format!("subscribe: {}", first_words(&e)));
        return (None, totals);
    }
    let party = |who: &str| {
        DevicePartyId::parse(&format!("{who}-{:016x}", rand::random::<u64>()))
            .expect("party-safe characters")
    };
    let user = |u: &str| UserId::parse(u).expect("load user ids are valid");
    let limit = pair
        .caller
        .max_event_bytes
        .unwrap_or(crate::limits::MAX_EVENT_DATA_BYTES);
    let Ok(call_channel) = CallChannel::parse(&channel) else {
        totals.failed("channel name");
        return (Some(pair), totals);
    };
    let machine = CallMachine::caller(call_channel, party("load-a"), user(&pair.caller.user))
        .with_event_limit(limit, false);
    let caller =
        CallEndpoint::new(machine, Privacy::Standard, None).expect("a standard call needs no key");
    let mut run = Run {
        opts,
        template,
        clock,
        channel: channel.clone(),
        ledger: Ledger::default(),
        totals,
        caller,
        callee: None,
        callee_party: party("load-b"),
        callee_user: user(&pair.callee.user),
        answered_at: None,
        ended_at: None,
        callee_ended: false,
        media_states_sent: 0,
    };
    let now = clock.ms();
    let start = run.caller.start(
        vec![run.callee_user.clone()],
        MediaSelection {
            audio: true,
            video: false,
            screen: false,
        },
        RingTimeoutMs::new(30_000).expect("in range"),
        Privacy::Standard,
        now,
    );
    let outcome = match start {
        Ok(()) => run.drive(&mut pair, scheduled, started).await,
        Err(e) => Err(format!("start: {e}")),
    };
    let refused = pair.caller.rate_refused + pair.callee.rate_refused;
    pair.caller.rate_refused = 0;
    pair.callee.rate_refused = 0;
    let broken = outcome
        .as_ref()
        .err()
        .is_some_and(|e| e.starts_with("connection"));
    match &outcome {
        Ok(()) => run.totals.calls_completed += 1,
        Err(e) => run.totals.failed(first_words(e)),
    }
    let Run {
        ledger, mut totals, ..
    } = run;
    totals.rate_refused += refused;
    ledger.close_into(&mut totals);
    if broken {
        return (None, totals);
    }
    let _ = pair.caller.unsubscribe(&channel).await;
    let _ = pair.callee.unsubscribe(&channel).await;
    (Some(pair), totals)
}

/// A failure's kind: connection errors drop their details (failures are counted by kind, not
/// by instance); the others name their kind already.
fn first_words(e: &str) -> &str {
    if e.starts_with("connection") || e.starts_with("subscribe") {
        e.split(':').next().unwrap_or(e)
    } else {
        e
    }
}

impl Run<'_> {
    /// Carries events until the callee has seen the end and every sent event arrived, or an
    /// expected event is overdue.
    async fn drive(
        &mut self,
        pair: &mut Pair,
        scheduled: Instant,
        started: Instant,
    ) -> Result<(), String> {
        let mut last_progress = Instant::now();
        self.flush(Side::Caller, pair, Instant::now()).await?;
        loop {
            if self.callee_ended && self.ledger_settled() {
                return Ok(());
            }
            let deadline = self.next_deadline();
            let stall = last_progress + self.opts.event_timeout;
            let wake = deadline.map_or(stall, |d| d.min(stall));
            tokio::select! {
                f = pair.caller.next_frame_at() => {
                    let (f, at) = f.map_err(|e| format!("connection (caller): {e}"))?;
                    if self.arrived(&f, at) { last_progress = at; }
                    self.caller.handle_frame(&f, self.clock.ms());
                    self.after_caller_input(pair, at, scheduled, started).await?;
                }
                f = pair.callee.next_frame_at() => {
                    let (f, at) = f.map_err(|e| format!("connection (callee): {e}"))?;
                    if self.arrived(&f, at) { last_progress = at; }
                    self.callee_input(&f, pair, at).await?;
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= stall {
                        return Err(self.stalled_on());
                    }
                    self.on_timers(pair, now).await?;
                }
            }
        }
    }

    /// Records an arriving call event in the ledger; whether it was one this call sent.
    fn arrived(&mut self, f: &Frame, at: Instant) -> bool {
        if f.channel.as_deref() != Some(self.channel.as_str()) || !f.event.starts_with("client-") {
            return false;
        }
        let Some((party, seq)) = f.data.as_ref().and_then(header_of) else {
            return false;
        };
        let party = party.as_ref();
        let at_us = self.clock.at_us(at);
        let kind = self.ledger.kind_of(party, seq).map(str::to_owned);
        match (self.ledger.received(party, seq, at_us), kind) {
            (
                Arrival::Delivered {
                    from_scheduled,
                    from_sent,
                },
                Some(kind),
            ) => {
                self.totals
                    .delivered(&kind, from_scheduled, from_sent, at_us);
                true
            }
            _ => false,
        }
    }

    fn ledger_settled(&self) -> bool {
        self.ledger.all_received()
    }

    fn stalled_on(&self) -> String {
        match (self.callee.is_some(), self.answered_at, self.ended_at) {
            (false, _, _) => "stalled before the callee saw call.started".into(),
            (true, None, _) => "stalled during setup".into(),
            (true, Some(_), None) => "stalled while held".into(),
            _ => "stalled after the hang-up (the end or an event never arrived)".into(),
        }
    }

    /// The next time something is due: an endpoint timer, a media-state change, the hang-up.
    fn next_deadline(&self) -> Option<Instant> {
        let base = self.clock.0;
        let endpoint = [Some(&self.caller), self.callee.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|e| e.poll_timeout())
            .min()
            .map(|ms| base + Duration::from_millis(ms));
        let script = self.answered_at.and_then(|up| {
            if self.ended_at.is_some() {
                return None;
            }
            let hang_up = up + self.opts.hold;
            let next_state = self
                .opts
                .media_state_every
                .filter(|every| !every.is_zero())
                .map(|every| up + every * (self.media_states_sent / 2 + 1));
            Some(next_state.map_or(hang_up, |n| n.min(hang_up)))
        });
        [endpoint, script].into_iter().flatten().min()
    }

    async fn on_timers(&mut self, pair: &mut Pair, now: Instant) -> Result<(), String> {
        let ms = self.clock.ms();
        self.caller.handle_timeout(ms);
        if let Some(c) = self.callee.as_mut() {
            c.handle_timeout(ms);
        }
        if let (Some(up), None) = (self.answered_at, self.ended_at) {
            if now >= up + self.opts.hold {
                self.ended_at = Some(now);
                self.caller
                    .hang_up(ms)
                    .map_err(|e| format!("hang up: {e}"))?;
            } else if let Some(every) = self.opts.media_state_every.filter(|e| !e.is_zero()) {
                let due = up + every * (self.media_states_sent / 2 + 1);
                if now >= due {
                    // Both sides change their state at the same planned moment.
                    let muted = (self.media_states_sent / 2).is_multiple_of(2);
                    let state = media_state(muted);
                    self.caller
                        .send_media_state(state, ms)
                        .map_err(|e| format!("media state: {e}"))?;
                    if let Some(c) = self.callee.as_mut() {
                        c.send_media_state(state, ms)
                            .map_err(|e| format!("media state: {e}"))?;
                    }
                    self.media_states_sent += 2;
                    self.flush(Side::Caller, pair, due).await?;
                    self.flush(Side::Callee, pair, due).await?;
                    return Ok(());
                }
            }
        }
        self.flush(Side::Caller, pair, now).await?;
        self.flush(Side::Callee, pair, now).await
    }

    async fn after_caller_input(
        &mut self,
        pair: &mut Pair,
        at: Instant,
        scheduled: Instant,
        started: Instant,
    ) -> Result<(), String> {
        let ms = self.clock.ms();
        self.flush(Side::Caller, pair, at).await?;
        while let Some(out) = self.caller.poll_output() {
            match out {
                EndpointOutput::Action(Action::CreateOffer { .. }) => {
                    self.caller
                        .send_offer(&self.template.offer, false, ms)
                        .map_err(|e| format!("offer: {e}"))?;
                    self.caller.add_local_candidates(
                        self.template.caller_candidates.clone(),
                        true,
                        ms,
                    );
                }
                EndpointOutput::Action(Action::RemoteAnswer { .. }) => {
                    self.answered_at = Some(at);
                    self.caller.media_connected();
                    self.totals
                        .setup_from_scheduled
                        .push(at.saturating_duration_since(scheduled).as_micros() as u64);
                    self.totals
                        .setup_from_start
                        .push(at.saturating_duration_since(started).as_micros() as u64);
                }
                EndpointOutput::Action(Action::Ended {
                    by_remote: true,
                    reason,
                }) => {
                    return Err(format!("ended by the callee: {reason:?}"));
                }
                _ => {}
            }
        }
        self.flush(Side::Caller, pair, at).await
    }

    async fn callee_input(
        &mut self,
        f: &Frame,
        pair: &mut Pair,
        at: Instant,
    ) -> Result<(), String> {
        let ms = self.clock.ms();
        if self.callee.is_none() {
            // The callee joins from the caller's call.started on the channel.
            if f.channel.as_deref() != Some(self.channel.as_str())
                || f.event != "client-call.started"
            {
                return Ok(());
            }
            let started = match parse_frame(f) {
                Ok((_, Incoming::Clear(started))) => started,
                Ok(_) => return Err("the callee refused call.started: sealed".into()),
                // The reason is the rule's code: the count of failed calls groups by it.
                Err(e) => return Err(format!("the callee refused call.started: {}", e.code())),
            };
            let limit = pair
                .callee
                .max_event_bytes
                .unwrap_or(crate::limits::MAX_EVENT_DATA_BYTES);
            let machine = CallMachine::callee(
                &started,
                self.callee_party.clone(),
                self.callee_user.clone(),
                ms,
            )
            .map_err(|e| format!("callee: {e}"))?
            .with_event_limit(limit, false);
            let mut callee = CallEndpoint::new(machine, Privacy::Standard, None)
                .map_err(|e| format!("callee: {e}"))?;
            callee.ring(ms).map_err(|e| format!("ring: {e}"))?;
            callee.accept(ms).map_err(|e| format!("accept: {e}"))?;
            self.callee = Some(callee);
            return self.flush(Side::Callee, pair, at).await;
        }
        let Some(callee) = self.callee.as_mut() else {
            return Ok(());
        };
        callee.handle_frame(f, ms);
        while let Some(out) = callee.poll_output() {
            match out {
                EndpointOutput::Action(Action::RemoteOffer { negotiation_id, .. }) => {
                    callee
                        .send_answer(&self.template.answer, negotiation_id, ms)
                        .map_err(|e| format!("answer: {e}"))?;
                    callee.add_local_candidates(self.template.callee_candidates.clone(), true, ms);
                    callee.media_connected();
                }
                EndpointOutput::Action(Action::Ended { .. }) => self.callee_ended = true,
                _ => {}
            }
        }
        self.flush(Side::Callee, pair, at).await
    }

    /// Sends what `side`'s endpoint queued, each event noted in the ledger as meant for
    /// `meant` (the moment the script wanted it out).
    async fn flush(&mut self, side: Side, pair: &mut Pair, meant: Instant) -> Result<(), String> {
        let (endpoint, conn) = match side {
            Side::Caller => (&mut self.caller, &mut pair.caller),
            Side::Callee => match self.callee.as_mut() {
                Some(c) => (c, &mut pair.callee),
                None => return Ok(()),
            },
        };
        let ms = self.clock.ms();
        let mut queued = false;
        while let Some(t) = endpoint.poll_transmit([0; 24], ms) {
            queued = true;
            let party = t.data["party_id"].as_str().unwrap_or_default().to_owned();
            let seq = t.data["seq"].as_u64().unwrap_or_default();
            let meant_us = self.clock.at_us(meant);
            let sent_us = self.clock.us();
            self.totals
                .schedule_lag
                .push(sent_us.saturating_sub(meant_us));
            self.ledger.sent(&party, seq, &t.event, meant_us, sent_us);
            conn.queue_trigger(&self.channel, &t.event, &t.data)
                .await
                .map_err(|e| format!("connection: {e}"))?;
        }
        if queued {
            conn.flush().await.map_err(|e| format!("connection: {e}"))?;
        }
        Ok(())
    }
}

/// The sender's party and `seq` of an event's data, read without building the whole object
/// (the generator reads every event twice: here, and in the receiving endpoint).
fn header_of(data: &FrameData) -> Option<(std::borrow::Cow<'_, str>, u64)> {
    #[derive(serde::Deserialize)]
    struct Header<'a> {
        #[serde(borrow)]
        party_id: std::borrow::Cow<'a, str>,
        seq: u64,
    }
    let text = match data {
        FrameData::Text(s) => s.as_str(),
        FrameData::Json(raw) => raw.get(),
    };
    let h: Header = serde_json::from_str(text).ok()?;
    Some((h.party_id, h.seq))
}

fn media_state(muted: bool) -> MediaStateBody {
    MediaStateBody {
        audio: AudioState { muted },
        video: VideoState { enabled: false },
        screen: ScreenState { sharing: false },
        on_hold: false,
    }
}

/// `n` host candidates on loopback, as a browser gathers them.
fn candidates(n: usize, host: u8) -> Vec<IceCandidate> {
    (0..n)
        .map(|i| IceCandidate {
            candidate: CandidateLine::parse(&format!(
                "candidate:{i}{host} 1 udp 2130706431 127.0.0.{host} {} typ host generation 0",
                50_000 + i
            ))
            .expect("a valid candidate line"),
            sdp_mid: Some(SdpMid::parse("0").expect("valid")),
            sdp_mline_index: Some(0),
            username_fragment: None,
        })
        .collect()
}

/// An SDP of about `bytes` bytes shaped like a browser's audio-and-data offer.
fn sdp_of(bytes: usize, who: &str) -> String {
    let mut sdp = format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS {who}\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:{who}ufrag\r\na=ice-pwd:{who}icepasswordicepassword\r\n\
         a=ice-options:trickle\r\na=fingerprint:sha-256 5D:8C:1E:47:2B:9A:03:F1:6E:C4:A7:38:92:0B:DD:14:55:7F:E0:3A:C9:61:B2:08:4E:97:1C:D5:36:AF:80:2E\r\n\
         a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n\
         a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sctp-port:5000\r\n"
    );
    let mut ssrc = 1_000_000u64;
    while sdp.len() < bytes {
        sdp.push_str(&format!(
            "a=ssrc:{ssrc} cname:{who}-load-generator-stream\r\n"
        ));
        ssrc += 1;
    }
    sdp
}
