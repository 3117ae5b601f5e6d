// Package conformance drives the wsd echo daemon with a raw client, over
// TCP (ws) and over TLS (wss), through cases modelled on the
// Autobahn|Testsuite (groups 1 framing, 2 ping/pong, 3 reserved bits,
// 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 limits, 10 misc) plus a
// handshake group H.
//
// Case ids follow Autobahn where Autobahn has the case. Cases Autobahn does
// not have use either a suffix on the Autobahn id for a variant of it
// ("1.1.2-chop1": case 1.1.2 delivered in 1-byte writes; "6.12.3-cp": case
// 6.12.3 sent as one fragment per code point) or a sub-group number that
// Autobahn does not use (1.3.x, 1.4.x, 1.5.x, 3.8.x, 9.9.x, ...); each group
// file lists them.
//
// One daemon ("wsd -mode echo") serves the whole package over ws and wss
// (transport_test.go): every case runs once per transport and opens its own
// connection.
package conformance

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wsdproject/wsd/internal/wstest"
)

var (
	daemonOnce     sync.Once
	daemon         *server
	daemonErr      string
	daemonCleanups []func()
	daemonMu       sync.Mutex
)

func TestMain(m *testing.M) {
	flag.Parse()
	// If the test binary hits -test.timeout it panics and exits without
	// running the code after m.Run; stop the daemon a little before that.
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 10*time.Second {
			watchdog := time.AfterFunc(d-5*time.Second, stopDaemon)
			defer watchdog.Stop()
		}
	}
	code := m.Run()
	if code != 0 && daemon != nil {
		out := daemon.Output()
		if len(out) > 8192 {
			out = "...\n" + out[len(out)-8192:]
		}
		fmt.Fprintf(os.Stderr, "wsd output (tail):\n%s\n", out)
	}
	stopDaemon()
	removeCert()
	wstest.CleanupBinary()
	os.Exit(code)
}

func stopDaemon() {
	daemonMu.Lock()
	fs := daemonCleanups
	daemonCleanups = nil
	daemonMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// mainTB lets wstest.StartDaemon run outside any single test, so that the
// daemon lives until TestMain stops it. Only the methods StartDaemon and
// DaemonBinary use are implemented; Fatal* abort the start by panicking.
type mainTB struct {
	testing.TB
}

type startAbort struct{ msg string }

func (mainTB) Helper()         {}
func (mainTB) Failed() bool    { return false }
func (mainTB) Name() string    { return "conformance-daemon" }
func (mainTB) Log(args ...any) { fmt.Fprintln(os.Stderr, args...) }
func (mainTB) Logf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, f+"\n", a...)
}
func (mainTB) Fatal(args ...any) { panic(startAbort{fmt.Sprint(args...)}) }
func (mainTB) Fatalf(f string, a ...any) {
	panic(startAbort{fmt.Sprintf(f, a...)})
}
func (mainTB) Cleanup(f func()) {
	daemonMu.Lock()
	defer daemonMu.Unlock()
	daemonCleanups = append(daemonCleanups, f)
}

// sharedServer starts the shared echo daemon on first use and returns it;
// it fails the test if the daemon could not be started or has exited since.
func sharedServer(t testing.TB) *server {
	t.Helper()
	daemonOnce.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				if a, ok := r.(startAbort); ok {
					daemonErr = a.msg
					return
				}
				panic(r)
			}
		}()
		daemon = startServer(mainTB{}, "-mode", "echo")
	})
	if daemonErr != "" {
		t.Fatalf("starting wsd: %s", daemonErr)
	}
	if daemon.Exited() {
		t.Fatalf("wsd has exited; output:\n%s", tail(daemon.Output(), 4096))
	}
	return daemon
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// checkDaemonAlive fails t if the daemon died while t ran.
func checkDaemonAlive(t testing.TB) {
	t.Cleanup(func() {
		if daemon != nil && daemon.Exited() {
			t.Errorf("wsd exited during this case; output:\n%s", tail(daemon.Output(), 4096))
		}
	})
}

// parallel marks a subtest parallel; all cases but the big ones of group 9
// run this way (at most GOMAXPROCS at a time).
func parallel(t *testing.T) { t.Parallel() }

// scriptCase is a case that opens a fresh, upgraded connection and runs a
// script of writes and expectations on it.
type scriptCase struct {
	id   string
	desc string
	run  func(t *testing.T, c *wstest.Client)
}

