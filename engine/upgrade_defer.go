package engine

import (
	"net/http"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// Deferred upgrades. OnUpgrade runs on the event loop, so a check that
// takes more than a few microseconds (a bcrypt hash, an ECDSA or RSA
// signature, a call to another service) must not run in it: the loop's
// other connections would wait. Request.Defer lets OnUpgrade answer later,
// from any goroutine, through a Pending.
//
// While an upgrade is pending the request stays where it is, in the
// connection's input buffer, unparsed past its header, and so does any
// byte the client sends after it: nothing is decoded, nothing reaches the
// Handler. Pending.Accept and Pending.Reject post the answer to the
// connection's loop (Loop.Post), which then runs the upgrade again from the
// held request without calling OnUpgrade, writes the 101 and opens the
// connection (Handler.OnOpen, then the frames that followed the request),
// or writes the rejection and closes. A connection that closes while its
// upgrade is pending goes as any handshaking connection does (it never
// reached the Handler); the answer that comes later finds it gone and does
// nothing. An upgrade not answered by the handshake deadline
// (Options.HandshakeTimeout, or DefaultHandshakeTimeout when that is off)
// is answered 503 and closed.
//
// A pending upgrade costs one Pending (a 48-byte allocation) and a
// connExtra (96 bytes) unless the connection has one already (wss does);
// the field it takes in connExtra keeps that in the same size class. The
// upgrades OnUpgrade answers at once pay nothing for this.

// Pending is an upgrade whose answer OnUpgrade deferred with Request.Defer.
// Exactly one of Accept and Reject takes effect, the first called; later
// calls do nothing. Both are safe from any goroutine, including the loop
// (within OnUpgrade itself), and never block.
type Pending struct {
	c        *Conn
	answered atomic.Bool
	ctx      any
	resp     *Response
}

// maxDeferredEarly caps the bytes a client may send after its request while
// the upgrade is pending (RFC 6455 clients wait for the 101, but frames may
// be pipelined): beyond the request and this many bytes, the connection is
// closed.
const maxDeferredEarly = 16 << 10

// Defer tells the engine that OnUpgrade will answer later, through the
// returned Pending: OnUpgrade's own result is then ignored, and the
// connection waits, its input held, until Accept or Reject is called (or
// the handshake deadline). The Request is valid only until OnUpgrade
// returns: copy what the later check needs (a header, a query parameter)
// before returning. Calling Defer again in the same OnUpgrade returns the
// same Pending. It may be called only from OnUpgrade, and panics elsewhere.
func (r *Request) Defer() *Pending {
	u := r.up
	if u == nil || u.conn == nil {
		panic("engine: Request.Defer called outside Options.OnUpgrade")
	}
	if u.pending == nil {
		u.pending = &Pending{c: u.conn}
	}
	return u.pending
}

// Accept completes the upgrade: ctx becomes the Conn's Context (as
// Request.Context does for an upgrade accepted at once), the 101 is
// written on the connection's loop, and the Handler's OnOpen follows. It
// reports whether this call was the answer (false: already answered).
func (p *Pending) Accept(ctx any) bool {
	if !p.answered.CompareAndSwap(false, true) {
		return false
	}
	p.ctx = ctx
	p.c.loop.Post(p)
	return true
}

// Reject refuses the upgrade with resp, written on the connection's loop
// (the engine adds Content-Length and "Connection: close"), after which the
// connection closes; nil means 403 Forbidden with no body. Keep the body
// short, and never put credentials in it. It reports whether this call was
// the answer (false: already answered).
func (p *Pending) Reject(resp *Response) bool {
	if !p.answered.CompareAndSwap(false, true) {
		return false
	}
	if resp == nil {
		resp = &Response{Status: http.StatusForbidden}
	}
	p.resp = resp
	p.c.loop.Post(p)
	return true
}

// Gone reports whether the connection has closed, so that a slow check
// queued for it may be skipped. Any goroutine.
func (p *Pending) Gone() bool { return p.c.gone.Load() }

// Run delivers the answer on the connection's loop; it is the Task that
// Accept and Reject post. A connection no longer waiting for this answer
// (closed, timed out) is left alone.
func (p *Pending) Run(l *Loop) {
	c := p.c
	x := c.extra.Load()
	if c.state != stateHandshake || x.pendingUpgrade() != p {
		return
	}
	x.aux = nil
	if p.resp != nil {
		l.answerPending(c, p.resp)
		return
	}
	l.up.resumed = p
	// The upgrade from the held request, then the frames after it, as when
	// input arrives (for wss the held plaintext is parsed, and kept again).
	var act gnet.Action
	if t := c.tlsConn(); t != nil {
		act = l.tlsTraffic(c, t)
	} else {
		act = l.input(c)
	}
	l.up.resumed = nil
	if act == gnet.Close {
		c.closeNow()
	}
}

// deferUpgrade makes c wait for the answer of p. Loop only.
func (l *Loop) deferUpgrade(c *Conn, p *Pending) {
	c.more().moreAux().pending = p
	if c.tdue == 0 { // no handshake deadline: a pending upgrade always has one
		c.deadline = l.e.clock() + int64(DefaultHandshakeTimeout)
		l.wheel.schedule(c, c.deadline)
	}
}

// pendingInput handles input that arrives while c's upgrade is pending: it
// stays buffered, up to a cap. It reports whether c is pending. Loop only.
func (l *Loop) pendingInput(c *Conn) (gnet.Action, bool) {
	x := c.extra.Load()
	if x.pendingUpgrade() == nil {
		return gnet.None, false
	}
	if c.inBuffered() > l.e.opts.MaxHeaderBytes+maxDeferredEarly {
		x.aux = nil
		c.discard = true
		c.discardAll()
		return gnet.Close, true
	}
	return gnet.None, true
}

// expirePending answers 503 to c if its upgrade is still pending at the
// handshake deadline, and reports whether it did. Loop only.
func (l *Loop) expirePending(c *Conn) bool {
	x := c.extra.Load()
	if c.state != stateHandshake || x.pendingUpgrade() == nil {
		return false
	}
	x.aux = nil
	l.answerPending(c, &Response{Status: http.StatusServiceUnavailable, Header: textPlain, Body: []byte("upgrade not answered in time\n")})
	return true
}

var textPlain = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}

// answerPending writes r as the answer to c's held request, then closes c
// once the peer has read it (Conn.linger). Loop only.
func (l *Loop) answerPending(c *Conn, r *Response) {
	u := l.up
	u.out, u.req = u.out[:0], Request{}
	u.answer(r)
	c.discardAll()
	if c.output(u.out) == nil {
		c.linger(true)
	}
}

// connAux is what even fewer connections need than connExtra holds: a
// deferred upgrade, then an application timer (conn_timer.go). Loop only.
type connAux struct {
	pending *Pending // the upgrade OnUpgrade deferred, until it is answered
	timerAt int64    // Conn.SetTimer's time, engine clock ns; 0: none
}

// moreAux returns x's connAux, allocating it on first use. Loop only.
func (x *connExtra) moreAux() *connAux {
	if x.aux == nil {
		x.aux = new(connAux)
	}
	return x.aux
}

// pendingUpgrade returns the deferred upgrade of the connection of x (nil
// x: none). Loop only.
func (x *connExtra) pendingUpgrade() *Pending {
	if x == nil || x.aux == nil {
		return nil
	}
	return x.aux.pending
}
