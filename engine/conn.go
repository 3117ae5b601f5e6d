package engine

import (
	"net"
	"sync/atomic"
	"syscall"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/bufpool"
)

type connState uint8

const (
	stateHandshake connState = iota // reading the upgrade request
	stateOpen                       // upgraded; frames flow both ways
	stateClosing                    // wsd sent its close frame (or an HTTP answer); waiting for the peer
	stateClosed                     // gone; OnClose has run
)

// Conn is one WebSocket connection. Methods marked "loop only" may be called
// only from Handler callbacks (or other code running on the connection's
// event loop); the others are safe from any goroutine.
//
// A Conn is one 256-byte allocation while idle, on top of gnet's ~400
// bytes per socket; a message that arrives in pieces borrows a pooled
// assembly buffer until it is delivered.
type Conn struct {
	gc     gnet.Conn
	loop   *Loop
	id     uint64
	remote net.Addr
	proto  string                    // selected subprotocol
	extra  atomic.Pointer[connExtra] // what only some connections need; nil for most
	ctx    any

	dec codec.Decoder

	state   connState
	opened  bool // OnOpen ran, so OnClose must run
	busy    bool // inside Decode: defer releasing the decoder
	discard bool // input is ignored until the peer goes away (failed, or plain HTTP answered)
	gone    atomic.Bool

	closeCode   codec.StatusCode
	closeRemote bool
	admit       admission // what it holds of the admission limits, or why it was refused (admit.go)
	searched    uint32    // handshake: bytes of the request searched for its end so far

	lastRead int64 // engine clock, ns
	lastPing int64
	deadline int64 // handshake or close deadline, ns

	next, prev   *Conn // the loop's list of connections
	tnext, tprev *Conn // timer wheel slot list
	tdue         int64 // wheel tick the connection is due at; 0 when not scheduled

	guard      *guard       // limits' state while a limit watches it (limits.go); nil for most
	sendQueued atomic.Int64 // bytes of frames Send queued that the loop has not written yet
}

// connExtra holds what most connections never need, to keep Conn in a
// 256-byte allocation: the request URI and headers (with Options.KeepPath
// and KeepHeaders), the close reason and a wss connection's TLS state.
// path, header and tls are set before the connExtra is stored in
// Conn.extra and never change (the upgrade stores a new connExtra that
// copies tls), so Path, Header and TLS may read them from any goroutine;
// closeReason and window are the loop's alone.
type connExtra struct {
	path        string
	header      []byte
	closeReason string
	window      []byte   // permessage-deflate with client context takeover: the last bytes received (deflate.go)
	tls         *tlsConn // wss only (tls.go)
	aux         *connAux // a deferred upgrade, an application timer (upgrade_defer.go, conn_timer.go)
}

// more returns c's connExtra, allocating it on first use. Loop only.
func (c *Conn) more() *connExtra {
	x := c.extra.Load()
	if x == nil {
		x = new(connExtra)
		c.extra.Store(x)
	}
	return x
}

// ID returns the connection's id, unique within its Engine. Any goroutine.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr returns the peer's address. Any goroutine.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Subprotocol returns the negotiated subprotocol, or "". Any goroutine.
func (c *Conn) Subprotocol() string { return c.proto }

// Path returns the request URI (path and query) of the upgrade request when
// Options.KeepPath is set, and "" otherwise. Any goroutine.
func (c *Conn) Path() string {
	if x := c.extra.Load(); x != nil {
		return x.path
	}
	return ""
}

// Header returns the first value of request header name (case-insensitive)
// when Options.KeepHeaders is set, and "" otherwise. Any goroutine.
func (c *Conn) Header(name string) string {
	if x := c.extra.Load(); x != nil {
		v, _ := headerValue(x.header, name)
		return v
	}
	return ""
}

// Context returns the value set by SetContext or by Options.OnUpgrade
// through Request.Context. Loop only.
func (c *Conn) Context() any { return c.ctx }

// SetContext attaches a value to the connection. Loop only.
func (c *Conn) SetContext(v any) { c.ctx = v }

