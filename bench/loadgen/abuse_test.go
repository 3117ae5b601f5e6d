package loadgen

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func testCycle() AbuseCycle {
	return AbuseCycle{Slots: [NumAbuses]time.Duration{12 * time.Second, 45 * time.Second, 15 * time.Second, 6 * time.Second, 6 * time.Second, 10 * time.Second}}
}

func TestAbuseCycleOrder(t *testing.T) {
	c := testCycle()
	if c.Period() != 94*time.Second {
		t.Fatalf("period %v", c.Period())
	}
	// Abuser 0 starts at the start of the cycle and walks it in order.
	var at time.Duration
	for k := range NumAbuses {
		kind, left := c.At(0, 10, at)
		if kind != k || left != c.Slots[k] {
			t.Fatalf("at %v: abuse %d with %v left, want %d with %v", at, kind, left, k, c.Slots[k])
		}
		kind, left = c.At(0, 10, at+c.Slots[k]-time.Millisecond)
		if kind != k || left != time.Millisecond {
			t.Fatalf("just before the end of slot %d: abuse %d with %v left", k, kind, left)
		}
		at += c.Slots[k]
	}
	if kind, _ := c.At(0, 10, at); kind != Flood {
		t.Fatalf("after one period: abuse %d, want the cycle to start over", kind)
	}
	// Abuser 5 of 10 starts half a period in: 47 s is 35 s into non-reading.
	if kind, left := c.At(5, 10, 0); kind != NonReading || left != 10*time.Second {
		t.Fatalf("abuser 5 of 10 at 0: abuse %d with %v left, want non-reading with 10s", kind, left)
	}
	if kind, _ := c.At(0, 0, time.Second); kind != Churn {
		t.Fatal("no abusers: want a harmless answer")
	}
}

// Every abuse has its share of the abusers at every moment, so the load
// they make does not swing with the schedule.
func TestAbuseCycleShares(t *testing.T) {
	c := testCycle()
	const n = 150
	for at := time.Duration(0); at < 3*c.Period(); at += 700 * time.Millisecond {
		var count [NumAbuses]int
		for i := range n {
			kind, left := c.At(i, n, at)
			if left <= 0 || left > c.Slots[kind] {
				t.Fatalf("abuser %d at %v: %v left of a %v slot", i, at, left, c.Slots[kind])
			}
			count[kind]++
		}
		for k := range NumAbuses {
			want := float64(n) * c.Slots[k].Seconds() / c.Period().Seconds()
			if d := float64(count[k]) - want; d < -1 || d > 1 {
				t.Fatalf("at %v: %d abusers on %s, want %.1f ± 1", at, count[k], AbuseNames[k], want)
			}
		}
	}
}

func TestAbuseExpected(t *testing.T) {
	for _, tc := range []struct {
		name, outcome string
		want          bool
	}{
		{"flood", "reset", true},
		{"flood", "close 1008", true},
		{"flood", "timeout", false},
		{"flood", "close 1002", false},
		{"nonreading", "eof", true},
		{"nonreading", "cut", true},
		{"nonreading", "timeout", false},
		{"slowloris", "http 408", true},
		{"slowloris", "http 400", false},
		{"garbage/utf8", "close 1007", true},
		{"garbage/utf8", "close 1002", false},
		{"garbage/opcode", "close 1002", true},
		{"garbage/opcode", "reset", false},
		{"oversized/frame", "close 1009", true},
		{"oversized/fragments", "close 1008", false},
		{"churn/close", "close 1000", true},
		{"churn/fin", "ok", true},
		{"churn/fin", "error", false},
		{"garbage/unknown", "close 1002", false},
	} {
		if got := AbuseExpected(tc.name, tc.outcome); got != tc.want {
			t.Errorf("AbuseExpected(%q, %q) = %v, want %v", tc.name, tc.outcome, got, tc.want)
		}
	}
}

func TestAbuseStats(t *testing.T) {
	var s AbuseStats
	s.Record("flood", "reset", 2*time.Millisecond)
	s.Record("flood", "reset", 4*time.Millisecond)
	s.Record("garbage/utf8", "close 1007", time.Millisecond)
	c := s.Counts()
	if c["flood"]["reset"] != 2 || c["garbage/utf8"]["close 1007"] != 1 {
		t.Fatalf("counts %v", c)
	}
	h := s.Times()["flood"]["reset"].Hist()
	if h.N != 2 || h.Max != int64(4*time.Millisecond) {
		t.Fatalf("times: n %d max %d", h.N, h.Max)
	}
}

