package main

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/auth"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// gatePool keeps the only worker of td's check pool (-auth-check-workers
// 1) busy until release is called, at the latest when the test ends: the
// checks submitted meanwhile wait in the pool's queue, so that a test sees
// what the daemon does while a token is being checked, whatever the speed
// of the machine.
func gatePool(t *testing.T, td *testDaemon) (release func()) {
	t.Helper()
	pool := td.daemon.auth.pool
	if w := pool.Stats().Workers; w != 1 {
		t.Fatalf("the check pool has %d workers, want 1 (-auth-check-workers 1)", w)
	}
	gate, running := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	err := pool.Submit(func() (*auth.Identity, error) {
		close(running)
		<-gate
		return nil, errors.New("the test's gate")
	}, func(*auth.Identity, error) {})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-running: // the worker is the gate's: what comes next waits in the queue
	case <-time.After(adminTimeout):
		t.Fatal("the check pool did not run the gate")
	}
	return release
}

// expectOps reads text messages of c, JSON objects whose "op" must be
// each of ops in turn.
func expectOps(t *testing.T, c *wstest.Client, ops ...string) {
	t.Helper()
	for _, op := range ops {
		if m := nextJSON(t, c); m["op"] != op {
			t.Fatalf("got %v, want %s", m, op)
		}
	}
}

// loopFunc is a function run on an event loop (engine.Loop.Post).
type loopFunc func()

func (f loopFunc) Run(*engine.Loop) { f() }

// onlySession returns the session of td's only connection.
func onlySession(t *testing.T, td *testDaemon) *session {
	t.Helper()
	r := &td.daemon.auth.reg
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.byConn) != 1 {
		t.Fatalf("%d connections, want 1", len(r.byConn))
	}
	for _, s := range r.byConn {
		return s
	}
	return nil
}

