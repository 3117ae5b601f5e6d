package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsdproject/wsd/codec"
)

// An in-memory gnet for the TLS layer: the test's goroutine is the event
// loop, feeding a connection's ciphertext to OnTraffic in pieces of the
// sizes it chooses (a real socket delivers what the kernel has), running
// the tasks posted to the loop, and passing what the engine writes to a
// crypto/tls client.

// fakeLoop is a gnet.EventLoop whose Execute keeps the runnable for the
// test's goroutine to run.
type fakeLoop struct {
	gnet.EventLoop
	ev    *events
	mu    sync.Mutex
	tasks []gnet.Runnable
	wake  chan struct{}
}

func (f *fakeLoop) Execute(_ context.Context, r gnet.Runnable) error {
	f.mu.Lock()
	f.tasks = append(f.tasks, r)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeLoop) Close(c gnet.Conn) error {
	fc := c.(*fakeConn)
	if !fc.closed {
		fc.closed = true
		f.ev.OnClose(fc, nil)
	}
	return nil
}

// run runs the tasks posted so far and reports whether there were any.
func (f *fakeLoop) run() bool {
	f.mu.Lock()
	tasks := f.tasks
	f.tasks = nil
	f.mu.Unlock()
	for _, r := range tasks {
		_ = r.Run(context.Background())
	}
	return len(tasks) > 0
}

// fakeConn is a gnet.Conn over two byte slices.
type fakeConn struct {
	gnet.Conn
	loop    *fakeLoop
	in, out []byte
	ctx     any
	closed  bool
}

var fakeAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4433}

func (c *fakeConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.ErrShortBuffer
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *fakeConn) Peek(n int) ([]byte, error) {
	if n <= 0 {
		n = len(c.in)
	}
	if n > len(c.in) {
		return nil, io.ErrShortBuffer
	}
	return c.in[:n], nil
}

func (c *fakeConn) Discard(n int) (int, error) {
	if n <= 0 || n >= len(c.in) {
		n = len(c.in)
	}
	c.in = c.in[n:]
	return n, nil
}

func (c *fakeConn) InboundBuffered() int  { return len(c.in) }
func (c *fakeConn) OutboundBuffered() int { return 0 }
func (c *fakeConn) Write(p []byte) (int, error) {
	c.out = append(c.out, p...)
	return len(p), nil
}

func (c *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		c.out = append(c.out, b...)
		n += len(b)
	}
	return n, nil
}
func (c *fakeConn) Fd() int                   { return -1 }
func (c *fakeConn) EventLoop() gnet.EventLoop { return c.loop }
func (c *fakeConn) RemoteAddr() net.Addr      { return fakeAddr }
func (c *fakeConn) LocalAddr() net.Addr       { return fakeAddr }
func (c *fakeConn) Context() any              { return c.ctx }
func (c *fakeConn) SetContext(v any)          { c.ctx = v }

// clientPipe is the client's net.Conn: what it writes waits for the test
// to feed it to the engine, and it reads what the engine wrote.
type clientPipe struct {
	net.Conn
	mu       sync.Mutex
	cond     sync.Cond
	toServer []byte
	toClient []byte
	closed   bool
	written  chan struct{}
}

func newClientPipe() *clientPipe {
	p := &clientPipe{written: make(chan struct{}, 1)}
	p.cond.L = &p.mu
	return p
}

func (p *clientPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.toServer = append(p.toServer, b...)
	p.mu.Unlock()
	select {
	case p.written <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (p *clientPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.toClient) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.toClient) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.toClient)
	p.toClient = p.toClient[n:]
	return n, nil
}

func (p *clientPipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	return nil
}

func (p *clientPipe) give(b []byte, eof bool) {
	p.mu.Lock()
	p.toClient = append(p.toClient, b...)
	p.closed = p.closed || eof
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *clientPipe) take() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.toServer
	p.toServer = nil
	return b
}

func (p *clientPipe) SetDeadline(time.Time) error      { return nil }
func (p *clientPipe) SetReadDeadline(time.Time) error  { return nil }
func (p *clientPipe) SetWriteDeadline(time.Time) error { return nil }
func (p *clientPipe) LocalAddr() net.Addr              { return fakeAddr }
func (p *clientPipe) RemoteAddr() net.Addr             { return fakeAddr }

// fakeEcho writes every message back.
type fakeEcho struct{ NopHandler }

func (fakeEcho) OnMessage(c *Conn, op codec.OpCode, p []byte) { _ = c.Write(op, p) }

// splitRig is an engine on a fakeLoop with a test CA.
type splitRig struct {
	ev     *events
	loop   *fakeLoop
	client *tls.Config
}

func newSplitRig(tb testing.TB) *splitRig {
	pki := NewTestPKI(tb, "split test CA")
	e, err := New(fakeEcho{}, Options{TLS: &tls.Config{Certificates: []tls.Certificate{pki.Server(tb, "localhost")}}})
	if err != nil {
		tb.Fatal(err)
	}
	ev := &events{e: e}
	return &splitRig{
		ev:     ev,
		loop:   &fakeLoop{ev: ev, wake: make(chan struct{}, 1)},
		client: &tls.Config{RootCAs: pki.Pool, ServerName: "localhost"},
	}
}

// pieceSize maps a byte of a split pattern to the size of a piece: 0 is
// whatever is there, 1-127 that many bytes, 128-255 multiples of 64 up
// to 8 KiB.
func pieceSize(b byte) int {
	switch {
	case b == 0:
		return 1 << 30
	case b < 128:
		return int(b)
	}
	return int(b-127) * 64
}

