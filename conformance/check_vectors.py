#!/usr/bin/env python3
"""Second, independent check of the conformance vectors, in Python.

It recomputes every signature, key derivation and seal in the vectors with Python's standard
library and PyNaCl (XChaCha20-Poly1305), opens every valid sealed event, and validates every event
vector's data against the generated JSON Schemas with the `jsonschema` package, expecting the
verdict the vector states. Ops it does not re-implement (error classification of verify_* and
parse_* cases) are counted as skipped, not passed.

Usage: python3 conformance/check_vectors.py [VECTORS_DIR] [SCHEMAS_DIR]
Needs: pip install pynacl jsonschema
"""

import base64
import hashlib
import hmac
import json
import os
import sys

import jsonschema
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

SALT = b"domvia-calls/strong-privacy/v1"
KID_LABEL = b"domvia-calls/kid/v1"
CLEAR = ["v", "call_id", "party_id", "user_id", "seq", "sent_at_ms", "to_party_id", "sealed"]


def hex_hmac256(secret, msg):
    return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hkdf_sha256_32(ikm, salt, info):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def kid_of(key):
    return b64url(hmac.new(key, KID_LABEL, hashlib.sha256).digest()[:9])


def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def logical(event_name):
    return event_name[len("client-"):] if event_name.startswith("client-") else event_name


def aad(event_name, channel, data):
    return "\n".join(
        [SALT.decode(), logical(event_name), channel, data["call_id"], data["party_id"], str(data["seq"])]
    )


def http_string(method, path, params):
    pairs = sorted((k.lower(), v) for k, v in params if k.lower() != "auth_signature")
    return "%s\n%s\n%s" % (method.upper(), path, "&".join("%s=%s" % kv for kv in pairs))


def parse_params(raw):
    from urllib.parse import parse_qsl

    return parse_qsl(raw, keep_blank_values=True)


class Checker:
    def __init__(self, schemas_dir):
        self.schemas = {}
        index = json.load(open(os.path.join(schemas_dir, "index.json")))
        for e in index["events"]:
            self.schemas[e["event"]] = json.load(open(os.path.join(schemas_dir, e["schema"])))
        self.sealed_schema = json.load(open(os.path.join(schemas_dir, index["sealed_schema"])))
        self.passed = self.failed = self.skipped = 0

    def expect(self, ok, where, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s: %s" % (where, what))

    def schema_verdict(self, case):
        data = case["data"]
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                return "invalid"
        schema = self.sealed_schema if isinstance(data, dict) and "sealed" in data else self.schemas.get(logical(case["event"]))
        if schema is None:
            return None
        cls = jsonschema.validators.validator_for(schema)
        return "valid" if cls(schema).is_valid(data) else "invalid"

    def run_case(self, op, g, c, where):
        get = lambda k: c.get(k, g.get(k))
        if op == "sign_channel":
            msg = c["socket_id"] + ":" + c["channel"] + (":" + c["channel_data"] if c.get("channel_data") is not None else "")
            self.expect(msg == c["string_to_sign"], where, "string_to_sign")
            self.expect(get("app_key") + ":" + hex_hmac256(get("secret"), msg) == c["auth"], where, "auth")
        elif op == "sign_user":
            msg = c["socket_id"] + "::user::" + c["user_data"]
            self.expect(msg == c["string_to_sign"], where, "string_to_sign")
            self.expect(get("app_key") + ":" + hex_hmac256(get("secret"), msg) == c["auth"], where, "auth")
        elif op == "sign_http":
            params = parse_params(c["params"]) + [("auth_key", get("app_key")), ("auth_timestamp", str(c["timestamp"])), ("auth_version", "1.0")]
            body = c["body"].encode()
            if body:
                md5 = hashlib.md5(body).hexdigest()
                self.expect(md5 == c.get("body_md5"), where, "body_md5")
                params.append(("body_md5", md5))
            s = http_string(c["method"], c["path"], params)
            self.expect(s == c["string_to_sign"], where, "string_to_sign")
            self.expect(hex_hmac256(get("secret"), s) == c["auth_signature"], where, "auth_signature")
        elif op == "sign_webhook":
            sig = hmac.new(get("secret").encode(), c["body"].encode(), hashlib.sha256).hexdigest()
            self.expect(sig == c["signature"], where, "signature")
        elif op == "turn_credential":
            user = "%d:%s" % (c["expiry"], c["user_id"])
            pw = base64.b64encode(hmac.new(get("secret").encode(), user.encode(), hashlib.sha1).digest()).decode()
            self.expect(user == c["username"] and pw == c["password"], where, "credential")
        elif op == "derive_key":
            key = hkdf_sha256_32(base64.b64decode(c["master_key"]), SALT, get("channel").encode())
            self.expect(base64.b64encode(key).decode() == c["shared_secret"], where, "shared_secret")
            self.expect(kid_of(key) == c["kid"], where, "kid")
        elif op == "seal":
            key = base64.b64decode(c["shared_secret"])
            data = c["data"]
            body = {k: v for k, v in data.items() if k not in CLEAR}
            self.expect(canonical(body) == c["plaintext"], where, "plaintext")
            a = aad(c["event"], get("channel"), data)
            self.expect(a == c["aad"], where, "aad")
            ct = crypto_aead_xchacha20poly1305_ietf_encrypt(c["plaintext"].encode(), a.encode(), unb64url(c["nonce"]), key)
            sealed = c["sealed_data"]["sealed"]
            self.expect(b64url(ct) == sealed["ct"] and sealed["kid"] == kid_of(key) and sealed["alg"] == "XC20P", where, "sealed")
        elif op == "open" and "error" not in c:
            key = base64.b64decode(c["shared_secret"])
            d = c["data"]
            pt = crypto_aead_xchacha20poly1305_ietf_decrypt(unb64url(d["sealed"]["ct"]), aad(c["event"], get("channel"), d).encode(), unb64url(d["sealed"]["nonce"]), key)
            merged = {k: v for k, v in d.items() if k != "sealed"}
            merged.update(json.loads(pt))
            self.expect(merged == c["opened"], where, "opened")
        elif op in ("parse_event", "parse_event_data") and "schema" in c:
            verdict = self.schema_verdict(c)
            self.expect(verdict == c["schema"], where, "schema verdict %s, expected %s" % (verdict, c["schema"]))
        else:
            self.skipped += 1

    def run_file(self, path):
        doc = json.load(open(path, encoding="utf-8"))
        for g in doc["groups"]:
            for i, c in enumerate(g["cases"]):
                where = "%s/%s/%s" % (os.path.basename(path), g["op"], c.get("id", i))
                try:
                    self.run_case(g["op"], g, c, where)
                except Exception as e:  # a vector the checker cannot read is a failure, not a skip
                    self.expect(False, where, repr(e))


def main():
    root = os.path.dirname(os.path.abspath(__file__))
    vectors = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "vectors")
    schemas = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "..", "schemas")
    checker = Checker(schemas)
    for name in sorted(os.listdir(vectors)):
        if name.endswith(".json"):
            checker.run_file(os.path.join(vectors, name))
    print("python-vectors: %d passed, %d failed, %d skipped" % (checker.passed, checker.failed, checker.skipped))
    return 1 if checker.failed or not checker.passed else 0


if __name__ == "__main__":
    sys.exit(main())
