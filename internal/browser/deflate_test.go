package browser

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/wsdproject/wsd/internal/interop"
	"github.com/wsdproject/wsd/internal/wstest"
)

// deflatePage opens a WebSocket to the daemon when the test calls
// runEcho(), echoes messages that compress and some that do not, lists
// them in #messages and returns what it saw: ws.extensions, the messages
// sent, the echoes that differed and the close event.
const deflatePage = `<!doctype html><meta charset="utf-8"><title>wsd deflate test</title>
<ol id="messages"></ol>
<script>
const url = WS_URL;
function jsonText(n) {
  let s = "[";
  for (let i = 0; s.length < n; i++) {
    s += '{"id":' + (1000 + i) + ',"user":"u' + (i * 7919 % 10007) + '","event":"' + ["trade", "quote", "cancel"][i % 3] +
      '","price":' + (100 + (i * 37 % 900) / 10).toFixed(2) + ',"qty":' + (i * 13 % 50) + ',"note":"ünïcødé ✓"},';
  }
  return s.slice(0, n);
}
function records(n) {
  const b = new Uint8Array(n), dv = new DataView(b.buffer);
  for (let i = 0; i * 16 + 16 <= n; i++) {
    dv.setUint32(i * 16, i, true);
    dv.setUint32(i * 16 + 4, 1700000000 + i * 3, true);
    dv.setFloat64(i * 16 + 8, 100 + (i % 50) / 4, true);
  }
  return b;
}
function random(n) {
  const b = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(b.subarray(o, Math.min(n, o + 65536)));
  return b;
}
function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
async function runEcho() {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const queue = [], waiters = [];
  ws.onmessage = (e) => { const w = waiters.shift(); if (w) w(e.data); else queue.push(e.data); };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("no connection")); });
  const next = () => queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiters.push(resolve));
  const result = {extensions: ws.extensions, sent: [], errors: []};
  const msgs = [
    ["a short text, under the threshold", false],
    [jsonText(1024), false],
    [jsonText(200 << 10), false],
    [records(64 << 10), true],
    [random(4 << 10), true],
    [jsonText(1 << 20), false],
    [jsonText(1024), false],
  ];
  for (const [m, binary] of msgs) {
    const size = binary ? m.length : new TextEncoder().encode(m).length;
    result.sent.push({size, binary});
    ws.send(m);
    const got = await next();
    const ok = binary ? got instanceof ArrayBuffer && sameBytes(new Uint8Array(got), m) : got === m;
    if (!ok) result.errors.push("the echo of the " + size + "-byte " + (binary ? "binary" : "text") + " message differs");
    const li = document.createElement("li");
    li.textContent = (binary ? "binary " : "text ") + size + (ok ? " echoed" : " differs");
    document.getElementById("messages").append(li);
  }
  const closed = await new Promise((resolve) => { ws.onclose = resolve; ws.close(1000, "done"); });
  result.close = {code: closed.code, clean: closed.wasClean};
  return result;
}
</script>`

// TestBrowserDeflate has Chromium echo messages through the daemon with
// permessage-deflate, which Chromium offers ("permessage-deflate;
// client_max_window_bits"): ws.extensions must name it, and on the wire,
// recorded by a proxy between the two, the daemon compresses what it
// should (interop.EchoWire) and Chromium compresses its large messages
// (so the daemon inflated them, with Chromium's window when the daemon
// allows client context takeover).
func TestBrowserDeflate(t *testing.T) {
	browser := chromium(t)
	for _, tc := range []struct {
		name     string
		args     []string
		takeover bool
	}{
		{"default", nil, false},
		{"client-context-takeover", []string{"-compression-client-context-takeover"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := wstest.StartDaemon(t, append([]string{"-mode", "echo"}, tc.args...)...)
			proxy := interop.StartProxy(t, d.Addr)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				_, _ = io.WriteString(w, strings.Replace(deflatePage, "WS_URL", strconv.Quote("ws://"+proxy.Addr+"/"), 1))
			}))
			t.Cleanup(srv.Close)
			p := openPage(t, browser, srv.URL+"/", "deflate")

			var res struct {
				Extensions string
				Sent       []struct {
					Size   int
					Binary bool
				}
				Errors []string
				Close  struct {
					Code  int
					Clean bool
				}
			}
			p.evalJSON(t, "runEcho()", &res)
			if len(res.Errors) > 0 || res.Close.Code != 1000 || !res.Close.Clean {
				t.Fatalf("the page: %q, close %+v", res.Errors, res.Close)
			}
			if errs := p.exceptions(); len(errs) > 0 {
				t.Errorf("page errors: %q", errs)
			}
			taps := proxy.Taps()
			if len(taps) != 1 {
				t.Fatalf("%d connections through the proxy, want 1", len(taps))
			}
			answer, err := interop.Answer(taps[0].Down())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("ws.extensions %q; the daemon answered %q", res.Extensions, answer)
			if !strings.HasPrefix(res.Extensions, "permessage-deflate") || !strings.HasPrefix(answer, "permessage-deflate;") {
				t.Fatalf("ws.extensions %q, answer %q: want permessage-deflate", res.Extensions, answer)
			}
			if got := strings.Contains(answer, "client_no_context_takeover"); got == tc.takeover {
				t.Errorf("answer %q: client_no_context_takeover %v, want %v", answer, got, !tc.takeover)
			}

			ups, _ := interop.EchoWire{ClientTakeover: tc.takeover}.Check(t, taps[0].Up(), taps[0].Down())
			if len(ups) != len(res.Sent) {
				t.Fatalf("%d messages on the wire, the page sent %d", len(ups), len(res.Sent))
			}
			for i, m := range ups {
				s := res.Sent[i]
				if len(m.Payload) != s.Size {
					t.Fatalf("message %d: %d bytes on the wire, the page sent %d", i, len(m.Payload), s.Size)
				}
				if !s.Binary && s.Size >= 1024 && !m.Compressed {
					t.Errorf("message %d: Chromium sent the %d-byte text uncompressed", i, s.Size)
				}
			}
			last, first := ups[len(ups)-1], ups[1] // the same text
			t.Logf("the text of 1024 characters from Chromium: %d bytes on the wire the first time, %d the second", first.Bytes, last.Bytes)
		})
	}
}
