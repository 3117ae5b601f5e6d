package engine_test

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// recorder remembers connections and how they closed.
type recorder struct {
	engine.NopHandler
	mu     sync.Mutex
	conns  []*engine.Conn
	closed map[uint64]*engine.CloseError
	opened chan *engine.Conn
}

func newRecorder() *recorder {
	return &recorder{closed: map[uint64]*engine.CloseError{}, opened: make(chan *engine.Conn, 64)}
}

func (r *recorder) OnOpen(c *engine.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	r.opened <- c
}

func (r *recorder) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) { _ = c.Write(op, p) }

func (r *recorder) OnClose(c *engine.Conn, err error) {
	var ce *engine.CloseError
	if !errors.As(err, &ce) {
		panic("OnClose error is not a *CloseError")
	}
	r.mu.Lock()
	r.closed[c.ID()] = ce
	r.mu.Unlock()
}

func (r *recorder) closeOf(id uint64) *engine.CloseError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed[id]
}

func (r *recorder) next(t *testing.T) *engine.Conn {
	t.Helper()
	select {
	case c := <-r.opened:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection opened")
		return nil
	}
}

// Send from many goroutines: every frame arrives, and each goroutine's
// frames arrive in the order it sent them.
func TestEngineSendOrderFromGoroutines(t *testing.T) {
	rec := newRecorder()
	_, addr := startEngine(t, rec, engine.Options{})
	client := wstest.Connect(t, addr)
	c := rec.next(t)

	const senders, each = 8, 500
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p [8]byte
			for i := range each {
				binary.BigEndian.PutUint32(p[:4], uint32(s))
				binary.BigEndian.PutUint32(p[4:], uint32(i))
				if err := c.Send(codec.OpBinary, p[:]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]uint32, senders)
	for range senders * each {
		f := client.ExpectFrame()
		s, i := binary.BigEndian.Uint32(f.Payload[:4]), binary.BigEndian.Uint32(f.Payload[4:])
		if i != next[s] {
			t.Fatalf("sender %d: got frame %d, want %d", s, i, next[s])
		}
		next[s]++
	}
	wg.Wait()
	client.CloseHandshake()
}

func TestEngineCloseFromGoroutine(t *testing.T) {
	rec := newRecorder()
	_, addr := startEngine(t, rec, engine.Options{})
	client := wstest.Connect(t, addr)
	c := rec.next(t)
	if err := c.Close(4001, "bye now"); err != nil {
		t.Fatal(err)
	}
	code, reason := client.ExpectClose(4001)
	if reason != "bye now" {
		t.Fatalf("reason %q", reason)
	}
	client.WriteFrames(wstest.Close(4001, ""))
	client.ExpectTCPClosed()
	waitFor(t, 5*time.Second, "OnClose", func() bool { return rec.closeOf(c.ID()) != nil })
	if ce := rec.closeOf(c.ID()); ce.Code != codec.StatusCode(code) || ce.Remote {
		t.Fatalf("OnClose got %+v", ce)
	}
	if err := c.Send(codec.OpText, []byte("late")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Send after close: %v, want ErrClosed", err)
	}
}

// OnClose reports the close code of each way a connection can end.
func TestEngineOnCloseCodes(t *testing.T) {
	rec := newRecorder()
	_, addr := startEngine(t, rec, engine.Options{MaxMessageSize: 1000})
	tests := []struct {
		name   string
		send   []byte
		code   codec.StatusCode
		remote bool
	}{
		{"peer closes 4000", wstest.Close(4000, "done").Bytes(), 4000, true},
		{"peer closes without code", wstest.Frame{Fin: true, Opcode: wstest.OpClose}.Bytes(), 1005, true},
		{"bad utf-8", wstest.Msg(wstest.OpText, []byte{0xff}).Bytes(), 1007, false},
		{"reserved opcode", wstest.Msg(3, nil).Bytes(), 1002, false},
		{"too big", wstest.Binary(make([]byte, 1001)).Bytes(), 1009, false},
		{"bad close code", wstest.Close(1005, "").Bytes(), 1002, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := wstest.Connect(t, addr)
			c := rec.next(t)
			client.Write(tt.send)
			client.ExpectClose()
			client.Conn.Close()
			waitFor(t, 5*time.Second, "OnClose", func() bool { return rec.closeOf(c.ID()) != nil })
			if ce := rec.closeOf(c.ID()); ce.Code != tt.code || ce.Remote != tt.remote {
				t.Fatalf("OnClose got %+v, want code %d remote %v", ce, tt.code, tt.remote)
			}
		})
	}
	t.Run("TCP dropped", func(t *testing.T) {
		client := wstest.Connect(t, addr)
		c := rec.next(t)
		client.Conn.Close()
		waitFor(t, 5*time.Second, "OnClose", func() bool { return rec.closeOf(c.ID()) != nil })
		if ce := rec.closeOf(c.ID()); ce.Code != codec.StatusAbnormalClosure {
			t.Fatalf("OnClose got %+v, want 1006", ce)
		}
	})
}

