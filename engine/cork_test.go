package engine_test

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// The replies to messages that arrive together leave together: in order,
// and with one socket write per read (more only for a frame over 4 KiB or
// more than 64 KiB of replies).
func TestCorkPipelinedReplies(t *testing.T) {
	e, addr := startEngine(t, echo{}, engine.Options{PingInterval: -1, IdleTimeout: -1})
	big := bytes.Repeat([]byte("b"), 10<<10)
	kib := bytes.Repeat([]byte("k"), 1<<10)
	texts := func(n int) []wstest.Frame {
		var fs []wstest.Frame
		for i := range n {
			fs = append(fs, wstest.Text(strconv.Itoa(i)))
		}
		return fs
	}
	tests := []struct {
		name   string
		in     []wstest.Frame
		expect func(c *wstest.Client)
		// server socket writes for the whole input
		minWrites, maxWrites int64
	}{
		{
			name: "ten messages",
			in:   texts(10),
			expect: func(c *wstest.Client) {
				for i := range 10 {
					c.ExpectText(strconv.Itoa(i))
				}
			},
			minWrites: 1, maxWrites: 1,
		},
		{
			name: "pings between messages",
			in:   []wstest.Frame{wstest.Ping([]byte("a")), wstest.Text("x"), wstest.Ping([]byte("b")), wstest.Text("y")},
			expect: func(c *wstest.Client) {
				c.ExpectPong([]byte("a"))
				c.ExpectText("x")
				c.ExpectPong([]byte("b"))
				c.ExpectText("y")
			},
			minWrites: 1, maxWrites: 1,
		},
		{
			// "1" is gathered, then leaves with the large frame in one
			// writev; "2" is gathered and written at the end.
			name: "a large message in the middle",
			in:   []wstest.Frame{wstest.Text("1"), wstest.Binary(big), wstest.Text("2")},
			expect: func(c *wstest.Client) {
				c.ExpectText("1")
				c.ExpectBinary(big)
				c.ExpectText("2")
			},
			minWrites: 2, maxWrites: 2,
		},
		{
			name: "close after messages",
			in:   append(texts(3), wstest.Close(1000, "bye")),
			expect: func(c *wstest.Client) {
				for i := range 3 {
					c.ExpectText(strconv.Itoa(i))
				}
				c.ExpectClose(1000)
				c.ExpectTCPClosed()
			},
			minWrites: 1, maxWrites: 1,
		},
		{
			name: "a message with a protocol error after messages",
			in:   append(texts(2), wstest.Frame{Opcode: 0x3, Fin: true}),
			expect: func(c *wstest.Client) {
				c.ExpectText("0")
				c.ExpectText("1")
				c.ExpectClose(1002)
				c.ExpectTCPClosed()
			},
			minWrites: 1, maxWrites: 1,
		},
		{
			// 100 KiB of replies: more than one cork's worth, and the
			// input itself may take two reads.
			name: "more than 64 KiB of replies",
			in: func() []wstest.Frame {
				var fs []wstest.Frame
				for range 100 {
					fs = append(fs, wstest.Binary(kib))
				}
				return fs
			}(),
			expect: func(c *wstest.Client) {
				for range 100 {
					c.ExpectBinary(kib)
				}
			},
			minWrites: 2, maxWrites: 4,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := wstest.Connect(t, addr)
			w0 := e.Stats().Writes
			c.WriteFrames(tc.in...)
			tc.expect(c)
			if got := e.Stats().Writes - w0; got < tc.minWrites || got > tc.maxWrites {
				t.Fatalf("%d socket writes, want %d to %d", got, tc.minWrites, tc.maxWrites)
			}
		})
	}
}

// holdLoop is a Task that keeps its loop busy until release is closed.
type holdLoop struct{ running, release chan struct{} }

func (h holdLoop) Run(*engine.Loop) {
	close(h.running)
	<-h.release
}

// hold posts a holdLoop to l, waits until it runs, and returns its release.
func hold(l *engine.Loop) chan struct{} {
	h := holdLoop{make(chan struct{}), make(chan struct{})}
	l.Post(h)
	<-h.running
	return h.release
}