// TestAuthRefreshHeld: what a client sends after {"op":"refresh"} while
// its ES256 token is checked on the pool (held there by gatePool; the
// pong to a ping sent last shows the server has read everything before
// it) waits for the answer and is handled in order under the new token;
// a refused token closes 4001 and drops it; past maxHeld messages they are
// handled at once under the old token instead (the connection is not
// closed, unlike one still to authenticate), and a refresh sent then takes
// the place of the pending one; a second refresh sent while messages are
// held waits behind the first, its check not started before the first
// one's answer.
func TestAuthRefreshHeld(t *testing.T) {
	k := newTestKeys(t)
	td := esDaemon(t, k, "-auth-check-workers", "1")
	tok := mint(t, k.es, func(c *auth.Claims) { c.Publish = []string{"news.*"} })
	fresh := func(topic string) string {
		return mint(t, k.es, func(c *auth.Claims) {
			c.Topics, c.Publish = append(c.Topics, topic), []string{"news.*", topic}
		})
	}
	dial := func(t *testing.T, tok string) *wstest.Client {
		c := wstest.Dial(t, td.addr)
		c.Handshake("/?token=" + tok)
		return c
	}
	ping := wstest.Ping([]byte("read"))
	t.Run("refresh, subscribe, publish", func(t *testing.T) {
		c := dial(t, tok)
		release := gatePool(t, td)
		c.WriteFrames(rawJSON(t, map[string]string{"op": "refresh", "token": fresh("fresh.a")}),
			rawJSON(t, map[string]string{"op": "subscribe", "topic": "fresh.a"}),
			rawJSON(t, map[string]string{"op": "publish", "topic": "fresh.a", "data": "hi"}),
			ping)
		c.ExpectPong([]byte("read")) // nothing answered before it: the subscribe and publish wait
		release()
		expectOps(t, c, "refreshed", "subscribed")
		expectPublished(t, c, "hi")
	})
	t.Run("refused", func(t *testing.T) {
		sub := dial(t, tok)
		sub.WriteFrames(rawJSON(t, map[string]string{"op": "subscribe", "topic": "news.x"}))
		expectOps(t, sub, "subscribed")
		other, _, err := auth.GenerateKey(auth.AlgES)
		if err != nil {
			t.Fatal(err)
		}
		bad := mint(t, auth.Config{Alg: auth.AlgES, Key: other}, nil)
		c := dial(t, tok)
		release := gatePool(t, td)
		c.WriteFrames(rawJSON(t, map[string]string{"op": "refresh", "token": bad}),
			rawJSON(t, map[string]string{"op": "publish", "topic": "news.x", "data": "held"}),
			ping)
		c.ExpectPong([]byte("read"))
		release()
		if code, reason := c.ExpectClose(int(closeAuthFailed)); !strings.Contains(reason, "bad signature") {
			t.Fatalf("close %d %q, want the reason bad signature", code, reason)
		}
		// The held publish was dropped: the subscriber's next message is
		// one published after the close.
		td.publish(t, `{"topic":"news.x","data":"sentinel"}`)
		sub.ExpectText("sentinel")
	})
	// Past maxHeld messages, a refreshing connection is not closed: what it
	// sent is handled at once, in order, under the token it has.
	// passedThrough reads what n publishes to c's own topic bring before
	// the pong to ping: their acks, and their messages in order.
	passedThrough := func(t *testing.T, c *wstest.Client, n int) {
		t.Helper()
		acks, next, pong := 0, 0, false
		for acks < n || next < n || !pong {
			f := c.ExpectFrame()
			switch p := string(f.Payload); {
			case f.Opcode == wstest.OpPong && p == "read":
				pong = true
			case strings.Contains(p, `"op":"published"`):
				acks++
			case p == "m"+itoa(int64(next)):
				next++
			default:
				t.Fatalf("got %v after %d acks and %d messages, want m%d, an ack or the pong", f, acks, next, next)
			}
		}
	}
	// overflowing returns a connection subscribed to news.a, with the check
	// pool held, and the frames of a refresh to a token that also grants
	// topic, then of maxHeld+1 publishes to news.a, "m0", "m1"...
	overflowing := func(t *testing.T, topic string) (c *wstest.Client, release func(), frames []wstest.Frame) {
		c = dial(t, tok)
		c.WriteFrames(rawJSON(t, map[string]string{"op": "subscribe", "topic": "news.a"}))
		expectOps(t, c, "subscribed")
		release = gatePool(t, td)
		frames = []wstest.Frame{rawJSON(t, map[string]string{"op": "refresh", "token": fresh(topic)})}
		for i := range maxHeld + 1 {
			frames = append(frames, rawJSON(t, map[string]string{"op": "publish", "topic": "news.a", "data": "m" + itoa(int64(i))}))
		}
		return c, release, frames
	}
	t.Run("too many", func(t *testing.T) {
		c, release, frames := overflowing(t, "fresh.d")
		c.WriteFrames(append(frames, ping)...)
		passedThrough(t, c, maxHeld+1) // before the answer: under the old token
		release()
		expectOps(t, c, "refreshed")
		c.WriteFrames(rawJSON(t, map[string]string{"op": "subscribe", "topic": "fresh.d"}))
		expectOps(t, c, "subscribed")
	})
	t.Run("refresh after too many", func(t *testing.T) {
		// A refresh sent once the messages pass takes the place of the one
		// being checked: what follows it waits for its answer, and the
		// first one's answer, stale, is not applied.
		c, release, frames := overflowing(t, "fresh.e")
		frames = append(frames, rawJSON(t, map[string]string{"op": "refresh", "token": fresh("fresh.f")}),
			rawJSON(t, map[string]string{"op": "subscribe", "topic": "fresh.f"}), ping)
		c.WriteFrames(frames...)
		passedThrough(t, c, maxHeld+1)
		if q := td.daemon.auth.pool.Stats().Queued; q != 2 {
			t.Fatalf("%d checks queued, want 2", q)
		}
		release()
		expectOps(t, c, "refreshed", "subscribed")
		c.WriteFrames(rawJSON(t, map[string]string{"op": "whoami"}))
		expectOps(t, c, "whoami") // and no second "refreshed" before it
	})
	t.Run("refresh behind refresh", func(t *testing.T) {
		c := dial(t, tok)
		release := gatePool(t, td)
		c.WriteFrames(rawJSON(t, map[string]string{"op": "refresh", "token": fresh("fresh.b")}),
			rawJSON(t, map[string]string{"op": "refresh", "token": fresh("fresh.c")}),
			rawJSON(t, map[string]string{"op": "subscribe", "topic": "fresh.c"}),
			ping)
		c.ExpectPong([]byte("read"))
		// One check waits behind the gate: the second refresh is held, not
		// checked beside the first.
		if q := td.daemon.auth.pool.Stats().Queued; q != 1 {
			t.Fatalf("%d checks queued, want 1", q)
		}
		release()
		expectOps(t, c, "refreshed", "refreshed", "subscribed")
	})
}

