// Package browser tests wsd with headless Chromium, the way a newcomer tries
// it: new WebSocket("ws://...") in a page.
package browser

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wstest.CleanupBinary()
	os.Exit(code)
}

// chromium returns the browser to run: without one the test fails, unless
// WSD_SKIP_BROWSER=1 (see wstest.Tool).
func chromium(t *testing.T) string {
	t.Helper()
	return wstest.Tool(t, "WSD_SKIP_BROWSER", "install Chromium (Debian: apt-get install chromium)",
		"chromium", "chromium-browser", "google-chrome")
}

// The page opens a WebSocket to the daemon, runs its checks and posts the
// outcome back to the test's HTTP server.
const page = `<!doctype html><meta charset="utf-8"><title>wsd browser test</title>
<script>
const log = [];
function report(ok, detail) {
  fetch("/result", {method: "POST", body: JSON.stringify({ok, detail, log})});
}
const ws = new WebSocket(%q);
ws.binaryType = "arraybuffer";
const big = "ünïcødé ✓ 🚀 ".repeat(20000);
const steps = [
  () => ws.send("hello from the browser"),
  () => ws.send(new Uint8Array([0, 1, 2, 253, 254, 255])),
  () => ws.send(big),
];
const expect = [
  (d) => d === "hello from the browser",
  (d) => d instanceof ArrayBuffer && new Uint8Array(d).join() === "0,1,2,253,254,255",
  (d) => d === big,
];
let i = 0;
ws.onopen = () => { log.push("open"); steps[0](); };
ws.onmessage = (e) => {
  if (!expect[i](e.data)) { report(false, "message " + i + " differs"); return; }
  log.push("echo " + i);
  i++;
  if (i < steps.length) { steps[i](); } else { ws.close(4000, "done"); }
};
ws.onclose = (e) => report(i === steps.length && e.code === 4000 && e.wasClean, "close " + e.code + " clean=" + e.wasClean);
ws.onerror = () => log.push("error");
</script>`

func TestBrowserEcho(t *testing.T) {
	browser := chromium(t)
	d := wstest.StartDaemon(t, "-mode", "echo")

	results := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, page, "ws://"+d.Addr+"/")
	})
	mux.HandleFunc("/result", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case results <- string(b):
		default:
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	cmd := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-quic", "--no-first-run", "--user-data-dir="+t.TempDir(),
		"http://"+ln.Addr().String()+"/")
	out := &limitedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	select {
	case r := <-results:
		var res struct {
			OK     bool
			Detail string
			Log    []string
		}
		if err := json.Unmarshal([]byte(r), &res); err != nil {
			t.Fatalf("bad report %q: %v", r, err)
		}
		if !res.OK {
			t.Fatalf("browser: %s (log %v)", res.Detail, res.Log)
		}
		t.Logf("browser: %s, %v", res.Detail, res.Log)
	case <-time.After(60 * time.Second):
		t.Fatalf("no result from the browser in 60 s; chromium said:\n%s", out.String())
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
