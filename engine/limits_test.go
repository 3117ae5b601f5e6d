package engine_test

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// filler echoes messages, except "fill N": it writes 16 KiB binary frames
// to the connection until N bytes are unsent (the client does not read, so
// the kernel's buffers fill first, then gnet's), and reports the backlog.
type filler struct {
	*recorder
	filled chan int
}

func newFiller() *filler { return &filler{recorder: newRecorder(), filled: make(chan int, 16)} }

var chunk = bytes.Repeat([]byte("f"), 16<<10)

func (f *filler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	if n, ok := strings.CutPrefix(string(p), "fill "); ok {
		target, _ := strconv.Atoi(n)
		for c.Buffered() < target && c.IsOpen() {
			if err := c.Write(codec.OpBinary, chunk); err != nil {
				break
			}
		}
		f.filled <- c.Buffered()
		return
	}
	_ = c.Write(op, p)
}

// fill asks the server to back up about n bytes for client's connection.
func (f *filler) fill(t *testing.T, client *wstest.Client, n int) int {
	t.Helper()
	client.WriteFrames(wstest.Text("fill " + strconv.Itoa(n)))
	select {
	case b := <-f.filled:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("fill did not finish")
		return 0
	}
}

// readUntilText reads binary frames until a text frame, which it returns.
func readUntilText(t *testing.T, client *wstest.Client) string {
	t.Helper()
	for {
		f := client.ExpectFrame()
		if f.Opcode == wstest.OpText {
			return string(f.Payload)
		}
		if f.Opcode != wstest.OpBinary {
			t.Fatalf("got %v while draining", f)
		}
	}
}

// waitClose waits for OnClose of c and returns how it closed.
func (f *filler) waitClose(t *testing.T, c *engine.Conn) *engine.CloseError {
	t.Helper()
	waitFor(t, 5*time.Second, "OnClose", func() bool { return f.closeOf(c.ID()) != nil })
	return f.closeOf(c.ID())
}

func noTimers(o engine.Options) engine.Options {
	o.PingInterval, o.IdleTimeout = -1, -1
	return o
}

// A connection whose backlog passes half of MaxBuffered is not read: its
// next message waits, unanswered, until the client reads and the backlog
// drains; then it is answered, in order, and nothing is lost.
func TestLimitsPauseAndResume(t *testing.T) {
	f := newFiller()
	const max = 256 << 10
	e, addr := startEngine(t, f, noTimers(engine.Options{MaxBuffered: max, EventLoops: 1}))
	client := wstest.Connect(t, addr)
	c := f.next(t)
	if b := f.fill(t, client, max*3/4); b < max/2 || b >= max {
		t.Fatalf("backlog %d after fill, want between %d and %d", b, max/2, max)
	}
	in := e.Stats().MessagesIn
	client.WriteFrames(wstest.Text("after the fill"))
	time.Sleep(300 * time.Millisecond) // an absence to observe: the message is not decoded while the client does not read
	if got := e.Stats().MessagesIn; got != in {
		t.Fatalf("%d messages decoded while the backlog was over half the cap", got-in)
	}
	if got := readUntilText(t, client); got != "after the fill" {
		t.Fatalf("answer %q", got)
	}
	client.WriteFrames(wstest.Text("still open"))
	client.ExpectText("still open")
	if f.closeOf(c.ID()) != nil || e.Stats().Limits.Backpressure != 0 {
		t.Fatalf("closed: %v, stats %+v", f.closeOf(c.ID()), e.Stats().Limits)
	}
}

// A peer that keeps sending while it does not read is closed once
// MaxBuffered of its input waits, with BackpressureCode.
func TestLimitsInputWhileBlocked(t *testing.T) {
	f := newFiller()
	const max = 128 << 10
	e, addr := startEngine(t, f, noTimers(engine.Options{MaxBuffered: max, EventLoops: 1, BackpressureCode: codec.StatusTryAgainLater}))
	client := wstest.Connect(t, addr)
	c := f.next(t)
	f.fill(t, client, max*3/4)
	msg := wstest.Binary(bytes.Repeat([]byte("i"), 4<<10)).Bytes()
	for i := 0; i < 4*max/len(msg) && client.TryWrite(msg) == nil; i++ {
	}
	ce := f.waitClose(t, c)
	if ce.Code != codec.StatusTryAgainLater || ce.Remote || !strings.Contains(ce.Reason, "input") {
		t.Fatalf("closed with %+v, want a local 1013 for input while blocked", ce)
	}
	if n := e.Stats().Limits.Backpressure; n != 1 {
		t.Fatalf("Limits.Backpressure = %d, want 1", n)
	}
}

