package engine_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// deferred is an upgrade OnUpgrade deferred, with what the test needs of
// its request (copied: the Request is gone once OnUpgrade returns).
type deferred struct {
	p     *engine.Pending
	token string
}

// deferAll returns an OnUpgrade that defers every upgrade and hands it to
// the test on the returned channel.
func deferAll(n int) (func(*engine.Request) *engine.Response, chan deferred) {
	ch := make(chan deferred, n)
	return func(r *engine.Request) *engine.Response {
		ch <- deferred{p: r.Defer(), token: r.Header("X-Token")}
		return &engine.Response{Status: http.StatusTeapot} // ignored after Defer
	}, ch
}

// deferEcho echoes, prefixing each reply with the connection's Context, and
// counts the connections the Handler sees.
type deferEcho struct {
	opened, closed, messages atomic.Int64
}

func (h *deferEcho) OnOpen(*engine.Conn)         { h.opened.Add(1) }
func (h *deferEcho) OnClose(*engine.Conn, error) { h.closed.Add(1) }
func (h *deferEcho) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	h.messages.Add(1)
	_ = c.Write(op, append([]byte(fmt.Sprint(c.Context(), ":")), p...))
}

// sendRequest writes an upgrade request with token in X-Token, followed by
// extra bytes in the same write.
func sendRequest(c *wstest.Client, token string, extra []byte) {
	c.T.Helper()
	c.Key = wstest.NewKey()
	hs := wstest.WithHeader(wstest.UpgradeHeaders("wsd.test", c.Key), "X-Token", token)
	c.Write(append(wstest.BuildRequest("GET", "/", hs), extra...))
}

func next(t *testing.T, ch chan deferred) deferred {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("OnUpgrade was not called")
		return deferred{}
	}
}

// TestUpgradeDeferAnswers: every way of answering a deferred upgrade, from
// another goroutine. The frame the client pipelines after its request is
// held, unread, until the answer: it reaches the Handler only after an
// Accept, with the Context the Accept gave.
func TestUpgradeDeferAnswers(t *testing.T) {
	cases := []struct {
		name   string
		answer func(p *engine.Pending)
		status int    // 101 for an upgrade
		body   string // of a rejection
	}{
		{"accept", func(p *engine.Pending) { p.Accept("alice") }, http.StatusSwitchingProtocols, ""},
		{"reject 401", func(p *engine.Pending) {
			p.Reject(&engine.Response{Status: http.StatusUnauthorized, Body: []byte("token expired\n")})
		}, http.StatusUnauthorized, "token expired\n"},
		{"reject nil", func(p *engine.Pending) { p.Reject(nil) }, http.StatusForbidden, ""},
		{"accept then reject", func(p *engine.Pending) {
			if !p.Accept("bob") || p.Reject(nil) || p.Accept("eve") {
				panic("a second answer was taken")
			}
		}, http.StatusSwitchingProtocols, ""},
		{"reject then accept", func(p *engine.Pending) {
			if !p.Reject(&engine.Response{Status: http.StatusUnauthorized, Body: []byte("no\n")}) || p.Accept("eve") {
				panic("a second answer was taken")
			}
		}, http.StatusUnauthorized, "no\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hook, ch := deferAll(1)
			h := &deferEcho{}
			e, addr := startEngine(t, h, engine.Options{OnUpgrade: hook, EventLoops: 1})
			c := wstest.Dial(t, addr)
			sendRequest(c, "t1", wstest.Text("early").Bytes())
			d := next(t, ch)
			if d.token != "t1" {
				t.Fatalf("token %q", d.token)
			}
			c.ExpectSilence(100 * time.Millisecond) // nothing answered, nothing echoed while pending
			if h.messages.Load() != 0 || h.opened.Load() != 0 {
				t.Fatal("the Handler saw the connection before the answer")
			}
			go tc.answer(d.p)
			if tc.status == http.StatusSwitchingProtocols {
				c.ExpectUpgrade(c.Key)
				want := "alice:early"
				if tc.name == "accept then reject" {
					want = "bob:early"
				}
				c.ExpectText(want)
				c.WriteFrames(wstest.Text("later"))
				c.ExpectText(want[:strings.IndexByte(want, ':')] + ":later")
				c.CloseHandshake()
				return
			}
			resp, err := c.ReadResponse()
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(body) != tc.body || !resp.Close {
				t.Fatalf("got %q %q (close %v), want %d %q and Connection: close", resp.Status, body, resp.Close, tc.status, tc.body)
			}
			c.ExpectTCPClosed()
			c.Conn.Close() // the server waits for the peer to go after its answer (Conn.linger)
			waitFor(t, 5*time.Second, "the connection to go", func() bool { return e.Stats().Conns == 0 })
			if h.opened.Load() != 0 || h.messages.Load() != 0 {
				t.Fatal("a rejected connection reached the Handler")
			}
		})
	}
}

