package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wsdproject/wsd/auth"
	"github.com/wsdproject/wsd/internal/wstest"
)

// esDaemon runs push mode with -auth required and ES256 tokens, which are
// checked off the event loop.
func esDaemon(t *testing.T, k *testKeys, args ...string) *testDaemon {
	base := []string{"-mode", "push", "-auth", "required", "-auth-jwt-key", k.esPublicFile, "-auth-jwt-alg", "ES"}
	return startWSD(t, append(base, args...)...)
}

// rawJSON is a text frame of v.
func rawJSON(t *testing.T, v any) wstest.Frame {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return wstest.Msg(wstest.OpText, b)
}

// nextJSON reads the next frame of c, which must be a text message, as a
// JSON object.
func nextJSON(t *testing.T, c *wstest.Client) map[string]any {
	t.Helper()
	f := c.ExpectFrame()
	if f.Opcode != wstest.OpText {
		t.Fatalf("got %v, want a text message", f)
	}
	var m map[string]any
	if err := json.Unmarshal(f.Payload, &m); err != nil {
		t.Fatalf("%q: %v", f.Payload, err)
	}
	return m
}

// expectPublished reads the ack of c's publish of data and the message
// itself, which reaches c too when it subscribed first, in either order.
func expectPublished(t *testing.T, c *wstest.Client, data string) {
	t.Helper()
	var acked, got bool
	for range 2 {
		f := c.ExpectFrame()
		switch {
		case string(f.Payload) == data:
			got = true
		case strings.Contains(string(f.Payload), `"op":"published"`):
			acked = true
		default:
			t.Fatalf("got %v, want the publish's ack and its message", f)
		}
	}
	if !acked || !got {
		t.Fatalf("ack %v, message %v", acked, got)
	}
}

// TestAuthHeldMessages: what a client sends after {"op":"auth"} and before
// its answer, in the same write, while the ES256 token is checked on the
// pool, waits for the check and is handled in order after it; a refused
// token closes 4001 and drops it; more than maxHeld messages close 4000.
func TestAuthHeldMessages(t *testing.T) {
	k := newTestKeys(t)
	td := esDaemon(t, k)
	tok := mint(t, k.es, func(c *auth.Claims) { c.Publish = []string{"news.*"} })
	dial := func(t *testing.T) *wstest.Client {
		c := wstest.Dial(t, td.addr)
		t.Cleanup(func() { c.Conn.Close() })
		c.Handshake("/")
		return c
	}
	t.Run("auth, subscribe, publish", func(t *testing.T) {
		before := td.daemon.auth.pool.Stats().Completed
		c := dial(t)
		c.WriteFrames(rawJSON(t, map[string]string{"op": "auth", "token": tok}),
			rawJSON(t, map[string]string{"op": "subscribe", "topic": "news.a"}),
			rawJSON(t, map[string]string{"op": "publish", "topic": "news.a", "data": "hi"}))
		if m := nextJSON(t, c); m["op"] != "authenticated" || m["user"] != "alice" {
			t.Fatalf("first answer %v, want authenticated", m)
		}
		if m := nextJSON(t, c); m["op"] != "subscribed" || m["topic"] != "news.a" {
			t.Fatalf("second answer %v, want subscribed", m)
		}
		// The publish's ack and the message itself, which reaches the
		// sender too (its subscription came first).
		expectPublished(t, c, "hi")
		if done := td.daemon.auth.pool.Stats().Completed; done == before {
			t.Fatal("the token was not checked on the pool")
		}
	})
	t.Run("auth held behind auth", func(t *testing.T) {
		c := dial(t)
		c.WriteFrames(rawJSON(t, map[string]string{"op": "auth", "token": tok}),
			rawJSON(t, map[string]string{"op": "whoami"}),
			rawJSON(t, map[string]string{"op": "auth", "token": tok}),
			rawJSON(t, map[string]string{"op": "subscribe", "topic": "news.b"}))
		for _, want := range []string{"authenticated", "whoami", "authenticated", "subscribed"} {
			if m := nextJSON(t, c); m["op"] != want {
				t.Fatalf("got %v, want %s", m, want)
			}
		}
	})
	t.Run("refused token", func(t *testing.T) {
		other, _, err := auth.GenerateKey(auth.AlgES)
		if err != nil {
			t.Fatal(err)
		}
		bad := mint(t, auth.Config{Alg: auth.AlgES, Key: other}, nil)
		c := dial(t)
		c.WriteFrames(rawJSON(t, map[string]string{"op": "auth", "token": bad}),
			rawJSON(t, map[string]string{"op": "subscribe", "topic": "news.a"}))
		if code, reason := c.ExpectClose(int(closeAuthFailed)); !strings.Contains(reason, "bad signature") {
			t.Fatalf("close %d %q, want the reason bad signature", code, reason)
		}
	})
	t.Run("too many", func(t *testing.T) {
		frames := []wstest.Frame{rawJSON(t, map[string]string{"op": "auth", "token": tok})}
		for range maxHeld + 1 {
			frames = append(frames, rawJSON(t, map[string]string{"op": "subscribe", "topic": "news.a"}))
		}
		c := dial(t)
		c.WriteFrames(frames...)
		if _, reason := c.ExpectClose(int(closeAuthBadMessage)); !strings.Contains(reason, "too much sent") {
			t.Fatalf("reason %q", reason)
		}
	})
}

