// permessage-deflate with Node's ws client against the wsd echo daemon; run
// by internal/interop/deflate_test.go, which records the wire in between.
//
// Usage: node deflate.mjs ws://127.0.0.1:PORT/ SIZES_JSON [SERVER_MAX_WINDOW_BITS]
//
// The client keeps ws's default perMessageDeflate (it offers
// "permessage-deflate; client_max_window_bits" and compresses the messages
// of 1024 bytes or more), offering server_max_window_bits too if given. For
// each size it sends a text message of JSON records, a binary message of
// fixed-size records and, up to 64 KiB, a binary message of random bytes,
// one at a time, and checks each echo. It prints one JSON object on stdout:
//   {"wsVersion":..., "header": the Sec-WebSocket-Extensions answer,
//    "extensions": ws.extensions, "params": the parameters ws accepted,
//    "sent":[{"size":N,"binary":bool}], "errors":[...],
//    "close":{"code":N,"reason":S}|null, "fatal":S?}
// Exit status: 0 when it ran to the end (the caller judges the result), 1
// on a fatal error or the overall timeout, 2 on bad usage.

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { echoer } from './echo.mjs';

const [url, sizesJSON, bits] = process.argv.slice(2);
if (!url || !/^wss?:\/\//.test(url) || !sizesJSON) {
  console.error('usage: node deflate.mjs ws://host:port/ SIZES_JSON [SERVER_MAX_WINDOW_BITS]');
  process.exit(2);
}
const sizes = JSON.parse(sizesJSON);

const STEP_TIMEOUT_MS = 10000;
const MAX_RANDOM = 64 << 10; // random messages go up to this size
const OVERALL_TIMEOUT_MS = 60000;

const result = {
  wsVersion: JSON.parse(readFileSync(new URL('./node_modules/ws/package.json', import.meta.url))).version,
  header: null,
  extensions: null,
  params: null,
  sent: [],
  errors: [],
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

// jsonText is n bytes of JSON records (ASCII), cut at n.
function jsonText(n) {
  let s = '[';
  for (let i = 0; s.length < n; i++) {
    s += `{"id":${1000 + i},"user":"u${(i * 7919) % 10007}","event":"${['trade', 'quote', 'cancel'][i % 3]}",` +
      `"price":${(100 + ((i * 37) % 900) / 10).toFixed(2)},"qty":${(i * 13) % 50},"ts":"2026-03-01T12:${String(i % 60).padStart(2, '0')}:00Z"},`;
  }
  return s.slice(0, n);
}

// records is n bytes of 16-byte binary records with slowly changing fields.
function records(n) {
  const b = Buffer.alloc(n + 16);
  for (let i = 0; i * 16 < n; i++) {
    b.writeUInt32LE(i, i * 16);
    b.writeUInt32LE(1700000000 + i * 3, i * 16 + 4);
    b.writeDoubleLE(100 + (i % 50) / 4, i * 16 + 8);
  }
  return b.subarray(0, n);
}

const options = { handshakeTimeout: STEP_TIMEOUT_MS, maxPayload: 64 << 20 };
if (bits) options.perMessageDeflate = { serverMaxWindowBits: Number(bits) };
const ws = new WebSocket(url, options);
ws.on('upgrade', (res) => { result.header = res.headers['sec-websocket-extensions'] ?? ''; });

const conn = echoer(ws, STEP_TIMEOUT_MS, (err) => finish(`ws error: ${err.message}`));

async function echo(payload, binary) {
  result.sent.push({ size: payload.length, binary });
  await conn.echo(payload, binary);
}

async function run() {
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('close', (code) => reject(new Error(`closed before open (${code})`)));
  });
  result.extensions = ws.extensions;
  result.params = ws._extensions['permessage-deflate']?.params ?? null;
  for (const n of sizes) {
    const msgs = [[jsonText(n), false], [records(n), true]];
    if (n <= MAX_RANDOM) msgs.push([randomBytes(n), true]);
    for (const [payload, binary] of msgs) {
      try {
        await echo(payload, binary);
      } catch (err) {
        result.errors.push(err.message);
        if (conn.closed()) return;
      }
    }
  }
  result.close = await conn.close(1000, 'done');
}

run().then(() => {
  clearTimeout(overall);
  finish();
}, (err) => {
  clearTimeout(overall);
  finish(err);
});
