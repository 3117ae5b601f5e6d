package engine_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// The memory of idle wss connections, measured as for ws
// (BenchmarkEngineIdleConns): a child process holds the connections, so
// that the server's heap is the only one measured.
//
//	go test -run='^$' -bench=TLSIdleConns -benchtime=1x ./engine/

const (
	envTLSAddr    = "WSD_TLS_CHILD_ADDR"
	envTLSN       = "WSD_TLS_CHILD_N"
	envTLSCA      = "WSD_TLS_CHILD_CA"
	envTLSVersion = "WSD_TLS_CHILD_VERSION"
	envTLSLarge   = "WSD_TLS_CHILD_LARGE"
	envTLSFull    = "WSD_TLS_CHILD_FULL_RECORDS"
)

// tlsIdleCase is one memory measurement: the TLS version, the size of a
// message each connection echoes before it goes idle (0: none), and
// whether the client sends full 16 KiB records from the start (as
// browsers do) rather than records that grow over its first 128 KiB (as
// Go's crypto/tls does).
type tlsIdleCase struct {
	version     uint16
	large       int
	fullRecords bool
}

func (c tlsIdleCase) String() string {
	name := map[uint16]string{tls.VersionTLS12: "TLS1.2", tls.VersionTLS13: "TLS1.3"}[c.version]
	switch {
	case c.large > 0 && c.fullRecords:
		return fmt.Sprintf("%s/after_%dKiB_full_records", name, c.large>>10)
	case c.large > 0:
		return fmt.Sprintf("%s/after_%dKiB", name, c.large>>10)
	}
	return name + "/idle"
}

var tlsIdleCases = []tlsIdleCase{
	{tls.VersionTLS13, 0, false}, {tls.VersionTLS12, 0, false},
	{tls.VersionTLS13, 256 << 10, false}, {tls.VersionTLS12, 256 << 10, false},
	{tls.VersionTLS13, 256 << 10, true}, {tls.VersionTLS12, 256 << 10, true},
}

// TestTLSIdleMemory guards the Go heap of an idle wss connection, at most
// 8 KiB, and the same once it has carried large messages: crypto/tls's
// input buffer, which grows to a whole record and more (18 KiB when the
// client sends full 16 KiB records at once, 32 KiB when its records grow
// to full size as Go's crypto/tls makes them), is let go once the
// connection has been quiet for a tick (tls_quiet.go), as is its
// handshake buffer.
func TestTLSIdleMemory(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("needs exact heap figures")
	}
	for _, tc := range tlsIdleCases {
		t.Run(tc.String(), func(t *testing.T) {
			heap, rss := measureTLSIdle(t, 1000, tc)
			t.Logf("1000 wss connections, %v: %.0f B Go heap, %.0f B RSS per connection", tc, heap, rss)
			limit := 8 << 10
			if heap > float64(limit) {
				t.Fatalf("%.0f B of Go heap per wss connection (%v), want at most %d", heap, tc, limit)
			}
		})
	}
}

// BenchmarkTLSIdleConns reports the server's Go heap and RSS per wss
// connection, WSD_IDLE_CONNS of them (default 5000).
func BenchmarkTLSIdleConns(b *testing.B) {
	n := 5000
	if s := os.Getenv("WSD_IDLE_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for _, tc := range tlsIdleCases {
		b.Run(tc.String(), func(b *testing.B) {
			heap, rss := measureTLSIdle(b, n, tc)
			b.ReportMetric(heap, "heap-B/conn")
			b.ReportMetric(rss, "rss-B/conn")
			b.ReportMetric(float64(n), "conns")
		})
	}
}

var measureTLSIdleHook func()