// A write that finds MaxBuffered reached is refused with ErrBackpressure
// and closes the connection (1008 by default).
func TestLimitsWriteOverCap(t *testing.T) {
	h := newRecorder()
	const max = 64 << 10
	e, addr := startEngine(t, h, noTimers(engine.Options{MaxBuffered: max, EventLoops: 1}))
	wstest.Connect(t, addr) // never reads
	c := h.next(t)
	errs := make(chan error, 1)
	c.Loop().Post(taskFunc(func(*engine.Loop) {
		var err error
		for err == nil {
			err = c.Write(codec.OpBinary, chunk)
		}
		errs <- err
	}))
	if err := <-errs; !errors.Is(err, engine.ErrBackpressure) {
		t.Fatalf("write error %v, want ErrBackpressure", err)
	}
	ce := waitCloseOf(t, h, c)
	if ce.Code != codec.StatusPolicyViolation || ce.Reason != "send buffer full" {
		t.Fatalf("closed with %+v, want 1008 send buffer full", ce)
	}
	if n := e.Stats().Limits.Backpressure; n != 1 {
		t.Fatalf("Limits.Backpressure = %d, want 1", n)
	}
}

// One message larger than MaxBuffered still goes to a connection with
// room: the cap bounds the backlog, not the size of a message.
func TestLimitsLargeMessageFits(t *testing.T) {
	h := newRecorder()
	_, addr := startEngine(t, h, noTimers(engine.Options{MaxBuffered: 16 << 10, EventLoops: 1}))
	client := wstest.Connect(t, addr)
	big := bytes.Repeat([]byte("L"), 100<<10)
	client.WriteFrames(wstest.Binary(big))
	client.ExpectBinary(big)
}

// Send refuses frames once the ones it queued reach MaxBuffered, and the
// connection closes; a goroutine learns of backpressure from the error.
func TestLimitsSendQueue(t *testing.T) {
	h := newRecorder()
	const max = 64 << 10
	e, addr := startEngine(t, h, noTimers(engine.Options{MaxBuffered: max, EventLoops: 1}))
	wstest.Connect(t, addr)
	c := h.next(t)
	release := hold(c.Loop()) // nothing is written while Send queues
	var sent int
	var err error
	for err == nil && sent < 10*max {
		if err = c.Send(codec.OpBinary, chunk[:1024]); err == nil {
			sent += 1024
		}
	}
	close(release)
	if !errors.Is(err, engine.ErrBackpressure) || sent < max-1024 || sent > max+1024 {
		t.Fatalf("Send: %v after %d bytes, want ErrBackpressure after about %d", err, sent, max)
	}
	if ce := waitCloseOf(t, h, c); ce.Code != codec.StatusPolicyViolation {
		t.Fatalf("closed with %+v, want 1008", ce)
	}
	if err := c.Send(codec.OpText, []byte("x")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Send after close: %v, want ErrClosed", err)
	}
	waitFor(t, 5*time.Second, "queued bytes released", func() bool { return e.Stats().Unsent == 0 })
}

// A connection whose backlog does not shrink for WriteTimeout is closed.
func TestLimitsWriteTimeout(t *testing.T) {
	f := newFiller()
	e, addr := startEngine(t, f, noTimers(engine.Options{WriteTimeout: 300 * time.Millisecond, EventLoops: 1}))
	client := wstest.Connect(t, addr)
	c := f.next(t)
	f.fill(t, client, 64<<10)
	start := time.Now()
	ce := f.waitClose(t, c)
	if ce.Code != codec.StatusPolicyViolation || ce.Reason != "write timeout" {
		t.Fatalf("closed with %+v, want 1008 write timeout", ce)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before WriteTimeout", d)
	}
	if n := e.Stats().Limits.WriteTimeout; n != 1 {
		t.Fatalf("Limits.WriteTimeout = %d, want 1", n)
	}
}