// Write sends one unfragmented message or control frame: op is OpText,
// OpBinary, OpPing or OpPong (control payloads are at most 125 bytes).
// Loop only. Frames written to a connection from its own callbacks while
// the loop handles its input (OnMessage, say) are gathered and leave
// together with one write(2) when that input is done, so the replies to
// pipelined messages share a syscall (see cork.go); frames written to other
// connections, or from tasks and timers, leave at once: the header and
// payload in one write(2), or one writev(2) for payloads over 4 KiB. What
// the socket does not take is copied into gnet's outbound buffer, so p may
// be reused as soon as Write returns. It does not allocate.
//
// With permessage-deflate negotiated, a text or binary message of at least
// Compression.Threshold bytes is compressed (by a pooled compressor, into
// the loop's scratch buffer) and sent compressed when that is smaller.
func (c *Conn) Write(op codec.OpCode, p []byte) error {
	if err := c.writable(op, len(p)); err != nil {
		return err
	}
	if c.compress(op, len(p)) {
		l := c.loop
		z := codec.Compress(l.zout[:0], p, l.e.opts.Compression.Level)
		l.zout = z[:0]
		if len(z) < len(p) {
			return c.writeFrameRsv(op, codec.Rsv1, z)
		}
	}
	return c.writeFrame(op, p)
}

// WriteUncompressed is Write without compression, for a message the
// handler knows does not compress (already compressed media, say). Loop
// only.
func (c *Conn) WriteUncompressed(op codec.OpCode, p []byte) error {
	if err := c.writable(op, len(p)); err != nil {
		return err
	}
	return c.writeFrame(op, p)
}

// writable checks that c may be written a frame of op with n bytes.
func (c *Conn) writable(op codec.OpCode, n int) error {
	switch c.state {
	case stateOpen:
	case stateHandshake:
		return ErrNotOpen
	default:
		return ErrClosed
	}
	return checkOp(op, n)
}

// compress reports whether a message of op and n bytes is to be tried
// compressed: deflate negotiated, a data message, at least the threshold,
// and within the server window the peer allows.
func (c *Conn) compress(op codec.OpCode, n int) bool {
	d := c.dec.Deflate
	return d.On && (op == codec.OpText || op == codec.OpBinary) && n >= c.loop.e.opts.Compression.Threshold && d.Fits(n)
}

// Compression returns what the connection negotiated of permessage-deflate
// (the zero value when nothing). Any goroutine: it is set before OnOpen and
// never changes.
func (c *Conn) Compression() codec.Deflate { return c.dec.Deflate }

// WriteFrames sends frames that are already encoded (unmasked server frames,
// e.g. a broadcast encoded once for many connections), in order, with as few
// syscalls as it can without allocating: up to 8 frames go out with one
// writev(2); more frames totalling at most 256 KiB are copied into the
// loop's scratch buffer and sent with one write(2); larger batches go out 8
// frames per writev. Over wss the frames are encrypted where they are (a
// shared frame is not copied per connection; frames under 1 KiB are copied
// together to share TLS records) and their records leave with one write(2)
// per 256 KiB. Frames gathered by Write for the connection (see Write) are
// written first. Loop only. gnet copies what the socket does not take, so
// the frames may be reused when WriteFrames returns; the slice itself may
// be modified.
func (c *Conn) WriteFrames(frames [][]byte) error {
	l := c.loop
	if c.state != stateOpen || l.flushCork(c) != nil { // frames gathered for c go first
		return ErrClosed
	}
	if c.Full(0) {
		return c.refuse()
	}
	defer l.afterWrite(c)
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	st := &l.stats
	st.framesOut.Add(int64(len(frames)))
	st.bytesOut.Add(int64(total))
	if t := c.tlsConn(); t != nil {
		return t.writeFrames(frames)
	}
	if c.gc.OutboundBuffered() > 0 { // gnet copies them all: in pieces that fill its pool's slices
		st.writes.Add(1)
		return l.writePieces(c, frames)
	}
	if len(frames) <= maxIovecs {
		st.writes.Add(1)
		_, err := c.gc.Writev(frames)
		return err
	}
	if total <= maxGather {
		st.writes.Add(1)
		b := l.wbuf[:0]
		for _, f := range frames {
			b = append(b, f...)
		}
		l.wbuf = b[:0]
		_, err := c.gc.Write(b)
		return err
	}
	for len(frames) > 0 && c.state == stateOpen {
		n := min(len(frames), maxIovecs)
		st.writes.Add(1)
		if _, err := c.gc.Writev(frames[:n]); err != nil {
			return err
		}
		frames = frames[n:]
	}
	return nil
}

