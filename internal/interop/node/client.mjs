// Interop checks of the wsd echo daemon with Node's ws client.
//
// Usage: node client.mjs ws://127.0.0.1:PORT/
//
// Runs the checks one after the other on one connection and prints a single
// JSON object on stdout:
//   {"url":..., "wsVersion":..., "extensions":..., "protocol":...,
//    "checks":[{"name":..., "ok":bool, "error":string?, "ms":number}],
//    "close":{"code":number, "reason":string, "ok":bool} | null,
//    "fatal": string?}
// Exit status: 0 when the script ran to the end (the caller judges the
// checks), 1 on a fatal error or the overall timeout, 2 on bad usage.

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

const url = process.argv[2];
if (!url || !/^wss?:\/\//.test(url)) {
  console.error('usage: node client.mjs ws://host:port/');
  process.exit(2);
}

const STEP_TIMEOUT_MS = 5000;
const OVERALL_TIMEOUT_MS = 20000;

const result = {
  url,
  wsVersion: JSON.parse(readFileSync(new URL('./node_modules/ws/package.json', import.meta.url))).version,
  extensions: null,
  protocol: null,
  checks: [],
  close: null,
};

let finished = false;
function finish(fatal) {
  if (finished) return;
  finished = true;
  if (fatal) result.fatal = String(fatal);
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(fatal ? 1 : 0));
}

const overall = setTimeout(() => finish(`overall timeout after ${OVERALL_TIMEOUT_MS} ms`), OVERALL_TIMEOUT_MS);

const ws = new WebSocket(url, { handshakeTimeout: STEP_TIMEOUT_MS });

// Incoming messages and pongs, queued until a check asks for them.
const messages = [];
const pongs = [];
const waiters = { message: [], pong: [] };
let closeInfo = null;
const closeWaiters = [];

function deliver(kind, queue, item) {
  const w = waiters[kind].shift();
  if (w) w(item);
  else queue.push(item);
}

ws.on('message', (data, isBinary) => deliver('message', messages, { data, isBinary }));
ws.on('pong', (data) => deliver('pong', pongs, data));
ws.on('close', (code, reason) => {
  closeInfo = { code, reason: reason.toString() };
  for (const w of closeWaiters.splice(0)) w(closeInfo);
  // Anything still waiting for a message or pong will never get one.
  for (const kind of Object.keys(waiters)) {
    for (const w of waiters[kind].splice(0)) w(new Error(`connection closed (${code} ${reason})`));
  }
});
ws.on('error', (err) => {
  // A handshake failure comes here; once open, errors also lead to 'close'.
  if (ws.readyState !== WebSocket.OPEN && !closeInfo) finish(`ws error: ${err.message}`);
});

function next(kind, queue) {
  return new Promise((resolve, reject) => {
    if (queue.length) return resolve(queue.shift());
    if (closeInfo) return reject(new Error(`connection closed (${closeInfo.code} ${closeInfo.reason})`));
    const timer = setTimeout(() => {
      const i = waiters[kind].indexOf(got);
      if (i >= 0) waiters[kind].splice(i, 1);
      reject(new Error(`no ${kind} within ${STEP_TIMEOUT_MS} ms`));
    }, STEP_TIMEOUT_MS);
    function got(item) {
      clearTimeout(timer);
      if (item instanceof Error) reject(item);
      else resolve(item);
    }
    waiters[kind].push(got);
  });
}
const nextMessage = () => next('message', messages);
const nextPong = () => next('pong', pongs);

function send(data, options) {
  return new Promise((resolve, reject) => ws.send(data, options, (err) => (err ? reject(err) : resolve())));
}

function describe(buf) {
  return `${buf.length} bytes ${JSON.stringify(buf.subarray(0, 24).toString('latin1'))}...`;
}

async function expectEcho(wantBinary, want) {
  const m = await nextMessage();
  if (m.isBinary !== wantBinary) {
    throw new Error(`echo is ${m.isBinary ? 'binary' : 'text'}, want ${wantBinary ? 'binary' : 'text'}`);
  }
  const got = Buffer.from(m.data);
  if (!got.equals(want)) throw new Error(`echo differs: got ${describe(got)}, want ${describe(want)}`);
}

const checks = [
  ['text', async () => {
    const s = 'hello from node ws ✓ 𝄞';
    await send(s);
    await expectEcho(false, Buffer.from(s, 'utf8'));
  }],
  ['binary-64KiB', async () => {
    const b = randomBytes(64 * 1024);
    await send(b, { binary: true });
    await expectEcho(true, b);
  }],
  ['binary-1MiB', async () => {
    const b = randomBytes(1024 * 1024);
    await send(b, { binary: true });
    await expectEcho(true, b);
  }],
  ['ping-pong', async () => {
    const payload = Buffer.from('node ping payload 4711');
    await new Promise((resolve, reject) => ws.ping(payload, undefined, (err) => (err ? reject(err) : resolve())));
    const got = await nextPong();
    if (!Buffer.from(got).equals(payload)) {
      throw new Error(`pong carries ${describe(Buffer.from(got))}, want ${describe(payload)}`);
    }
  }],
  ['fragmented-text', async () => {
    // The pieces split the 3-byte "✓" and the 4-byte "𝄞" across frames.
    const whole = Buffer.from('frag-one|✓|frag-two|𝄞|frag-three', 'utf8');
    const cuts = [0, 10, 15, 25, 29, whole.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const fin = i + 2 === cuts.length;
      await send(whole.subarray(cuts[i], cuts[i + 1]), { binary: false, fin });
    }
    await expectEcho(false, whole);
  }],
  ['fragmented-binary', async () => {
    const pieces = [randomBytes(1), randomBytes(125), randomBytes(126), randomBytes(20000), randomBytes(0), randomBytes(7)];
    for (let i = 0; i < pieces.length; i++) {
      await send(pieces[i], { binary: true, fin: i === pieces.length - 1 });
    }
    await expectEcho(true, Buffer.concat(pieces));
  }],
  ['text-after-fragments', async () => {
    await send('still in sync');
    await expectEcho(false, Buffer.from('still in sync'));
  }],
];

async function run() {
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('close', (code) => reject(new Error(`closed before open (${code})`)));
  });
  result.extensions = ws.extensions;
  result.protocol = ws.protocol;
  for (const [name, fn] of checks) {
    const start = Date.now();
    const entry = { name, ok: false };
    try {
      await fn();
      entry.ok = true;
    } catch (err) {
      entry.error = err.message;
    }
    entry.ms = Date.now() - start;
    result.checks.push(entry);
    if (closeInfo) break; // the remaining checks cannot run
  }

  // Close with a private-use code and a reason; the server's close frame
  // must carry the same code.
  const reason = 'node says bye';
  const closed = closeInfo
    ? Promise.resolve(closeInfo)
    : new Promise((resolve, reject) => {
      closeWaiters.push(resolve);
      setTimeout(() => reject(new Error(`no close within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
    });
  if (!closeInfo) ws.close(4002, reason);
  const info = await closed;
  result.close = { code: info.code, reason: info.reason, ok: info.code === 4002 };
}

run().then(() => {
  clearTimeout(overall);
  finish();
}, (err) => {
  clearTimeout(overall);
  finish(err);
});
