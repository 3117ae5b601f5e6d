// Push-mode subscribers for wsd, with Node's ws client; driven by
// internal/interop/push_test.go.
//
// Usage: node push.mjs ws://127.0.0.1:PORT CLIENTS_JSON
//   CLIENTS_JSON: [{"name":"ab","query":"?topics=a,b","subscribe":["c"]}, ...]
//
// Every client connects to BASE + query, sends {"op":"subscribe","topic":T}
// for each T of subscribe and waits for {"op":"subscribed","topic":T}. Every
// message a client receives, acknowledgements included, is recorded in
// order.
//
// stdout, one JSON object per line:
//   {"event":"ready"}                  all clients open, all subscriptions acknowledged
//   {"event":"done","id":N,"reply":{}} a command finished ("error" instead of "reply" if it failed)
//   {"event":"result","clients":{NAME:{"messages":[{"binary":bool,"data":BASE64}],
//     "close":{"code":N,"reason":S}|null}},"fatal":S?}   last line, then exit
//
// stdin, one JSON command per line:
//   {"id":N,"client":NAME,"send":{...},"reply":{"op":OP,"topic":T?}}
//       send the control message and wait for the first reply with that op
//       (and topic, if given)
//   {"id":N,"client":NAME,"count":K}   wait until the client has K messages
//   {"id":N,"finish":TEXT}             wait until every client has received
//       the text message TEXT, close every client with 1000, wait for the
//       close handshakes and print the result
// stdin ending before finish, or the overall timeout, prints the result
// with "fatal" and exits 1.

import { createInterface } from 'node:readline';
import WebSocket from 'ws';

const [base, spec] = process.argv.slice(2);
if (!base || !/^wss?:\/\//.test(base) || !spec) {
  console.error('usage: node push.mjs ws://host:port CLIENTS_JSON');
  process.exit(2);
}

const STEP_TIMEOUT_MS = 5000;
const OVERALL_TIMEOUT_MS = 25000;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const clients = new Map(); // name -> state
let finished = false;

function finish(fatal) {
  if (finished) return;
  finished = true;
  const out = {};
  for (const [name, c] of clients) out[name] = { messages: c.messages, close: c.close };
  const res = { event: 'result', clients: out };
  if (fatal) res.fatal = String(fatal);
  process.stdout.write(JSON.stringify(res) + '\n', () => process.exit(fatal ? 1 : 0));
  for (const c of clients.values()) c.ws.terminate();
}

const overall = setTimeout(() => finish(`overall timeout after ${OVERALL_TIMEOUT_MS} ms`), OVERALL_TIMEOUT_MS);

// waitFor resolves once pred() holds, checking after each event of the
// client; it rejects after STEP_TIMEOUT_MS.
function waitFor(c, pred, what) {
  return new Promise((resolve, reject) => {
    let timer = null;
    function check() {
      let r;
      try {
        r = pred();
      } catch (err) {
        r = err instanceof Error ? err : new Error(String(err));
      }
      if (!r) return false;
      clearTimeout(timer);
      c.watchers.delete(check);
      if (r instanceof Error) reject(r);
      else resolve(r);
      return true;
    }
    if (check()) return;
    timer = setTimeout(() => {
      c.watchers.delete(check);
      reject(new Error(`${c.name}: timed out after ${STEP_TIMEOUT_MS} ms waiting for ${what}`));
    }, STEP_TIMEOUT_MS);
    c.watchers.add(check);
  });
}

function open(def) {
  const c = {
    name: def.name,
    ws: new WebSocket(base + (def.query || ''), { handshakeTimeout: STEP_TIMEOUT_MS }),
    messages: [],
    close: null,
    watchers: new Set(),
    seen: 0, // messages already scanned for replies
  };
  clients.set(def.name, c);
  const notify = () => { for (const w of [...c.watchers]) w(); };
  c.ws.on('message', (data, isBinary) => {
    c.messages.push({ binary: isBinary, data: Buffer.from(data).toString('base64') });
    notify();
  });
  c.ws.on('close', (code, reason) => {
    c.close = { code, reason: reason.toString() };
    notify();
  });
  c.ws.on('error', (err) => {
    if (!c.close) c.error = err.message;
    notify();
  });
  return c;
}

// nextReply waits for the first message after those already scanned that
// is a JSON control reply with the given op (and topic).
function nextReply(c, want) {
  return waitFor(c, () => {
    while (c.seen < c.messages.length) {
      const m = c.messages[c.seen++];
      if (m.binary) continue;
      let v;
      try { v = JSON.parse(Buffer.from(m.data, 'base64').toString('utf8')); } catch { continue; }
      if (v && v.op === want.op && (want.topic === undefined || v.topic === want.topic)) return v;
    }
    if (c.close) throw new Error(`${c.name}: closed (${c.close.code}) while waiting for ${JSON.stringify(want)}`);
    return null;
  }, `reply ${JSON.stringify(want)}`);
}

async function opened(c) {
  if (c.ws.readyState === WebSocket.OPEN) return;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${c.name}: not open after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
    c.ws.once('open', () => { clearTimeout(t); resolve(); });
    c.ws.once('close', (code) => { clearTimeout(t); reject(new Error(`${c.name}: closed before open (${code}) ${c.error || ''}`)); });
  });
}

function send(c, obj) {
  return new Promise((resolve, reject) => c.ws.send(JSON.stringify(obj), (err) => (err ? reject(err) : resolve())));
}

async function control(c, msg, want) {
  const reply = nextReply(c, want);
  await send(c, msg);
  return reply;
}

function hasText(c, text) {
  const want = Buffer.from(text).toString('base64');
  return c.messages.some((m) => !m.binary && m.data === want);
}

async function runCommand(cmd) {
  if (cmd.finish !== undefined) {
    for (const c of clients.values()) {
      await waitFor(c, () => hasText(c, cmd.finish) || c.close, `text ${JSON.stringify(cmd.finish)}`);
    }
    for (const c of clients.values()) if (!c.close) c.ws.close(1000, 'done');
    for (const c of clients.values()) await waitFor(c, () => c.close, 'the close handshake');
    clearTimeout(overall);
    finish();
    return null;
  }
  const c = clients.get(cmd.client);
  if (!c) throw new Error(`no client ${cmd.client}`);
  if (cmd.count !== undefined) {
    await waitFor(c, () => c.messages.length >= cmd.count || c.close, `${cmd.count} messages`);
    return { count: c.messages.length };
  }
  return control(c, cmd.send, cmd.reply);
}

async function main() {
  const defs = JSON.parse(spec);
  const all = defs.map(open);
  await Promise.all(all.map(async (c, i) => {
    await opened(c);
    for (const topic of defs[i].subscribe || []) {
      await control(c, { op: 'subscribe', topic }, { op: 'subscribed', topic });
    }
  }));
  emit({ event: 'ready' });

  // Commands run one at a time, in order.
  let chain = Promise.resolve();
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    chain = chain.then(async () => {
      let cmd;
      try {
        cmd = JSON.parse(line);
        const reply = await runCommand(cmd);
        if (!finished) emit({ event: 'done', id: cmd.id, reply });
      } catch (err) {
        emit({ event: 'done', id: cmd && cmd.id, error: err.message });
      }
    });
  });
  rl.on('close', () => { chain.then(() => finish('stdin closed before finish')); });
}

main().catch((err) => finish(err.message || err));
