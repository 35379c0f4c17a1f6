// The demo page's strong-privacy envelope (src/demo/envelope.js, libsodium-wrappers) against the
// vectors the Rust core passes (conformance/vectors/envelope.json): kids, sealed bytes with the
// vectors' fixed nonces, every opening and rejection, and every guard sequence. Exit 1 on any
// difference. Run: node envelope-vectors.mjs (CI runs it after npm ci).

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sodium from 'libsodium-wrappers';

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const { create } = require(`${root}src/demo/envelope.js`);
const vectors = JSON.parse(readFileSync(`${root}conformance/vectors/envelope.json`, 'utf8'));

await sodium.ready;
const env = create(sodium);
const URL_SAFE = sodium.base64_variants.URLSAFE_NO_PADDING;

// Errors that come from the rules of section 4 (the joined event's own members), which the page
// applies after the envelope, not the envelope itself.
const EVENT_RULES = new Set(['envelope.event_invalid', 'event.missing_field']);

let passed = 0;
const failures = [];
const check = (id, ok, detail) => {
  if (ok) passed += 1;
  else failures.push(`${id}: ${detail}`);
};
const codeOf = (fn) => {
  try {
    fn();
    return null;
  } catch (e) {
    if (!e.code) throw e;
    return e.code;
  }
};

let skipped = 0;
for (const group of vectors.groups) {
  for (const c of group.cases) {
    const id = `${group.op}/${c.id}`;
    if (group.op === 'derive_key') {
      const { kid } = await env.channelKey(c.shared_secret);
      check(id, kid === c.kid, `kid ${kid}, want ${c.kid}`);
    } else if (group.op === 'seal') {
      const key = await env.channelKey(c.shared_secret);
      const channel = c.channel || group.channel;
      check(`${id}/aad`, env.aad(c.event, channel, c.data) === c.aad, 'associated data differs');
      const body = Object.fromEntries(Object.entries(c.data).filter(([k]) => !['v', 'call_id', 'party_id', 'user_id', 'seq', 'sent_at_ms', 'to_party_id'].includes(k)));
      check(`${id}/plaintext`, env.canonical(body) === c.plaintext, `plaintext ${env.canonical(body)}`);
      const sealed = env.seal(c.event, channel, c.data, key, sodium.from_base64(c.nonce, URL_SAFE));
      check(`${id}/sealed`, JSON.stringify(sealed.sealed) === JSON.stringify(c.sealed_data.sealed), `sealed ${JSON.stringify(sealed.sealed)}`);
    } else if (group.op === 'open') {
      const key = await env.channelKey(c.shared_secret);
      const channel = c.channel || group.channel;
      const want = c.error || null;
      if (want && EVENT_RULES.has(want)) {
        skipped += 1;
        continue;
      }
      let got = null;
      let opened = null;
      got = codeOf(() => {
        opened = env.open(c.event, channel, c.data, key);
      });
      check(id, got === want, `error ${got}, want ${want}`);
      if (!want && c.opened) check(`${id}/opened`, env.canonical(opened) === env.canonical(c.opened), 'opened event differs');
    } else if (group.op === 'guard') {
      const guard = new env.Guard(c.channel || group.channel, c.privacy);
      for (const k of c.keys) await guard.installKey(k);
      c.steps.forEach((step, i) => {
        const got = codeOf(() => guard.receive(step.event, step.data));
        check(`${id}/step ${i + 1}`, got === (step.error || null), `error ${got}, want ${step.error || null}`);
      });
    } else {
      failures.push(`${id}: unknown op ${group.op}`);
    }
  }
}

console.log(`envelope vectors in JavaScript: ${passed} checks pass, ${failures.length} fail, ${skipped} left to the event rules`);
for (const f of failures) console.log(`FAIL ${f}`);
process.exit(failures.length ? 1 : 0);
