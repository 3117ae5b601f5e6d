// wsd -auth with Node's ws client; driven by internal/interop/auth_test.go.
//
// Usage: node auth.mjs ws://127.0.0.1:PORT
//   environment: TOKEN (a token of alice allowing news.*), BAD (a refused one)
//
// Runs the cases in order and prints one JSON object:
//   {"cases":[{"name":S,"ok":bool,"got":ANY,"error":S?}],"fatal":S?}
//
//   header:        Authorization: Bearer TOKEN; whoami, a forbidden subscribe
//                  (error ack, connection open), the personal topic, close 1000
//   header-bad:    Authorization: Bearer BAD: HTTP 401 with a reason, no upgrade
//   message:       no header, {"op":"auth","token":TOKEN} first: authenticated
//   message-bad:   {"op":"auth","token":BAD}: close 4001 with the reason

import WebSocket from 'ws';

const [base] = process.argv.slice(2);
const { TOKEN, BAD } = process.env;
if (!base || !TOKEN || !BAD) {
  console.error('usage: TOKEN=... BAD=... node auth.mjs ws://host:port');
  process.exit(2);
}
const STEP_MS = 5000;

// open connects with headers and resolves with the socket and a reader of
// its messages, or rejects with the HTTP answer that refused it.
function open(url, headers) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const queue = [];
    let waiter = null;
    ws.on('message', (m) => {
      const s = String(m);
      if (waiter) { const w = waiter; waiter = null; w(s); } else queue.push(s);
    });
    const next = () => new Promise((res, rej) => {
      if (queue.length) return res(queue.shift());
      const t = setTimeout(() => rej(new Error('no message in time')), STEP_MS);
      waiter = (s) => { clearTimeout(t); res(s); };
    });
    const closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: String(reason) })));
    ws.on('open', () => resolve({ ws, next, closed }));
    ws.on('unexpected-response', (req, resp) => {
      let body = '';
      resp.on('data', (d) => { body += d; });
      resp.on('end', () => reject({ status: resp.statusCode, body }));
    });
    ws.on('error', (e) => reject({ error: String(e) }));
  });
}

async function header() {
  const c = await open(base + '?topics=news.a', { Authorization: 'Bearer ' + TOKEN });
  const got = [];
  for (const m of [{ op: 'whoami' }, { op: 'subscribe', topic: 'billing' }, { op: 'subscribe', topic: 'user.alice' }]) {
    c.ws.send(JSON.stringify(m));
    got.push(JSON.parse(await c.next()));
  }
  c.ws.close(1000);
  got.push(await c.closed);
  return got;
}

async function headerBad() {
  try {
    const c = await open(base, { Authorization: 'Bearer ' + BAD });
    c.ws.close();
    return { upgraded: true };
  } catch (e) {
    return e;
  }
}

async function message(token) {
  const c = await open(base, {});
  c.ws.send(JSON.stringify({ op: 'auth', token }));
  const race = await Promise.race([c.next().then((m) => ({ message: JSON.parse(m) })), c.closed.then((cl) => ({ close: cl }))]);
  if (race.message) {
    c.ws.close(1000);
    await c.closed;
  }
  return race;
}

const cases = [];
async function run(name, fn) {
  try {
    cases.push({ name, ok: true, got: await fn() });
  } catch (e) {
    cases.push({ name, ok: false, error: String(e && e.message || JSON.stringify(e)) });
  }
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ cases, fatal: 'overall timeout' }));
  process.exit(1);
}, 25000);
await run('header', header);
await run('header-bad', headerBad);
await run('message', () => message(TOKEN));
await run('message-bad', () => message(BAD));
clearTimeout(timer);
console.log(JSON.stringify({ cases }));
