package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// seen echoes, and counts the connections the Handler sees.
type seen struct {
	echo
	opened, closed atomic.Int64
}

func (h *seen) OnOpen(*engine.Conn)         { h.opened.Add(1) }
func (h *seen) OnClose(*engine.Conn, error) { h.closed.Add(1) }

// peer is a client connection that sends an upgrade request and reads the
// answer with net/http, from any source address or over a unix socket.
type peer struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func newPeer(t *testing.T, conn net.Conn, err error) *peer {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &peer{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// dialPeer connects to addr on network ("tcp" or "unix").
func dialPeer(t *testing.T, network, addr string) *peer {
	t.Helper()
	conn, err := net.DialTimeout(network, addr, wstest.DefaultTimeout)
	return newPeer(t, conn, err)
}

// dialFrom connects to addr from the source address src (127.0.0.x: every
// loopback address is local on Linux).
func dialFrom(t *testing.T, addr, src string) *peer {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: wstest.DefaultTimeout}
	conn, err := d.Dial("tcp", addr)
	return newPeer(t, conn, err)
}

// request sends an upgrade request (with extra bytes after it) and reads
// the answer's head.
func (p *peer) request(extra []byte) *http.Response {
	p.t.Helper()
	_ = p.conn.SetDeadline(time.Now().Add(wstest.DefaultTimeout))
	req := wstest.BuildRequest("GET", "/", wstest.UpgradeHeaders("wsd.test", wstest.NewKey()))
	if _, err := p.conn.Write(append(req, extra...)); err != nil {
		p.t.Fatalf("writing the request: %v", err)
	}
	resp, err := http.ReadResponse(p.r, nil)
	if err != nil {
		p.t.Fatalf("reading the answer: %v", err)
	}
	return resp
}

func (p *peer) expectUpgrade() {
	p.t.Helper()
	if resp := p.request(nil); resp.StatusCode != http.StatusSwitchingProtocols {
		p.t.Fatalf("got %q, want 101", resp.Status)
	}
}

// expectRefused sends a request (and extra bytes) and checks the answer:
// status, Retry-After, a plain-text reason, and then the end of the
// connection, by the server and without a reset.
func (p *peer) expectRefused(extra []byte, status int, retryAfter string) {
	p.t.Helper()
	resp := p.request(extra)
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		p.t.Fatalf("reading the body of %q: %v", resp.Status, err)
	case resp.StatusCode != status:
		p.t.Fatalf("got %q (%q), want %d", resp.Status, body, status)
	case resp.Header.Get("Retry-After") != retryAfter:
		p.t.Fatalf("Retry-After %q, want %q", resp.Header.Get("Retry-After"), retryAfter)
	case !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || len(body) == 0 || !resp.Close:
		p.t.Fatalf("answer %q with headers %v and body %q: want a plain-text reason and Connection: close", resp.Status, resp.Header, body)
	}
	if n, err := p.r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		p.t.Fatalf("after the answer: %d bytes, %v; want the server's EOF", n, err)
	}
}

// MaxConns: the connection over the cap gets 503 with Retry-After, is
// never seen by the Handler, and once an admitted one closes, a new one is
// admitted.
func TestAdmitMaxConns(t *testing.T) {
	h := &seen{}
	e, addr := startEngine(t, h, engine.Options{MaxConns: 3})
	var admitted []*wstest.Client
	for range 3 {
		admitted = append(admitted, wstest.Connect(t, addr))
	}
	over := dialPeer(t, "tcp", addr)
	over.expectRefused(nil, http.StatusServiceUnavailable, "5")

	admitted[0].CloseHandshake()
	waitFor(t, 5*time.Second, "OnClose of the first", func() bool { return h.closed.Load() == 1 })
	c := wstest.Connect(t, addr)
	c.WriteFrames(wstest.Text("admitted"))
	c.ExpectText("admitted")
	over2 := dialPeer(t, "tcp", addr)
	over2.expectRefused(nil, http.StatusServiceUnavailable, "5")

	// The refused connections leave without the Handler hearing of them.
	over.conn.Close()
	over2.conn.Close()
	waitFor(t, 5*time.Second, "the refused connections to go", func() bool { return e.Stats().Conns == 3 })
	st := e.Stats()
	if st.Rejected != (engine.RejectCounts{MaxConns: 2}) || st.Upgrades != 4 || h.opened.Load() != 4 || h.closed.Load() != 1 {
		t.Fatalf("rejected %+v, %d upgrades, Handler saw %d opened and %d closed; want 2 refused for MaxConns, 4 upgrades, 4 opened, 1 closed",
			st.Rejected, st.Upgrades, h.opened.Load(), h.closed.Load())
	}
}

