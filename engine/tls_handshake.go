package engine

import (
	"crypto/tls"
	"net"
	"runtime"
	"sync"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/internal/bufpool"
)

// The TLS handshake of a wss connection (see tls.go for the phases).
//
// A connection waits in gnet's buffer until its first record, the
// ClientHello, is complete, so peers that connect and send nothing, or
// half a ClientHello, cost no handshake slot and no goroutine: the
// handshake deadline closes them. With a complete ClientHello it takes one
// of Options.MaxTLSHandshakes slots, or waits for one in the FIFO line of
// the engine's tlsGate, with no goroutine either. Its slot runs
// tls.Conn.Handshake in a goroutine over the connection's transport in
// blocking mode: reads wait on an inbox the loop fills with the ciphertext
// gnet reads (at most maxTLSEarly bytes), and writes (the server's flights,
// an alert) are posted to the loop, which writes them to gnet in order. The
// goroutine's last act is to post its result to the loop and give its slot
// to the head of the line. On the loop the connection then decrypts what
// followed the handshake (often the upgrade request, sent with the
// client's Finished) as any later input.

// maxTLSEarly caps the ciphertext a connection may send before its
// handshake is done (a ClientHello fits in 16 KiB; a client sends its
// upgrade request, and possibly frames, right after its Finished). Over it
// the connection is closed.
const maxTLSEarly = 64 << 10

// TLS record bytes the loop writes itself, before any handshake.
const (
	recordTypeHandshake = 22
	recordTypeAlert     = 21
)

var (
	// notTLSAnswer answers a clear-text HTTP request to a TLS port, as
	// net/http's TLS server does, so that a browser or curl pointed at the
	// wrong scheme says why.
	notTLSAnswer = []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 44\r\n\r\nthis port speaks TLS: use https:// or wss://\n")
	// alertUnexpected is a fatal unexpected_message alert in a TLS 1.0
	// record (what any TLS version reads), for a first record that is not
	// a handshake (RFC 8446 section 5: an unexpected record type).
	alertUnexpected = []byte{recordTypeAlert, 3, 1, 0, 2, 2, 10}
	// alertOverflow is a fatal record_overflow alert, for a first record
	// longer than a record may be.
	alertOverflow = []byte{recordTypeAlert, 3, 1, 0, 2, 2, 22}
)

// tlsTraffic is OnTraffic for a wss connection. Loop only.
func (l *Loop) tlsTraffic(c *Conn, t *tlsConn) gnet.Action {
	if c.discard {
		c.discardAll()
		return gnet.None
	}
	switch t.phase {
	case tlsHello:
		return l.tlsHello(c, t)
	case tlsQueued:
		if c.gc.InboundBuffered() > maxTLSEarly {
			return gnet.Close
		}
		return gnet.None // the bytes wait in gnet's buffer
	case tlsRunning:
		return t.feed()
	case tlsOpen:
		return l.tlsInput(c, t)
	}
	c.discardAll()
	return gnet.None
}

// tlsHello waits for the first record to be complete, then starts the
// handshake or queues for a slot. A first byte that is not a handshake
// record gets an answer in clear text: HTTP 400 when it looks like an HTTP
// request (a method starts with a capital letter), a fatal TLS alert
// otherwise; a record longer than a record may be gets record_overflow.
func (l *Loop) tlsHello(c *Conn, t *tlsConn) gnet.Action {
	gc := c.gc
	n := gc.InboundBuffered()
	if n == 0 {
		return gnet.None
	}
	head, err := gc.Peek(min(n, recordHeaderLen))
	if err != nil {
		return gnet.Close
	}
	if first := head[0]; first != recordTypeHandshake {
		if 'A' <= first && first <= 'Z' {
			return l.refuseTLS(c, t, notTLSAnswer)
		}
		return l.refuseTLS(c, t, alertUnexpected)
	}
	if n < recordHeaderLen {
		return gnet.None
	}
	if size := int(head[3])<<8 | int(head[4]); size > maxPlaintext {
		return l.refuseTLS(c, t, alertOverflow)
	} else if n < recordHeaderLen+size {
		return gnet.None
	}
	if l.e.gate.acquire(t) {
		l.startHandshake(t)
	} else {
		t.phase = tlsQueued
	}
	return gnet.None
}