const (
	// maxIovecs is the most buffers one writev gets: golang.org/x/sys
	// allocates its iovec array beyond 8.
	maxIovecs = 8
	// maxGather is the most bytes WriteFrames copies to send in one write.
	maxGather = 256 << 10
)

// Buffered returns the number of bytes for the connection that the socket
// has not taken yet: gnet's outbound buffer, the frames gathered for the
// connection while its input is handled (at most 64 KiB, written when that
// input is done), and the frames Send queued that the loop has not written
// yet. Options.MaxBuffered caps it (see Full). Loop only.
func (c *Conn) Buffered() int {
	if c.state == stateClosed {
		return 0
	}
	n := c.gc.OutboundBuffered() + int(c.sendQueued.Load())
	if c.loop.corked == c {
		n += len(c.loop.cork)
	}
	return n
}

// Loop returns the event loop that owns the connection. Any goroutine.
func (c *Conn) Loop() *Loop { return c.loop }

// IsOpen reports whether the connection is upgraded and not closing: the
// state in which Write, WriteFrames and Send deliver. Loop only.
func (c *Conn) IsOpen() bool { return c.state == stateOpen }

// CloseNow is Close for code running on the connection's loop: the close
// frame is written at once, and nothing written after it is sent. Loop only.
func (c *Conn) CloseNow(code codec.StatusCode, reason string) {
	if code == 0 {
		code = codec.StatusNormalClosure
	}
	c.startClose(code, reason, false)
}

// Send is Write for any goroutine. It encodes the frame into a pooled buffer
// at once (so p may be reused when Send returns) and queues it on the
// connection's event loop, which writes it; frames queued for one
// connection in a row leave together with one write(2). Frames sent by Send
// arrive in the order Send was called; their order relative to Write calls
// made at the same time on the loop is not defined.
//
// Queued frames count against Options.MaxBuffered: when the frames already
// queued reach it, Send returns ErrBackpressure, queues nothing and closes
// the connection (with Options.BackpressureCode), as the loop does when a
// write finds the cap reached.
func (c *Conn) Send(op codec.OpCode, p []byte) error {
	if c.gone.Load() {
		return ErrClosed
	}
	if err := checkOp(op, len(p)); err != nil {
		return err
	}
	l := c.loop
	if max := l.e.opts.MaxBuffered; max > 0 && int(c.sendQueued.Load()) >= max {
		if c.gone.CompareAndSwap(false, true) {
			l.enqueue(task{kind: taskAbort, c: c})
		}
		return ErrBackpressure
	}
	bp := c.encodeForSend(op, p)
	c.sendQueued.Add(int64(len(*bp)))
	l.e.queued.Add(int64(len(*bp)))
	l.enqueue(task{kind: taskFrame, c: c, buf: bp})
	return nil
}

// encodeForSend encodes a frame for Send into a pooled buffer, compressed
// when Write would compress it. Any goroutine.
func (c *Conn) encodeForSend(op codec.OpCode, p []byte) *[]byte {
	if c.compress(op, len(p)) {
		zp := bufpool.Get(len(p))
		*zp = codec.Compress(*zp, p, c.loop.e.opts.Compression.Level)
		if len(*zp) < len(p) {
			bp := bufpool.Get(codec.FrameSize(len(*zp)))
			*bp = codec.AppendFrameRsv(*bp, codec.Rsv1, op, *zp)
			bufpool.Put(zp)
			return bp
		}
		bufpool.Put(zp)
	}
	bp := bufpool.Get(codec.FrameSize(len(p)))
	*bp = codec.AppendFrame(*bp, op, p)
	return bp
}

// Close starts the closing handshake with code and reason (cut to fit 123
// bytes): wsd sends its close frame, waits up to Options.CloseTimeout for the
// peer's, then closes TCP. A zero code sends 1000. Any goroutine; it returns
// at once, and OnClose reports the end.
func (c *Conn) Close(code codec.StatusCode, reason string) error {
	if c.gone.Load() {
		return ErrClosed
	}
	if code == 0 {
		code = codec.StatusNormalClosure
	}
	c.loop.enqueue(task{kind: taskClose, c: c, code: code, reason: reason})
	return nil
}