// splitMessages are echoed in each session: sizes around the frame length
// encodings and a TLS record's plaintext.
var splitMessages = []int{0, 1, 125, 126, 1000, 17000}

// session runs one wss connection through the rig: the client's
// ciphertext reaches the engine in pieces of the sizes cuts gives, in
// turn. It fails unless every message comes back and the connection ends
// cleanly.
func (r *splitRig) session(t *testing.T, cuts []byte, version uint16) {
	if len(cuts) == 0 {
		cuts = []byte{0}
	}
	pipe := newClientPipe()
	fc := &fakeConn{loop: r.loop}
	if _, act := r.ev.OnOpen(fc); act != gnet.None {
		t.Fatal("OnOpen refused the connection")
	}
	defer func() { // on failure, let the client's and the handshake's goroutines end
		pipe.Close()
		_ = r.loop.Close(fc)
		r.loop.run()
	}()
	cfg := r.client.Clone()
	cfg.MinVersion, cfg.MaxVersion = version, version
	result := make(chan error, 1)
	go func() { result <- splitClient(pipe, cfg) }()

	next := 0 // the next piece's index in cuts
	var pending []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-result:
			if err != nil {
				t.Fatal(err)
			}
			if !fc.closed {
				t.Fatal("the server did not close the connection after the closing handshake")
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stuck: %d bytes pending for the server, closed %v", len(pending), fc.closed)
		}
		moved := false
		pending = append(pending, pipe.take()...)
		for len(pending) > 0 && !fc.closed {
			n := min(pieceSize(cuts[next%len(cuts)]), len(pending))
			next++
			fc.in = append(fc.in, pending[:n]...)
			pending = pending[n:]
			moved = true
			if r.ev.OnTraffic(fc) == gnet.Close {
				_ = r.loop.Close(fc)
			}
		}
		if fc.closed {
			pending = nil
		}
		if r.loop.run() {
			moved = true
		}
		if len(fc.out) > 0 || fc.closed {
			pipe.give(fc.out, fc.closed)
			fc.out = nil
		}
		if !moved {
			select {
			case <-r.loop.wake:
			case <-pipe.written:
			case <-time.After(time.Millisecond):
			}
		}
	}
}

// splitClient is the client of a session: it upgrades, sends the messages
// in one write, checks their echoes, and closes.
func splitClient(pipe *clientPipe, cfg *tls.Config) error {
	defer pipe.Close()
	tc := tls.Client(pipe, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("client handshake: %w", err)
	}
	br := bufio.NewReader(tc)
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	req := "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	var out []byte
	out = append(out, req...)
	for i, n := range splitMessages {
		out = appendClientFrame(out, ws.OpBinary, bytes.Repeat([]byte{byte('a' + i)}, n))
	}
	out = appendClientFrame(out, ws.OpPing, []byte("ping"))
	if _, err := tc.Write(out); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("upgrade: %v %v", resp, err)
	}
	for i, n := range splitMessages {
		h, p, err := ReadServerFrame(br, 1<<20)
		if err != nil {
			return fmt.Errorf("echo %d: %w", i, err)
		}
		if h.OpCode != ws.OpBinary || !bytes.Equal(p, bytes.Repeat([]byte{byte('a' + i)}, n)) {
			return fmt.Errorf("echo %d: %v, %d bytes; want %d bytes", i, h.OpCode, len(p), n)
		}
	}
	if h, p, err := ReadServerFrame(br, 125); err != nil || h.OpCode != ws.OpPong || string(p) != "ping" {
		return fmt.Errorf("pong: %v %v", h, err)
	}
	if _, err := tc.Write(appendClientFrame(nil, ws.OpClose, []byte{3, 232})); err != nil {
		return err
	}
	if h, _, err := ReadServerFrame(br, 125); err != nil || h.OpCode != ws.OpClose {
		return fmt.Errorf("close: %v %v", h, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("after the close: %v, want close_notify (EOF)", err)
	}
	return nil
}

// appendClientFrame appends a final client frame, masked with a zero key
// (a valid key that leaves the payload as it is).
func appendClientFrame(b []byte, op ws.OpCode, p []byte) []byte {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Masked: true}
	var buf bytes.Buffer
	_ = ws.WriteHeader(&buf, h)
	return append(append(b, buf.Bytes()...), p...)
}

// TestTLSFeedSplits feeds a wss session's ciphertext (handshake included)
// a byte at a time and in other fixed pieces, for both versions.
func TestTLSFeedSplits(t *testing.T) {
	r := newSplitRig(t)
	for _, cuts := range [][]byte{{1}, {2, 3}, {5}, {7, 1, 255}, {0}, {200, 1, 4, 150}} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(fmt.Sprintf("%v/%x", cuts, v), func(t *testing.T) { r.session(t, cuts, v) })
		}
	}
}

// FuzzTLSSplits: however the ciphertext is cut into reads, the engine
// decrypts the same plaintext, echoes every message and closes cleanly.
// The input is the sequence of piece sizes (pieceSize), used in turn; its
// length's parity picks the TLS version.
func FuzzTLSSplits(f *testing.F) {
	for _, seed := range [][]byte{{1}, {1, 1}, {5}, {5, 0}, {0}, {3, 200, 17, 1, 64}, {255, 255, 1}, {130, 2, 129}, {16, 16, 16}} {
		f.Add(seed)
	}
	r := newSplitRig(f)
	f.Fuzz(func(t *testing.T, cuts []byte) {
		if len(cuts) > 64 {
			cuts = cuts[:64]
		}
		v := uint16(tls.VersionTLS13)
		if len(cuts)%2 == 0 {
			v = tls.VersionTLS12
		}
		r.session(t, cuts, v)
	})
}