// fakeServer accepts one connection at a time, answers the upgrade with
// 101 unless upgrade is false, and hands the connection to serve.
func fakeServer(t *testing.T, upgrade bool, serve func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				if upgrade {
					for { // the request's header
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				}
				serve(c, r)
			}()
		}
	}()
	return l.Addr().String()
}

func testAbuser(addr string) (*abuser, *AbuseStats) {
	stats := new(AbuseStats)
	cfg := &AbuseConfig{Cycle: testCycle(), MaxMessageSize: 1024, ChurnPath: "/?topics=news", NonReadingPath: "/?topics=bulk",
		FloodFrame: `{"op":"publish","topic":"flood","data":"x"}`}
	cfg.Bounds[Flood] = 2 * time.Second
	cfg.Bounds[Slowloris] = 2 * time.Second
	cfg.Bounds[NonReading] = 2 * time.Second
	return &abuser{index: 0, total: 1, addr: addr, cfg: cfg, stats: stats, stop: make(chan struct{})}, stats
}

func closeFrame(code uint16) []byte {
	return append([]byte{0x88, 2}, binary.BigEndian.AppendUint16(nil, code)...)
}

func TestAbuseGarbageReadsTheCloseCode(t *testing.T) {
	got := make(chan []byte, 1)
	addr := fakeServer(t, true, func(c net.Conn, r *bufio.Reader) {
		b := make([]byte, 64)
		n, _ := r.Read(b)
		got <- append([]byte(nil), b[:n]...)
		_, _ = c.Write(append([]byte{0x89, 0}, closeFrame(1007)...)) // a ping first: skipped
		_, _ = r.Read(b)                                             // the client's close frame
	})
	a, _ := testAbuser(addr)
	outcome, d := a.garbage(2) // utf8
	if outcome != "close 1007" || d <= 0 || d > 5*time.Second {
		t.Fatalf("outcome %q after %v", outcome, d)
	}
	if b := <-got; len(b) < 2 || b[0] != 0x81 || b[1]&0x80 == 0 {
		t.Fatalf("the bad frame was % x, want a masked text frame", b)
	}
}

func TestAbuseFloodEndsWhenTheServerCloses(t *testing.T) {
	addr := fakeServer(t, true, func(c net.Conn, r *bufio.Reader) {
		_, _ = io.CopyN(io.Discard, r, 256<<10)
		_ = c.(*net.TCPConn).SetLinger(0) // as a server closing with unread input: a reset
	})
	a, _ := testAbuser(addr)
	outcome, d := a.flood(time.Now().Add(5 * time.Second))
	if (outcome != OutReset && outcome != OutEOF) || d > 2*time.Second {
		t.Fatalf("outcome %q after %v, want reset or eof within the bound", outcome, d)
	}
}

func TestAbuseSlowlorisAndNonReadingTimeOut(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	addr := fakeServer(t, true, func(net.Conn, *bufio.Reader) { <-hold }) // ignores its clients
	a, _ := testAbuser(addr)
	if outcome, d := a.slowloris(time.Now().Add(5 * time.Second)); outcome != OutTimeout || d < 2*time.Second {
		t.Fatalf("slowloris ignored by the server: %q after %v, want timeout at the 2s bound", outcome, d)
	}
	if outcome, _ := a.nonReading(time.Now().Add(time.Second)); outcome != OutCut {
		t.Fatalf("non-reading whose slot ends before its bound: %q, want cut", outcome)
	}
}

func TestAbuseSlowlorisSeesTheHTTPAnswer(t *testing.T) {
	addr := fakeServer(t, false, func(c net.Conn, r *bufio.Reader) {
		line, _ := r.ReadString('\n')
		if strings.HasPrefix(line, "GET ") {
			_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\n\r\n")
		}
	})
	a, _ := testAbuser(addr)
	if outcome, _ := a.slowloris(time.Now().Add(5 * time.Second)); outcome != "http 408" {
		t.Fatalf("outcome %q, want http 408", outcome)
	}
}

func TestAbuseChurnClose(t *testing.T) {
	addr := fakeServer(t, true, func(c net.Conn, r *bufio.Reader) {
		b := make([]byte, 64)
		if n, _ := r.Read(b); n >= 8 && b[0] == 0x88 {
			_, _ = c.Write(closeFrame(1000))
		}
	})
	a, stats := testAbuser(addr)
	for range churnVariants {
		a.attempt(Churn, time.Now().Add(5*time.Second))
	}
	c := stats.Counts()
	for _, v := range churnVariants {
		name := "churn/" + v
		for outcome := range c[name] {
			if !AbuseExpected(name, outcome) {
				t.Errorf("%s: outcome %q", name, outcome)
			}
		}
		if len(c[name]) == 0 {
			t.Errorf("%s: not tried", name)
		}
	}
}
