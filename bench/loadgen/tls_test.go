package loadgen

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// tlsEchoServer is a gorilla/websocket echo server over TLS on /ws.
func tlsEchoServer(t *testing.T) (addr, rootPEM string) {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			http.NotFound(w, r)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil || c.WriteMessage(mt, p) != nil {
				return
			}
		}
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

// runTLSJob runs job through RunWorker and returns its ready line and
// its result.
func runTLSJob(t *testing.T, job Job) (ready, res Result) {
	t.Helper()
	b, _ := json.Marshal(job)
	var out bytes.Buffer
	if err := RunWorker(strings.NewReader(string(b)+"\ngo\n"), &out); err != nil {
		t.Fatalf("RunWorker: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("worker output %q: want a ready line and a result", out.String())
	}
	if err := json.Unmarshal([]byte(lines[0]), &ready); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &res); err != nil {
		t.Fatal(err)
	}
	return ready, res
}

// TestTLSWorker runs wss jobs against a crypto/tls server: every
// connection is a full TLS handshake and an upgrade; echo gets every
// reply at its size; an upgrade refused and an untrusted certificate are
// dial errors.
func TestTLSWorker(t *testing.T) {
	addr, root := tlsEchoServer(t)
	other, _, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		job       Job
		connected int
		errHas    string
	}{
		{"idle", Job{Scenario: "idle", Path: "/ws", Conns: 20, DialConcurrency: 4, Duration: 50 * time.Millisecond}, 20, ""},
		{"echo", Job{Scenario: "echo", Path: "/ws", Conns: 10, DialConcurrency: 4, Size: 100, Depth: 3, Duration: 300 * time.Millisecond}, 10, ""},
		{"echo 64 KiB", Job{Scenario: "echo", Path: "/ws", Conns: 2, DialConcurrency: 2, Size: 64 << 10, Duration: 200 * time.Millisecond}, 2, ""},
		{"upgrade refused", Job{Scenario: "idle", Path: "/nope", Conns: 3, DialConcurrency: 1}, 0, "upgrade refused: HTTP/1.1 404"},
		{"untrusted certificate", Job{Scenario: "idle", Path: "/ws", Conns: 3, DialConcurrency: 1, TLS: &TLSJob{RootPEM: string(other)}}, 0, "certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job := tc.job
			job.Addr = addr
			if job.TLS == nil {
				job.TLS = &TLSJob{RootPEM: root}
			}
			ready, res := runTLSJob(t, job)
			if ready.Connected != tc.connected || ready.DialErrs != job.Conns-tc.connected {
				t.Fatalf("connected %d, dial errors %d (%s); want %d connected", ready.Connected, ready.DialErrs, ready.FirstErr, tc.connected)
			}
			if tc.errHas != "" && !strings.Contains(ready.FirstErr, tc.errHas) {
				t.Fatalf("first error %q, want it to say %q", ready.FirstErr, tc.errHas)
			}
			if res.Closed != 0 || res.BadSize != 0 {
				t.Fatalf("closed %d, bad sizes %d", res.Closed, res.BadSize)
			}
			if job.Scenario == "echo" {
				h := res.Histogram()
				if res.Messages == 0 || h.N != res.Messages {
					t.Fatalf("echo: %d messages, %d latencies", res.Messages, h.N)
				}
				t.Logf("%d echoes, p50 %v", res.Messages, h.Quantile(0.5))
			}
		})
	}
}

// TestTLSWorkerRefusesOthers: the wss worker refuses what it does not do.
func TestTLSWorkerRefusesOthers(t *testing.T) {
	for _, job := range []Job{
		{Scenario: "echo", Deflate: true, TLS: &TLSJob{}},
		{Scenario: "soak", Soak: &SoakJob{}, TLS: &TLSJob{}},
	} {
		b, _ := json.Marshal(job)
		if err := RunWorker(strings.NewReader(string(b)+"\n"), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "wss") {
			t.Errorf("%s: %v, want a refusal", fmt.Sprint(job.Scenario), err)
		}
	}
}

// TestDialTLSBridge: frames written to the bridge's socket reach a TLS
// server and its answers come back on the socket; shutting the socket down
// closes the TLS connection.
func TestDialTLSBridge(t *testing.T) {
	addr, root := tlsEchoServer(t)
	cfg, err := (&TLSJob{RootPEM: root}).Config()
	if err != nil {
		t.Fatal(err)
	}
	c, err := DialTLSBridge("127.0.0.1", addr, "/ws", cfg, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := unix.SetNonblock(c.Fd(), false); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("bridge"), 5000)
	if err := c.WriteBlocking(ClientFrame(0x2, msg)); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	_ = unix.SetsockoptTimeval(c.Fd(), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	want := append([]byte{0x82, 126, byte(len(msg) >> 8), byte(len(msg))}, msg...)
	got := make([]byte, 0, len(want))
	buf := make([]byte, 4096)
	for len(got) < len(want) {
		n, err := unix.Read(c.Fd(), buf)
		if err != nil || n == 0 {
			t.Fatalf("read after %d of %d bytes: %v", len(got), len(want), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo differs: got %d bytes %x...", len(got), got[:min(16, len(got))])
	}
	// Shut down: the bridge closes the TLS connection, and the server's
	// close reaches the socket as its end.
	_ = unix.Shutdown(c.Fd(), unix.SHUT_WR)
	if n, err := unix.Read(c.Fd(), buf); n != 0 || err != nil {
		t.Fatalf("after shutdown: read %d bytes, %v; want the end", n, err)
	}
}

// TestTLSJobCurves: by default the client offers crypto/tls's default key
// exchanges (X25519MLKEM768 with a Go server), with X25519 set X25519 alone.
func TestTLSJobCurves(t *testing.T) {
	addr, root := tlsEchoServer(t)
	for _, tc := range []struct {
		x25519 bool
		want   tls.CurveID
	}{{false, tls.X25519MLKEM768}, {true, tls.X25519}} {
		cfg, err := (&TLSJob{RootPEM: root, X25519: tc.x25519}).Config()
		if err != nil {
			t.Fatal(err)
		}
		c, err := DialTLS("", addr, "/ws", cfg, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st := c.State()
		c.Close()
		if st.CurveID != tc.want || st.Version != tls.VersionTLS13 || st.DidResume {
			t.Errorf("X25519 %v: key exchange %v, version %x, resumed %v; want %v over TLS 1.3, not resumed", tc.x25519, st.CurveID, st.Version, st.DidResume, tc.want)
		}
	}
}
