#!/usr/bin/env python3
"""An independent call peer: aiortc for WebRTC and a small Pusher protocol 7 client of its own
(the `websockets` package) for signaling, written from spec/ rather than from the Rust code.

It places a call through a trusted server (--call USER), answers the first invitation in its
inbox, or (--join CHANNEL, for calls placed without a trusted server) joins a call channel and
answers the call.started that arrives there; then it runs the call until ICE and DTLS are up, the data channel carried "ping" and its
"echo:ping", and audio RTP arrived; it then waits for the other side to hang up (or hangs up
itself with --hang-up). It prints `READY` once it waits for a call, `MEDIA {json}` when media
is up (after `UP` the moment it is), and `RESULT {json}` as its last line; the exit code is 0
when media came up. With --wait-go a caller connects, prints `READY` and places the call only
when a line arrives on standard input (benchmarks time the call without Python's start-up).

aiortc puts every candidate in the SDP (no trickle) and leaves 127.0.0.1 out of its host
addresses (aioice's get_host_addresses). This script replaces that function so the only host
address is 127.0.0.1: all test traffic stays on loopback. It never falls back to aiortc's default
public STUN server: the ICE servers are exactly those the trusted server returned.

With --driver it takes no other flag and speaks the client-driver contract instead
(conformance/client-driver.md): commands as JSON lines on stdin, reports on stdout, any number of
calls one after another; the conformance runner tests it that way (`conform --client aiortc`).

Standard-privacy calls only; a strong-privacy invitation is declined as `incompatible`.
"""

import argparse
import asyncio
import collections
import json
import secrets
import sys
import threading
import time
import urllib.request

import aioice.ice
import websockets
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

MAX_EVENT_BYTES = 10240
CLIENT_EVENTS_PER_SECOND = 10
# Pace at this share of the announced rate, and pause this long after a 4301 (as the Rust client).
PACING_SAFETY = 0.9
THROTTLE_PAUSE_S = 1.0
# Media not connected this long after the call was accepted counts as ICE failure ([MEDIA-007]).
CONNECT_TIMEOUT_S = 20.0
KINDS = ["started", "ringing", "accepted", "offer", "answer", "ice_candidate", "media_state", "ended"]


def loopback_host_addresses(use_ipv4, use_ipv6):
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = loopback_host_addresses

T0 = time.monotonic()


def log(text):
    print(f"[aiortc {1000 * (time.monotonic() - T0):8.1f} ms] {text}", file=sys.stderr, flush=True)