// A message must be complete within MessageTimeout of its first byte; a
// client that streams many messages, each in time, is not affected.
func TestLimitsMessageTimeout(t *testing.T) {
	h := newRecorder()
	e, addr := startEngine(t, h, noTimers(engine.Options{MessageTimeout: 300 * time.Millisecond, EventLoops: 1}))

	steady := wstest.Connect(t, addr)
	cs := h.next(t)
	trickler := wstest.Connect(t, addr)
	ct := h.next(t)
	trickler.WriteFrames(wstest.Frag(wstest.OpBinary, false, []byte("first part")))

	deadline := time.Now().Add(700 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ { // fragmented messages, each complete at once
		p := []byte("m" + strconv.Itoa(i))
		steady.WriteFrames(wstest.Frag(wstest.OpText, false, p[:1]), wstest.Frag(wstest.OpContinuation, true, p[1:]))
		steady.ExpectText(string(p))
	}
	ce := waitCloseOf(t, h, ct)
	if ce.Code != codec.StatusPolicyViolation || ce.Reason != "message timeout" {
		t.Fatalf("trickler closed with %+v, want 1008 message timeout", ce)
	}
	if h.closeOf(cs.ID()) != nil {
		t.Fatalf("steady client closed: %+v", h.closeOf(cs.ID()))
	}
	if n := e.Stats().Limits.MessageTimeout; n != 1 {
		t.Fatalf("Limits.MessageTimeout = %d, want 1", n)
	}
}

// Over MaxBufferedTotal, the connection with the largest backlog is closed
// first (1013), and only as many as it takes.
func TestLimitsBudgetShedsLargestFirst(t *testing.T) {
	f := newFiller()
	e, addr := startEngine(t, f, engine.Options{MaxBufferedTotal: 400 << 10, EventLoops: 1, PingInterval: -1, IdleTimeout: -1, WriteTimeout: -1, HandshakeTimeout: 100 * time.Millisecond})
	sizes := []int{150 << 10, 300 << 10, 100 << 10} // 550 KiB in all
	var conns []*engine.Conn
	for _, n := range sizes {
		client := wstest.Connect(t, addr)
		conns = append(conns, f.next(t))
		f.fill(t, client, n)
	}
	ce := f.waitClose(t, conns[1])
	if ce.Code != codec.StatusTryAgainLater {
		t.Fatalf("largest backlog closed with %+v, want 1013", ce)
	}
	waitFor(t, 5*time.Second, "the budget checked after the shed", func() bool {
		s := e.Stats()
		return s.Unsent > 0 && s.Unsent < 400<<10
	})
	for _, i := range []int{0, 2} {
		if ce := f.closeOf(conns[i].ID()); ce != nil {
			t.Fatalf("connection with %d KiB backlog closed too: %+v", sizes[i]>>10, ce)
		}
	}
	if n := e.Stats().Limits.Budget; n != 1 {
		t.Fatalf("Limits.Budget = %d, want 1", n)
	}
}

// MaxMessageRate closes a connection that sends faster (1008), or with
// RateLimitDrop drops and counts its extra messages.
func TestLimitsMessageRate(t *testing.T) {
	for _, drop := range []bool{false, true} {
		h := newRecorder()
		e, addr := startEngine(t, h, noTimers(engine.Options{MaxMessageRate: 1, MaxMessageBurst: 5, RateLimitDrop: drop, EventLoops: 1}))
		client := wstest.Connect(t, addr)
		c := h.next(t)
		var frames []wstest.Frame
		for i := range 20 {
			frames = append(frames, wstest.Text(strconv.Itoa(i)))
		}
		client.WriteFrames(frames...)
		for i := range 5 {
			client.ExpectText(strconv.Itoa(i))
		}
		if !drop {
			client.ExpectClose(int(codec.StatusPolicyViolation))
			if n := e.Stats().Limits.RateLimit; n != 1 {
				t.Fatalf("Limits.RateLimit = %d, want 1", n)
			}
			continue
		}
		waitFor(t, 5*time.Second, "15 drops", func() bool { return e.Stats().Limits.RateDropped == 15 })
		client.ExpectSilence(100 * time.Millisecond)
		if h.closeOf(c.ID()) != nil {
			t.Fatal("closed with RateLimitDrop")
		}
	}
}

// waitCloseOf waits for OnClose of c in r and returns how it closed.
func waitCloseOf(t *testing.T, r *recorder, c *engine.Conn) *engine.CloseError {
	t.Helper()
	waitFor(t, 5*time.Second, "OnClose", func() bool { return r.closeOf(c.ID()) != nil })
	return r.closeOf(c.ID())
}
