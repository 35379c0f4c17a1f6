// The domvia-calls demo page: a call client for browsers. Signaling goes through the real
// pusher-js client (client events on the call channel, channel authorization from the trusted
// server); media goes through the browser's RTCPeerConnection. It follows spec/04-events.md for
// peer-to-peer calls. Strong privacy (spec/05-strong-privacy.md) seals the sensitive events with
// XChaCha20-Poly1305 from libsodium-wrappers (src/demo/envelope.js, which passes the Rust core's
// envelope vectors); without libsodium loaded, a strong-privacy call is declined as `incompatible`.
//
// Client events leave as src/proto/pusher_client.rs sends them: one at a time, paced under the
// rate the server announces ([TRN-003] limits, read from the connection_established frame, which
// pusher-js does not pass on), each followed by a pusher:ping whose pong says the event was
// relayed; a 4301 before the pong puts the event back at the head of the queue ([LIM-004]).
//
// Query parameters (used by the interop tests, handy for people too):
//   user, token   sign in at once
//   realtime=URL  the realtime server as ws[s]://host:port/app/KEY instead of the one /demo/config
//                 names (the client-role runner puts its proxy there)
//   answer=auto   accept every incoming call
//   loopback=1    signal only UDP candidates on 127.0.0.1 or ::1, so test traffic stays on the machine
//   video=1       send the camera too
//   join=CHANNEL  join this call channel as a callee and wait for its call.started there, for a
//                 call placed without a trusted server (the conformance runner does this)
// window.domvia exposes the state and a report built from getStats for tests.
'use strict';