def http(method, url, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("authorization", f"Bearer {token}")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


class Realtime:
    """A Pusher protocol 7 connection: answers pings, signs subscriptions through the trusted
    server's auth endpoint, and sends client events one at a time in order, paced under the rate
    the server announces ([TRN-003], else the default) and each followed by a pusher:ping: the
    server answers a connection's frames in order, so the pong says the event was relayed and a
    pusher:error before it was about that event; a 4301 puts the event back at the head of the
    queue and pauses sending for a second ([LIM-004]). A closed socket is reopened by its close
    code's class ([TRN-010]: never after 4000-4099, after a backoff from one second after
    4100-4199 and other closes, at once after 4200-4299) and every channel is subscribed again.

    Frames for the app (channel events) arrive in `frames`; a final close puts
    {"event": "domvia:closed", "code": N} there."""

    def __init__(self, url, auth_url, token):
        self.url = url
        self.auth_url = auth_url
        self.token = token
        self.frames = asyncio.Queue()
        self.limit = MAX_EVENT_BYTES
        self.rate = CLIENT_EVENTS_PER_SECOND * PACING_SAFETY
        self.capacity = 1.0
        self.tokens = 1.0
        self.last = time.monotonic()
        self.paused_until = 0.0
        self.outbox = collections.deque()
        self.in_flight = None
        self.pongs_to_skip = 0
        self.wake = asyncio.Event()
        self.open = asyncio.Event()
        # channel -> set once the server confirmed the subscription on the current socket
        self.channels = {}
        self.closing = False
        self.ws = None

    async def connect(self):
        await self.open_socket()
        self.reader = asyncio.create_task(self.keep_open())
        self.sender = asyncio.create_task(self.send_loop())

    async def open_socket(self):
        self.ws = await websockets.connect(f"{self.url}?protocol=7&client=domvia-aiortc&version=1")
        first = json.loads(await self.ws.recv())
        if first.get("event") != "pusher:connection_established":
            raise RuntimeError(f"expected connection_established, got {first}")
        data = json.loads(first["data"])
        self.socket_id = data["socket_id"]
        limits = data.get("limits") or {}
        self.limit = limits.get("max_event_bytes", MAX_EVENT_BYTES)
        self.rate = max(0.1, limits.get("client_events_per_second", CLIENT_EVENTS_PER_SECOND) * PACING_SAFETY)
        self.capacity = min(5.0, max(1.0, self.rate / 2))
        self.tokens = min(self.tokens, self.capacity)
        self.open.set()
        log(f"connected as socket {self.socket_id} ({self.rate:.1f} client events/s)")
        for channel, confirmed in self.channels.items():
            confirmed.clear()
            asyncio.ensure_future(self.request(channel))

    async def keep_open(self):
        backoff = 1.0
        while True:
            code = await self.read()
            self.open.clear()
            if self.in_flight is not None:
                # Maybe not relayed: sent again on the next socket (receivers drop a repeat by seq).
                self.outbox.appendleft(self.in_flight)
                self.in_flight = None
            self.pongs_to_skip = 0
            for confirmed in self.channels.values():
                confirmed.clear()
            if self.closing:
                return
            if code is not None and 4000 <= code < 4100:
                log(f"closed with {code}: not reconnecting")
                await self.frames.put({"event": "domvia:closed", "code": code})
                return
            delay = 0.0 if code is not None and 4200 <= code < 4300 else backoff
            while True:
                log(f"closed with {code}: reconnecting in {delay:.1f} s")
                await asyncio.sleep(delay)
                try:
                    await self.open_socket()
                    break
                except Exception as e:
                    log(f"reconnect failed: {e}")
                    backoff = min(backoff * 2, 30.0)
                    delay = backoff
            if code is None or not 4200 <= code < 4300:
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = 1.0
            self.wake.set()

    async def read(self):
        """Reads the current socket until it closes; its close code."""
        try:
            async for text in self.ws:
                frame = json.loads(text)
                event = frame.get("event")
                if event == "pusher:ping":
                    await self.ws.send(json.dumps({"event": "pusher:pong", "data": {}}))
                elif event == "pusher:pong":
                    if self.pongs_to_skip > 0:
                        self.pongs_to_skip -= 1
                    else:
                        self.in_flight = None
                    self.wake.set()
                elif event == "pusher:error":
                    self.refused(frame.get("data") or {})
                elif event == "pusher_internal:subscription_succeeded" and frame.get("channel") in self.channels:
                    self.channels[frame["channel"]].set()
                    self.wake.set()
                    log(f"subscribed to {frame['channel']}")
                elif event == "pusher:subscription_error":
                    log(f"cannot subscribe to {frame.get('channel')}: {frame.get('data')}")
                    await self.frames.put(frame)
                else:
                    await self.frames.put(frame)
        except websockets.ConnectionClosed:
            pass
        return self.ws.close_code

    def refused(self, data):
        if isinstance(data, str):
            data = json.loads(data)
        code = data.get("code")
        if self.in_flight is None:
            log(f"server error: {data}")
            return
        event = self.in_flight
        self.in_flight = None
        self.pongs_to_skip += 1
        if code == 4301:
            log(f"{event[1]} refused for the rate (4301): sent again after a pause")
            self.outbox.appendleft(event)
            self.paused_until = time.monotonic() + THROTTLE_PAUSE_S
            self.tokens = 0.0
            self.last = self.paused_until
        else:
            log(f"{event[1]} refused: {data}")
        self.wake.set()

    async def request(self, channel):
        auth = await asyncio.to_thread(
            http,
            "POST",
            self.auth_url,
            self.token,
            {"socket_id": self.socket_id, "channel_name": channel},
        )
        data = {"channel": channel, "auth": auth["auth"]}
        if "channel_data" in auth:
            data["channel_data"] = auth["channel_data"]
        await self.ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))

    async def subscribe(self, channel, within=10.0):
        self.channels[channel] = asyncio.Event()
        await self.request(channel)
        await asyncio.wait_for(self.channels[channel].wait(), within)

    async def unsubscribe(self, channel):
        self.channels.pop(channel, None)
        self.outbox = collections.deque(e for e in self.outbox if e[0] != channel)
        if self.open.is_set():
            await self.ws.send(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": channel}}))

    async def trigger(self, channel, event, data):
        self.outbox.append((channel, event, data))
        self.wake.set()

    async def flush(self, within=5.0):
        """Waits until every queued client event was relayed (or `within` passed)."""
        deadline = time.monotonic() + within
        while (self.outbox or self.in_flight is not None) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def send_loop(self):
        while True:
            self.wake.clear()
            if self.in_flight is None and self.outbox:
                channel, event, data = self.outbox[0]
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.last) * self.rate)
                self.last = max(self.last, now)
                confirmed = self.channels.get(channel)
                if not self.open.is_set() or confirmed is None or not confirmed.is_set():
                    # After a reconnect an event waits until its channel is subscribed again.
                    wait = 0.05
                elif now < self.paused_until:
                    wait = self.paused_until - now
                elif self.tokens < 1:
                    wait = (1 - self.tokens) / self.rate
                else:
                    self.tokens -= 1
                    self.in_flight = self.outbox.popleft()
                    try:
                        await self.ws.send(json.dumps({"event": event, "channel": channel, "data": data}))
                        await self.ws.send(json.dumps({"event": "pusher:ping", "data": {}}))
                    except websockets.ConnectionClosed:
                        pass
                    continue
                try:
                    await asyncio.wait_for(self.wake.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            else:
                await self.wake.wait()

    async def close(self):
        self.closing = True
        if self.ws is not None:
            await self.ws.close()


class Call:
    def __init__(self, rt, user, role, channel, call_id, caller, ice_servers, hang_up):
        self.rt = rt
        self.user = user
        self.role = role
        self.channel = channel
        self.call_id = call_id
        self.caller = caller
        self.hang_up_when_up = hang_up
        self.party = "aiortc-" + secrets.token_hex(8)
        self.seq = 0
        self.seen = {}
        self.chunks = {}
        self.peer_party = None
        self.peer_user = None
        self.accepted = False
        self.end_reason = None
        self.ended_by = None
        self.echoed = False
        self.received = []
        self.times = {}
        self.done = asyncio.Event()
        self.media_up = asyncio.Event()
        # Driver mode: called with each report of conformance/client-driver.md.
        self.report_to = None
        self.phase = None
        self.repeated_for_late_start = False
        # Caller: the users called (empty: anyone in the scope).
        self.callees = []
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pc.addTrack(AudioStreamTrack())
        self.pc.on("connectionstatechange", self.on_state)
        self.pc.on("track", self.on_track)
        self.pc.on("datachannel", lambda dc: self.watch(dc, echo=True))

    def set_phase(self, phase, reason=None):
        """The call state of spec/09-call-states.md, reported to a driver when it changes."""
        if phase == self.phase:
            return
        self.phase = phase
        if self.report_to is not None:
            r = {"event": "phase", "call_id": self.call_id, "phase": phase}
            if reason is not None:
                r["reason"] = reason
            self.report_to(r)

    def mark(self, what):
        self.times.setdefault(what, round(1000 * (time.monotonic() - T0)))

    async def send(self, kind, body):
        header = {"v": 1, "call_id": self.call_id, "party_id": self.party, "user_id": self.user}
        bodies = [body]
        if kind in ("offer", "answer"):
            bodies = split_sdp(header, body, self.rt.limit)
        for b in bodies:
            self.seq += 1
            data = {**header, "seq": self.seq, "sent_at_ms": int(time.time() * 1000), **b}
            await self.rt.trigger(self.channel, "client-call." + kind, data)
            log(f"sent {kind}" + (f" to {b['to_party_id']}" if "to_party_id" in b else ""))

    async def on_state(self):
        state = self.pc.connectionState
        log(f"connection {state}")
        if state == "connected":
            self.mark("connected")
            if self.end_reason is None:
                self.set_phase("active")
            self.check_up()
        elif state == "failed" and self.end_reason is None:
            await self.end("ice_failed", notify=True)

    def on_track(self, track):
        async def drain():
            while True:
                try:
                    await track.recv()
                except Exception:
                    return
                self.mark("first_audio_frame")

        asyncio.ensure_future(drain())

    def watch(self, dc, echo):
        def opened():
            self.mark("data_channel_open")
            if not echo:
                dc.send("ping")

        def message(text):
            self.received.append(text)
            if echo and not text.startswith("echo:"):
                dc.send("echo:" + text)
                self.echoed = True
            if not echo and text.startswith("echo:"):
                self.echoed = True
            self.check_up()

        dc.on("open", opened)
        dc.on("message", message)
        if echo and dc.readyState == "open":
            opened()

    def check_up(self):
        if self.echoed and self.pc.connectionState == "connected":
            self.mark("media_up")
            self.media_up.set()

    async def inbound_packets(self):
        stats = await self.pc.getStats()
        return sum(getattr(s, "packetsReceived", 0) for s in stats.values() if s.type == "inbound-rtp")

    def selected_pair(self):
        def end(c):
            return {"type": c.type, "address": c.host, "port": c.port}

        for t in self.pc.getTransceivers():
            conn = t.receiver.transport.transport._connection
            pair = conn._nominated.get(1)
            if pair is not None:
                return {"local": end(pair.local_candidate), "remote": end(pair.remote_candidate)}
        return None

    async def report(self):
        return {
            "connected": "connected" in self.times,
            "echo": self.echoed,
            "data_channel_received": self.received,
            "inbound_audio_packets": await self.inbound_packets(),
            "selected_pair": self.selected_pair(),
            "peer_user": self.peer_user,
            "times_ms": self.times,
        }

    async def receive(self, frame):
        event = frame.get("event", "")
        kind = event.split(".", 1)[1] if event.startswith(("client-call.", "call.")) else None
        if kind not in KINDS or frame.get("channel") != self.channel:
            return
        data = frame.get("data")
        if isinstance(data, str):
            data = json.loads(data)
        if data.get("v") != 1:
            self.refused(event, "event.unsupported_version", "EVT-010")
            return
        if data.get("call_id") != self.call_id:
            self.refused(event, "event.call_id_mismatch", "EVT-011")
            return
        if data.get("party_id") == self.party:
            return
        # On a presence channel the server adds the sender's verified user_id to every client
        # event: one without it, or with another, is not the sender it claims ([EVT-014]).
        verified = frame.get("user_id")
        if event.startswith("client-") and self.channel.startswith("presence-") and verified is None:
            self.refused(event, "event.missing_verified_user", "EVT-014")
            return
        if verified is not None and data.get("user_id") != verified:
            self.refused(event, "event.user_id_mismatch", "EVT-014")
            return
        party = data["party_id"]
        if data["seq"] <= self.seen.get(party, 0):
            log(f"dropped {kind} from {party}: seq {data['seq']} already seen")
            return
        self.seen[party] = data["seq"]
        if data.get("to_party_id") not in (None, self.party):
            return
        if "chunk" in data:
            data = self.join_chunk(data)
            if data is None:
                return
        log(f"received {kind} from {party} ({data.get('user_id')})")
        await self.handle(kind, data)

    def refused(self, event, code, requirement):
        log(f"refused {event}: {code} [{requirement}]")
        if self.report_to is not None:
            self.report_to(
                {"event": "refused", "call_id": self.call_id, "event_name": event, "code": code, "requirement": requirement}
            )

    def join_chunk(self, data):
        key = (data["party_id"], data["chunk"]["id"])
        parts = self.chunks.setdefault(key, {})
        parts[data["chunk"]["index"]] = data
        if len(parts) < data["chunk"]["count"]:
            return None
        del self.chunks[key]
        ordered = [parts[i] for i in sorted(parts)]
        joined = dict(ordered[-1])
        joined["sdp"] = "".join(p["sdp"] for p in ordered)
        del joined["chunk"]
        return joined

    async def handle(self, kind, data):
        if self.end_reason is not None:
            return
        if kind == "ringing" and self.role == "caller" and not self.accepted:
            self.set_phase("ringing")
        elif kind == "accepted" and self.role == "callee" and not self.accepted and data.get("user_id") == self.user:
            # Another device of this user answered: stop ringing, send nothing ([FLOW-004]).
            await self.end("answered_elsewhere", notify=False)
        elif kind == "accepted" and self.role == "caller":
            if self.peer_party is None:
                self.peer_party, self.peer_user = data["party_id"], data["user_id"]
                self.accepted = True
                self.mark("accepted")
                self.set_phase("connecting")
                self.start_connect_timer()
                self.watch(self.pc.createDataChannel("domvia"), echo=False)
                await self.pc.setLocalDescription(await self.pc.createOffer())
                await self.send(
                    "offer",
                    {"to_party_id": self.peer_party, "sdp": self.pc.localDescription.sdp, "negotiation_id": 1, "ice_restart": False},
                )
                await self.end_of_candidates()
            elif data["party_id"] != self.peer_party:
                await self.send("ended", {"reason": "answered_elsewhere", "to_party_id": data["party_id"]})
        elif kind == "offer" and self.role == "callee" and self.accepted and data.get("user_id") == self.caller:
            self.peer_party, self.peer_user = data["party_id"], data["user_id"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.send(
                "answer",
                {"to_party_id": self.peer_party, "sdp": self.pc.localDescription.sdp, "negotiation_id": data["negotiation_id"]},
            )
            await self.end_of_candidates()
        elif kind == "answer" and data["party_id"] == self.peer_party:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
        elif kind == "ice_candidate" and data["party_id"] == self.peer_party:
            for c in data.get("candidates", []):
                candidate = candidate_from_sdp(c["candidate"].split(":", 1)[1])
                candidate.sdpMid = c.get("sdp_mid")
                candidate.sdpMLineIndex = c.get("sdp_mline_index")
                await self.pc.addIceCandidate(candidate)
            if data.get("end_of_candidates"):
                await self.pc.addIceCandidate(None)
        elif kind == "started" and self.role == "callee" and self.caller is not None and data.get("user_id") == self.caller:
            # The ringing race [FLOW-012]: the caller's call.started came after this device rang,
            # so the caller may have missed the ringing (or the acceptance): say it once more.
            if not self.repeated_for_late_start:
                if self.phase == "alerting" and not self.accepted:
                    self.repeated_for_late_start = True
                    await self.send("ringing", {})
                elif self.accepted and self.pc.remoteDescription is None:
                    self.repeated_for_late_start = True
                    await self.send("accepted", {})
        elif kind == "started" and self.role == "callee" and self.caller is None and data.get("caller") == data.get("user_id"):
            # A call placed without a trusted server: the invitation arrives on the channel.
            self.caller = data["caller"]
            if data.get("privacy") != "standard" or data.get("topology") != "p2p":
                await self.end("incompatible", notify=True)
                return
            await self.send("ringing", {})
            self.accepted = True
            self.mark("accepted")
            await self.send("accepted", {})
        elif kind == "ended":
            from_peer = data["party_id"] == self.peer_party
            from_server = data["party_id"] == "server"
            from_caller = self.role == "callee" and data.get("user_id") == self.caller
            refused = self.role == "caller" and not self.accepted and data.get("reason") in ("declined", "busy")
            if from_peer or from_server or from_caller or refused:
                self.ended_by = data["party_id"]
                await self.end(data["reason"], notify=False)

    async def end_of_candidates(self):
        # Every candidate is in the SDP already: one event closes this ICE generation.
        await self.send("ice_candidate", {"to_party_id": self.peer_party, "candidates": [], "end_of_candidates": True})

    async def end(self, reason, notify):
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.mark("ended")
        if notify:
            await self.send("ended", {"reason": reason})
        self.set_phase("ended", reason)
        self.done.set()

    def crossing(self, started):
        """Whether an invitation crosses this call ([FLOW-008]): this device placed it and nobody
        accepted yet, and the invitation comes in the same scope from a user it calls, to this
        user. The lower call_id (byte order) goes on: "keep" this call, "yield" to the other, or
        None when the calls do not cross."""
        if self.role != "caller" or self.accepted or self.phase not in ("outgoing", "ringing"):
            return None
        mine = self.channel.split(".")
        theirs = str(started.get("channel", "")).split(".")
        if len(theirs) != 4 or theirs[1:3] != mine[1:3] or started.get("call_id") == self.call_id:
            return None
        if self.callees and started.get("caller") not in self.callees:
            return None
        if started.get("callees") and self.user not in started["callees"]:
            return None
        return "keep" if self.call_id.encode() < str(started.get("call_id")).encode() else "yield"

    def start_connect_timer(self):
        async def expire():
            await asyncio.sleep(CONNECT_TIMEOUT_S)
            if self.end_reason is None and "connected" not in self.times:
                log(f"media did not connect within {CONNECT_TIMEOUT_S:.0f} s")
                await self.end("ice_failed", notify=True)

        asyncio.ensure_future(expire())

    async def ring(self):
        self.set_phase("alerting")
        await self.send("ringing", {})

    async def accept(self):
        self.accepted = True
        self.mark("accepted")
        self.set_phase("connecting")
        self.start_connect_timer()
        await self.send("accepted", {})

    async def mute(self, muted):
        await self.send(
            "media_state",
            {"audio": {"muted": muted}, "video": {"enabled": False}, "screen": {"sharing": False}, "on_hold": False},
        )

    async def pump(self):
        while True:
            frame = await self.rt.frames.get()
            await self.receive(frame)


def report(r):
    """One line of the client-driver contract on stdout."""
    print(json.dumps(r), flush=True)


class Driver:
    """This peer behind the client-driver contract (conformance/client-driver.md): commands as
    JSON lines on stdin, reports on stdout. It is the part an app team writes for its own SDK:
    each command becomes a call of the SDK (here the Realtime and Call classes above), each
    callback a report; it decides nothing itself."""

    def __init__(self):
        self.rt = None
        self.user = None
        self.token = None
        self.trusted_url = None
        self.call = None
        self.events = None

    async def run(self):
        commands = asyncio.Queue()

        def read_stdin():
            for line in sys.stdin:
                asyncio.run_coroutine_threadsafe(commands.put(line), loop)
            asyncio.run_coroutine_threadsafe(commands.put(None), loop)

        loop = asyncio.get_running_loop()
        threading.Thread(target=read_stdin, daemon=True).start()
        while True:
            line = await commands.get()
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
            except ValueError as e:
                report({"event": "error", "command": line, "message": f"not JSON: {e}"})
                continue
            name = cmd.get("cmd", "")
            if name == "quit":
                break
            try:
                why = await self.command(name, cmd)
            except Exception as e:
                why = f"{type(e).__name__}: {e}"
            if why:
                report({"event": "error", "command": name, "message": why})
        await self.close()

    async def command(self, name, cmd):
        if name == "connect":
            if self.rt is not None:
                return "already connected"
            self.user, self.token = cmd["user"], cmd["token"]
            self.trusted_url = cmd["trusted_url"].rstrip("/")
            self.rt = Realtime(cmd["realtime_url"], f"{self.trusted_url}/realtime/auth", self.token)
            await self.rt.connect()
            await self.rt.subscribe(f"private-call-inbox.{self.user}")
            self.events = asyncio.create_task(self.dispatch())
            report({"event": "ready", "user": self.user})
            return None
        if self.rt is None:
            return "connect first"
        call = self.call if self.call is not None and self.call.end_reason is None else None
        if name == "place":
            if call is not None:
                return "a call is in progress"
            await self.place(cmd.get("request") or {})
        elif name == "answer":
            if call is None or call.role != "callee" or call.accepted:
                return "there is no call to answer"
            await call.accept()
        elif name == "decline":
            if call is None or call.role != "callee" or call.accepted:
                return "there is no call to decline"
            await call.end("busy" if cmd.get("busy") else "declined", notify=True)
        elif name == "hang_up":
            if call is None:
                return "there is no call"
            await call.end("cancelled" if call.role == "caller" and not call.accepted else "hangup", notify=True)
        elif name == "mute":
            if call is None:
                return "there is no call"
            await call.mute(bool(cmd.get("muted")))
        else:
            return f"unknown command {name}"
        return None

    def new_call(self, role, channel, call_id, caller, ice_servers):
        call = Call(self.rt, self.user, role, channel, call_id, caller, ice_servers, False)
        call.report_to = report
        self.call = call
        asyncio.ensure_future(self.watch(call))
        return call

    async def place(self, request):
        placed = await asyncio.to_thread(http, "POST", f"{self.trusted_url}/calls", self.token, request)
        if placed.get("privacy", "standard") != "standard":
            # This peer has no sealing: it cannot take part in the call it was given.
            await asyncio.to_thread(
                http, "POST", f"{self.trusted_url}/calls/{placed['call_id']}/end", self.token, {"reason": "incompatible"}
            )
            raise RuntimeError("this peer places standard-privacy calls only")
        report({"event": "placed", "call_id": placed["call_id"], "channel": placed["channel"]})
        callees = placed.get("callees") or request.get("callees") or []
        call = self.new_call("caller", placed["channel"], placed["call_id"], self.user, placed.get("ice_servers", []))
        call.callees = callees
        call.set_phase("outgoing")
        await self.rt.subscribe(call.channel)
        await call.send(
            "started",
            {
                "channel": call.channel,
                "caller": self.user,
                "callees": callees,
                "media": {"audio": True, "video": False, "screen": False},
                "ring_timeout_ms": placed["ring_timeout_ms"],
                "privacy": "standard",
                "topology": "p2p",
            },
        )

    async def invited(self, started):
        if self.call is not None and self.call.end_reason is None:
            crossing = self.call.crossing(started)
            if crossing != "yield":
                log(
                    f"glare: {started.get('caller')}'s call crosses this one, which has the lower call_id and goes on"
                    if crossing == "keep"
                    else "busy with another call: the invitation is ignored"
                )
                return
            await self.call.end("replaced", notify=True)
        log(f"invitation to {started['channel']} from {started['caller']}")
        servers = await asyncio.to_thread(http, "GET", f"{self.trusted_url}/ice-servers", self.token)
        call = self.new_call("callee", started["channel"], started["call_id"], started["caller"], servers["ice_servers"])
        await self.rt.subscribe(call.channel)
        report({"event": "incoming", "call_id": call.call_id, "caller": call.caller})
        call.set_phase("incoming")
        if started.get("privacy") != "standard" or started.get("topology") != "p2p":
            await call.end("incompatible", notify=True)
        else:
            await call.ring()

    async def dispatch(self):
        """Routes the app's frames: invitations from the inbox, the rest to the call."""
        inbox = f"private-call-inbox.{self.user}"
        while True:
            frame = await self.rt.frames.get()
            try:
                if frame.get("channel") == inbox and frame.get("event") == "call.started":
                    data = frame["data"] if isinstance(frame["data"], dict) else json.loads(frame["data"])
                    await self.invited(data)
                elif self.call is not None and frame.get("channel") == self.call.channel:
                    await self.call.receive(frame)
            except Exception as e:
                log(f"handling {frame.get('event')}: {type(e).__name__}: {e}")

    async def watch(self, call):
        """Reports media up (data-channel echo and audio RTP) and, after the end, listens anew."""
        up = asyncio.ensure_future(call.media_up.wait())
        done = asyncio.ensure_future(call.done.wait())
        await asyncio.wait({up, done}, return_when=asyncio.FIRST_COMPLETED)
        if call.media_up.is_set() and call.end_reason is None:
            for _ in range(100):
                if await call.inbound_packets() > 0:
                    report({"event": "media_up", "call_id": call.call_id})
                    break
                await asyncio.sleep(0.05)
        await done
        await self.rt.flush()
        await self.rt.unsubscribe(call.channel)
        await call.pc.close()
        report({"event": "ready", "user": self.user})

    async def close(self):
        if self.rt is not None:
            await self.rt.flush()
            await self.rt.close()
        if self.call is not None:
            await self.call.pc.close()


async def main():
    if "--driver" in sys.argv[1:]:
        await Driver().run()
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", action="store_true", help="speak the client-driver contract on stdin/stdout (conformance/client-driver.md); no other flag is needed")
    ap.add_argument("--realtime-url", required=True, help="ws://host:port/app/KEY")
    ap.add_argument("--trusted-url", help="http://host:port of the trusted server")
    ap.add_argument("--auth-url", help="channel authorization endpoint (default: TRUSTED_URL/realtime/auth)")
    ap.add_argument("--join", metavar="CHANNEL", help="join this call channel and answer the call.started that arrives there")
    ap.add_argument("--user", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--call", metavar="USER", help="call this user; without it, answer the first invitation")
    ap.add_argument("--scope", default="room/chat-room-42")
    ap.add_argument("--hang-up", action="store_true", help="hang up once media is up")
    ap.add_argument("--within", type=float, default=30.0, help="seconds until giving up")
    ap.add_argument("--wait-go", action="store_true", help="caller: print READY, then wait for a line on stdin before calling")
    args = ap.parse_args()

    auth_url = args.auth_url or f"{args.trusted_url}/realtime/auth"
    if not args.join and not args.trusted_url:
        ap.error("--trusted-url is needed unless --join is given")
    rt = Realtime(args.realtime_url, auth_url, args.token)
    await rt.connect()
    result = {"user": args.user, "role": "caller" if args.call else "callee"}
    if args.call:
        if args.wait_go:
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        scope, scope_id = args.scope.split("/", 1)
        placed = await asyncio.to_thread(
            http,
            "POST",
            f"{args.trusted_url}/calls",
            args.token,
            {"scope": scope, "scope_id": scope_id, "callees": [args.call]},
        )
        call = Call(rt, args.user, "caller", placed["channel"], placed["call_id"], args.user, placed["ice_servers"], args.hang_up)
        await rt.subscribe(call.channel)
        await call.send(
            "started",
            {
                "channel": call.channel,
                "caller": args.user,
                "callees": [args.call],
                "media": {"audio": True, "video": False, "screen": False},
                "ring_timeout_ms": placed["ring_timeout_ms"],
                "privacy": "standard",
                "topology": "p2p",
            },
        )
    elif args.join:
        call = Call(rt, args.user, "callee", args.join, args.join.rsplit(".", 1)[1], None, [], args.hang_up)
        await rt.subscribe(call.channel)
        print("READY", flush=True)
    else:
        await rt.subscribe(f"private-call-inbox.{args.user}")
        print("READY", flush=True)
        while True:
            frame = await rt.frames.get()
            if frame.get("event") == "call.started":
                started = frame["data"] if isinstance(frame["data"], dict) else json.loads(frame["data"])
                break
        log(f"invitation to {started['channel']} from {started['caller']}")
        servers = await asyncio.to_thread(http, "GET", f"{args.trusted_url}/ice-servers", args.token)
        call = Call(rt, args.user, "callee", started["channel"], started["call_id"], started["caller"], servers["ice_servers"], args.hang_up)
        await rt.subscribe(call.channel)
        if started.get("privacy") != "standard" or started.get("topology") != "p2p":
            await call.end("incompatible", notify=True)
        else:
            await call.send("ringing", {})
            call.accepted = True
            call.mark("accepted")
            await call.send("accepted", {})
    result["call_id"] = call.call_id
    pump = asyncio.create_task(call.pump())
    try:
        await asyncio.wait_for(asyncio.wait({asyncio.ensure_future(call.media_up.wait()), asyncio.ensure_future(call.done.wait())}, return_when=asyncio.FIRST_COMPLETED), args.within)
    except asyncio.TimeoutError:
        log("media did not come up in time")
    if call.media_up.is_set():
        print("UP", flush=True)
        # Let audio flow a little so the counts mean something.
        await asyncio.sleep(0.3)
        print("MEDIA " + json.dumps(await call.report()), flush=True)
        if args.hang_up:
            await call.end("hangup", notify=True)
        try:
            await asyncio.wait_for(call.done.wait(), args.within)
        except asyncio.TimeoutError:
            log("the call did not end in time")
    result.update(await call.report())
    result.update({"end_reason": call.end_reason, "ended_by": call.ended_by})
    pump.cancel()
    await call.pc.close()
    await rt.flush()
    await rt.close()
    print("RESULT " + json.dumps(result), flush=True)
    return 0 if call.media_up.is_set() else 1


def split_sdp(header, body, limit):
    def fits(b):
        return len(json.dumps({**header, "seq": 2**53 - 1, "sent_at_ms": 2**53 - 1, **b}).encode()) <= limit

    if fits(body):
        return [body]
    chunk_id = secrets.token_hex(8)
    sdp = body["sdp"]
    for count in range(2, 9):
        size = -(-len(sdp) // count)
        pieces = [sdp[i * size : (i + 1) * size] for i in range(count)]
        if any(not p for p in pieces):
            break
        bodies = [{**body, "sdp": p, "chunk": {"id": chunk_id, "index": i, "count": count}} for i, p in enumerate(pieces)]
        if all(fits(b) for b in bodies):
            return bodies
    raise ValueError("the SDP does not fit in 8 chunks")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