// refuseTLS answers a peer that does not speak TLS with answer, in clear
// text, and closes the connection once the peer has read it (Conn.linger).
func (l *Loop) refuseTLS(c *Conn, t *tlsConn, answer []byte) gnet.Action {
	l.e.tlsFailures.Add(1)
	t.phase = tlsFailed
	_, _ = c.gc.Discard(-1)
	if _, err := c.gc.Write(answer); err == nil {
		c.linger(true)
	}
	return gnet.None
}

// startHandshake runs the handshake of t, which holds a slot, in a
// goroutine. Loop only.
func (l *Loop) startHandshake(t *tlsConn) {
	hs := &handshakeIO{}
	hs.ready.L = &hs.mu
	t.hs = hs
	t.phase = tlsRunning
	t.blocking = true
	_ = t.feed() // the first record fits: it is at most 16 KiB, and a queued connection holds at most maxTLSEarly
	tc := tls.Server(t, l.e.tlsConf)
	t.rec = tc
	go t.handshake(tc, l.e)
}

// handshake runs on its own goroutine. It must touch only tc, t.hs and
// what never changes (t.c, t.c.loop).
func (t *tlsConn) handshake(tc *tls.Conn, e *Engine) {
	t.hs.err = tc.Handshake()
	t.c.loop.enqueue(task{kind: taskRun, run: (*tlsDone)(t)})
	e.gate.release()
}

// feed moves what gnet holds into the inbox of the running handshake.
// Loop only.
func (t *tlsConn) feed() gnet.Action {
	gc := t.c.gc
	n := gc.InboundBuffered()
	if n == 0 {
		return gnet.None
	}
	hs := t.hs
	hs.mu.Lock()
	var held []byte
	if hs.in != nil {
		held = (*hs.in)[hs.off:]
	}
	if len(held)+n > maxTLSEarly {
		hs.mu.Unlock()
		return gnet.Close
	}
	if hs.off > 0 {
		*hs.in = (*hs.in)[:copy(*hs.in, held)]
		hs.off = 0
	}
	hs.in = bufpool.Grow(hs.in, n)
	b := *hs.in
	m, _ := gc.Read(b[len(b) : len(b)+n])
	*hs.in = b[:len(b)+m]
	hs.mu.Unlock()
	hs.ready.Signal()
	return gnet.None
}

// handshakeIO is the transport of a running handshake: the inbox the loop
// fills and the goroutine reads. The goroutine posts its writes to the
// loop.
type handshakeIO struct {
	mu     sync.Mutex
	ready  sync.Cond // signalled when the inbox grows or closes
	in     *[]byte   // ciphertext received (pooled); in[off:] not read yet
	off    int
	closed bool  // the connection is gone: reads fail
	err    error // the handshake's result, for the loop (through tlsDone)
}

// read blocks until the inbox holds bytes or is closed, then copies up to
// the end of the current record. The handshake goroutine only.
func (hs *handshakeIO) read(cut *recordCut, p []byte) (int, error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for !hs.closed && (hs.in == nil || hs.off == len(*hs.in)) {
		hs.ready.Wait()
	}
	if hs.in == nil || hs.off == len(*hs.in) {
		return 0, net.ErrClosed
	}
	return cut.fill(p, hs), nil
}

// write posts a copy of p to the loop, which writes it to gnet unless the
// connection has closed. The handshake goroutine only.
func (hs *handshakeIO) write(t *tlsConn, p []byte) (int, error) {
	bp := bufpool.Get(len(p))
	*bp = append(*bp, p...)
	t.c.loop.enqueue(task{kind: taskRaw, c: t.c, buf: bp})
	return len(p), nil
}

// close makes the handshake's reads fail. Any goroutine.
func (hs *handshakeIO) close() {
	hs.mu.Lock()
	hs.closed = true
	hs.mu.Unlock()
	hs.ready.Broadcast()
}

