package browser

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/interop"
)

// wssPage is served by the engine over https at /; it opens a WebSocket to
// the same host with wss://, echoes a text and a binary message of 500 KB
// and closes with 1000, then writes what happened into #result as JSON.
const wssPage = `<!doctype html><meta charset="utf-8"><title>wsd over wss</title>
<pre id="result"></pre>
<script>
const result = {protocol: location.protocol, extensions: null, echoed: [], errors: [], close: null};
function done() { document.getElementById("result").textContent = JSON.stringify(result); }
const size = 500000;
const text = "wss ünïcode ✓ ".repeat(size / 10).slice(0, size);
const bin = new Uint8Array(size);
for (let i = 0, x = 1; i < size; i++) { x = (x * 1103515245 + 12345) >>> 0; bin[i] = x >>> 24; }
const expect = [
  (d) => typeof d === "string" && d === text,
  (d) => d instanceof ArrayBuffer && d.byteLength === size && new Uint8Array(d).every((b, i) => b === bin[i]),
];
const ws = new WebSocket("wss://" + location.host + "/");
ws.binaryType = "arraybuffer";
let i = 0;
ws.onopen = () => { result.extensions = ws.extensions; ws.send(text); };
ws.onmessage = (e) => {
  if (!expect[i](e.data)) result.errors.push("echo " + i + " differs");
  result.echoed.push(typeof e.data === "string" ? "text " + e.data.length : "binary " + e.data.byteLength);
  i++;
  if (i === 1) ws.send(bin); else ws.close(1000, "done");
};
ws.onerror = () => result.errors.push("error event");
ws.onclose = (e) => { result.close = {code: e.code, clean: e.wasClean}; done(); };
</script>`

// TestBrowserWSS loads a page from the engine over https and lets it talk
// wss:// to the same port. Chromium is told to accept the server's key
// (--ignore-certificate-errors-spki-list), not to trust the test CA.
func TestBrowserWSS(t *testing.T) {
	browser := chromium(t)
	w := interop.StartWSSEcho(t, engine.Options{
		HTTPHandler: func(req *engine.Request) *engine.Response {
			if req.Method() != "GET" || req.Path() != "/" {
				return nil
			}
			return &engine.Response{
				Header: http.Header{"Content-Type": {"text/html; charset=utf-8"}},
				Body:   []byte(wssPage),
			}
		},
	})
	p := openWSSPage(t, browser, "https://"+w.Addr+"/", w.LeafSPKI)
	// Not p.waitFor, whose failure message describes the chat page.
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		p.evalJSON(t, `(document.getElementById("result")?.textContent ?? "") !== ""`, &ok)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result in the page in %v; the page shows %s", waitLimit,
				p.evalString(t, `location.href + " " + JSON.stringify(document.title) + " " + JSON.stringify(document.body?.innerText.slice(0, 300))`))
		}
	}
	var res struct {
		Protocol   string
		Extensions string
		Echoed     []string
		Errors     []string
		Close      struct {
			Code  int
			Clean bool
		}
	}
	if err := json.Unmarshal([]byte(p.evalString(t, `document.getElementById("result").textContent`)), &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("page %s: ws.extensions %q, echoed %q, close %+v", res.Protocol, res.Extensions, res.Echoed, res.Close)
	if res.Protocol != "https:" {
		t.Errorf("page loaded over %q, want https:", res.Protocol)
	}
	if len(res.Errors) > 0 || len(res.Echoed) != 2 {
		t.Errorf("the page: errors %q, echoed %q, want 2 echoes", res.Errors, res.Echoed)
	}
	if res.Close.Code != 1000 || !res.Close.Clean {
		t.Errorf("close %+v, want a clean 1000", res.Close)
	}
	if !strings.HasPrefix(res.Extensions, "permessage-deflate") {
		t.Errorf("ws.extensions %q, want permessage-deflate", res.Extensions)
	}
	if errs := p.exceptions(); len(errs) > 0 {
		t.Errorf("page errors: %q", errs)
	}
	conns := w.Conns()
	if len(conns) != 1 || !conns[0].Compression || conns[0].TLSVersion == 0 {
		t.Errorf("the engine opened %+v, want one wss connection with permessage-deflate", conns)
	}
}

// openWSSPage starts Chromium on an https url whose certificate has the
// public key hash spki (base64 SHA-256) and attaches to the page target.
func openWSSPage(t *testing.T, browser, url, spki string) *chatPage {
	t.Helper()
	profile := t.TempDir()
	p := &chatPage{name: "wss", out: &limitedBuffer{max: 64 << 10}}
	p.cmd = exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-quic", "--no-first-run", "--user-data-dir="+profile,
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--ignore-certificate-errors-spki-list="+spki, url)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	// Registered after t.TempDir, so it runs before the profile is removed.
	t.Cleanup(func() {
		if p.cdp != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.cdp.call(ctx, "Browser.close", nil, nil)
			cancel()
			p.cdp.close()
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("chromium output:\n%s", p.out.String())
		}
	})

	deadline := time.Now().Add(waitLimit)
	var wsURL string
	for wsURL == "" {
		select {
		case <-exited:
			t.Fatalf("chromium exited:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no page target for %s in %v:\n%s", url, waitLimit, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
		// Chromium writes "PORT\n/devtools/browser/ID" once it listens.
		b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		port, _, _ := strings.Cut(string(b), "\n")
		if err != nil || port == "" {
			continue
		}
		var targets []struct {
			Type, URL            string
			WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
		}
		client := &http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get("http://127.0.0.1:" + port + "/json/list")
		if err != nil {
			continue
		}
		_ = json.NewDecoder(resp.Body).Decode(&targets)
		resp.Body.Close()
		for _, tg := range targets {
			if tg.Type == "page" && tg.URL == url {
				wsURL = tg.WebSocketDebuggerURL
			}
		}
	}
	c, err := dialCDP(wsURL, p.onEvent)
	if err != nil {
		t.Fatal(err)
	}
	p.cdp = c
	p.call(t, "Runtime.enable", nil, nil)
	return p
}
