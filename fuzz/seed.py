#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the conformance vectors (and a few
hand-made operation sequences). Seeds are named by the first 16 hex digits of their SHA-1, so
re-running is idempotent. Usage: python3 fuzz/seed.py"""
import base64, hashlib, json, os

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
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))))


if __name__ == "__main__":
    main()