// The answer survives input the server has not read: the refused peer
// sends far more than its request before reading, and still gets the whole
// answer and a clean end, not a reset. A HEAD request gets no body.
func TestAdmitAnswer(t *testing.T) {
	_, addr := startEngine(t, &seen{}, engine.Options{MaxConns: 1})
	wstest.Connect(t, addr)
	dialPeer(t, "tcp", addr).expectRefused(bytes.Repeat([]byte("x"), 256<<10), http.StatusServiceUnavailable, "5")

	p := dialPeer(t, "tcp", addr)
	_ = p.conn.SetDeadline(time.Now().Add(wstest.DefaultTimeout))
	if _, err := p.conn.Write([]byte("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(p.r, &http.Request{Method: http.MethodHead})
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HEAD: %v, %v", resp, err)
	}
	if rest, err := io.ReadAll(p.r); err != nil || len(rest) != 0 {
		t.Fatalf("HEAD: %q after the head (%v), want nothing and EOF", rest, err)
	}
}

// Loops decide at the same time (ReusePort: each loop accepts for itself):
// of 40 connections opened at once from four addresses, with 3 per address
// and 10 in all, exactly 10 are admitted, none over its address's cap, and
// every other one is refused and counted.
func TestAdmitConcurrent(t *testing.T) {
	h := &seen{}
	e, addr := startEngine(t, h, engine.Options{MaxConns: 10, MaxConnsPerIP: 3, ReusePort: true})
	const perAddr = 10
	srcs := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	type result struct {
		src    string
		status int
		err    error
	}
	results := make(chan result, len(srcs)*perAddr)
	var conns []net.Conn
	for _, src := range srcs {
		for range perAddr {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: wstest.DefaultTimeout}
			conn, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
			t.Cleanup(func() { conn.Close() })
			go func() {
				_ = conn.SetDeadline(time.Now().Add(wstest.DefaultTimeout))
				req := wstest.BuildRequest("GET", "/", wstest.UpgradeHeaders("wsd.test", wstest.NewKey()))
				if _, err := conn.Write(req); err != nil {
					results <- result{src: src, err: err}
					return
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					results <- result{src: src, err: err}
					return
				}
				results <- result{src: src, status: resp.StatusCode}
			}()
		}
	}
	admitted := map[string]int{}
	refusedN := 0
	for range conns {
		r := <-results
		switch {
		case r.err != nil:
			t.Fatalf("from %s: %v", r.src, r.err)
		case r.status == http.StatusSwitchingProtocols:
			admitted[r.src]++
		case r.status == http.StatusServiceUnavailable || r.status == http.StatusTooManyRequests:
			refusedN++
		default:
			t.Fatalf("from %s: status %d", r.src, r.status)
		}
	}
	total := 0
	for src, n := range admitted {
		if n > 3 {
			t.Errorf("%d admitted from %s, over MaxConnsPerIP", n, src)
		}
		total += n
	}
	waitFor(t, 5*time.Second, "OnOpen of the admitted", func() bool { return h.opened.Load() >= int64(total) })
	st := e.Stats()
	if total != 10 || refusedN != 30 || st.Rejected.MaxConns+st.Rejected.PerIP != 30 || h.opened.Load() != 10 {
		t.Fatalf("admitted %v, %d refused, rejected %+v, Handler saw %d; want 10 admitted and 30 refused", admitted, refusedN, st.Rejected, h.opened.Load())
	}
}

// Real WebSocket clients read the answer: coder/websocket (net/http's
// Transport underneath) and gorilla/websocket get the status.
func TestAdmitClients(t *testing.T) {
	_, addr := startEngine(t, &seen{}, engine.Options{MaxConns: 1})
	wstest.Connect(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), wstest.DefaultTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
	if err == nil {
		c.CloseNow()
		t.Fatal("coder/websocket: upgraded over MaxConns")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("coder/websocket: %v, response %v", err, resp)
	}
	g, resp, err := gorilla.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err == nil {
		g.Close()
		t.Fatal("gorilla/websocket: upgraded over MaxConns")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("gorilla/websocket: %v, response %v", err, resp)
	}
}