func measureTLSIdle(tb testing.TB, n int, tc tlsIdleCase) (heapPerConn, rssPerConn float64) {
	h := &counter{}
	e, addr, pki := startWSS(tb, &countingEcho{counter: h}, engine.Options{PingInterval: -1, IdleTimeout: -1, HandshakeTimeout: time.Minute})
	heap0, rss0 := memNow()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTLSClientProcess$")
	cmd.Env = append(os.Environ(), envTLSAddr+"="+addr, envTLSN+"="+strconv.Itoa(n), envTLSCA+"="+string(pki.CAPEM()),
		envTLSVersion+"="+strconv.Itoa(int(tc.version)), envTLSLarge+"="+strconv.Itoa(tc.large), envTLSFull+"="+strconv.FormatBool(tc.fullRecords))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "ready") {
		tb.Fatalf("client process: %q", line)
	}
	waitFor(tb, 30*time.Second, "all connections upgraded", func() bool { return h.open.Load() == int64(n) })
	// Quiet for a tick, each lets crypto/tls's buffers go (tls_quiet.go).
	waitFor(tb, 30*time.Second, "crypto/tls's buffers let go", func() bool { return engine.TLSQuietPending(e) == 0 })
	heap1, rss1 := memNow()
	if measureTLSIdleHook != nil {
		measureTLSIdleHook()
	}
	if got := e.Stats().Conns; got != n {
		tb.Fatalf("%d connections, want %d", got, n)
	}
	return float64(heap1-heap0) / float64(n), float64(rss1-rss0) / float64(n)
}

// countingEcho echoes and counts open connections.
type countingEcho struct {
	echo
	*counter
}

func (h *countingEcho) OnOpen(c *engine.Conn)             { h.counter.OnOpen(c) }
func (h *countingEcho) OnClose(c *engine.Conn, err error) { h.counter.OnClose(c, err) }
func (h *countingEcho) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	h.echo.OnMessage(c, op, p)
}

// TestTLSClientProcess is the child of measureTLSIdle: it opens the wss
// connections, echoes a message on each when asked, says "ready" and
// holds them until its stdin closes.
func TestTLSClientProcess(t *testing.T) {
	addr := os.Getenv(envTLSAddr)
	if addr == "" {
		t.Skip("the child side of measureTLSIdle")
	}
	n, _ := strconv.Atoi(os.Getenv(envTLSN))
	version, _ := strconv.Atoi(os.Getenv(envTLSVersion))
	large, _ := strconv.Atoi(os.Getenv(envTLSLarge))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(os.Getenv(envTLSCA)))
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: uint16(version), MaxVersion: uint16(version),
		DynamicRecordSizingDisabled: os.Getenv(envTLSFull) == "true"}
	// Eight dialers take the next connection to open until all are.
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n) && failed.Load() == nil; i = next.Add(1) - 1 {
				c, err := holdWSS(addr, cfg, large)
				if err != nil {
					failed.CompareAndSwap(nil, &err)
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	defer closeAll(conns)
	if err := failed.Load(); err != nil {
		fmt.Printf("error: %v\n", *err)
		return
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// holdWSS opens one upgraded wss connection, and echoes a message of
// large bytes on it when large > 0.
func holdWSS(addr string, cfg *tls.Config, large int) (net.Conn, error) {
	c, err := tryDialTLS(addr, cfg)
	if err != nil {
		return nil, err
	}
	_ = c.tc.SetDeadline(time.Now().Add(time.Minute))
	key := wstest.NewKey()
	if _, err := c.tc.Write(wstest.BuildRequest("GET", "/", wstest.UpgradeHeaders("localhost", key))); err != nil {
		c.raw.Close()
		return nil, err
	}
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.raw.Close()
			return nil, err
		}
		if line == "\r\n" {
			break
		}
	}
	if large > 0 {
		if _, err := c.tc.Write(wstest.Binary(payloadOf(large)).Bytes()); err != nil {
			c.raw.Close()
			return nil, err
		}
		if _, p, err := engine.ReadServerFrame(c.r, int64(large)); err != nil || len(p) != large {
			c.raw.Close()
			return nil, fmt.Errorf("echo of %d bytes: %d bytes, %v", large, len(p), err)
		}
	}
	_ = c.tc.SetDeadline(time.Time{})
	return c.tc, nil
}

// cpuTime returns the CPU time the process has used, user and system, in
// ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// newTLSEchoClient is newEchoClient over TLS: depth messages of size bytes
// in one write (one TLS record up to 16 KiB), and their echoes read.
func newTLSEchoClient(tb testing.TB, addr string, cfg *tls.Config, size, depth int) *echoClient {
	c := connectWSS(tb, addr, cfg)
	frame := wstest.Binary(payloadOf(size)).Bytes()
	return &echoClient{conn: c.tc, frame: bytes.Repeat(frame, depth), reply: make([]byte, depth*codec.FrameSize(size))}
}

// TestTLSEchoAllocs guards the wss echo path (decrypt, decode, handler,
// encode, encrypt, write): the engine allocates nothing. crypto/tls does,
// on the server as on the client of this process: one 16-byte reader per
// record it reads (readFromUntil passes a new atLeastReader to
// bytes.Buffer.ReadFrom), and now and then a record buffer from its pool
// that must grow. The server asks crypto/tls to read only whole records,
// so that it reads each once.
func TestTLSEchoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	// A 16 KiB message takes two records, and a read may end between them:
	// with MessageTimeout the loop would watch the connection meanwhile, and
	// its watch list allocates the first time it grows, at a random run.
	_, addr, pki := startWSS(t, echo{}, engine.Options{PingInterval: -1, IdleTimeout: -1, MessageTimeout: -1})
	for _, ver := range tlsVersions {
		for _, tc := range []struct{ size, depth int }{{16, 1}, {1024, 1}, {16 << 10, 1}, {16, 8}, {1024, 8}} {
			t.Run(fmt.Sprintf("%s/bytes=%d/pipelined=%d", ver.name, tc.size, tc.depth), func(t *testing.T) {
				c := newTLSEchoClient(t, addr, clientTLS(pki, ver.v), tc.size, tc.depth)
				a := wstest.Allocs(200, 2000, func() {
					if err := c.roundTrip(); err != nil {
						t.Fatal(err)
					}
				})
				server := a.Under("github.com/wsdproject/wsd/engine.(*tlsConn).decrypt")
				records := (len(c.frame) + 16<<10 - 1) / (16 << 10) // of the client's write
				t.Logf("%v; %.2f per round trip on the server's reads", a, float64(server)/float64(a.Runs))
				if other := a.Total - a.Under("crypto/tls.(*Conn).Read") - a.Under("crypto/tls.(*Conn).Write"); other != 0 {
					t.Fatalf("%d allocations outside crypto/tls in %d round trips of %d messages:\n%s", other, a.Runs, tc.depth, a.Where())
				}
				if server > uint64(records*a.Runs) {
					t.Fatalf("%d record reads on the server in %d round trips, want at most %d each", server, a.Runs, records)
				}
			})
		}
	}
}