// TestUpgradeDeferAtOnce: a Pending answered inside OnUpgrade itself (a
// check that found its answer in a cache, or a full queue) works as a
// deferred one.
func TestUpgradeDeferAtOnce(t *testing.T) {
	h := &deferEcho{}
	_, addr := startEngine(t, h, engine.Options{OnUpgrade: func(r *engine.Request) *engine.Response {
		p := r.Defer()
		if r.Header("X-Token") == "good" {
			p.Accept("at-once")
		} else {
			p.Reject(&engine.Response{Status: http.StatusServiceUnavailable, Body: []byte("busy\n")})
		}
		return nil
	}})
	c := wstest.Dial(t, addr)
	sendRequest(c, "good", nil)
	c.ExpectUpgrade(c.Key)
	c.WriteFrames(wstest.Text("x"))
	c.ExpectText("at-once:x")

	c2 := wstest.Dial(t, addr)
	sendRequest(c2, "bad", nil)
	resp, err := c2.ReadResponse()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("got %v, %v; want 503", resp, err)
	}
}

// TestUpgradeDeferClosedWhilePending: a client that goes away while its
// upgrade is pending leaves nothing behind, and the answer that comes later
// does nothing (the Handler never hears of the connection).
func TestUpgradeDeferClosedWhilePending(t *testing.T) {
	for _, answer := range []string{"accept", "reject"} {
		t.Run(answer, func(t *testing.T) {
			hook, ch := deferAll(1)
			h := &deferEcho{}
			e, addr := startEngine(t, h, engine.Options{OnUpgrade: hook})
			c := wstest.Dial(t, addr)
			sendRequest(c, "t", nil)
			d := next(t, ch)
			if d.p.Gone() {
				t.Fatal("Gone before the client closed")
			}
			c.Conn.Close()
			waitFor(t, 5*time.Second, "the connection to go", func() bool { return e.Stats().Conns == 0 })
			if !d.p.Gone() {
				t.Fatal("Gone is false after the connection closed")
			}
			var ok bool
			if answer == "accept" {
				ok = d.p.Accept("late")
			} else {
				ok = d.p.Reject(nil)
			}
			if !ok {
				t.Fatal("the first answer was refused")
			}
			// The answer is a task on the loop: a connection after it on the
			// same engine proves the loop has run it.
			c2 := wstest.Dial(t, addr)
			sendRequest(c2, "t2", nil)
			next(t, ch).p.Accept("second")
			c2.ExpectUpgrade(c2.Key)
			c2.WriteFrames(wstest.Text("y"))
			c2.ExpectText("second:y")
			if h.opened.Load() != 1 {
				t.Fatalf("the Handler saw %d connections, want 1 (the second)", h.opened.Load())
			}
		})
	}
}

// TestUpgradeDeferMany: 200 upgrades pending at once on two loops, answered
// from several goroutines in random order, half accepted and half
// rejected: each client gets its own answer, and the accepted ones carry
// their own Context.
func TestUpgradeDeferMany(t *testing.T) {
	const n = 200
	hook, ch := deferAll(n)
	h := &deferEcho{}
	e, addr := startEngine(t, h, engine.Options{OnUpgrade: hook, EventLoops: 2})
	clients := make([]*wstest.Client, n)
	for i := range clients {
		clients[i] = wstest.Dial(t, addr)
		sendRequest(clients[i], fmt.Sprint(i), wstest.Text("hi").Bytes())
	}
	pending := make([]deferred, 0, n)
	for range n {
		pending = append(pending, next(t, ch))
	}
	rand.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				d := pending[i]
				var id int
				fmt.Sscan(d.token, &id)
				if id%2 == 0 {
					d.p.Accept(d.token)
				} else {
					d.p.Reject(&engine.Response{Status: http.StatusUnauthorized, Body: []byte("odd " + d.token)})
				}
			}
		})
	}
	wg.Wait()
	for i, c := range clients {
		if i%2 == 0 {
			c.ExpectUpgrade(c.Key)
			c.ExpectText(fmt.Sprint(i, ":hi"))
			continue
		}
		resp, err := c.ReadResponse()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || string(body) != fmt.Sprint("odd ", i) {
			t.Fatalf("client %d: %q %q", i, resp.Status, body)
		}
	}
	if got := e.Stats().Upgrades; got != n/2 {
		t.Fatalf("%d upgrades, want %d", got, n/2)
	}
}

