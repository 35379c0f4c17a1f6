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

Standard-privacy calls only; a strong-privacy invitation is declined as `incompatible`.
"""

import argparse
import asyncio
import json
import secrets
import sys
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
EVENTS_PER_SECOND = 8
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
    server's auth endpoint, paces client events below the server's limit."""

    def __init__(self, url, auth_url, token):
        self.url = url
        self.auth_url = auth_url
        self.token = token
        self.frames = asyncio.Queue()
        self.next_send = 0.0
        self.limit = MAX_EVENT_BYTES
        self.rate = EVENTS_PER_SECOND

    async def connect(self):
        self.ws = await websockets.connect(f"{self.url}?protocol=7&client=domvia-aiortc&version=1")
        first = json.loads(await self.ws.recv())
        if first.get("event") != "pusher:connection_established":
            raise RuntimeError(f"expected connection_established, got {first}")
        data = json.loads(first["data"])
        self.socket_id = data["socket_id"]
        limits = data.get("limits") or {}
        self.limit = limits.get("max_event_bytes", MAX_EVENT_BYTES)
        self.rate = min(EVENTS_PER_SECOND, max(1, limits.get("client_events_per_second", 10) - 2))
        self.reader = asyncio.create_task(self.read())
        log(f"connected as socket {self.socket_id}")

    async def read(self):
        async for text in self.ws:
            frame = json.loads(text)
            if frame.get("event") == "pusher:ping":
                await self.ws.send(json.dumps({"event": "pusher:pong", "data": {}}))
            elif frame.get("event") == "pusher:error":
                log(f"server error: {frame.get('data')}")
            else:
                await self.frames.put(frame)

    async def subscribe(self, channel):
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
        held = []
        while True:
            frame = await self.frames.get()
            if frame.get("channel") == channel and frame["event"] == "pusher_internal:subscription_succeeded":
                break
            if frame.get("channel") == channel and frame["event"] == "pusher:subscription_error":
                raise RuntimeError(f"cannot subscribe to {channel}: {frame.get('data')}")
            held.append(frame)
        for frame in held:
            await self.frames.put(frame)
        log(f"subscribed to {channel}")

    async def trigger(self, channel, event, data):
        wait = self.next_send - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self.next_send = max(time.monotonic(), self.next_send) + 1 / self.rate
        await self.ws.send(json.dumps({"event": event, "channel": channel, "data": data}))


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
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pc.addTrack(AudioStreamTrack())
        self.pc.on("connectionstatechange", self.on_state)
        self.pc.on("track", self.on_track)
        self.pc.on("datachannel", lambda dc: self.watch(dc, echo=True))

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
        if data.get("v") != 1 or data.get("call_id") != self.call_id or data.get("party_id") == self.party:
            return
        if "user_id" in frame and data.get("user_id") != frame["user_id"]:
            log(f"dropped {kind}: user_id is not the verified one")
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
        if kind == "accepted" and self.role == "caller":
            if self.peer_party is None:
                self.peer_party, self.peer_user = data["party_id"], data["user_id"]
                self.accepted = True
                self.mark("accepted")
                self.watch(self.pc.createDataChannel("domvia"), echo=False)
                await self.pc.setLocalDescription(await self.pc.createOffer())
                await self.send(
                    "offer",
                    {"to_party_id": self.peer_party, "sdp": self.pc.localDescription.sdp, "negotiation_id": 1, "ice_restart": False},
                )
                await self.end_of_candidates()
            elif data["party_id"] != self.peer_party:
                await self.send("ended", {"reason": "answered_elsewhere", "to_party_id": data["party_id"]})
        elif kind == "offer" and self.role == "callee" and data.get("user_id") == self.caller:
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
        self.done.set()

    async def pump(self):
        while True:
            frame = await self.rt.frames.get()
            await self.receive(frame)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    await rt.ws.close()
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