func checkOp(op codec.OpCode, n int) error {
	switch op {
	case codec.OpText, codec.OpBinary:
		return nil
	case codec.OpPing, codec.OpPong:
		if n > codec.MaxControlPayload {
			return codec.ErrControlTooLong
		}
		return nil
	}
	return codec.ErrReservedOpcode
}

// smallFrame is the largest payload copied next to its header for a single
// write(2) (or into the cork buffer); larger payloads go out with writev,
// uncopied.
const smallFrame = 4 << 10

// writeFrame sends one final frame (gathered while c is corked). Loop only.
// gnet closes the connection (and OnClose runs) if the socket fails.
func (c *Conn) writeFrame(op codec.OpCode, p []byte) error {
	return c.writeFrameRsv(op, 0, p)
}

// writeFrameRsv is writeFrame with RSV bits (codec.Rsv1 for a compressed
// message). Loop only.
func (c *Conn) writeFrameRsv(op codec.OpCode, rsv byte, p []byte) error {
	l := c.loop
	if op != codec.OpClose && c.Full(0) {
		return c.refuse()
	}
	hdr := l.enc.Encode(true, rsv, op, len(p))
	l.stats.framesOut.Add(1)
	l.stats.bytesOut.Add(int64(len(hdr) + len(p)))
	return l.send(c, hdr, p)
}

// startClose sends a close frame and moves to stateClosing: from then on
// wsd sends nothing, shuts down its sending side, and waits for the peer's
// close frame or TCP close, or CloseTimeout. discard ignores all further
// input (after a protocol error). Loop only.
func (c *Conn) startClose(code codec.StatusCode, reason string, discard bool) {
	if c.state != stateOpen {
		return
	}
	c.closeCode = code
	if reason != "" {
		c.more().closeReason = reason
	}
	c.writeClose(code, reason)
	c.linger(discard)
}

func (c *Conn) writeClose(code codec.StatusCode, reason string) {
	c.gone.Store(true)
	var b [codec.MaxControlPayload]byte
	_ = c.writeFrame(codec.OpClose, codec.AppendClose(b[:0], code, reason))
}

// linger half-closes the socket and waits for the peer to go away, up to
// CloseTimeout. Closing at once could turn into a TCP reset that destroys
// the close frame (or HTTP answer) the peer has not read yet.
func (c *Conn) linger(discard bool) {
	if c.state == stateClosed {
		return
	}
	c.state = stateClosing
	c.discard = c.discard || discard
	c.gone.Store(true)
	c.loop.uncorkConn(c) // the close frame leaves before the half-close
	if t := c.tlsConn(); t != nil {
		t.closeNotify() // and TLS ends before TCP
	}
	if c.state == stateClosed {
		return // the write failed and gnet closed the connection
	}
	if c.gc.OutboundBuffered() == 0 {
		if fd := c.gc.Fd(); fd >= 0 {
			_ = syscall.Shutdown(fd, syscall.SHUT_WR)
		}
	}
	l := c.loop
	c.deadline = l.e.clock() + int64(l.e.opts.CloseTimeout)
	if l.e.opts.CloseTimeout == 0 { // no wait: close once the current event is done
		l.enqueue(task{kind: taskHangUp, c: c})
		return
	}
	l.wheel.schedule(c, c.deadline)
}

// closeNow closes the TCP connection from a loop task (not from OnTraffic,
// which returns gnet.Close instead).
func (c *Conn) closeNow() {
	c.loop.uncorkConn(c)
	if c.state != stateClosed {
		_ = c.loop.el.Close(c.gc)
	}
}

// closeError describes the end of the connection for OnClose.
func (c *Conn) closeError(err error) *CloseError {
	if c.closeCode == 0 {
		return &CloseError{Code: codec.StatusAbnormalClosure, Err: err}
	}
	ce := &CloseError{Code: c.closeCode, Remote: c.closeRemote}
	if x := c.extra.Load(); x != nil {
		ce.Reason = x.closeReason
	}
	return ce
}
