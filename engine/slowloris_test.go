package engine_test

import (
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// slowConns is how many connections the slowloris test holds: with the
// server's sockets in the same process, 4,000 of the 20,000 files a
// process may open here.
const slowConns = 2000

// openSlow opens n connections to addr that each send the start of an
// upgrade request and then nothing. They are closed when the test ends.
func openSlow(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	partial := []byte("GET / HTTP/1.1\r\nHost: x\r\n")
	return openPeers(t, addr, n, func(int) []byte { return partial })
}

// openPeers opens n connections to addr; connection i sends first(i) (if
// not empty) and then nothing. They are closed when the test ends.
func openPeers(t *testing.T, addr string, n int, first func(i int) []byte) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, wstest.DefaultTimeout)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if b := first(i); len(b) > 0 {
			if _, err := c.Write(b); err != nil {
				t.Fatalf("slow connection %d: %v", i, err)
			}
		}
	}
	return conns
}

// TestSlowloris: thousands of peers that never finish their upgrade
// request neither slow down the others (the loops only wait for bytes, they
// never block on one peer) nor stay: the handshake deadline closes them.
func TestSlowloris(t *testing.T) {
	t.Run("probes", func(t *testing.T) {
		e, addr := startEngine(t, echo{}, engine.Options{HandshakeTimeout: time.Minute})
		openSlow(t, addr, slowConns)
		waitFor(t, 10*time.Second, "the slow connections", func() bool { return e.Stats().Conns == slowConns })
		rtt := make([]time.Duration, 100)
		for i := range rtt { // connect, upgrade, echo
			start := time.Now()
			c := wstest.Connect(t, addr)
			c.WriteFrames(wstest.Text("probe"))
			c.ExpectText("probe")
			rtt[i] = time.Since(start)
			c.Conn.Close()
		}
		slices.Sort(rtt)
		p99, median := rtt[(99*len(rtt)+99)/100-1], rtt[len(rtt)/2] // nearest rank
		// Timing is asserted without the race detector, which slows every
		// goroutine several times over (make abuse runs this test alone).
		if p99 >= 100*time.Millisecond && !raceEnabled {
			t.Fatalf("%d probe round trips with %d slow peers: p99 %v, median %v, max %v; want p99 under 100ms",
				len(rtt), slowConns, p99, median, rtt[len(rtt)-1])
		}
		t.Logf("%d probe round trips with %d slow peers: p99 %v, median %v, max %v", len(rtt), slowConns, p99, median, rtt[len(rtt)-1])
		if n := e.Stats().Conns; n < slowConns {
			t.Fatalf("%d connections left, want the %d slow ones still waiting", n, slowConns)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		const timeout = 500 * time.Millisecond
		e, addr := startEngine(t, echo{}, engine.Options{HandshakeTimeout: timeout})
		start := time.Now()
		slow := openSlow(t, addr, slowConns)
		bound := time.Now().Add(timeout + 2*time.Second) // the deadline, a tick late at most, and slack
		var buf [1]byte
		for i, c := range slow {
			_ = c.SetReadDeadline(bound)
			n, err := c.Read(buf[:])
			if n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("slow connection %d of %d: %d bytes, %v; want EOF within %v of the last one's start",
					i, slowConns, n, err, timeout+2*time.Second)
			}
			if d := time.Since(start); i == 0 && d < timeout/2 {
				t.Fatalf("the first slow connection was closed %v after it opened, before its %v deadline", d, timeout)
			}
		}
		waitFor(t, 5*time.Second, "the server to let go", func() bool { return e.Stats().Conns == 0 })
	})
}