// Frames queued by Send while the loop is busy leave, in order, with one
// write per connection they go to in a row.
func TestCorkSendBurst(t *testing.T) {
	rec := newRecorder()
	e, addr := startEngine(t, rec, engine.Options{PingInterval: -1, IdleTimeout: -1, EventLoops: 1})
	client1 := wstest.Connect(t, addr)
	c1 := rec.next(t)
	client2 := wstest.Connect(t, addr)
	c2 := rec.next(t)

	t.Run("one connection", func(t *testing.T) {
		release := hold(c1.Loop())
		w0 := e.Stats().Writes
		for i := range 200 {
			if err := c1.Send(codec.OpText, []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		close(release)
		for i := range 200 {
			client1.ExpectText(strconv.Itoa(i))
		}
		if got := e.Stats().Writes - w0; got != 1 {
			t.Fatalf("%d socket writes for 200 queued frames, want 1", got)
		}
	})
	t.Run("two connections in turn", func(t *testing.T) {
		release := hold(c1.Loop())
		w0 := e.Stats().Writes
		for i := range 50 {
			_ = c1.Send(codec.OpText, []byte(fmt.Sprint("a", i)))
			_ = c1.Send(codec.OpText, []byte(fmt.Sprint("b", i)))
			_ = c2.Send(codec.OpText, []byte(fmt.Sprint("c", i)))
		}
		close(release)
		for i := range 50 {
			client1.ExpectText(fmt.Sprint("a", i))
			client1.ExpectText(fmt.Sprint("b", i))
			client2.ExpectText(fmt.Sprint("c", i))
		}
		if got := e.Stats().Writes - w0; got != 100 {
			t.Fatalf("%d socket writes, want 100 (one per run of frames for one connection)", got)
		}
	})
}

// corkHandler writes from OnMessage in the ways that must keep their order
// around gathered frames.
type corkHandler struct {
	engine.NopHandler
	frame []byte // an encoded frame for WriteFrames
}

func (h corkHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	switch string(p) {
	case "mix": // Write, WriteFrames, Write
		_ = c.Write(codec.OpText, []byte("a"))
		_ = c.WriteFrames([][]byte{h.frame})
		_ = c.Write(codec.OpText, []byte("c"))
	case "bye": // Write, then close
		_ = c.Write(codec.OpText, []byte("x"))
		c.CloseNow(4000, "done")
	case "buffered": // Buffered counts what is gathered
		_ = c.Write(codec.OpBinary, make([]byte, 100))
		_ = c.Write(codec.OpText, []byte(strconv.Itoa(c.Buffered())))
	default:
		_ = c.Write(op, p)
	}
}

func TestCorkOrderWithOtherWrites(t *testing.T) {
	h := corkHandler{frame: codec.AppendFrame(nil, codec.OpText, []byte("b"))}
	e, addr := startEngine(t, h, engine.Options{PingInterval: -1, IdleTimeout: -1})
	tests := []struct {
		name   string
		in     []wstest.Frame
		expect func(c *wstest.Client)
	}{
		{"WriteFrames between Writes", []wstest.Frame{wstest.Text("1"), wstest.Text("mix"), wstest.Text("2")}, func(c *wstest.Client) {
			for _, s := range []string{"1", "a", "b", "c", "2"} {
				c.ExpectText(s)
			}
		}},
		{"CloseNow after Writes", []wstest.Frame{wstest.Text("1"), wstest.Text("bye"), wstest.Text("ignored")}, func(c *wstest.Client) {
			c.ExpectText("1")
			c.ExpectText("x")
			if code, reason := c.ExpectClose(4000); reason != "done" {
				t.Fatalf("close %d %q", code, reason)
			}
			c.ExpectTCPClosed()
		}},
		{"Buffered counts gathered frames", []wstest.Frame{wstest.Text("buffered")}, func(c *wstest.Client) {
			c.ExpectBinary(make([]byte, 100))
			c.ExpectText("102") // 2-byte header + 100
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := wstest.Connect(t, addr)
			w0 := e.Stats().Writes
			c.WriteFrames(tc.in...)
			tc.expect(c)
			if got := e.Stats().Writes - w0; got > 3 {
				t.Fatalf("%d socket writes for one read", got)
			}
		})
	}
}

// Send runs mixing small frames and frames too large to gather, then Close:
// everything in order, then the close frame, then the end of the stream.
func TestCorkSendLargeFramesAndClose(t *testing.T) {
	rec := newRecorder()
	e, addr := startEngine(t, rec, engine.Options{PingInterval: -1, IdleTimeout: -1, EventLoops: 1})
	client := wstest.Connect(t, addr)
	c := rec.next(t)
	big := bytes.Repeat([]byte("B"), 10<<10)

	release := hold(c.Loop())
	w0 := e.Stats().Writes
	_ = c.Send(codec.OpText, []byte("1"))
	_ = c.Send(codec.OpBinary, big) // leaves with "1" in one writev
	_ = c.Send(codec.OpText, []byte("2"))
	_ = c.Send(codec.OpText, []byte("3"))
	_ = c.Close(4001, "end") // not gathered: "2" and "3" are written first
	close(release)
	client.ExpectText("1")
	client.ExpectBinary(big)
	client.ExpectText("2")
	client.ExpectText("3")
	client.ExpectClose(4001)
	client.ExpectTCPClosed()
	if got := e.Stats().Writes - w0; got != 3 {
		t.Fatalf("%d socket writes, want 3 (1+big, 2+3, the close frame)", got)
	}
}

// closePartner closes the partner connection when a connection closes.
type closePartner struct {
	engine.NopHandler
	mu      sync.Mutex
	partner map[*engine.Conn]*engine.Conn
	opened  chan *engine.Conn
}

func (h *closePartner) OnOpen(c *engine.Conn) { h.opened <- c }

func (h *closePartner) OnClose(c *engine.Conn, _ error) {
	h.mu.Lock()
	p := h.partner[c]
	h.mu.Unlock()
	if p != nil {
		p.CloseNow(4002, "partner left")
	}
}

// A gathered write that fails closes its connection, whose OnClose closes
// the connection the next frames are for: those frames are not written
// after its close frame.
func TestCorkFailedWriteClosesAnother(t *testing.T) {
	h := &closePartner{partner: map[*engine.Conn]*engine.Conn{}, opened: make(chan *engine.Conn, 2)}
	_, addr := startEngine(t, h, engine.Options{PingInterval: -1, IdleTimeout: -1, EventLoops: 1})
	clientX := wstest.Connect(t, addr)
	x := <-h.opened
	clientC := wstest.Connect(t, addr)
	c := <-h.opened
	h.mu.Lock()
	h.partner[x] = c
	h.mu.Unlock()

	release := hold(x.Loop())
	// x's peer resets: the write of x's frames fails (or the loop sees the
	// reset first); either way OnClose(x) closes c.
	_ = clientX.Conn.(*net.TCPConn).SetLinger(0)
	clientX.Conn.Close()
	_ = x.Send(codec.OpText, []byte("to x"))
	_ = c.Send(codec.OpText, bytes.Repeat([]byte("c"), 10<<10))
	_ = c.Send(codec.OpText, []byte("to c"))
	close(release)
	// If the write to x fails inside the batch, OnClose(x) runs once the
	// batch is done (after c's frames were written); if the loop sees the
	// reset before the batch, c is closed before them. Either way nothing
	// follows c's close frame.
	want := [][]byte{bytes.Repeat([]byte("c"), 10<<10), []byte("to c")}
	for i := 0; ; i++ {
		f := clientC.ExpectFrame()
		if f.Opcode == wstest.OpClose {
			if code := f.CloseCode(); code != 4002 {
				t.Fatalf("close code %d, want 4002", code)
			}
			break
		}
		if i >= len(want) || !bytes.Equal(f.Payload, want[i]) {
			t.Fatalf("frame %d: %v, want c's frames in order, then its close", i, f)
		}
	}
	clientC.ExpectTCPClosed()
}
