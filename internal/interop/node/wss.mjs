// Node's ws client over wss:// against an in-process wsd engine; run by
// internal/interop/wss_test.go.
//
// Usage: node wss.mjs wss://127.0.0.1:PORT/ CA_PEM_FILE on|off SIZES_JSON
//
// The client trusts only the CA in CA_PEM_FILE, offers permessage-deflate
// (ws's default) with "on" and nothing with "off". For each size it sends a
// text message and a binary message of random bytes, one at a time, checks
// each echo, then closes with 1000. It prints one JSON object on stdout:
//   {"wsVersion":..., "tlsVersion": e.g. "TLSv1.3", "extensions": ws.extensions,
//    "sent": N, "errors":[...], "close":{"code":N,"reason":S}|null, "fatal":S?}
// Exit status: 0 when it ran to the end (the caller judges the result), 1
// on a fatal error or the overall timeout, 2 on bad usage.

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { echoer } from './echo.mjs';

const [url, caPath, deflate, sizesJSON] = process.argv.slice(2);
if (!url || !url.startsWith('wss://') || !caPath || !['on', 'off'].includes(deflate) || !sizesJSON) {
  console.error('usage: node wss.mjs wss://host:port/ CA_PEM_FILE on|off SIZES_JSON');
  process.exit(2);
}
const sizes = JSON.parse(sizesJSON);

const STEP_TIMEOUT_MS = 10000;
const OVERALL_TIMEOUT_MS = 60000;

const result = {
  wsVersion: JSON.parse(readFileSync(new URL('./node_modules/ws/package.json', import.meta.url))).version,
  tlsVersion: null,
  extensions: null,
  sent: 0,
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

// text is n bytes of UTF-8: ASCII with a two-byte character now and then.
function text(n) {
  const unit = 'wss echo, ünïcode ';
  let s = unit.repeat(Math.ceil(n / Buffer.byteLength(unit)) + 1);
  while (Buffer.byteLength(s) > n) s = s.slice(0, s.length - Math.max(1, Buffer.byteLength(s) - n));
  return s + 'x'.repeat(n - Buffer.byteLength(s));
}

const ws = new WebSocket(url, {
  ca: readFileSync(caPath),
  handshakeTimeout: STEP_TIMEOUT_MS,
  maxPayload: 64 << 20,
  perMessageDeflate: deflate === 'on',
});

const conn = echoer(ws, STEP_TIMEOUT_MS, (err) => finish(`ws error: ${err.message}`));

async function echo(payload, binary) {
  result.sent++;
  await conn.echo(payload, binary);
}

async function run() {
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('close', (code) => reject(new Error(`closed before open (${code})`)));
  });
  result.tlsVersion = ws._socket.getProtocol();
  result.extensions = ws.extensions;
  for (const n of sizes) {
    for (const [payload, binary] of [[text(n), false], [randomBytes(n), true]]) {
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
