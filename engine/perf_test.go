package engine_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// echoClient is an allocation-free raw client for echo round trips: it
// writes depth messages of size bytes in one write and reads their echoes.
type echoClient struct {
	conn  net.Conn
	frame []byte // depth masked client frames
	reply []byte // room for the server frames
}

func newEchoClient(t testing.TB, addr string, size, depth int) *echoClient {
	t.Helper()
	c := wstest.Connect(t, addr)
	payload := bytes.Repeat([]byte("x"), size)
	return &echoClient{
		conn:  c.Conn,
		frame: bytes.Repeat(wstest.Binary(payload).Bytes(), depth),
		reply: make([]byte, depth*codec.FrameSize(size)),
	}
}

func (c *echoClient) roundTrip() error {
	if _, err := c.conn.Write(c.frame); err != nil {
		return err
	}
	_, err := io.ReadFull(c.conn, c.reply)
	return err
}

// TestEngineEchoZeroAllocs guards the whole echo path (read, decode, unmask,
// handler, encode, write) at zero allocations per message, server and
// client together.
func TestEngineEchoZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	_, addr := startEngine(t, echo{}, engine.Options{PingInterval: -1, IdleTimeout: -1})
	for _, tc := range []struct{ size, depth int }{{16, 1}, {1024, 1}, {16 << 10, 1}, {16, 8}, {1024, 8}} {
		t.Run(fmt.Sprintf("bytes=%d/pipelined=%d", tc.size, tc.depth), func(t *testing.T) {
			c := newEchoClient(t, addr, tc.size, tc.depth)
			a := wstest.Allocs(200, 2000, func() {
				if err := c.roundTrip(); err != nil {
					t.Fatal(err)
				}
			})
			if a.Total != 0 {
				t.Fatalf("%v, each run echoing %d messages; want 0:\n%s", a, tc.depth, a.Where())
			}
		})
	}
}

// BenchmarkEngineEcho measures one echo round trip over loopback, one
// connection, client and server in this process.
func BenchmarkEngineEcho(b *testing.B) {
	_, addr := startEngine(b, echo{}, engine.Options{PingInterval: -1, IdleTimeout: -1})
	for _, size := range []int{16, 128, 1024, 16 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			c := newEchoClient(b, addr, size, 1)
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

// BenchmarkEngineEchoPipelined measures echoes of 16 messages sent in one
// write, per message, with the server's socket writes per message.
func BenchmarkEngineEchoPipelined(b *testing.B) {
	e, addr := startEngine(b, echo{}, engine.Options{PingInterval: -1, IdleTimeout: -1})
	const depth = 16
	for _, size := range []int{16, 1024} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			c := newEchoClient(b, addr, size, depth)
			b.SetBytes(int64(size * depth))
			b.ReportAllocs()
			w0, n := e.Stats().Writes, 0
			for b.Loop() {
				if err := c.roundTrip(); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(e.Stats().Writes-w0)/float64(n*depth), "writes/msg")
		})
	}
}

// counter counts opened connections.
type counter struct {
	engine.NopHandler
	open atomic.Int64
}

func (c *counter) OnOpen(*engine.Conn)         { c.open.Add(1) }
func (c *counter) OnClose(*engine.Conn, error) { c.open.Add(-1) }

// BenchmarkEngineIdleConns holds WSD_IDLE_CONNS (default 9000) idle upgraded
// connections, opened by a child process so that the client's memory and
// file descriptors are not counted, and reports the server's Go heap and
// RSS per connection. Run it with -benchtime=1x:
//
//	go test -run='^$' -bench=IdleConns -benchtime=1x ./engine/
func BenchmarkEngineIdleConns(b *testing.B) {
	n := 9000
	if s := os.Getenv("WSD_IDLE_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	heap, rss := measureIdle(b, n)
	b.ReportMetric(heap, "heap-B/conn")
	b.ReportMetric(rss, "rss-B/conn")
	b.ReportMetric(float64(n), "conns")
}

// TestEngineIdleMemory guards the Go heap per idle connection under 1 KiB.
func TestEngineIdleMemory(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("needs exact heap figures")
	}
	heap, rss := measureIdle(t, 2000)
	t.Logf("2000 idle connections: %.0f B Go heap, %.0f B RSS per connection", heap, rss)
	if heap > 1024 {
		t.Fatalf("%.0f B of Go heap per idle connection, want under 1024", heap)
	}
}

func measureIdle(tb testing.TB, n int) (heapPerConn, rssPerConn float64) {
	h := &counter{}
	e, addr := startEngine(tb, h, engine.Options{PingInterval: -1, IdleTimeout: -1, HandshakeTimeout: time.Minute})
	heap0, rss0 := memNow()

	clients, err := wstest.StartClientProcess(addr, "/", n, false)
	if err != nil {
		tb.Fatal(err)
	}
	defer clients.Close()
	waitFor(tb, 30*time.Second, "all connections upgraded", func() bool { return h.open.Load() == int64(n) })
	heap1, rss1 := memNow()
	if got := e.Stats().Conns; got != n {
		tb.Fatalf("%d connections, want %d", got, n)
	}
	return float64(heap1-heap0) / float64(n), float64(rss1-rss0) / float64(n)
}

// memNow returns the live Go heap after a full GC, and the process RSS.
func memNow() (heap, rss int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return int64(ms.HeapAlloc), rss
}

// TestClientProcess is the child side of wstest.StartClientProcess.
func TestClientProcess(t *testing.T) { wstest.ClientProcessMain(t) }