// BenchmarkTLSEcho measures one wss echo round trip over loopback, client
// and server in this process, as BenchmarkEngineEcho does for ws.
func BenchmarkTLSEcho(b *testing.B) {
	_, addr, pki := startWSS(b, echo{}, engine.Options{PingInterval: -1, IdleTimeout: -1})
	for _, size := range []int{16, 128, 1024, 16 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			c := newTLSEchoClient(b, addr, clientTLS(pki, tls.VersionTLS13), size, 1)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.roundTrip(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTLSHandshake measures a wss connection's setup: TCP connect,
// TLS handshake (full, or resumed with a session ticket), upgrade and one
// echo, client and server in this process. cpu-µs/op is the CPU time the
// process used per connection, client and server together, which a busy
// machine does not inflate as it does the wall time.
func BenchmarkTLSHandshake(b *testing.B) {
	_, addr, pki := startWSS(b, echo{}, engine.Options{})
	for _, ver := range tlsVersions {
		for _, resumed := range []bool{false, true} {
			name := ver.name + map[bool]string{false: "/full", true: "/resumed"}[resumed]
			b.Run(name, func(b *testing.B) {
				cfg := clientTLS(pki, ver.v)
				if resumed {
					cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				}
				b.ReportAllocs()
				cpu0, n := cpuTime(), 0
				for b.Loop() {
					c := connectWSS(b, addr, cfg)
					c.send(wstest.Text("x"))
					c.expect(wstest.OpText, []byte("x"))
					c.raw.Close()
					n++
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(n)/1e3, "cpu-µs/op")
			})
		}
	}
}
