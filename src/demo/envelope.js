// The strong-privacy envelope of spec/05-strong-privacy.md for JavaScript clients: the channel
// key and its kid, sealing and opening with XChaCha20-Poly1305 (libsodium-wrappers), and the
// receiver's guard of one call (downgrade, sealed in a standard call, replay, unknown kid fetched
// again once). It mirrors src/proto/envelope.rs and passes the same vectors
// (conformance/vectors/envelope.json; tests/interop/pusher-js/envelope-vectors.mjs runs them).
//
// Loaded by the demo page (window.DomviaEnvelope) and by Node (module.exports); both pass in an
// initialised libsodium-wrappers: DomviaEnvelope.create(sodium).
'use strict';

(function (root) {
  const SALT_LABEL = 'domvia-calls/strong-privacy/v1';
  const KID_LABEL = 'domvia-calls/kid/v1';
  const ALG = 'XC20P';
  const NONCE_BYTES = 24;
  const TAG_BYTES = 16;
  const KID_BYTES = 9;
  // Members that stay in the clear ([PRIV-013]); an opened body must not hold any of them.
  const CLEAR = ['v', 'call_id', 'party_id', 'user_id', 'seq', 'sent_at_ms', 'to_party_id', 'sealed'];
  // The events whose bodies are sealed in a strong-privacy call.
  const SENSITIVE = ['offer', 'answer', 'ice_candidate', 'media_state'];

  class EnvelopeError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  // `client-call.offer` or `call.offer` -> `offer`.
  function kindOf(eventName) {
    return eventName.replace(/^client-/, '').replace(/^call\./, '');
  }

  // JSON with object members in code-point order, as the Rust core writes a plaintext.
  function canonical(value) {
    if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
    if (value && typeof value === 'object') {
      const keys = Object.keys(value).sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
    }
    return JSON.stringify(value);
  }

  function create(sodium) {
    const URL = sodium.base64_variants.URLSAFE_NO_PADDING;
    const b64url = (bytes) => sodium.to_base64(bytes, URL);
    const fromB64url = (text, what) => {
      try {
        if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text)) throw new Error('not base64url');
        return sodium.from_base64(text, URL);
      } catch (e) {
        throw new EnvelopeError('envelope.bad_encoding', `${what} is not base64url without padding`);
      }
    };

    // The channel key from the auth endpoint's `shared_secret` (standard base64), with its kid
    // ([PRIV-002], [PRIV-003]). HMAC-SHA256 comes from WebCrypto (the browser's, or Node's
    // globalThis.crypto): libsodium-wrappers' standard build has no HMAC-SHA256.
    async function channelKey(sharedSecret) {
      let key;
      try {
        key = sodium.from_base64(sharedSecret, sodium.base64_variants.ORIGINAL);
      } catch (e) {
        throw new EnvelopeError('envelope.bad_shared_secret', 'shared_secret is not standard base64');
      }
      if (key.length !== 32) throw new EnvelopeError('envelope.bad_shared_secret', 'shared_secret is not 32 bytes');
      const hmacKey = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      const mac = new Uint8Array(await crypto.subtle.sign('HMAC', hmacKey, sodium.from_string(KID_LABEL)));
      return { key, kid: b64url(mac.slice(0, KID_BYTES)) };
    }

    // The associated data of [PRIV-011].
    function aad(eventName, channel, data) {
      return [SALT_LABEL, 'call.' + kindOf(eventName), channel, data.call_id, data.party_id, String(data.seq)].join('\n');
    }

    // Sealed data for an event whose body is sensitive ([PRIV-010]); `nonce` is for vectors only.
    function seal(eventName, channel, data, channelKeyValue, nonce) {
      const clear = {};
      const body = {};
      for (const [k, v] of Object.entries(data)) {
        if (CLEAR.includes(k)) clear[k] = v;
        else body[k] = v;
      }
      const n = nonce || sodium.randombytes_buf(NONCE_BYTES);
      const ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        sodium.from_string(canonical(body)),
        sodium.from_string(aad(eventName, channel, data)),
        null,
        n,
        channelKeyValue.key,
      );
      return { ...clear, sealed: { alg: ALG, kid: channelKeyValue.kid, nonce: b64url(n), ct: b64url(ct) } };
    }

    // The joined event of sealed `data`, opened with `channelKeyValue`; throws an EnvelopeError
    // naming the rule broken. Which key a kid names is the guard's business.
    function open(eventName, channel, data, channelKeyValue) {
      const sealed = data.sealed;
      if (!sealed || typeof sealed !== 'object') throw new EnvelopeError('envelope.bad_encoding', 'sealed is not an object');
      if (sealed.alg !== ALG) throw new EnvelopeError('envelope.unsupported_alg', `alg ${sealed.alg} is not ${ALG}`);
      const nonce = fromB64url(sealed.nonce, 'nonce');
      if (nonce.length !== NONCE_BYTES) throw new EnvelopeError('envelope.bad_encoding', `nonce is ${nonce.length} bytes, not ${NONCE_BYTES}`);
      const ct = fromB64url(sealed.ct, 'ct');
      if (ct.length < TAG_BYTES) throw new EnvelopeError('envelope.bad_encoding', 'ct is shorter than the tag');
      let plain;
      try {
        plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, ct, sodium.from_string(aad(eventName, channel, data)), nonce, channelKeyValue.key);
      } catch (e) {
        throw new EnvelopeError('envelope.authentication_failed', 'the sealed body did not authenticate');
      }
      let body;
      try {
        body = JSON.parse(sodium.to_string(plain));
      } catch (e) {
        body = null;
      }
      if (!body || typeof body !== 'object' || Array.isArray(body)) {
        throw new EnvelopeError('envelope.plaintext_not_object', 'the opened body is not a JSON object');
      }
      const clash = Object.keys(body).find((k) => CLEAR.includes(k));
      if (clash) throw new EnvelopeError('envelope.plaintext_overrides_header', `the opened body holds the clear member ${clash}`);
      const joined = {};
      for (const [k, v] of Object.entries(data)) if (k !== 'sealed') joined[k] = v;
      return { ...joined, ...body };
    }

    // The receiver side of one call ([PRIV-020..030], [EVT-015]): decides each event of the call
    // channel in arrival order. A refused event changes nothing later events depend on: a seq is
    // recorded only after its event authenticated, a kid is marked as fetched again only once.
    class Guard {
      constructor(channel, privacy) {
        this.channel = channel;
        this.strong = privacy === 'strong';
        this.keys = new Map();
        this.refetched = new Set();
        this.lastSeq = new Map();
      }
      async installKey(sharedSecret) {
        const k = await channelKey(sharedSecret);
        this.keys.set(k.kid, k);
        return k;
      }
      // The event to act on, or an EnvelopeError thrown.
      receive(eventName, data) {
        const kind = kindOf(eventName);
        const sensitive = SENSITIVE.includes(kind) && eventName.startsWith('client-');
        const sealed = data.sealed !== undefined;
        if (sealed && !this.strong) throw new EnvelopeError('envelope.unexpected_sealed', `${eventName} is sealed in a standard call`);
        if (this.strong && sensitive && !sealed) throw new EnvelopeError('envelope.downgrade', `${eventName} arrived unsealed in a strong-privacy call`);
        const last = this.lastSeq.get(data.party_id);
        if (last !== undefined && !(data.seq > last)) throw new EnvelopeError('envelope.replay', `seq ${data.seq} of ${data.party_id} is not above ${last}`);
        let event = data;
        if (sealed) {
          const kid = data.sealed && data.sealed.kid;
          const key = this.keys.get(kid);
          if (!key && !this.refetched.has(kid)) {
            // Fetch the channel key again once for this kid ([PRIV-023]), then retry.
            this.refetched.add(kid);
            throw new EnvelopeError('envelope.refetch_key', `unknown kid ${kid}: fetch the channel key again`);
          }
          if (!key) throw new EnvelopeError('envelope.unknown_kid', `unknown kid ${kid}`);
          event = open(eventName, this.channel, data, key);
        }
        this.lastSeq.set(data.party_id, data.seq);
        return event;
      }
    }

    return { channelKey, seal, open, aad, canonical, Guard, SENSITIVE, kindOf };
  }

  const api = { create, EnvelopeError };
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
  else root.DomviaEnvelope = api;
})(typeof window !== 'undefined' ? window : globalThis);