// TestUpgradeDeferTimeout: an upgrade not answered by the handshake
// deadline is answered 503 and closed; the answer that comes after does
// nothing.
func TestUpgradeDeferTimeout(t *testing.T) {
	hook, ch := deferAll(1)
	h := &deferEcho{}
	e, addr := startEngine(t, h, engine.Options{OnUpgrade: hook, HandshakeTimeout: 300 * time.Millisecond})
	c := wstest.Dial(t, addr)
	start := time.Now()
	sendRequest(c, "slow", nil)
	d := next(t, ch)
	resp, err := c.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not answered in time") {
		t.Fatalf("got %q %q, want 503", resp.Status, body)
	}
	// The deadline is checked on the engine's tick (a quarter of the
	// timeout): never before it, and not long after it on a loaded machine.
	if waited < 250*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("answered after %v, want about 300 ms", waited)
	}
	c.ExpectTCPClosed()
	c.Conn.Close()
	waitFor(t, 5*time.Second, "the connection to go", func() bool { return e.Stats().Conns == 0 })
	if !d.p.Accept("too late") {
		t.Fatal("the first answer was refused")
	}
	if h.opened.Load() != 0 {
		t.Fatal("the Handler saw a connection that timed out")
	}
}

// TestUpgradeDeferLoopFree: while upgrades wait for a slow check, the loop
// they share (one loop here) serves other connections: an echo completes
// while the check is blocked.
func TestUpgradeDeferLoopFree(t *testing.T) {
	release := make(chan struct{})
	var checks sync.WaitGroup
	t.Cleanup(checks.Wait)
	t.Cleanup(func() { close(release) })
	h := &deferEcho{}
	_, addr := startEngine(t, h, engine.Options{EventLoops: 1, OnUpgrade: func(r *engine.Request) *engine.Response {
		if r.Header("X-Token") == "" {
			return nil
		}
		p := r.Defer()
		checks.Go(func() {
			<-release // a check that takes as long as the test wants
			p.Reject(nil)
		})
		return nil
	}})
	for i := range 5 {
		sendRequest(wstest.Dial(t, addr), fmt.Sprint("slow", i), nil)
	}
	fast := wstest.Connect(t, addr)
	fast.WriteFrames(wstest.Text("ping"))
	fast.ExpectText("<nil>:ping")
	fast.CloseHandshake()
}

// TestUpgradeDeferHeldInputCap: a client that keeps sending while its
// upgrade is pending is closed once it has sent more than the cap, without
// an answer.
func TestUpgradeDeferHeldInputCap(t *testing.T) {
	hook, ch := deferAll(1)
	e, addr := startEngine(t, &deferEcho{}, engine.Options{OnUpgrade: hook})
	c := wstest.Dial(t, addr)
	sendRequest(c, "t", nil)
	d := next(t, ch)
	junk := wstest.Text(strings.Repeat("x", 1000)).Bytes()
	for i := 0; i < 100; i++ { // 100 KB, well over the cap
		if c.TryWrite(junk) != nil {
			break
		}
	}
	c.ExpectTCPClosed()
	waitFor(t, 5*time.Second, "the connection to go", func() bool { return e.Stats().Conns == 0 })
	d.p.Accept("late")
}

// TestUpgradeDeferOutsideOnUpgrade: Defer panics outside OnUpgrade (in
// HTTPHandler here): there is no upgrade to defer.
func TestUpgradeDeferOutsideOnUpgrade(t *testing.T) {
	got := make(chan any, 1)
	_, addr := startEngine(t, &deferEcho{}, engine.Options{HTTPHandler: func(r *engine.Request) *engine.Response {
		defer func() { got <- recover() }()
		r.Defer()
		return nil
	}})
	c := wstest.Dial(t, addr)
	c.Write(wstest.BuildRequest("GET", "/", []wstest.Header{{Name: "Host", Value: "x"}}))
	select {
	case v := <-got:
		if v == nil || !strings.Contains(fmt.Sprint(v), "outside") {
			t.Fatalf("recovered %v, want the panic", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("HTTPHandler not called")
	}
}
