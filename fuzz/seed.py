#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the conformance vectors, the recorded call
transcripts in fuzz/transcripts/ (frames an observer saw during real calls through the reference
servers, WebRTC SDP and candidates included) and a few hand-made operation sequences. Seeds are named by the first 16 hex digits of their SHA-1, so
re-running is idempotent. Usage: python3 fuzz/seed.py"""
import base64, hashlib, hmac, json, os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fuzz", "corpus")
KINDS = ["call.started", "call.ringing", "call.accepted", "call.offer", "call.answer",
         "call.ice_candidate", "call.media_state", "call.ended"]


def vectors(name):
    return json.load(open(os.path.join(ROOT, "conformance", "vectors", name + ".json")))


def put(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb").write(data)


def main():
    for c in vectors("frames")["groups"][0]["cases"]:
        if "raw" in c:
            put("frame", c["raw"])
        elif "raw_base64" in c:
            put("frame", base64.b64decode(c["raw_base64"]))
    events = vectors("events")["groups"][0]
    for c in events["cases"]:
        frame = {"event": c["event"], "channel": c.get("channel", events["channel"]), "data": c["data"]}
        if "user_id" in c:
            frame["user_id"] = c["user_id"]
        put("frame", json.dumps(frame))
        name = c["event"]
        logical = name[len("client-"):] if name.startswith("client-") else name
        if logical in KINDS and isinstance(c["data"], dict):
            pick = KINDS.index(logical) | (0 if name.startswith("client-") else 0x80)
            put("event", bytes([pick]) + json.dumps(c["data"]).encode())
    for c in vectors("channel-names")["groups"][0]["cases"]:
        put("channel_name", c["name"])
    for g in vectors("signatures")["groups"]:
        for c in g["cases"]:
            lines = [c.get("channel", c.get("query", c.get("username", ""))),
                     c.get("channel_data", c.get("user_data", c.get("password", ""))),
                     c.get("auth", c.get("header_signature", c.get("auth_signature", ""))),
                     c.get("body", "")]
            put("signatures", "\n".join(lines))
    for g in vectors("envelope")["groups"]:
        for c in g["cases"]:
            if isinstance(c.get("data"), dict) and "sealed" in c["data"]:
                put("envelope_open", json.dumps(c["data"]))
            for step in c.get("steps", []):
                put("envelope_open", json.dumps(step["data"]))

    def chunk(index, count, sdp, seq, nid=1):
        return {"v": 1, "call_id": "call-1", "party_id": "alice-phone-1", "user_id": "alice", "seq": seq,
                "sent_at_ms": 0, "to_party_id": "bob-laptop-1", "sdp": sdp, "negotiation_id": nid,
                "ice_restart": False, "chunk": {"id": "c1", "index": index, "count": count}}
    parts = ["v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n", "s=-\r\nt=0 0\r\n", "a=end\r\n"]
    lines = [bytes([1]) + json.dumps(chunk(i, 3, p, 10 + i)).encode() for i, p in enumerate(parts)]
    put("chunks", b"\n".join(lines))
    put("chunks", b"\n".join(reversed(lines)))
    put("chunks", b"\n".join([lines[0], lines[0], lines[1]]))
    put("chunks", b"\n".join([lines[0], bytes([200]) + json.dumps(chunk(1, 3, parts[1], 11, nid=2)).encode(), lines[2]]))
    put("chunks", b"\n".join([lines[0], bytes([255]) + lines[1][1:], bytes([255]) + lines[2][1:]]))

    def msg(conn, obj):
        return bytes([3 + conn]) + json.dumps(obj).encode() + b"\x00"
    opens = bytes([0, 1, 2])
    sub = lambda ch: {"event": "pusher:subscribe", "data": {"channel": ch}}
    put("hub", opens + msg(0, sub("public-a")) + msg(1, sub("public-a")) + msg(0, {"event": "client-x", "channel": "public-a", "data": {}}))
    put("hub", opens + msg(0, {"event": "pusher:ping", "data": {}}) + bytes([12, 13, 14, 9, 10, 11]))
    put("hub", opens + msg(2, sub("private-a")) + msg(2, sub("presence-a")) + bytes([15]) + b"auth_key=key\x00")
    put("hub", opens + msg(0, "{not json") + msg(1, [1, 2]) + bytes([6, 7, 8]))

    offer = {"v": 1, "call_id": "call-1", "party_id": "alice-phone-1", "user_id": "alice", "seq": 5, "sent_at_ms": 0,
             "to_party_id": "bob-laptop-1", "sdp": "v=0\r\n", "negotiation_id": 1, "ice_restart": False}
    ended = {"v": 1, "call_id": "call-1", "party_id": "alice-phone-1", "user_id": "alice", "seq": 6, "sent_at_ms": 0,
             "reason": "hangup"}
    put("call_machine", bytes([0, 1, 6]) + json.dumps(offer).encode() + b"\x00" + bytes([0x86]) + json.dumps(ended).encode() + b"\x00")
    put("call_machine", bytes([0, 2, 1, 3, 4, 5]))
    put("call_machine", bytes([0, 4, 4, 4]))
    put("call_machine", bytes([1, 5, 3, 0, 1]))
    for name in sorted(os.listdir(TRANSCRIPTS)):
        transcript_seeds(json.load(open(os.path.join(TRANSCRIPTS, name)))["frames"])
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))))


TRANSCRIPTS = os.path.join(ROOT, "fuzz", "transcripts")
# What the fuzz entry points are built with (src/proto/fuzz_entry.rs).
HUB_KEY, HUB_SECRET = "key", "secret"
MACHINE_IDS = {"call_id": "call-1", "caller": ("alice", "alice-phone-1"), "callee": "bob-laptop-1"}


def transcript_seeds(frames):
    """Seeds from one recorded call: every frame as is, every call event for the event parser,
    offers for the chunk reassembler, the whole call replayed on the hub by two connections with
    valid signatures, and the caller's events fed to the callee's call machine."""
    received = [json.loads(f["text"]) for f in frames if f["dir"] == "<"]
    for f in frames:
        put("frame", f["text"])
    calls = [f for f in received if f.get("event", "").startswith(("client-call.", "call."))]
    for f in calls:
        name = f["event"]
        logical = name[len("client-"):] if name.startswith("client-") else name
        pick = KINDS.index(logical) | (0 if name.startswith("client-") else 0x80)
        put("event", bytes([pick]) + json.dumps(f["data"]).encode())
    offers = [f["data"] for f in calls if f["event"] == "client-call.offer"]
    if offers:
        put("chunks", b"\n".join(bytes([1]) + json.dumps(o).encode() for o in offers))
    if not calls:
        return
    channel = calls[0]["channel"]
    caller = calls[0]["data"]["user_id"]

    # The hub gives conn 0 (opened by op 0) socket "0.1" and conn 1 (op 1) socket "1.2".
    def subscribe(socket, user):
        channel_data = json.dumps({"user_id": user, "user_info": {}})
        sig = hmac.new(HUB_SECRET.encode(), f"{socket}:{channel}:{channel_data}".encode(), "sha256").hexdigest()
        return {"event": "pusher:subscribe",
                "data": {"channel": channel, "auth": f"{HUB_KEY}:{sig}", "channel_data": channel_data}}

    def msg(conn, obj):
        return bytes([3 + conn]) + json.dumps(obj).encode() + b"\x00"
    ops = bytes([0, 1]) + msg(0, subscribe("0.1", caller)) + msg(1, subscribe("1.2", "callee"))
    for f in calls:
        conn = 0 if f["data"]["user_id"] == caller else 1
        ops += msg(conn, {"event": f["event"], "channel": channel, "data": f["data"]})
    put("hub", ops + bytes([6, 7]))

    # The call machine is a callee invited by alice-phone-1 to call-1: the caller's offers and end
    # with their ids rewritten, seqs above the invitation's.
    user, party = MACHINE_IDS["caller"]
    seq = 1
    ops = bytes([0, 1])
    for f in calls:
        if f["data"]["user_id"] != caller or f["event"] not in ("client-call.offer", "client-call.ended"):
            continue
        seq += 1
        data = dict(f["data"], call_id=MACHINE_IDS["call_id"], party_id=party, user_id=user, seq=seq)
        if "to_party_id" in data:
            data["to_party_id"] = MACHINE_IDS["callee"]
        op = 6 if f["event"] == "client-call.offer" else 0x86
        ops += bytes([op]) + json.dumps(data).encode() + b"\x00"
    put("call_machine", ops + bytes([5, 3]))


if __name__ == "__main__":
    main()
