// The real pusher-js client and the official `pusher` Node SDK against the domvia-calls reference
// realtime server. The SDK signs every subscription (an independent signer) and triggers events
// through the HTTP API; pusher-js connects, subscribes private and presence channels, exchanges
// client events and sees member events. Starts the server binary named by DOMVIA_BIN on an
// ephemeral loopback port and stops it at the end.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import PusherJsModule from 'pusher-js';
import PusherSdkModule from 'pusher';

const PusherJs = PusherJsModule.default ?? PusherJsModule;
const PusherSdk = PusherSdkModule.default ?? PusherSdkModule;

const APP = { id: 'interop-app', key: 'interop-key', secret: 'interop-secret' };
const WAIT_MS = 5000;
const results = [];

function check(name, ok, detail = '') {
  results.push({ name, ok });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
}

function waitFor(what, register) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

async function startServer() {
  const bin = process.env.DOMVIA_BIN;
  if (!bin) throw new Error('set DOMVIA_BIN to the domvia-calls binary');
  const child = spawn(bin, ['serve', '--role', 'realtime', '--bind', '127.0.0.1:0'], {
    env: { ...process.env, DOMVIA_APP_ID: APP.id, DOMVIA_APP_KEY: APP.key, DOMVIA_APP_SECRET: APP.secret, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const port = await waitFor('the server to listen', (done) => {
    lines.on('line', (line) => {
      const m = line.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) done(Number(m[1]));
    });
  });
  return { child, port };
}

function client(port, sdk, user) {
  return new PusherJs(APP.key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        const presence = channelName.startsWith('presence-')
          ? { user_id: user, user_info: { name: user } }
          : undefined;
        callback(null, sdk.authorizeChannel(socketId, channelName, presence));
      },
    },
  });
}

function connected(p) {
  return waitFor('connection', (done) => p.connection.bind('connected', () => done()));
}

function subscribed(p, name) {
  const channel = p.subscribe(name);
  return waitFor(`subscription to ${name}`, (done) => {
    channel.bind('pusher:subscription_succeeded', (members) => done({ channel, members }));
    channel.bind('pusher:subscription_error', (err) => done({ channel, error: err }));
  });
}

async function main() {
  const { child, port } = await startServer();
  const sdk = new PusherSdk({ appId: APP.id, key: APP.key, secret: APP.secret, host: '127.0.0.1', port: String(port), useTLS: false });
  const alice = client(port, sdk, 'alice');
  const bob = client(port, sdk, 'bob');
  try {
    await Promise.all([connected(alice), connected(bob)]);
    check('pusher-js connects', alice.connection.state === 'connected' && bob.connection.state === 'connected');
    check('socket ids are digits.digits', /^\d+\.\d+$/.test(alice.connection.socket_id));

    // Private channel: SDK-signed subscriptions, client events both ways, no echo.
    const priv = 'private-call.room.r1.call-1';
    const [a, b] = await Promise.all([subscribed(alice, priv), subscribed(bob, priv)]);
    check('private subscription with an SDK signature', !a.error && !b.error);
    const aliceGot = [];
    a.channel.bind('client-call.ringing', (data) => aliceGot.push(data));
    const bobGets = waitFor('client event at bob', (done) => b.channel.bind('client-call.ringing', (data) => done(data)));
    a.channel.trigger('client-call.ringing', { v: 1, call_id: 'call-1', seq: 1, note: 'from alice' });
    const got = await bobGets;
    check('client event relayed with its data', got.note === 'from alice' && got.seq === 1, JSON.stringify(got));
    const marker = waitFor('marker at alice', (done) => a.channel.bind('client-call.ringing', (data) => data.note === 'marker' && done()));
    b.channel.trigger('client-call.ringing', { note: 'marker' });
    await marker;
    check('client events are not echoed to the sender', aliceGot.length === 1 && aliceGot[0].note === 'marker', JSON.stringify(aliceGot));

    // Forged signature: made for another socket.
    const forged = new PusherJs(APP.key, {
      cluster: 'mt1', wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'], disableStats: true,
      channelAuthorization: { customHandler: (_params, callback) => callback(null, sdk.authorizeChannel(alice.connection.socket_id, priv)) },
    });
    await connected(forged);
    const refused = await subscribed(forged, priv);
    check('a signature for another socket is refused', Boolean(refused.error), JSON.stringify(refused.error ?? {}));
    forged.disconnect();

    // Presence: members, member events, verified user_id on client events.
    const pres = 'presence-call.room.r1.call-1';
    const pa = await subscribed(alice, pres);
    const aliceSeesBob = waitFor('member_added', (done) => pa.channel.bind('pusher:member_added', (m) => done(m)));
    const pb = await subscribed(bob, pres);
    check('presence subscription lists both members', pb.members && pb.members.count === 2 && pb.members.get('alice') !== null);
    const added = await aliceSeesBob;
    check('member_added for the new user', added.id === 'bob' && added.info.name === 'bob', JSON.stringify(added));
    const withUser = waitFor('presence client event', (done) => pa.channel.bind('client-call.accepted', (data, meta) => done({ data, meta })));
    pb.channel.trigger('client-call.accepted', { seq: 2 });
    const ev = await withUser;
    check('the server adds the verified user_id', ev.meta && ev.meta.user_id === 'bob', JSON.stringify(ev.meta));

    // HTTP API through the official SDK.
    const viaApi = Promise.all([
      waitFor('api event at alice', (done) => a.channel.bind('call.started', (d) => done(d))),
      waitFor('api event at bob', (done) => b.channel.bind('call.started', (d) => done(d))),
    ]);
    const resp = await sdk.trigger(priv, 'call.started', { v: 1, call_id: 'call-1' });
    check('SDK trigger accepted', resp.status === 200, `status ${resp.status}`);
    const [da, db] = await viaApi;
    check('HTTP API event reaches every subscriber', da.call_id === 'call-1' && db.call_id === 'call-1');
    const users = await (await sdk.get({ path: `/channels/${pres}/users` })).json();
    check('SDK lists presence users', JSON.stringify(users.users.map((u) => u.id).sort()) === '["alice","bob"]', JSON.stringify(users));
    const info = await (await sdk.get({ path: `/channels/${pres}`, params: { info: 'user_count' } })).json();
    check('SDK reads channel info', info.occupied === true && info.user_count === 2, JSON.stringify(info));
    const batch = await sdk.triggerBatch([{ channel: priv, name: 'batch-1', data: { n: 1 } }, { channel: priv, name: 'batch-2', data: { n: 2 } }]);
    check('SDK batch trigger accepted', batch.status === 200);

    // Leaving.
    const removed = waitFor('member_removed', (done) => pa.channel.bind('pusher:member_removed', (m) => done(m)));
    bob.unsubscribe(pres);
    const gone = await removed;
    check('member_removed when the user leaves', gone.id === 'bob');
  } catch (e) {
    check('interop run', false, e.message);
  } finally {
    alice.disconnect();
    bob.disconnect();
    child.kill('SIGTERM');
  }
  const failed = results.filter((r) => !r.ok).length;
  console.log(`pusher-js-interop: ${results.length - failed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main();