(function () {
  const KINDS = ['started', 'ringing', 'accepted', 'offer', 'answer', 'ice_candidate', 'media_state', 'ended'];
  // The protocol's default limits, used when a server announces none.
  // src/proto/limits.rs is the source: a test checks that these match it.
  const MAX_EVENT_BYTES = 10240;
  const MAX_CHUNKS = 8;
  const MAX_CANDIDATES_PER_EVENT = 20;
  const CLIENT_EVENTS_PER_SECOND = 10;
  // Pace at this share of the server's rate (src/proto/pusher_client.rs, PACING_SAFETY).
  const PACING_SAFETY = 0.9;
  // After a 4301 nothing is sent for this long (THROTTLE_PAUSE_MS there).
  const THROTTLE_PAUSE_MS = 1000;
  const CANDIDATE_WINDOW_MS = 30;
  const CONNECT_TIMEOUT_MS = 20000;
  const CHUNK_TIMEOUT_MS = 30000;

  const params = new URLSearchParams(location.search);
  const realtimeUrl = params.get('realtime');
  const loopbackOnly = params.get('loopback') === '1';
  const autoAnswer = params.get('answer') === 'auto';

  const $ = (id) => document.getElementById(id);
  const encoder = new TextEncoder();
  const byteLength = (s) => encoder.encode(s).length;
  const randomHex = (bytes) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('');

  const page = {
    config: null,
    pusher: null,
    user: null,
    token: null,
    pacer: null,
    call: null,
    invitations: new Set(),
    log: [],
    errors: [],
    finished: [],
    throttled: 0,
    // The limits the realtime server announced on the current connection ([TRN-003]).
    limits: { eventsPerSecond: CLIENT_EVENTS_PER_SECOND, maxEventBytes: MAX_EVENT_BYTES },
    // What a driver of this page reads (conformance/client-driver.md reports), oldest first.
    reports: [],
    // Strong privacy: the envelope (once libsodium is ready) and the channel keys the auth
    // endpoint gave, by channel name.
    envelope: null,
    secrets: new Map(),
  };

  // libsodium-wrappers initialises asynchronously; sign-in waits for it.
  const envelopeReady =
    window.sodium && window.DomviaEnvelope
      ? window.sodium.ready.then(() => {
          page.envelope = window.DomviaEnvelope.create(window.sodium);
        })
      : Promise.resolve();

  // Whether this page can take part in a call of this privacy and topology.
  function canTake(privacy, topology) {
    return topology === 'p2p' && (privacy === 'standard' || (privacy === 'strong' && !!page.envelope));
  }

  function emit(report) {
    page.reports.push(report);
  }

  function log(text) {
    const line = `${new Date().toISOString().slice(11, 23)} ${text}`;
    page.log.push(line);
    console.log('[domvia] ' + text);
    const el = $('log');
    el.textContent += line + '\n';
    el.scrollTop = el.scrollHeight;
  }

  function showError(text) {
    page.errors.push(text);
    log('ERROR ' + text);
    $('error').textContent = text;
  }

  // An error belongs to what failed; a later success takes it off the page (it stays in the log).
  function clearError() {
    $('error').textContent = '';
  }

  function setStatus(state, text) {
    const el = $('status');
    el.dataset.state = state;
    el.textContent = text;
  }

  // Client events leave one at a time, in order, through a token bucket just under the server's
  // rate; each is fenced by a pusher:ping (the server answers one connection's frames in order,
  // so the pong says the event before it was relayed, and a pusher:error before the pong was
  // about that event). Mirrors the pacer and fence of src/proto/pusher_client.rs.
  class Pacer {
    constructor() {
      this.tokens = 1;
      this.setRate(CLIENT_EVENTS_PER_SECOND * PACING_SAFETY);
      this.tokens = this.capacity;
      this.last = performance.now();
      this.pausedUntil = 0;
      this.queue = [];
      this.inFlight = null;
      // Pongs still to come for fences whose event a pusher:error already settled.
      this.pongsToSkip = 0;
      this.timer = null;
    }
    setRate(rate) {
      this.rate = Math.max(0.1, rate);
      this.capacity = Math.min(5, Math.max(1, this.rate / 2));
      this.tokens = Math.min(this.tokens, this.capacity);
    }
    push(item) {
      this.queue.push(item);
      this.pump();
    }
    later(ms) {
      if (this.timer) return;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, Math.max(1, Math.ceil(ms)));
    }
    pump() {
      if (this.inFlight || !this.queue.length) return;
      const now = performance.now();
      this.tokens = Math.min(this.capacity, this.tokens + (Math.max(0, now - this.last) * this.rate) / 1000);
      this.last = Math.max(this.last, now);
      const head = this.queue[0];
      // After a reconnect an event waits until its channel is subscribed again.
      if (page.pusher.connection.state !== 'connected' || !head.channel.subscribed) return this.later(50);
      if (now < this.pausedUntil) return this.later(this.pausedUntil - now);
      if (this.tokens < 1) return this.later(((1 - this.tokens) * 1000) / this.rate);
      this.tokens -= 1;
      this.queue.shift();
      this.inFlight = head;
      head.channel.trigger(head.name, head.data);
      page.pusher.send_event('pusher:ping', {});
    }
    // Every frame from the server, through pusher-js's connection 'message' event.
    onMessage(message) {
      if (message.event === 'pusher:pong') {
        if (this.pongsToSkip > 0) this.pongsToSkip -= 1;
        else this.inFlight = null;
        this.pump();
      } else if (message.event === 'pusher:error' && this.inFlight) {
        const refused = this.inFlight;
        const code = message.data && message.data.code;
        this.inFlight = null;
        this.pongsToSkip += 1;
        if (code === 4301) {
          // Refused for the rate: back to the head of the queue, then a pause ([LIM-004]).
          page.throttled += 1;
          log(`${refused.name} refused for the rate (4301): sent again after a pause`);
          this.queue.unshift(refused);
          const now = performance.now();
          this.pausedUntil = now + THROTTLE_PAUSE_MS;
          this.tokens = 0;
          this.last = this.pausedUntil;
        } else {
          showError(`the realtime server refused ${refused.name}: ${code} ${(message.data && message.data.message) || ''}`);
        }
        this.pump();
      }
    }
    // The socket went away: what was in flight may not have been relayed, so it goes again
    // (receivers drop a repeat by its seq).
    onDisconnected() {
      if (this.inFlight) this.queue.unshift(this.inFlight);
      this.inFlight = null;
      this.pongsToSkip = 0;
    }
  }

  // The [TRN-003] limits of a connection_established frame, if it is one. pusher-js reads only
  // the socket id and activity timeout, so the page looks at the frame itself (see watchHandshakes).
  function readLimits(text) {
    if (typeof text !== 'string' || !text.includes('pusher:connection_established')) return;
    let limits = null;
    try {
      const frame = JSON.parse(text);
      const data = typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
      limits = (data && data.limits) || {};
    } catch (e) {
      return;
    }
    const rate = Number(limits.client_events_per_second);
    const bytes = Number(limits.max_event_bytes);
    page.limits = {
      eventsPerSecond: rate > 0 ? rate : CLIENT_EVENTS_PER_SECOND,
      maxEventBytes: bytes > 0 ? bytes : MAX_EVENT_BYTES,
    };
    if (page.pacer) page.pacer.setRate(page.limits.eventsPerSecond * PACING_SAFETY);
    log(`server limits: ${page.limits.eventsPerSecond} client events/s, ${page.limits.maxEventBytes} bytes per event`);
  }

  // Sockets opened from now on (pusher-js asks for window.WebSocket each time it connects) let
  // the page read their first frame before pusher-js does.
  function watchHandshakes() {
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', (e) => readLimits(e.data));
      }
    };
  }

  // Splits an offer or answer whose data is over the limit into 2..8 chunk bodies with equal
  // members and one slice of the SDP each ([EVT-080]).
  // `measure` gives the size of a body on the wire (header included, sealed in a strong call).
  function chunkBodies(body, measure) {
    const fits = (b) => measure(b) <= page.limits.maxEventBytes;
    if (fits(body)) return [body];
    const id = randomHex(8);
    for (let count = 2; count <= MAX_CHUNKS; count++) {
      const size = Math.ceil(body.sdp.length / count);
      const pieces = [];
      for (let i = 0; i < count; i++) pieces.push(body.sdp.slice(i * size, (i + 1) * size));
      if (pieces.some((p) => p.length === 0)) break;
      const bodies = pieces.map((sdp, index) => ({ ...body, sdp, chunk: { id, index, count } }));
      if (bodies.every(fits)) return bodies;
    }
    throw new Error(`the SDP (${body.sdp.length} bytes) does not fit in ${MAX_CHUNKS} events`);
  }

  function candidateAllowed(c) {
    if (!c.candidate) return false;
    if (!loopbackOnly) return true;
    return c.protocol === 'udp' && (c.address === '127.0.0.1' || c.address === '::1');
  }

  function wireCandidate(c) {
    return {
      candidate: c.candidate,
      sdp_mid: c.sdpMid,
      sdp_mline_index: c.sdpMLineIndex,
      username_fragment: c.usernameFragment || null,
    };
  }

  class Call {
    constructor({ role, callId, channelName, caller, callees, media, iceServers, privacy }) {
      this.role = role;
      this.callId = callId;
      this.channelName = channelName;
      this.caller = caller;
      this.callees = callees;
      this.media = media;
      this.iceServers = iceServers || [];
      this.party = 'web-' + randomHex(8);
      this.seq = 0;
      this.privacy = privacy || 'standard';
      // The receiver's guard (downgrade, sealed in a standard call, replay) and, in a strong
      // call, the channel key; both set once the channel is joined.
      this.guard = null;
      this.key = null;
      this.chunks = new Map();
      this.peerParty = null;
      this.peerUser = null;
      this.pc = null;
      this.local = null;
      this.remoteCandidates = [];
      this.pendingLocal = [];
      this.candidateTimer = null;
      this.connectTimer = null;
      this.phase = 'new';
      this.reason = null;
      this.accepted = false;
      this.dc = { open: false, sent: [], received: [], echoed: false };
      this.remoteMediaState = null;
      this.muted = false;
      this.began = performance.now();
      this.times = {};
      this.channel = null;
    }

    mark(what) {
      if (!(what in this.times)) this.times[what] = Math.round(performance.now() - this.began);
    }

    join() {
      return new Promise((resolve, reject) => {
        const channel = page.pusher.subscribe(this.channelName);
        this.channel = channel;
        for (const kind of KINDS) {
          channel.bind('client-call.' + kind, (data, meta) => this.receive(kind, data, meta || {}));
          channel.bind('call.' + kind, (data, meta) => this.receive(kind, data, { ...(meta || {}), serverSent: true }));
        }
        channel.bind('pusher:subscription_succeeded', () => {
          log(`subscribed to ${this.channelName}`);
          this.installGuard().then(resolve, reject);
        });
        channel.bind('pusher:subscription_error', (e) => {
          reject(new Error(`cannot join ${this.channelName}: ${e.status || ''} ${e.error || e.type || ''}`.trim()));
        });
      });
    }

    async installGuard() {
      const envelope = page.envelope;
      if (this.privacy === 'strong') {
        const secret = page.secrets.get(this.channelName);
        if (!envelope || !secret) throw new Error(`no channel key for the strong-privacy call ${this.channelName}`);
        await window.sodium.ready;
        this.guard = new envelope.Guard(this.channelName, 'strong');
        this.key = await this.guard.installKey(secret);
      } else {
        this.guard = envelope ? new envelope.Guard(this.channelName, 'standard') : null;
      }
    }

    // The data of event `kind` as it goes on the wire: sealed when the call is strong and the
    // event sensitive ([PRIV-010]).
    wire(kind, data) {
      const name = 'client-call.' + kind;
      if (this.privacy === 'strong' && page.envelope.SENSITIVE.includes(kind)) {
        return page.envelope.seal(name, this.channelName, data, this.key);
      }
      return data;
    }

    send(kind, body) {
      const header = { v: 1, call_id: this.callId, party_id: this.party, user_id: page.user };
      const measure = (b) => byteLength(JSON.stringify(this.wire(kind, { ...header, seq: Number.MAX_SAFE_INTEGER, sent_at_ms: Number.MAX_SAFE_INTEGER, ...b })));
      const bodies = kind === 'offer' || kind === 'answer' ? chunkBodies(body, measure) : [body];
      for (const b of bodies) {
        // Seqs are taken now, so chunks get consecutive ones and order is kept by the pacer.
        const data = this.wire(kind, { ...header, seq: ++this.seq, sent_at_ms: Date.now(), ...b });
        const name = 'client-call.' + kind;
        page.pacer.push({ channel: this.channel, name, data });
        log(`sent ${name}${b.chunk ? ` (chunk ${b.chunk.index + 1}/${b.chunk.count})` : ''}${b.to_party_id ? ` to ${b.to_party_id}` : ''}`);
      }
    }

    receive(kind, raw, meta) {
      let data = raw;
      if (typeof data === 'string') {
        try {
          data = JSON.parse(data);
        } catch (e) {
          log(`dropped ${kind}: data is not JSON`);
          return;
        }
      }
      const name = (meta.serverSent ? 'call.' : 'client-call.') + kind;
      if (!data || typeof data !== 'object') {
        this.refuse(name, 'event.missing_data', null, 'data is not an object');
        return;
      }
      if (data.v !== 1) {
        this.refuse(name, 'event.unsupported_version', 'EVT-010', `version ${data.v}`);
        return;
      }
      if (typeof data.party_id !== 'string' || !Number.isSafeInteger(data.seq) || data.seq < 0) {
        this.refuse(name, 'event.invalid_field', 'EVT-016', 'party_id or seq is not valid');
        return;
      }
      if ((data.party_id === 'server') !== !!meta.serverSent) {
        this.refuse(name, 'event.reserved_party_id', 'EVT-013', `party_id ${data.party_id} on a ${meta.serverSent ? 'server' : 'client'} event`);
        return;
      }
      if (data.call_id !== this.callId) {
        this.refuse(name, 'event.call_id_mismatch', 'EVT-011', `call_id ${data.call_id} is not this call's`);
        return;
      }
      if (data.party_id === this.party) return;
      // On a presence channel the server adds the sender's verified user_id to every client
      // event; one without it did not come through a conforming server ([EVT-014]).
      if (!meta.serverSent && this.channelName.startsWith('presence-') && meta.user_id === undefined) {
        this.refuse(name, 'event.missing_verified_user', 'EVT-014', 'no verified user_id on a presence channel');
        return;
      }
      if (meta.user_id !== undefined && data.user_id !== meta.user_id) {
        this.refuse(name, 'event.user_id_mismatch', 'EVT-014', `user_id ${data.user_id} is not the verified ${meta.user_id}`);
        return;
      }
      // Addressed to another party: not this device's to open or act on.
      if (data.to_party_id && data.to_party_id !== this.party) return;
      if (this.guard) {
        try {
          data = this.guard.receive(name, data);
        } catch (e) {
          if (e.code === 'envelope.refetch_key') {
            // An unknown kid: the channel key once more from the auth endpoint ([PRIV-023]).
            this.refetchKey().then(() => this.receive(kind, raw, meta));
          } else if (e.code === 'envelope.replay') {
            log(`dropped ${kind} from ${data.party_id}: seq ${data.seq} already seen`);
          } else {
            const requirement = { 'envelope.downgrade': 'PRIV-020', 'envelope.unexpected_sealed': 'PRIV-021', 'envelope.unsupported_alg': 'PRIV-022', 'envelope.bad_encoding': 'PRIV-022', 'envelope.unknown_kid': 'PRIV-023' }[e.code] || 'PRIV-013';
            this.refuse(name, e.code || 'envelope.invalid', requirement, e.message);
          }
          return;
        }
      }
      if (data.chunk) {
        data = this.joinChunk(data);
        if (!data) return;
      }
      log(`received ${kind} from ${data.party_id} (${data.user_id})`);
      try {
        this.handle(kind, data);
      } catch (e) {
        showError(`handling ${kind}: ${e.message}`);
      }
    }

    async refetchKey() {
      try {
        const auth = await api('POST', '/realtime/auth', { socket_id: page.pusher.connection.socket_id, channel_name: this.channelName });
        if (auth.shared_secret) await this.guard.installKey(auth.shared_secret);
      } catch (e) {
        log(`could not fetch the channel key again: ${e.message}`);
      }
    }

    // An event not acted on because it broke a rule: logged, and reported to a driver.
    refuse(eventName, code, requirement, why) {
      log(`refused ${eventName}: ${why}`);
      emit({ event: 'refused', call_id: this.callId, event_name: eventName, code, requirement });
    }

    joinChunk(data) {
      const key = `${data.party_id}/${data.chunk.id}`;
      const now = performance.now();
      for (const [k, set] of this.chunks) if (now - set.first > CHUNK_TIMEOUT_MS) this.chunks.delete(k);
      const set = this.chunks.get(key) || { first: now, parts: new Map(), count: data.chunk.count };
      set.parts.set(data.chunk.index, data);
      this.chunks.set(key, set);
      if (set.parts.size < set.count) return null;
      this.chunks.delete(key);
      const ordered = [...set.parts.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
      const joined = { ...ordered[ordered.length - 1], sdp: ordered.map((p) => p.sdp).join('') };
      delete joined.chunk;
      return joined;
    }

    handle(kind, data) {
      if (this.phase === 'ended') return;
      switch (kind) {
        case 'ringing':
          if (this.role === 'caller' && !this.accepted) {
            this.setPhase('ringing', `ringing at ${data.user_id}`);
            this.mark('ringing');
          }
          break;
        case 'accepted':
          if (this.role === 'caller') this.onAccepted(data);
          else if (!this.accepted && data.user_id === page.user) this.end('answered_elsewhere', false, 'answered on another device');
          break;
        case 'offer':
          if (this.role === 'callee' && this.accepted && data.user_id === this.caller) this.onOffer(data);
          break;
        case 'answer':
          if (this.role === 'caller' && data.party_id === this.peerParty) this.onAnswer(data);
          break;
        case 'ice_candidate':
          if (data.party_id === this.peerParty) this.onCandidates(data);
          break;
        case 'media_state':
          this.remoteMediaState = data;
          $('fact-remote').textContent = `remote: ${data.audio && data.audio.muted ? 'muted' : 'audio on'}${data.on_hold ? ', on hold' : ''}`;
          break;
        case 'ended':
          this.onEnded(data);
          break;
        case 'started':
          if (this.role === 'callee' && !this.caller && data.caller === data.user_id) this.onStartedOnChannel(data);
          else if (this.role === 'callee' && data.user_id === this.caller) this.onLateStarted();
          break;
      }
    }

    setPhase(phase, text) {
      this.phase = phase;
      setStatus(phase, text);
      render();
      // The call states of spec/09-call-states.md, as a driver reports them.
      const named = {
        calling: 'outgoing',
        ringing: this.role === 'caller' ? 'ringing' : 'alerting',
        incoming: 'incoming',
        connecting: 'connecting',
        connected: 'active',
        ended: 'ended',
      }[phase];
      if (named && named !== this.reportedPhase) {
        this.reportedPhase = named;
        emit({ event: 'phase', call_id: this.callId, phase: named, ...(named === 'ended' ? { reason: this.reason } : {}) });
      }
      if (phase === 'connected') {
        whenMediaUp()
          .then(() => emit({ event: 'media_up', call_id: this.callId }))
          .catch((e) => log(`media: ${e.message}`));
      }
      if (phase === 'ended') emit({ event: 'ready', user: page.user });
    }

    // The ringing race ([FLOW-012]): the caller's call.started came after this device rang, so
    // the caller may have missed the ringing (and the acceptance): say it once more.
    onLateStarted() {
      if (this.repeatedForLateStart) return;
      if (this.phase === 'ringing' && !this.accepted) {
        this.repeatedForLateStart = true;
        this.send('ringing', {});
      } else if (this.accepted && !(this.pc && this.pc.remoteDescription)) {
        this.repeatedForLateStart = true;
        this.send('accepted', {});
      }
    }

    // A call placed without a trusted server: the invitation arrives on the channel itself.
    async onStartedOnChannel(data) {
      this.caller = data.caller;
      this.callees = data.callees;
      this.media = data.media || { audio: true };
      if (!canTake(data.privacy, data.topology) || data.privacy !== this.privacy) {
        this.end('incompatible', true, `this page cannot take ${data.privacy} privacy / ${data.topology} calls`);
        return;
      }
      await this.ring();
      if (autoAnswer) await this.accept();
    }

    async ring() {
      this.setPhase('ringing', `incoming call from ${this.caller}`);
      this.send('ringing', {});
      this.mark('ringing');
    }

    // The microphone (and camera); a caller asks for it while the call rings, so opening the
    // devices does not delay the offer. A callee asks only once its user accepted.
    acquireMedia() {
      this.mediaPromise = this.mediaPromise || navigator.mediaDevices.getUserMedia({ audio: true, video: !!this.media.video });
      return this.mediaPromise;
    }

    async openPeer() {
      const pc = new RTCPeerConnection({ iceServers: this.iceServers });
      this.pc = pc;
      pc.onicecandidate = (e) => this.onLocalCandidate(e.candidate);
      pc.onconnectionstatechange = () => {
        log(`connection ${pc.connectionState}`);
        $('fact-ice').textContent = `connection: ${pc.connectionState}`;
        if (pc.connectionState === 'connected') {
          clearTimeout(this.connectTimer);
          this.mark('connected');
          this.setPhase('connected', `in a call with ${this.peerUser}`);
        } else if (pc.connectionState === 'failed' && this.phase !== 'ended') {
          this.end('ice_failed', true, 'no network path to the other side (ICE failed)');
        }
      };
      pc.ontrack = (e) => {
        const el = e.track.kind === 'video' ? $('remote-video') : $('remote-audio');
        el.srcObject = e.streams[0] || new MediaStream([e.track]);
        el.classList.remove('hidden');
        if (e.track.kind === 'video') {
          $('remote-label').textContent = this.peerUser || 'the other side';
          $('remote-figure').classList.remove('hidden');
        }
        log(`remote ${e.track.kind} track`);
      };
      pc.ondatachannel = (e) => this.watchDataChannel(e.channel, true);
      try {
        this.local = await this.acquireMedia();
        for (const track of this.local.getTracks()) pc.addTrack(track, this.local);
        if (this.media.video) {
          $('local-video').srcObject = this.local;
          $('local-video').classList.remove('hidden');
          $('local-figure').classList.remove('hidden');
        }
      } catch (e) {
        showError(`no microphone (${e.name}): receiving only`);
        pc.addTransceiver('audio', { direction: 'recvonly' });
      }
      this.connectTimer = setTimeout(() => {
        if (this.phase !== 'connected' && this.phase !== 'ended') this.end('ice_failed', true, `media did not connect within ${CONNECT_TIMEOUT_MS / 1000} s`);
      }, CONNECT_TIMEOUT_MS);
      return pc;
    }

    watchDataChannel(dc, echo) {
      this.dataChannel = dc;
      dc.onopen = () => {
        this.dc.open = true;
        this.mark('data_channel_open');
        if (!echo) {
          dc.send('ping');
          this.dc.sent.push('ping');
        }
        render();
      };
      dc.onmessage = (e) => {
        const text = String(e.data);
        this.dc.received.push(text);
        if (echo && !text.startsWith('echo:')) {
          dc.send('echo:' + text);
          this.dc.sent.push('echo:' + text);
          this.dc.echoed = true;
        }
        if (!echo && text.startsWith('echo:')) this.dc.echoed = true;
        if (this.dc.echoed) this.mark('data_channel_echo');
        render();
      };
    }

    async onAccepted(data) {
      if (this.peerParty && data.party_id !== this.peerParty) {
        // A second device answered: the first acceptance wins ([FLOW-004]).
        this.send('ended', { reason: 'answered_elsewhere', to_party_id: data.party_id });
        return;
      }
      if (this.peerParty) return;
      this.accepted = true;
      this.peerParty = data.party_id;
      this.peerUser = data.user_id;
      this.mark('accepted');
      this.setPhase('connecting', `${data.user_id} answered; connecting media`);
      const pc = await this.openPeer();
      this.watchDataChannel(pc.createDataChannel('domvia'), false);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      this.send('offer', { to_party_id: this.peerParty, sdp: offer.sdp, negotiation_id: 1, ice_restart: false });
    }

    async accept() {
      if (this.role !== 'callee' || this.accepted || this.phase === 'ended') return;
      this.accepted = true;
      this.mark('accepted');
      this.setPhase('connecting', `answering ${this.caller}`);
      await this.openPeer();
      this.send('accepted', {});
    }

    decline(busy) {
      if (this.role !== 'callee' || this.accepted) return;
      this.end(busy ? 'busy' : 'declined', true, busy ? 'busy' : 'declined');
    }

    async onOffer(data) {
      if (this.peerParty && data.party_id !== this.peerParty) return;
      this.peerParty = data.party_id;
      this.peerUser = data.user_id;
      await this.pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
      await this.releaseCandidates();
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      this.send('answer', { to_party_id: this.peerParty, sdp: answer.sdp, negotiation_id: data.negotiation_id });
    }

    async onAnswer(data) {
      if (this.pc.signalingState !== 'have-local-offer') return;
      await this.pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
      await this.releaseCandidates();
    }

    async onCandidates(data) {
      for (const c of data.candidates || []) this.remoteCandidates.push(c);
      if (data.end_of_candidates) this.remoteCandidates.push(null);
      if (this.pc && this.pc.remoteDescription) await this.releaseCandidates();
    }

    async releaseCandidates() {
      const list = this.remoteCandidates;
      this.remoteCandidates = [];
      for (const c of list) {
        try {
          if (c === null) await this.pc.addIceCandidate();
          else await this.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdp_mid, sdpMLineIndex: c.sdp_mline_index, usernameFragment: c.username_fragment || undefined });
        } catch (e) {
          log(`remote candidate not usable: ${e.message}`);
        }
      }
    }

    onLocalCandidate(c) {
      if (this.phase === 'ended') return;
      if (c && !candidateAllowed(c)) return;
      if (c) this.pendingLocal.push(wireCandidate(c));
      if (!c) {
        this.flushCandidates(true);
      } else if (!this.candidateTimer) {
        this.candidateTimer = setTimeout(() => this.flushCandidates(false), CANDIDATE_WINDOW_MS);
      }
    }

    flushCandidates(endOfCandidates) {
      clearTimeout(this.candidateTimer);
      this.candidateTimer = null;
      const all = this.pendingLocal;
      this.pendingLocal = [];
      if (!all.length && !endOfCandidates) return;
      for (let i = 0; i < all.length || (i === 0 && endOfCandidates); i += MAX_CANDIDATES_PER_EVENT) {
        const batch = all.slice(i, i + MAX_CANDIDATES_PER_EVENT);
        const last = i + MAX_CANDIDATES_PER_EVENT >= all.length;
        this.send('ice_candidate', { to_party_id: this.peerParty, candidates: batch, end_of_candidates: endOfCandidates && last });
      }
    }

    onEnded(data) {
      const fromPeer = data.party_id === this.peerParty;
      const fromServer = data.party_id === 'server';
      const fromCaller = this.role === 'callee' && data.user_id === this.caller;
      const refusal = this.role === 'caller' && !this.accepted && (data.reason === 'declined' || data.reason === 'busy');
      if (fromPeer || fromServer || fromCaller || refusal || data.to_party_id === this.party) {
        this.end(data.reason, false, `${data.user_id} ended the call: ${data.reason}`);
      }
    }

    setMuted(muted) {
      this.muted = muted;
      if (this.local) for (const t of this.local.getAudioTracks()) t.enabled = !muted;
      this.send('media_state', {
        audio: { muted },
        video: { enabled: !!this.media.video },
        screen: { sharing: false },
        on_hold: false,
      });
    }

    hangUp() {
      const reason = this.role === 'caller' && !this.accepted ? 'cancelled' : 'hangup';
      this.end(reason, true, reason === 'cancelled' ? 'call cancelled' : 'you hung up');
    }

    end(reason, notify, text) {
      if (this.phase === 'ended') return;
      clearTimeout(this.connectTimer);
      if (notify) this.send('ended', { reason });
      this.reason = reason;
      this.remoteCandidates = [];
      this.mark('ended');
      this.setPhase('ended', `call ended (${reason}): ${text}`);
      // What described the call in progress no longer does.
      $('fact-ice').textContent = 'connection: closed';
      for (const id of ['local-figure', 'remote-figure']) $(id).classList.add('hidden');
      // Give the pacer time to send the last event before leaving the channel.
      setTimeout(() => {
        if (this.pc) this.pc.close();
        if (this.local) for (const t of this.local.getTracks()) t.stop();
        page.pusher.unsubscribe(this.channelName);
      }, 1000);
      page.finished.push({ callId: this.callId, role: this.role, reason });
      render();
    }
  }

  async function api(method, path, body) {
    const res = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${page.token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch (e) {
      /* not JSON */
    }
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${(json && json.error) || text}`);
    return json;
  }

  // { key, host, port, tls } of ws[s]://host:port/app/KEY.
  function realtimeFromUrl(text) {
    const url = new URL(text);
    const key = url.pathname.split('/').filter(Boolean).pop();
    const tls = url.protocol === 'wss:';
    return { key, host: url.hostname, port: Number(url.port) || (tls ? 443 : 80), tls };
  }

  async function signIn(user, token) {
    if (typeof Pusher === 'undefined') {
      throw new Error('pusher-js did not load from /demo/pusher.min.js; start the server where it can find pusher-js (see the README, "The demo page")');
    }
    page.config = page.config || (await (await fetch('/demo/config')).json());
    await envelopeReady;
    page.user = user;
    page.token = token;
    const rt = realtimeUrl ? realtimeFromUrl(realtimeUrl) : page.config.realtime;
    watchHandshakes();
    page.pacer = new Pacer();
    const pusher = new Pusher(rt.key, {
      wsHost: rt.host,
      wsPort: rt.port,
      wssPort: rt.port,
      forceTLS: !!rt.tls,
      enabledTransports: rt.tls ? ['wss'] : ['ws'],
      disableStats: true,
      cluster: 'domvia',
      channelAuthorization: {
        customHandler: ({ socketId, channelName }, callback) => {
          api('POST', '/realtime/auth', { socket_id: socketId, channel_name: channelName })
            .then((auth) => {
              if (auth.shared_secret) page.secrets.set(channelName, auth.shared_secret);
              callback(null, auth);
            })
            .catch((e) => {
              showError(e.message);
              callback(e, null);
            });
        },
      },
    });
    page.pusher = pusher;
    pusher.connection.bind('message', (m) => page.pacer.onMessage(m));
    pusher.connection.bind('state_change', (s) => {
      log(`realtime connection ${s.current}`);
      if (s.previous === 'connected') page.pacer.onDisconnected();
      if (s.current === 'connected') page.pacer.pump();
    });
    pusher.connection.bind('error', (e) => {
      const err = (e && e.error && e.error.data) || {};
      if (err.code === 4301) page.throttled += 1;
      showError(`realtime server: ${err.code || ''} ${err.message || JSON.stringify(e)}`);
    });
    const inbox = pusher.subscribe(`private-call-inbox.${user}`);
    await new Promise((resolve, reject) => {
      inbox.bind('pusher:subscription_succeeded', resolve);
      inbox.bind('pusher:subscription_error', (e) => reject(new Error(`cannot open the inbox of ${user}: ${e.status || ''} ${e.error || ''}`)));
    });
    inbox.bind('call.started', (data) => onInvitation(typeof data === 'string' ? JSON.parse(data) : data));
    log(`signed in as ${user}`);
    emit({ event: 'ready', user });
    clearError();
    setStatus('idle', `signed in as ${user}; waiting for calls`);
    if ($('callee').value === user) $('callee').value = user === 'alice' ? 'bob' : 'alice';
    $('signin').classList.add('hidden');
    $('dial').classList.remove('hidden');
  }

  // Whether an invitation crosses this device's own call ([FLOW-008]): a call it placed that
  // nobody accepted yet, and an invitation in the same scope from a user it calls, to this
  // user. Then the lower call_id (byte order; ids are ASCII, so string order) goes on: 'keep'
  // this call or 'yield' to the invitation's; null when the calls do not cross.
  function crossingOf(call, started) {
    if (call.role !== 'caller' || call.accepted || !['calling', 'ringing'].includes(call.phase)) return null;
    const [, scope, scopeId] = call.channelName.split('.');
    const theirs = String(started.channel || '').split('.');
    if (theirs.length !== 4 || theirs[1] !== scope || theirs[2] !== scopeId || started.call_id === call.callId) return null;
    if (call.callees.length && !call.callees.includes(started.caller)) return null;
    if ((started.callees || []).length && !started.callees.includes(page.user)) return null;
    return call.callId < started.call_id ? 'keep' : 'yield';
  }

  async function onInvitation(started) {
    if (!started || page.invitations.has(started.call_id)) return;
    page.invitations.add(started.call_id);
    log(`invitation to ${started.channel} from ${started.caller}`);
    if (page.call && page.call.phase !== 'ended') {
      const crossing = crossingOf(page.call, started);
      if (crossing !== 'yield') {
        log(crossing === 'keep'
          ? `glare: ${started.caller}'s call crosses this one, which has the lower call_id and goes on`
          : 'busy with another call: the invitation is ignored');
        return;
      }
      page.call.end('replaced', true, `${started.caller}'s crossing call has the lower call_id`);
    }
    const call = new Call({
      role: 'callee',
      callId: started.call_id,
      channelName: started.channel,
      caller: started.caller,
      callees: started.callees,
      media: started.media || { audio: true },
      // A call this page cannot take is joined as standard, only to decline it in the clear.
      privacy: canTake(started.privacy, started.topology) ? started.privacy : 'standard',
    });
    page.call = call;
    try {
      call.iceServers = (await api('GET', '/ice-servers')).ice_servers || [];
      await call.join();
      emit({ event: 'incoming', call_id: started.call_id, caller: started.caller });
      if (!canTake(started.privacy, started.topology)) {
        call.end('incompatible', true, `this page cannot take ${started.privacy} privacy / ${started.topology} calls`);
        return;
      }
      await call.ring();
      if (autoAnswer) await call.accept();
    } catch (e) {
      showError(e.message);
    }
  }

  async function joinChannel(channelName) {
    const call = new Call({
      role: 'callee',
      callId: channelName.split('.').pop(),
      channelName,
      caller: null,
      callees: [],
      media: { audio: true },
    });
    page.call = call;
    call.iceServers = (await api('GET', '/ice-servers')).ice_servers || [];
    await call.join();
    call.joined = true;
    call.setPhase('incoming', `joined ${channelName}; waiting for call.started`);
  }

  async function placeCall(callee, scopeText, video) {
    const [scope, scopeId] = scopeText.split('/');
    const media = { audio: true, video: !!video, screen: false };
    return placeRequest({ scope, scope_id: scopeId, callees: [callee], media });
  }

  // Places the call `request` (the POST /calls body) describes and joins its channel.
  async function placeRequest(request) {
    const media = { audio: true, video: false, screen: false, ...(request.media || {}) };
    const body = { ...request, media };
    if (request.privacy === 'strong' && !page.envelope) throw new Error('strong privacy needs libsodium, which did not load');
    const placed = await api('POST', '/calls', body);
    const callees = placed.callees || request.callees || [];
    emit({ event: 'placed', call_id: placed.call_id, channel: placed.channel });
    const call = new Call({
      role: 'caller',
      callId: placed.call_id,
      channelName: placed.channel,
      caller: page.user,
      callees,
      media,
      iceServers: placed.ice_servers,
      privacy: placed.privacy || 'standard',
    });
    page.call = call;
    call.setPhase('calling', `calling ${callees.join(', ')}`);
    call.acquireMedia().catch(() => {});
    await call.join();
    call.send('started', {
      channel: placed.channel,
      caller: page.user,
      callees,
      media,
      ring_timeout_ms: placed.ring_timeout_ms,
      privacy: call.privacy,
      topology: 'p2p',
    });
    return placed.call_id;
  }

  function render() {
    const call = page.call;
    const ringingIn = call && call.role === 'callee' && call.phase === 'ringing';
    $('incoming').classList.toggle('hidden', !ringingIn);
    if (ringingIn) $('incoming-text').textContent = `${call.caller} is calling (${call.channelName})`;
    const live = call && call.phase !== 'ended';
    $('hangup-button').disabled = !live || ringingIn;
    $('mute-button').disabled = !(live && call.phase === 'connected');
    $('mute-button').textContent = call && call.muted ? 'Unmute' : 'Mute';
    $('call-button').disabled = !!live;
    if (call) $('fact-dc').textContent = `data channel: ${call.dc.echoed ? 'echo ok' : call.dc.open ? 'open' : '-'}`;
  }

  // What tests read: the call's state plus the browser's own statistics.
  async function report() {
    const call = page.call;
    const out = {
      user: page.user,
      errors: page.errors,
      throttled: page.throttled,
      finished: page.finished,
      call: null,
    };
    if (!call) return out;
    out.call = {
      id: call.callId,
      role: call.role,
      phase: call.phase,
      reason: call.reason,
      party: call.party,
      peer_party: call.peerParty,
      peer_user: call.peerUser,
      data_channel: call.dc,
      times_ms: call.times,
      events_sent: call.seq,
      connection_state: call.pc ? call.pc.connectionState : null,
      ice_connection_state: call.pc ? call.pc.iceConnectionState : null,
    };
    if (call.pc) {
      const stats = await call.pc.getStats();
      const byId = new Map();
      stats.forEach((s) => byId.set(s.id, s));
      const packets = { inbound_audio_packets: 0, outbound_audio_packets: 0, inbound_video_packets: 0, outbound_video_packets: 0 };
      let pair = null;
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp') packets[`inbound_${s.kind}_packets`] += s.packetsReceived || 0;
        if (s.type === 'outbound-rtp') packets[`outbound_${s.kind}_packets`] += s.packetsSent || 0;
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
      });
      Object.assign(out.call, packets);
      if (pair) {
        const local = byId.get(pair.localCandidateId) || {};
        const remote = byId.get(pair.remoteCandidateId) || {};
        out.call.selected_pair = {
          state: pair.state,
          bytes_received: pair.bytesReceived || 0,
          local: { type: local.candidateType, address: local.address, port: local.port, protocol: local.protocol },
          remote: { type: remote.candidateType, address: remote.address, port: remote.port, protocol: remote.protocol },
        };
      }
    }
    return out;
  }

  // Once a second, the audio packet counts from getStats, so a person sees media flowing.
  setInterval(async () => {
    const call = page.call;
    if (!call || !call.pc || call.phase === 'ended') return;
    const r = await report();
    const video = call.media.video ? `; video packets: ${r.call.outbound_video_packets} out, ${r.call.inbound_video_packets} in` : '';
    $('fact-rtp').textContent = `audio packets: ${r.call.outbound_audio_packets} out, ${r.call.inbound_audio_packets} in${video}`;
  }, 1000);

  // Resolves once the current call is connected, the data channel echo is done and audio
  // packets arrived: the moment benchmarks and tests wait for.
  function whenMediaUp(within = 30000) {
    const deadline = performance.now() + within;
    return new Promise((resolve, reject) => {
      const check = async () => {
        const call = page.call;
        if (call && call.phase === 'connected' && call.dc.echoed) {
          const r = await report();
          if (r.call.inbound_audio_packets > 0) return resolve(r);
        }
        if (call && call.phase === 'ended') return reject(new Error(`the call ended: ${call.reason}`));
        if (performance.now() > deadline) return reject(new Error('media did not come up in time'));
        setTimeout(check, 5);
      };
      check();
    });
  }

  function guard(promise) {
    Promise.resolve(promise).catch((e) => showError(e.message));
  }

  // Without pusher-js nothing on this page can work: say so at once, not after Sign in.
  if (typeof Pusher === 'undefined') {
    showError('pusher-js did not load from /demo/pusher.min.js, so this page cannot sign in: run `npm ci --prefix tests/interop/pusher-js` in the checkout and restart `serve`, or start it with --pusher-js FILE');
    $('signin-button').disabled = true;
  }

  $('signin-button').onclick = () => guard(signIn($('user').value.trim(), $('token').value));
  $('call-button').onclick = () => guard(placeCall($('callee').value.trim(), $('scope').value.trim(), $('video').checked));
  $('accept-button').onclick = () => guard(page.call && page.call.accept());
  $('decline-button').onclick = () => page.call && page.call.decline(false);
  $('hangup-button').onclick = () => page.call && page.call.hangUp();
  $('mute-button').onclick = () => page.call && page.call.setMuted(!page.call.muted);

  // One command of conformance/client-driver.md (all but connect and quit, which the driver
  // carries out by opening and closing this page). Resolves to null, or to the reason the
  // command could not be carried out.
  async function command(cmd) {
    const call = page.call && page.call.phase !== 'ended' ? page.call : null;
    try {
      switch (cmd.cmd) {
        case 'place':
          if (call) return 'a call is in progress';
          await placeRequest(cmd.request || {});
          return null;
        case 'answer':
          if (!call || call.role !== 'callee' || call.accepted) return 'there is no call to answer';
          await call.accept();
          return null;
        case 'decline':
          if (!call || call.role !== 'callee' || call.accepted) return 'there is no call to decline';
          call.decline(!!cmd.busy);
          return null;
        case 'hang_up':
          if (!call) return 'there is no call';
          call.hangUp();
          return null;
        case 'mute':
          if (!call) return 'there is no call';
          call.setMuted(!!cmd.muted);
          return null;
        default:
          return `unknown command ${cmd.cmd}`;
      }
    } catch (e) {
      return e.message;
    }
  }

  window.domvia = {
    page,
    signIn,
    command,
    takeReports: () => page.reports.splice(0),
    call: placeCall,
    join: joinChannel,
    accept: () => page.call && page.call.accept(),
    hangUp: () => page.call && page.call.hangUp(),
    report,
    whenMediaUp,
    ready: false,
  };

  const user = params.get('user');
  const token = params.get('token');
  if (user && token) {
    $('user').value = user;
    $('token').value = token;
    signIn(user, token)
      .then(() => (params.get('join') ? joinChannel(params.get('join')) : null))
      .then(() => {
        window.domvia.ready = true;
      })
      .catch((e) => showError(e.message));
  } else {
    window.domvia.ready = true;
  }
})();