// TestAuthRefreshGraceChecked: the end of the refresh grace does not close
// a connection whose refresh is being checked off the loop; the answer
// decides, and an accepted token keeps it open.
func TestAuthRefreshGraceChecked(t *testing.T) {
	k := newTestKeys(t)
	td := esDaemon(t, k, "-auth-check-workers", "1", "-auth-refresh-grace", "1m")
	old := mint(t, k.es, func(c *auth.Claims) { c.ExpiresAt = time.Now().Add(-5 * time.Second) }) // accepted: within the leeway
	fresh := mint(t, k.es, func(c *auth.Claims) { c.Topics = append(c.Topics, "fresh.a") })
	c := wstest.Dial(t, td.addr)
	c.Handshake("/?token=" + old)
	expectOps(t, c, "expired")
	release := gatePool(t, td)
	c.WriteFrames(rawJSON(t, map[string]string{"op": "refresh", "token": fresh}), wstest.Ping([]byte("read")))
	c.ExpectPong([]byte("read"))
	// The grace ends, and its timer fires, while the refresh is checked:
	// on the loop, the grace is moved into the past rather than waited for,
	// and the timer run.
	s := onlySession(t, td)
	open := make(chan bool, 1)
	s.c.Loop().Post(loopFunc(func() {
		s.expired -= int64(time.Minute)
		(&authHandler{g: td.daemon.auth}).OnTimer(s.c)
		open <- s.c.IsOpen()
	}))
	select {
	case ok := <-open:
		if !ok {
			t.Fatal("closed at the end of the grace while its refresh was checked")
		}
	case <-time.After(adminTimeout):
		t.Fatal("the loop did not run the timer")
	}
	release()
	expectOps(t, c, "refreshed")
	c.WriteFrames(rawJSON(t, map[string]string{"op": "subscribe", "topic": "fresh.a"}))
	expectOps(t, c, "subscribed")
}

// fillPool fills the queue of td's check pool behind gatePool's gate, so
// that the next check is refused with auth.ErrBusy until release.
func fillPool(t *testing.T, td *testDaemon) (release func()) {
	t.Helper()
	release = gatePool(t, td)
	pool := td.daemon.auth.pool
	for n := 0; ; n++ {
		err := pool.Submit(func() (*auth.Identity, error) { return nil, errors.New("a filler") }, func(*auth.Identity, error) {})
		if errors.Is(err, auth.ErrBusy) {
			return release
		}
		if err != nil || n > 1<<16 {
			t.Fatalf("filling the check pool: %v after %d checks", err, n)
		}
	}
}

// TestAuthCheckBusy: a token the check pool is too busy to take is not
// refused as a bad one. A refresh gets an "unavailable" error, the
// connection keeps its token (and may refresh again once the pool has
// room); an auth message closes with 1013, try again later, not 4001.
func TestAuthCheckBusy(t *testing.T) {
	k := newTestKeys(t)
	td := esDaemon(t, k, "-auth-check-workers", "1")
	tok := mint(t, k.es, nil)
	fresh := mint(t, k.es, func(c *auth.Claims) { c.Topics = append(c.Topics, "fresh.a") })
	t.Run("refresh", func(t *testing.T) {
		c := wstest.Dial(t, td.addr)
		c.Handshake("/?token=" + tok)
		release := fillPool(t, td)
		c.WriteFrames(rawJSON(t, map[string]string{"op": "refresh", "token": fresh}))
		if m := nextJSON(t, c); m["op"] != "error" || m["code"] != "unavailable" {
			t.Fatalf("refresh while the pool is full: %v, want an unavailable error", m)
		}
		c.WriteFrames(rawJSON(t, map[string]string{"op": "subscribe", "topic": "fresh.a"}))
		if m := nextJSON(t, c); m["op"] != "error" || m["code"] != "forbidden" {
			t.Fatalf("subscribe under the old token: %v, want forbidden", m)
		}
		release()
		wstest.WaitFor(t, adminTimeout, "the check pool to drain", func() bool {
			st := td.daemon.auth.pool.Stats()
			return st.Queued == 0 && st.Running == 0
		})
		c.WriteFrames(rawJSON(t, map[string]string{"op": "refresh", "token": fresh}),
			rawJSON(t, map[string]string{"op": "subscribe", "topic": "fresh.a"}))
		expectOps(t, c, "refreshed", "subscribed")
	})
	t.Run("auth message", func(t *testing.T) {
		c := wstest.Dial(t, td.addr)
		c.Handshake("/")
		release := fillPool(t, td)
		defer release()
		c.WriteFrames(rawJSON(t, map[string]string{"op": "auth", "token": tok}))
		if code, reason := c.ExpectClose(int(codec.StatusTryAgainLater)); !strings.Contains(reason, "busy") {
			t.Fatalf("close %d %q, want 1013 busy", code, reason)
		}
	})
}