// pull copies from the inbox: for the goroutine's read (under mu), and on
// the loop for what the handshake left (the goroutine is done with it).
func (hs *handshakeIO) pull(p []byte) int {
	if hs.in == nil {
		return 0
	}
	n := copy(p, (*hs.in)[hs.off:])
	hs.off += n
	return n
}

// tlsDone is the Task a handshake posts to its loop when it ends.
type tlsDone tlsConn

// Run takes the connection back: the transport reads gnet's buffer from
// now on, and what followed the handshake is decrypted and handled. A
// failed handshake closes the connection once the peer has read the alert
// crypto/tls sent (it was posted before this task).
func (d *tlsDone) Run(l *Loop) {
	t := (*tlsConn)(d)
	c := t.c
	t.blocking = false
	err := t.hs.err
	if err != nil {
		l.e.tlsFailures.Add(1)
	}
	if c.state == stateClosed {
		t.dropInbox()
		return
	}
	if err != nil {
		if ent := l.e.log.Check(zap.DebugLevel, "TLS handshake failed"); ent != nil {
			ent.Write(zap.Stringer("remote", c.remote), zap.Error(err))
		}
		t.dropInbox()
		t.phase = tlsFailed
		c.linger(true)
		return
	}
	l.e.tlsHandshakes.Add(1)
	t.phase = tlsOpen
	if hs := t.hs; hs.in == nil || hs.off == len(*hs.in) {
		t.dropInbox()
	}
	if l.tlsInput(c, t) == gnet.Close {
		c.closeNow()
	}
}

// tlsStart is the Task that gives a queued connection the slot a handshake
// gave back.
type tlsStart tlsConn

// Run starts the handshake, or passes the slot on if the connection went
// away meanwhile.
func (s *tlsStart) Run(l *Loop) {
	t := (*tlsConn)(s)
	if t.c.state == stateClosed || t.phase != tlsQueued {
		l.e.gate.release()
		return
	}
	l.startHandshake(t)
}

// tlsGate bounds the handshakes running at once (Options.MaxTLSHandshakes).
// A connection whose ClientHello is complete takes a free slot, or waits in
// a FIFO line (an intrusive list: no allocation, no goroutine); a slot
// given back goes to the head of the line, whose loop starts its handshake.
// The handshake deadline bounds the wait: a connection closed while in line
// leaves it.
type tlsGate struct {
	mu         sync.Mutex
	unlimited  bool
	free       int
	head, tail *tlsConn
	waiting    int
}

func (g *tlsGate) init(slots int) {
	switch {
	case slots == 0:
		g.free = 4 * runtime.GOMAXPROCS(0)
	case slots < 0:
		g.unlimited = true
	default:
		g.free = slots
	}
}

// acquire takes a slot for t, or puts t at the end of the line and returns
// false. Loop only.
func (g *tlsGate) acquire(t *tlsConn) bool {
	if g.unlimited {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.free > 0 && g.head == nil {
		g.free--
		return true
	}
	t.prev, t.next = g.tail, nil
	if g.tail != nil {
		g.tail.next = t
	} else {
		g.head = t
	}
	g.tail = t
	t.queued = true
	g.waiting++
	return false
}

// cancel takes t out of the line, if it is still in it. Loop only.
func (g *tlsGate) cancel(t *tlsConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.queued {
		g.unlink(t)
	}
}

func (g *tlsGate) unlink(t *tlsConn) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		g.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		g.tail = t.prev
	}
	t.next, t.prev, t.queued = nil, nil, false
	g.waiting--
}

// release gives a slot back: to the head of the line, whose loop is told
// to start its handshake, or to the free slots. Any goroutine.
func (g *tlsGate) release() {
	if g.unlimited {
		return
	}
	g.mu.Lock()
	t := g.head
	if t == nil {
		g.free++
		g.mu.Unlock()
		return
	}
	g.unlink(t)
	g.mu.Unlock()
	t.c.loop.enqueue(task{kind: taskRun, run: (*tlsStart)(t)})
}

// queuedNow returns the connections waiting in line. Any goroutine.
func (g *tlsGate) queuedNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}
