package engine_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// opener hands every opened connection to the test.
type opener struct {
	engine.NopHandler
	opened chan *engine.Conn
}

func (h *opener) OnOpen(c *engine.Conn) { h.opened <- c }

// TestPathHeaderAnyGoroutine reads Path and Header from the test goroutine
// while the loop records the close reason of the same connection: under
// -race this fails if the two share an unsynchronized field.
func TestPathHeaderAnyGoroutine(t *testing.T) {
	for _, keep := range []bool{false, true} {
		h := &opener{opened: make(chan *engine.Conn, 1)}
		_, addr := startEngine(t, h, engine.Options{KeepPath: keep, KeepHeaders: keep})
		cl := wstest.Dial(t, addr)
		cl.Handshake("/room?x=1")
		c := <-h.opened
		wantPath, wantHost := "", ""
		if keep {
			wantPath, wantHost = "/room?x=1", addr
		}
		if p, host := c.Path(), c.Header("Host"); p != wantPath || host != wantHost {
			t.Fatalf("keep=%v: Path() = %q, Header(Host) = %q; want %q, %q", keep, p, host, wantPath, wantHost)
		}
		cl.WriteFrames(wstest.Close(4000, "a reason the loop keeps"))
		done := make(chan struct{})
		go func() { // reads concurrent with the loop's handling of the close
			defer close(done)
			for range 200 {
				_, _ = c.Path(), c.Header("Host")
			}
		}()
		cl.ExpectClose(4000)
		<-done
		if p := c.Path(); p != wantPath {
			t.Fatalf("keep=%v: Path() after close = %q, want %q", keep, p, wantPath)
		}
	}
}

// relay writes every message from one connection to another: the
// embedder's code that makes a write to a second connection fail inside
// OnMessage.
type relay struct {
	mu     sync.Mutex
	byPath map[string]*engine.Conn

	inMessage bool // loop only: OnMessage is on the stack
	nested    chan bool
	writeErr  chan error
}

func (r *relay) OnOpen(c *engine.Conn) {
	r.mu.Lock()
	r.byPath[c.Path()] = c
	r.mu.Unlock()
}

func (r *relay) conn(path string) *engine.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byPath[path]
}

func (r *relay) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	r.inMessage = true
	defer func() { r.inMessage = false }()
	r.writeErr <- r.conn("/to").Write(op, p)
}

func (r *relay) OnClose(c *engine.Conn, err error) {
	if c.Path() == "/to" {
		r.nested <- r.inMessage
	}
}

// TestOnCloseNotNested: OnMessage(A) writes to B whose peer has reset; gnet
// closes B inside that write. B's OnClose must run after OnMessage(A)
// returns, not nested in it ("one at a time per loop").
func TestOnCloseNotNested(t *testing.T) {
	r := &relay{byPath: map[string]*engine.Conn{}, nested: make(chan bool, 1), writeErr: make(chan error, 1)}
	_, addr := startEngine(t, r, engine.Options{EventLoops: 1, KeepPath: true})
	to := wstest.Dial(t, addr)
	to.Handshake("/to")
	from := wstest.Dial(t, addr)
	from.Handshake("/from")
	waitFor(t, 5*time.Second, "both connections open", func() bool { return r.conn("/from") != nil && r.conn("/to") != nil })

	// Hold the loop while A's message arrives and then B's peer resets, so
	// that the loop sees A's input first and finds B's socket reset when it
	// writes to it.
	release := hold(r.conn("/from").Loop())
	from.WriteFrames(wstest.Text("to B"))
	tc := to.Conn.(*net.TCPConn)
	if err := tc.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	_ = tc.Close() // RST
	close(release)

	select {
	case err := <-r.writeErr:
		if err == nil {
			t.Log("the write to the reset connection was taken by the kernel; the close came from the read side")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnMessage did not run")
	}
	select {
	case nested := <-r.nested:
		if nested {
			t.Fatal("OnClose of the reset connection ran inside OnMessage of another connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnClose of the reset connection did not run")
	}
}