// MaxConnsPerIP: the third connection from 127.0.0.1 gets 429 while
// 127.0.0.2 is admitted; a close makes room for its own address.
func TestAdmitPerIP(t *testing.T) {
	h := &seen{}
	e, addr := startEngine(t, h, engine.Options{MaxConnsPerIP: 2})
	a1 := dialFrom(t, addr, "127.0.0.1")
	a1.expectUpgrade()
	dialFrom(t, addr, "127.0.0.1").expectUpgrade()
	dialFrom(t, addr, "127.0.0.1").expectRefused(nil, http.StatusTooManyRequests, "5")
	dialFrom(t, addr, "127.0.0.2").expectUpgrade()
	dialFrom(t, addr, "127.0.0.2").expectUpgrade()
	dialFrom(t, addr, "127.0.0.2").expectRefused(nil, http.StatusTooManyRequests, "5")

	a1.conn.Close()
	waitFor(t, 5*time.Second, "OnClose", func() bool { return h.closed.Load() == 1 })
	dialFrom(t, addr, "127.0.0.1").expectUpgrade()
	dialFrom(t, addr, "127.0.0.1").expectRefused(nil, http.StatusTooManyRequests, "5")
	waitFor(t, 5*time.Second, "OnOpen of the fifth", func() bool { return h.opened.Load() >= 5 }) // it runs after the 101 is sent
	st := e.Stats()
	if st.Rejected != (engine.RejectCounts{PerIP: 3}) || h.opened.Load() != 5 || st.Upgrades != 5 {
		t.Fatalf("rejected %+v, %d upgrades, Handler saw %d; want 3 refused per IP and 5 upgrades", st.Rejected, st.Upgrades, h.opened.Load())
	}
}

// HandshakeRatePerIP: of six connections opened at once with a burst of
// five, one gets 429; 1/rate later a new one is admitted.
func TestAdmitRate(t *testing.T) {
	h := &seen{}
	e, addr := startEngine(t, h, engine.Options{HandshakeRatePerIP: 5, HandshakeBurstPerIP: 5})
	start := time.Now()
	ps := make([]*peer, 6)
	for i := range ps { // accepted, and decided, as they connect
		ps[i] = dialPeer(t, "tcp", addr)
	}
	waitFor(t, 5*time.Second, "six connections", func() bool { return e.Stats().Conns == 6 })
	took := time.Since(start)
	upgraded := 0
	for _, p := range ps {
		resp := p.request(nil)
		switch resp.StatusCode {
		case http.StatusSwitchingProtocols:
			upgraded++
		case http.StatusTooManyRequests:
			if ra := resp.Header.Get("Retry-After"); ra != "1" {
				t.Fatalf("Retry-After %q, want 1", ra)
			}
		default:
			t.Fatalf("got %q", resp.Status)
		}
	}
	if upgraded != 5 {
		t.Fatalf("%d of 6 connections opened in %v upgraded, want 5", upgraded, took)
	}

	time.Sleep(250 * time.Millisecond) // a token comes back after 1/rate: the wait is what is tested
	dialPeer(t, "tcp", addr).expectUpgrade()
	waitFor(t, 5*time.Second, "OnOpen of the sixth", func() bool { return h.opened.Load() >= 6 })
	if st := e.Stats(); st.Rejected != (engine.RejectCounts{Rate: 1}) || h.opened.Load() != 6 {
		t.Fatalf("rejected %+v, Handler saw %d; want 1 refused for the rate, 6 opened", st.Rejected, h.opened.Load())
	}
}

// Unix-socket peers have no address: only MaxConns applies to them.
func TestAdmitUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "wsd.sock")
	h := &seen{}
	e, _ := startEngine(t, h, engine.Options{Addrs: []string{"unix://" + sock},
		MaxConns: 3, MaxConnsPerIP: 1, HandshakeRatePerIP: 1, HandshakeBurstPerIP: 1})
	for range 3 {
		dialPeer(t, "unix", sock).expectUpgrade()
	}
	dialPeer(t, "unix", sock).expectRefused(nil, http.StatusServiceUnavailable, "5")
	waitFor(t, 5*time.Second, "OnOpen of the third", func() bool { return h.opened.Load() >= 3 })
	if st := e.Stats(); st.Rejected != (engine.RejectCounts{MaxConns: 1}) || st.IPTableFull != 0 || h.opened.Load() != 3 {
		t.Fatalf("rejected %+v, %d untracked, Handler saw %d", st.Rejected, st.IPTableFull, h.opened.Load())
	}
}

// A refused connection that never completes its request is closed at its
// handshake deadline, like any other.
func TestAdmitRefusedSilentPeer(t *testing.T) {
	_, addr := startEngine(t, &seen{}, engine.Options{MaxConns: 1, HandshakeTimeout: 200 * time.Millisecond})
	wstest.Connect(t, addr)
	c := wstest.Dial(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	c.ExpectTCPClosed()
}
