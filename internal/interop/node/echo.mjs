// echo.mjs: what the echo scripts (deflate.mjs, wss.mjs) share: a queue of
// the messages a ws client receives, an echo checked byte for byte, and a
// clean close.

// echoer wires ws's messages into a queue. Each step waits at most
// stepTimeoutMs; an error before the connection opens is passed to onFatal.
export function echoer(ws, stepTimeoutMs, onFatal) {
  const messages = [];
  const waiters = [];
  let closeInfo = null;
  ws.on('message', (data, isBinary) => {
    const w = waiters.shift();
    if (w) w({ data, isBinary });
    else messages.push({ data, isBinary });
  });
  ws.on('close', (code, reason) => {
    closeInfo = { code, reason: reason.toString() };
    for (const w of waiters.splice(0)) w(new Error(`connection closed (${code} ${reason})`));
  });
  ws.on('error', (err) => {
    if (ws.readyState !== ws.OPEN && !closeInfo) onFatal(err);
  });

  function nextMessage() {
    return new Promise((resolve, reject) => {
      if (messages.length) return resolve(messages.shift());
      if (closeInfo) return reject(new Error(`connection closed (${closeInfo.code})`));
      const timer = setTimeout(() => reject(new Error(`no echo within ${stepTimeoutMs} ms`)), stepTimeoutMs);
      waiters.push((m) => {
        clearTimeout(timer);
        if (m instanceof Error) reject(m);
        else resolve(m);
      });
    });
  }

  return {
    // closed reports whether the connection has closed.
    closed: () => closeInfo !== null,
    // echo sends payload and checks that the next message is the same
    // bytes with the same type.
    async echo(payload, binary) {
      await new Promise((resolve, reject) => ws.send(payload, { binary }, (err) => (err ? reject(err) : resolve())));
      const m = await nextMessage();
      const got = Buffer.from(m.data);
      const want = Buffer.from(payload);
      if (m.isBinary !== binary || !got.equals(want)) {
        throw new Error(`echo of the ${want.length}-byte ${binary ? 'binary' : 'text'} message: got ${got.length} bytes, ${m.isBinary ? 'binary' : 'text'}, ${got.equals(want) ? 'equal' : 'different'}`);
      }
    },
    // close closes with code and reason and returns the close the
    // connection ended with.
    async close(code, reason) {
      const closed = closeInfo ? Promise.resolve(closeInfo) : new Promise((resolve, reject) => {
        ws.once('close', () => resolve(closeInfo));
        setTimeout(() => reject(new Error(`no close within ${stepTimeoutMs} ms`)), stepTimeoutMs);
      });
      ws.close(code, reason);
      return closed;
    },
  };
}