func TestEngineShutdownSendsGoingAway(t *testing.T) {
	rec := newRecorder()
	e, addr := startEngine(t, rec, engine.Options{})
	var clients []*wstest.Client
	for range 5 {
		clients = append(clients, wstest.Connect(t, addr))
		rec.next(t)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- e.Shutdown(ctx)
	}()
	for _, c := range clients {
		c.ExpectClose(1001)
		c.WriteFrames(wstest.Close(1001, ""))
		c.ExpectTCPClosed()
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := e.Stats().Conns; n != 0 {
		t.Fatalf("%d connections left", n)
	}
}

// A peer that ignores the close frame is disconnected after CloseTimeout,
// and Shutdown still returns.
func TestEngineCloseTimeout(t *testing.T) {
	rec := newRecorder()
	_, addr := startEngine(t, rec, engine.Options{CloseTimeout: 300 * time.Millisecond})
	client := wstest.Connect(t, addr)
	c := rec.next(t)
	start := time.Now()
	_ = c.Close(1000, "")
	client.ExpectClose(1000)
	client.ExpectTCPClosed() // we half-close at once: EOF
	waitFor(t, 3*time.Second, "OnClose", func() bool { return rec.closeOf(c.ID()) != nil })
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("connection closed after %v, before CloseTimeout", d)
	}
}

func TestEnginePingAndIdleTimeout(t *testing.T) {
	rec := newRecorder()
	_, addr := startEngine(t, rec, engine.Options{PingInterval: 100 * time.Millisecond, IdleTimeout: 400 * time.Millisecond})

	t.Run("pings a silent client", func(t *testing.T) {
		client := wstest.Connect(t, addr)
		rec.next(t)
		f := client.ExpectFrame()
		if f.Opcode != wstest.OpPing {
			t.Fatalf("got %v, want a ping", f)
		}
		client.WriteFrames(wstest.Pong(f.Payload))
		client.CloseHandshake()
	})
	t.Run("pong keeps it open", func(t *testing.T) {
		client := wstest.Connect(t, addr)
		rec.next(t)
		deadline := time.Now().Add(1200 * time.Millisecond) // three idle timeouts
		for time.Now().Before(deadline) {
			f := client.ExpectFrame()
			if f.Opcode != wstest.OpPing {
				t.Fatalf("got %v, want a ping", f)
			}
			client.WriteFrames(wstest.Pong(f.Payload))
		}
		client.CloseHandshake()
	})
	t.Run("silent client is closed", func(t *testing.T) {
		client := wstest.Connect(t, addr)
		c := rec.next(t)
		start := time.Now()
		for {
			f := client.ExpectFrame()
			if f.Opcode == wstest.OpClose {
				if f.CloseCode() != 1001 {
					t.Fatalf("close code %d, want 1001", f.CloseCode())
				}
				break
			}
		}
		if d := time.Since(start); d < 350*time.Millisecond || d > 2*time.Second {
			t.Fatalf("closed after %v, want about 400ms", d)
		}
		client.ExpectTCPClosed()
		client.Conn.Close()
		waitFor(t, 3*time.Second, "OnClose", func() bool { return rec.closeOf(c.ID()) != nil })
	})
}

func TestEngineUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "wsd.sock")
	_, _ = startEngine(t, echo{}, engine.Options{Addrs: []string{"unix://" + sock}})
	d := websocket.Dialer{NetDial: nil, NetDialContext: nil}
	d.NetDial = func(string, string) (netConn, error) { return dialUnix(sock) }
	c, _, err := d.Dial("ws://localhost/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("over unix")); err != nil {
		t.Fatal(err)
	}
	_, p, err := c.ReadMessage()
	if err != nil || string(p) != "over unix" {
		t.Fatalf("got %q, %v", p, err)
	}
}

// Write and Send refuse what the protocol forbids.
func TestEngineWriteRules(t *testing.T) {
	rec := newRecorder()
	_, addr := startEngine(t, rec, engine.Options{})
	client := wstest.Connect(t, addr)
	c := rec.next(t)
	if err := c.Send(codec.OpPing, make([]byte, 126)); err == nil {
		t.Fatal("126-byte ping accepted")
	}
	if err := c.Send(codec.OpClose, nil); err == nil {
		t.Fatal("Send(OpClose) accepted: use Close")
	}
	if err := c.Send(codec.OpPing, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	client.ExpectMessage(wstest.OpPing, []byte("hi"))
	client.CloseHandshake()
}

// Frames that trickle in a byte per read must be kept across reads, whether
// the header or the payload is incomplete.
func TestEngineTrickledFrames(t *testing.T) {
	_, addr := startEngine(t, echo{}, engine.Options{})
	client := wstest.Connect(t, addr)
	server := wstest.ServerSocketOf(t, client.Conn)
	received := server.Info(t).Bytes_received // the upgrade request
	for _, f := range []wstest.Frame{wstest.Ping([]byte("ping!")), wstest.Text("trickled text"), wstest.Binary(make([]byte, 300))} {
		for _, b := range f.Bytes() {
			client.Write([]byte{b})
			received++
			server.WaitRead(t, received) // before the next byte: one read per byte
		}
		want := f.Opcode
		if want == wstest.OpPing {
			want = wstest.OpPong
		}
		client.ExpectMessage(want, f.Payload)
	}
	client.CloseHandshake()
}

func TestEngineStats(t *testing.T) {
	rec := newRecorder()
	e, addr := startEngine(t, rec, engine.Options{})
	client := wstest.Connect(t, addr)
	c := rec.next(t)
	for _, m := range []string{"a", "bb", "ccc"} {
		client.WriteFrames(wstest.Text(m))
		client.ExpectText(m)
	}
	client.CloseHandshake()
	waitFor(t, 5*time.Second, "OnClose", func() bool { return rec.closeOf(c.ID()) != nil })
	s := e.Stats()
	if s.Upgrades != 1 || s.MessagesIn != 3 || s.BytesIn != 6 || s.FramesOut != 4 || s.BytesOut != 3*2+6+4 {
		t.Fatalf("stats %+v", s)
	}
	if len(s.CloseCodes) != 1 || s.CloseCodes[0] != (engine.CloseCount{Code: 1000, Count: 1}) {
		t.Fatalf("close codes %+v", s.CloseCodes)
	}
}