// runScripts runs each case over tr as a parallel subtest named by its id.
func runScripts(t *testing.T, tr *transport, cases []scriptCase) {
	t.Helper()
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.id] {
			t.Fatalf("duplicate case id %s", tc.id)
		}
		seen[tc.id] = true
		t.Run(tc.id, func(t *testing.T) {
			parallel(t)
			t.Log(tc.desc)
			c := tr.open(t)
			tc.run(t, c)
		})
	}
}

// withRsv returns f with its RSV bits set to rsv.
func withRsv(f wstest.Frame, rsv byte) wstest.Frame {
	f.Rsv = rsv
	return f
}

// unmasked returns f without masking.
func unmasked(f wstest.Frame) wstest.Frame {
	f.Unmasked = true
	return f
}

// headerOnly returns the header of a frame announcing n payload bytes.
func headerOnly(opcode byte, fin bool, n uint64) []byte {
	return wstest.Frame{Fin: fin, Opcode: opcode, DeclareLength: true, Length: n}.Header()
}

// silence is how long a "the server has not closed yet" check waits.
const silence = 150 * time.Millisecond

// repeatTo returns unit repeated and cut to exactly n bytes.
func repeatTo(unit string, n int) []byte {
	if n == 0 {
		return []byte{}
	}
	b := bytes.Repeat([]byte(unit), n/len(unit)+1)
	return b[:n]
}

// binaryPayload returns n bytes covering all byte values, deterministic.
func binaryPayload(n int) []byte {
	b := make([]byte, n)
	x := uint32(0x9e3779b9)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x >> 7)
	}
	return b
}

// textUnit mixes 1-, 2-, 3- and 4-byte UTF-8 sequences, so that fixed-size
// fragments and chops split code points.
const textUnit = "wsd*echo κόσμε ✓ Hello-µ@ßöäüàá 𝄞 日本語 0123456789 "

// textPayload returns exactly n bytes of valid UTF-8 made of textUnit,
// padded with ASCII at the end.
func textPayload(n int) []byte {
	b := make([]byte, 0, n)
	for len(b)+len(textUnit) <= n {
		b = append(b, textUnit...)
	}
	for _, r := range textUnit {
		s := string(r)
		if len(b)+len(s) > n {
			break
		}
		b = append(b, s...)
	}
	for len(b) < n {
		b = append(b, '*')
	}
	return b
}

// fmtSize formats a byte count like 64K, 16M.
func fmtSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprint(n)
}

// TestConformanceHelpers checks the test helpers themselves (no daemon).
func TestConformanceHelpers(t *testing.T) {
	for _, n := range []int{0, 1, 7, 125, 1000, 65536} {
		p := textPayload(n)
		if len(p) != n || !utf8.Valid(p) {
			t.Fatalf("textPayload(%d): len %d valid %v", n, len(p), utf8.Valid(p))
		}
	}
	// RFC 6455 section 1.3 example.
	if got := wstest.AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("AcceptKey = %q", got)
	}
	// RFC 6455 section 5.7: a masked "Hello".
	want := []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}
	if got := wstest.Text("Hello").Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("masked Hello = %x, want %x", got, want)
	}
	// Masking at an offset equals masking the whole payload.
	p := binaryPayload(100)
	whole := append([]byte(nil), p...)
	wstest.MaskBytes(wstest.DefaultMaskKey, 0, whole)
	parts := append([]byte(nil), p...)
	wstest.MaskBytes(wstest.DefaultMaskKey, 0, parts[:13])
	wstest.MaskBytes(wstest.DefaultMaskKey, 13, parts[13:])
	if !bytes.Equal(whole, parts) {
		t.Fatal("MaskBytes at an offset differs")
	}
	for _, tc := range []struct {
		f    wstest.Frame
		want string
	}{
		{wstest.Frame{Fin: true, Opcode: 2, Payload: make([]byte, 126)}, "82fe007e"},
		{wstest.Frame{Fin: true, Opcode: 2, Payload: make([]byte, 65536)}, "82ff0000000000010000"},
		{wstest.Frame{Fin: true, Opcode: 1, DeclareLength: true, Length: 1 << 63}, "81ff8000000000000000"},
		{wstest.Frame{Fin: false, Rsv: 7, Opcode: 9, Unmasked: true}, "7900"},
	} {
		h := fmt.Sprintf("%x", tc.f.Header())
		if !strings.HasPrefix(h, tc.want) {
			t.Errorf("header %s, want prefix %s", h, tc.want)
		}
	}
}
