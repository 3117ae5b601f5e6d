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
// more than 64 KiB of replies), as counted by the engine and by the kernel.
func TestCorkPipelinedReplies(t *testing.T) {
	rec := newRecorder() // echoes
	e, addr := startEngine(t, rec, engine.Options{PingInterval: -1, IdleTimeout: -1, EventLoops: 1})
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
			w := startWriteCount(t, e, rec.next(t).Loop())
			c.WriteFrames(tc.in...)
			tc.expect(c)
			w.check(t, c.FrameBytes(), tc.minWrites, tc.maxWrites)
		})
	}
}

// writeCount counts an event loop's socket writes twice: as the engine
// counts them (Stats().Writes) and as the kernel does (the write syscalls of
// the loop's thread).
type writeCount struct {
	e      *engine.Engine
	l      *engine.Loop
	thread loopThread
	stats  int64
	kernel threadIO
}

// startWriteCount starts counting l's writes.
func startWriteCount(t *testing.T, e *engine.Engine, l *engine.Loop) *writeCount {
	t.Helper()
	w := &writeCount{e: e, l: l, thread: pinLoop(t, l)}
	w.stats, w.kernel = e.Stats().Writes, w.thread.io(t)
	return w
}

// check fails the test unless both counts of the writes since the start,
// which carried sent bytes (what the clients have received), are between
// min and max.
func (w *writeCount) check(t *testing.T, sent int, min, max int64) {
	t.Helper()
	stats := w.e.Stats().Writes - w.stats
	kernel := w.thread.socketWrites(t, w.l, w.kernel, sent)
	if stats < min || stats > max || kernel < min || kernel > max {
		t.Fatalf("%d socket writes counted by the engine, %d write syscalls by the kernel; want %d to %d", stats, kernel, min, max)
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
		w, sent := startWriteCount(t, e, c1.Loop()), client1.FrameBytes()
		release := hold(c1.Loop())
		for i := range 200 {
			if err := c1.Send(codec.OpText, []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		close(release)
		for i := range 200 {
			client1.ExpectText(strconv.Itoa(i))
		}
		w.check(t, client1.FrameBytes()-sent, 1, 1) // for 200 queued frames
	})
	t.Run("two connections in turn", func(t *testing.T) {
		w, sent := startWriteCount(t, e, c1.Loop()), client1.FrameBytes()+client2.FrameBytes()
		release := hold(c1.Loop())
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
		w.check(t, client1.FrameBytes()+client2.FrameBytes()-sent, 100, 100) // one per run of frames for one connection
	})
}

// corkHandler writes from OnMessage in the ways that must keep their order
// around gathered frames.
type corkHandler struct {
	engine.NopHandler
	frame  []byte // an encoded frame for WriteFrames
	opened chan *engine.Conn
}

func (h corkHandler) OnOpen(c *engine.Conn) { h.opened <- c }

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
	h := corkHandler{frame: codec.AppendFrame(nil, codec.OpText, []byte("b")), opened: make(chan *engine.Conn, 3)}
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
			w := startWriteCount(t, e, (<-h.opened).Loop())
			c.WriteFrames(tc.in...)
			tc.expect(c)
			w.check(t, c.FrameBytes(), 1, 3) // for one read
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

	w := startWriteCount(t, e, c.Loop())
	release := hold(c.Loop())
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
	w.check(t, client.FrameBytes(), 3, 3) // 1+big, 2+3, the close frame
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

// A gathered write to a connection whose peer has reset it fails, and the
// connection's OnClose (which waits until the queued frames are handled)
// closes another connection that has frames queued: that one gets its
// frames in order, then its close frame, and nothing after it. (Had the
// loop seen the reset before the frames, none would be written: the test
// accepts that too.)
func TestCorkFailedWriteClosesAnother(t *testing.T) {
	h := &closePartner{partner: map[*engine.Conn]*engine.Conn{}, opened: make(chan *engine.Conn, 2)}
	_, addr := startEngine(t, h, engine.Options{PingInterval: -1, IdleTimeout: -1, EventLoops: 1})
	clientX := wstest.Connect(t, addr)
	x := <-h.opened
	serverX := wstest.ServerSocketOf(t, clientX.Conn)
	clientC := wstest.Connect(t, addr)
	c := <-h.opened
	h.mu.Lock()
	h.partner[x] = c
	h.mu.Unlock()

	release := hold(x.Loop())
	// x's peer resets, and the kernel has closed x's socket before the loop
	// writes to it (the loop, held, cannot close the descriptor meanwhile).
	_ = clientX.Conn.(*net.TCPConn).SetLinger(0)
	clientX.Conn.Close()
	serverX.WaitClosed(t)
	big := bytes.Repeat([]byte("c"), 10<<10)
	_ = x.Send(codec.OpText, []byte("to x"))
	_ = c.Send(codec.OpText, big)
	_ = c.Send(codec.OpText, []byte("to c"))
	close(release)
	next := 0
	for {
		f := clientC.ExpectFrame()
		if f.Opcode == wstest.OpClose {
			if f.CloseCode() != 4002 {
				t.Fatalf("close code %d, want 4002", f.CloseCode())
			}
			break
		}
		if want := [][]byte{big, []byte("to c")}; next == len(want) || !bytes.Equal(f.Payload, want[next]) {
			t.Fatalf("frame %d: %v, want the queued frames in order, then close 4002", next, f)
		}
		next++
	}
	t.Logf("%d of the 2 queued frames before the close frame", next)
	clientC.ExpectTCPClosed()
}