// TestAuthHeldBytes: the held messages are bounded in bytes too, by
// -max-message-size.
func TestAuthHeldBytes(t *testing.T) {
	k := newTestKeys(t)
	td := esDaemon(t, k, "-max-message-size", "2KiB")
	c := wstest.Dial(t, td.addr)
	t.Cleanup(func() { c.Conn.Close() })
	c.Handshake("/")
	pad := strings.Repeat("x", 1500)
	c.WriteFrames(rawJSON(t, map[string]string{"op": "auth", "token": mint(t, k.es, nil)}),
		rawJSON(t, map[string]string{"op": "whoami", "pad": pad}),
		rawJSON(t, map[string]string{"op": "whoami", "pad": pad}))
	if _, reason := c.ExpectClose(int(closeAuthBadMessage)); !strings.Contains(reason, "too much sent") {
		t.Fatalf("reason %q", reason)
	}
}

// poolWorkers counts the goroutines running an auth.Pool's workers.
func poolWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "auth.(*Pool).work(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestAuthPoolStopped: the daemon's shutdown stops the check pool: its
// workers are gone and a check submitted after it is refused.
func TestAuthPoolStopped(t *testing.T) {
	k := newTestKeys(t)
	before := poolWorkers()
	td := esDaemon(t, k, "-auth-check-workers", "3")
	if status, body := td.upgradeAnswer(t, "/", bearer(mint(t, k.es, nil))); status != 101 {
		t.Fatalf("ES256 upgrade: %d %q", status, body)
	}
	if n := poolWorkers(); n < before+3 {
		t.Fatalf("%d pool workers running, want at least %d", n, before+3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := td.daemon.shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	err := td.daemon.auth.pool.Submit(func() (*auth.Identity, error) { return nil, nil }, func(*auth.Identity, error) {})
	if !errors.Is(err, auth.ErrClosed) {
		t.Fatalf("Submit after shutdown: %v, want ErrClosed", err)
	}
	// Close returned once the workers were done; their goroutines end
	// just after.
	deadline := time.Now().Add(adminTimeout)
	for poolWorkers() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d pool workers still running after shutdown, %d before the daemon", poolWorkers(), before)
		}
		runtime.Gosched()
	}
}

// TestAuthRefusedLog: the "upgrade refused" line names the client's
// address and the reason, never the credential, at most once a second.
func TestAuthRefusedLog(t *testing.T) {
	k := newTestKeys(t)
	cfg, _, err := loadConfig([]string{"-mode", "push", "-auth", "required", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "HS"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := newAuthn(cfg, func(id uint64) string { return "" })
	defer g.close()
	core, logs := observer.New(zapcore.DebugLevel)
	g.log = zap.New(core)
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4242}
	tok := "not.a.jwt"
	_, verr := g.cfg.jwt.Verify(tok, time.Now())
	for range 3 {
		if resp := g.refused(remote, verr, ""); resp.Status != 401 {
			t.Fatalf("status %d", resp.Status)
		}
	}
	entries := logs.FilterMessage("upgrade refused").All()
	if len(entries) != 1 {
		t.Fatalf("%d lines for 3 refusals within a second, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["remote"] != "192.0.2.7:4242" || f["reason"] != "malformed token" || f["status"] != int64(401) {
		t.Fatalf("fields %v", f)
	}
	// A second later the next refusal is logged, with the count of those
	// held back.
	g.refusedLog.last.Add(-int64(time.Second))
	g.refused(remote, verr, "")
	entries = logs.FilterMessage("upgrade refused").All()
	if len(entries) != 2 || entries[1].ContextMap()["suppressed_since_last_log"] != int64(2) {
		t.Fatalf("after a second: %d lines, last %v", len(entries), entries[len(entries)-1].ContextMap())
	}
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, tok) {
				t.Fatalf("a log line holds the token: %v", e.ContextMap())
			}
		}
	}
}

// TestAuthChatReadOnly: in chat mode a token whose "topics" allow the room
// but whose "publish" does not joins it read-only: its messages are
// answered with a forbidden error and reach nobody, the connection stays
// open and gets the room's messages.
func TestAuthChatReadOnly(t *testing.T) {
	k := newTestKeys(t)
	td := startWSD(t, "-mode", "chat", "-auth", "required", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "HS")
	talker := mint(t, k.hs, func(c *auth.Claims) { c.Topics, c.Publish = []string{"room.*"}, []string{"room.*"} })
	reader := mint(t, k.hs, func(c *auth.Claims) {
		c.Subject, c.Topics, c.Publish = "bob", []string{"room.*"}, []string{"chat.{sub}"}
	})
	a := td.dialHeader(t, "/room.a", bearer(talker))
	r := td.dialHeader(t, "/room.a", bearer(reader))
	if err := r.WriteMessage(websocket.TextMessage, []byte("hi from bob")); err != nil {
		t.Fatal(err)
	}
	if m := readMap(t, r); m["op"] != "error" || m["code"] != "forbidden" || m["topic"] != "room.a" {
		t.Fatalf("bob's message: %v, want a forbidden error", m)
	}
	if err := a.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*websocket.Conn{"alice": a, "bob": r} {
		_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "hello" {
			t.Fatalf("%s got %q, %v; want alice's hello (and never bob's message)", name, p, err)
		}
	}
}
