package engine

import (
	"math/bits"
	"sort"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/codec"
)

// Limits: what keeps one connection, or many, from taking the server's
// memory.
//
// gnet has no backpressure. Its outbound buffer grows without limit, and it
// reads a connection whenever the socket is readable, even while that
// connection's output is blocked; gnet v2.10.0 has no call that stops
// reading one connection (its poller is internal). So the engine:
//
//  0. keeps the kernel from holding a backlog the cap does not see. Linux
//     lets a socket's send buffer grow to tcp_wmem's maximum (4 MiB by
//     default), all of it unsent when the peer does not read: the engine
//     decoded and answered a flooder's input for as long as the kernel
//     took the answers, 3.7 MiB of 64-byte frames per connection in the
//     flood test (internal/abuse), before its cap could be reached, and
//     that work starved the well-behaved connections of its loop. So every
//     TCP connection gets TCP_NOTSENT_LOWAT (kernelUnsent: an eighth of
//     MaxBuffered, from 16 KiB to 128 KiB): write(2) takes no more once
//     that much is unsent in the kernel, and the rest waits in gnet's
//     outbound buffer, where the cap counts it. It bounds only bytes not
//     yet sent: what is in flight to a peer that reads is bounded by the
//     send buffer as before, so a fast reader's throughput is unchanged;
//     a slow one wakes the loop (EPOLLOUT) when half of it has drained.
//  1. caps each connection's unsent bytes (Options.MaxBuffered) at every
//     write: gnet's outbound buffer, the cork and the frames Send queued.
//     A write that finds the cap reached closes the connection (abort);
//     control frames count too, and only the close frame passes.
//  2. stops decoding a connection whose backlog is over half the cap: its
//     input stays in gnet's inbound buffer and produces no replies, so
//     the backlog cannot grow from it. gnet still reads it, one read buffer
//     (64 KiB) per readable event; once the input waiting reaches a
//     quarter of the cap, or the input waiting and the output unsent
//     reach MaxBuffered together, the connection is closed the same way.
//     (The quarter: gnet's inbound buffer grows by whole power-of-two
//     sizes, so half a cap of input waiting took a whole cap of memory;
//     the flood test's 50 flooders grew the server's RSS by up to 51 MiB.)
//     A peer that does not read is not heard either, and holds about one
//     cap of memory (plus one message, and a read buffer).
//  3. keeps, per loop, a list of the connections that have a backlog, a
//     paused input or a partly received message (watched, with a guard),
//     and walks only that list once per tick: the write-stall timeout, the
//     message timeout, resuming paused input, and the sum of unsent bytes
//     that the global budget (MaxBufferedTotal) is checked against. Idle
//     and well-behaved connections are not on it and cost nothing.
//
// Closing for a limit does not wait for the peer's close frame: a peer that
// does not read would not send one. The close frame is written (past the
// cap), input is ignored, and the TCP connection is closed as soon as the
// current event is done.

// pieceMin is the size under which writePieces hands over the rest of a
// frame in one piece.
const pieceMin = 4 << 10

// writePieces hands frames to gnet for c, which already has a backlog in
// gnet, so that gnet copies them: once its 64 KiB ring is full, gnet
// copies each buffer it is given into a slice of its byte-slice pool,
// whose capacity is the size rounded up to a power of two. A broadcast
// frame of a 32 KiB payload (32,772 bytes with its header) took a 64 KiB
// slice, so a backlog that MaxBuffered counted as 1 MiB held up to 2 MiB.
// Cut into powers of two, the rest under pieceMin in one piece, each
// frame wastes less than pieceMin. No syscall is made (gnet only copies
// behind its backlog), and at most maxIovecs buffers go to one Writev, so
// nothing is allocated. Loop only.
func (l *Loop) writePieces(c *Conn, frames [][]byte) error {
	iov := l.pieces[:0]
	var err error
	for _, f := range frames {
		for len(f) > 0 && err == nil {
			n := len(f)
			if n > pieceMin {
				n = 1 << (bits.Len(uint(n)) - 1)
			}
			iov = append(iov, f[:n])
			f = f[n:]
			if len(iov) == len(l.pieces) {
				_, err = c.gc.Writev(iov)
				iov = iov[:0]
			}
		}
	}
	if len(iov) > 0 && err == nil {
		_, err = c.gc.Writev(iov)
	}
	l.pieces = [maxIovecs][]byte{}
	return err
}

// kernelUnsent returns the TCP_NOTSENT_LOWAT given to every TCP connection
// under a cap of capBytes unsent bytes (see above): an eighth of it, from
// 16 KiB to 128 KiB; 0 (the system's setting) without a cap.
func kernelUnsent(capBytes int) int {
	if capBytes <= 0 {
		return 0
	}
	return min(max(capBytes/8, 16<<10), 128<<10)
}

// limit names why a connection was closed or a message dropped.
type limit uint8

const (
	limBackpressure   limit = iota // a write found MaxBuffered unsent, or input piled up while output was blocked
	limWriteTimeout                // unsent bytes did not shrink for WriteTimeout
	limBudget                      // shed to bring all unsent bytes under MaxBufferedTotal
	limRate                        // over MaxMessageRate or MaxByteRate
	limMessageTimeout              // a message took longer than MessageTimeout
	limRateDropped                 // a message dropped by RateLimitDrop (the connection stays)
	limMaxConns                    // a connection refused for MaxConns (admit.go)
	limPerIP                       // a connection refused for MaxConnsPerIP
	limHandshakeRate               // a connection refused for HandshakeRatePerIP
	limIPTableFull                 // a connection admitted without per-IP limits: the table was full
	numLimits
)

var limitNames = [numLimits]string{"backpressure", "write_timeout", "budget", "rate_limit", "message_timeout", "rate_dropped",
	"max_conns", "per_ip", "handshake_rate", "ip_table_full"}

func (w limit) String() string { return limitNames[w] }

// limitCounts counts limit decisions and logs them at most once per second
// per kind, never once per message.
type limitCounts struct {
	n          [numLimits]atomic.Int64
	lastLog    [numLimits]atomic.Int64
	suppressed [numLimits]atomic.Int64
}

// note counts a decision about c and logs it unless one of its kind was
// logged less than a second ago. Any goroutine.
func (e *Engine) note(w limit, c *Conn) {
	lc := &e.limits
	lc.n[w].Add(1)
	now := e.clock()
	last := lc.lastLog[w].Load()
	if now-last < int64(time.Second) || !lc.lastLog[w].CompareAndSwap(last, now) {
		lc.suppressed[w].Add(1)
		return
	}
	remote := ""
	if c.remote != nil {
		remote = c.remote.String()
	}
	level := zap.WarnLevel
	if w == limRateDropped {
		level = zap.InfoLevel
	}
	if ent := e.log.Check(level, "limit reached"); ent != nil {
		ent.Write(zap.String("limit", w.String()), zap.Uint64("id", c.id), zap.String("remote", remote),
			zap.Int64("suppressed_since_last_log", lc.suppressed[w].Swap(0)))
	}
}

// guard is the state of a connection that a limit is watching. Most
// connections never have one; those that do get it from a per-loop free
// list, so watching allocates nothing in steady state.
type guard struct {
	watched    bool  // in the loop's watch list
	paused     bool  // input not decoded until the backlog drains
	stallSince int64 // when the backlog appeared or last shrank; 0: no backlog
	stallLow   int   // the smallest backlog seen since stallSince
	msgStart   int64 // when the message in progress began; 0: none
	msgs       bucket
	bytes      bucket
}

// bucket is a token bucket refilled lazily from the time of each take.
type bucket struct {
	tokens float64
	last   int64 // ns; 0: never used (full)
}

// take removes n tokens if the bucket holds them (or, for n over burst,
// if it is full: one large message is let through, and its debt paid back
// before the next). now is in ns.
func (b *bucket) take(now int64, rate, burst, n float64) bool {
	if b.last == 0 {
		b.tokens = burst
	} else if now > b.last {
		b.tokens = min(burst, b.tokens+float64(now-b.last)*rate/1e9)
	}
	b.last = max(b.last, now)
	if b.tokens < min(n, burst) {
		return false
	}
	b.tokens -= n
	return true
}

// maxFreeGuards bounds a loop's free list of guards.
const maxFreeGuards = 1024

// guardOf returns c's guard, giving it one if it has none. Loop only.
func (l *Loop) guardOf(c *Conn) *guard {
	if c.guard == nil {
		if n := len(l.freeGuards); n > 0 {
			c.guard = l.freeGuards[n-1]
			l.freeGuards[n-1] = nil
			l.freeGuards = l.freeGuards[:n-1]
		} else {
			c.guard = new(guard)
		}
	}
	return c.guard
}

// dropGuard takes c's guard back, unless rate limits need it for the
// connection's whole life. Loop only.
func (l *Loop) dropGuard(c *Conn) {
	g := c.guard
	if g == nil || g.watched || (l.e.rateLimited && c.state != stateClosed) {
		return
	}
	c.guard = nil
	*g = guard{}
	if len(l.freeGuards) < maxFreeGuards {
		l.freeGuards = append(l.freeGuards, g)
	}
}

// watch puts c on the loop's watch list, walked every tick. Loop only.
func (l *Loop) watch(c *Conn) *guard {
	g := l.guardOf(c)
	if !g.watched {
		g.watched = true
		l.watched = append(l.watched, c)
	}
	return g
}

// afterWrite watches c if a write left bytes in gnet's outbound buffer.
// Loop only; one check per write.
func (l *Loop) afterWrite(c *Conn) {
	if g := c.guard; g != nil && g.watched || c.state == stateClosed {
		return
	}
	if c.gc.OutboundBuffered() > 0 {
		l.watch(c)
	}
}

// Full reports whether c has Options.MaxBuffered or more bytes unsent
// (Buffered) once extra more are counted: a write now would be refused
// with ErrBackpressure and close the connection. Handlers that would rather
// shed load (skip a frame, or close with their own code) check it first.
// Always false without a cap, and for a closed connection. Loop only.
func (c *Conn) Full(extra int) bool {
	max := c.loop.e.opts.MaxBuffered
	return max > 0 && c.state != stateClosed && c.Buffered()+extra >= max
}

// refuse closes c because a write found its cap reached. Loop only.
func (c *Conn) refuse() error {
	c.abort(c.loop.e.opts.BackpressureCode, "send buffer full", limBackpressure)
	return ErrBackpressure
}

// abort closes c because of limit w: the close frame with code and reason
// is written past the cap, further input is ignored, and the TCP connection
// is closed once the current event is done, without waiting for the peer.
// Loop only.
func (c *Conn) abort(code codec.StatusCode, reason string, w limit) {
	if c.state == stateClosed {
		return
	}
	l := c.loop
	l.e.note(w, c)
	if c.state == stateOpen {
		c.closeCode = code
		c.more().closeReason = reason
		c.writeClose(code, reason)
		c.linger(true)
	}
	c.discard = true
	if c.state != stateClosed {
		l.enqueue(task{kind: taskHangUp, c: c})
	}
}

// holdInput reports whether c's input must wait for its output to drain
// (see the top of this file), closing c when the input kept meanwhile
// reaches a quarter of the cap, or the cap with the output. Loop only.
func (l *Loop) holdInput(c *Conn) bool {
	max := l.e.opts.MaxBuffered
	if max <= 0 || c.discard {
		return false
	}
	if g := c.guard; g != nil && g.paused {
		if c.Buffered() < max/4 {
			g.paused = false
			return false
		}
	} else {
		if c.Buffered() < max/2 {
			return false
		}
		l.watch(c).paused = true
	}
	if in := c.inHeld(); in >= max/4 || c.Buffered()+in >= max { // a peer that does not read holds at most one cap
		c.abort(l.e.opts.BackpressureCode, "input while output is blocked", limBackpressure)
		c.discardAll()
	}
	return true
}

// allowMessage applies the rate limits to a message of n bytes from c. It
// returns false when the message must not be delivered: dropped (counted),
// or the connection closed. Loop only.
func (l *Loop) allowMessage(c *Conn, n int) bool {
	o := &l.e.opts
	g := l.guardOf(c)
	now := time.Now().UnixNano() // the engine's clock moves once per tick: too coarse for a rate
	ok := true
	if o.MaxMessageRate > 0 {
		ok = g.msgs.take(now, o.MaxMessageRate, float64(o.MaxMessageBurst), 1)
	}
	if ok && o.MaxByteRate > 0 {
		burst := float64(max(o.MaxByteRate, o.MaxMessageSize))
		ok = g.bytes.take(now, float64(o.MaxByteRate), burst, float64(n))
	}
	switch {
	case ok:
		return true
	case o.RateLimitDrop:
		l.e.note(limRateDropped, c)
		return false
	}
	c.abort(codec.StatusPolicyViolation, "rate limit", limRate)
	return false
}

// walkWatched runs once per tick: for each watched connection it applies
// WriteTimeout and MessageTimeout, resumes paused input, and adds up the
// loop's unsent and held bytes for the budget; connections with nothing
// left to watch leave the list. Loop only.
func (l *Loop) walkWatched(now int64) {
	o := &l.e.opts
	list := l.watched
	l.watched = l.watchSpare[:0] // walking may watch more connections
	var unsent int64
	for i, c := range list {
		list[i] = nil
		g := c.guard
		if g == nil || c.state == stateClosed {
			if g != nil {
				g.watched = false
				l.dropGuard(c)
			}
			continue
		}
		b := c.Buffered()
		switch {
		case b == 0:
			g.stallSince = 0
		case g.stallSince == 0 || b < g.stallLow:
			g.stallSince, g.stallLow = now, b
		case o.WriteTimeout > 0 && now-g.stallSince >= int64(o.WriteTimeout):
			c.abort(codec.StatusPolicyViolation, "write timeout", limWriteTimeout)
		}
		if g.msgStart != 0 && !c.dec.InMessage() {
			g.msgStart = 0
		}
		if g.msgStart != 0 && o.MessageTimeout > 0 && now-g.msgStart >= int64(o.MessageTimeout) {
			c.abort(codec.StatusPolicyViolation, "message timeout", limMessageTimeout)
		}
		if g.paused && c.state == stateOpen && b < o.MaxBuffered/4 {
			g.paused = false
			l.resume(c)
		}
		if c.state != stateClosed {
			unsent += int64(c.Buffered() + c.dec.Held())
		}
		if c.state != stateClosed && (g.stallSince != 0 || g.msgStart != 0 || g.paused) {
			l.watched = append(l.watched, c)
			continue
		}
		g.watched = false
		l.dropGuard(c)
	}
	l.watchSpare = list[:0]
	l.unsent.Store(unsent)
	l.checkBudget(unsent)
}

// resume decodes the input c kept while its output drained. Loop only.
func (l *Loop) resume(c *Conn) {
	var act gnet.Action
	if t := c.tlsConn(); t != nil {
		act = l.tlsInput(c, t) // the ciphertext waited in gnet's buffer
	} else {
		act = l.readFrames(c)
	}
	if act == gnet.Close {
		c.closeNow()
	}
}

// checkBudget closes this loop's share of the connections over the global
// budget, the largest backlogs first. Loop only.
func (l *Loop) checkBudget(mine int64) {
	budget := l.e.opts.MaxBufferedTotal
	if budget <= 0 || mine == 0 {
		return
	}
	var total int64
	for _, other := range *l.e.list.Load() {
		total += other.unsent.Load()
	}
	total += l.e.queued.Load()
	if total <= budget {
		return
	}
	share := (total - budget) * mine / total // this loop's part of the excess
	cands := append(l.shedScratch[:0], l.watched...)
	size := func(c *Conn) int {
		if c.state == stateClosed {
			return 0
		}
		return c.Buffered() + c.dec.Held()
	}
	sort.Slice(cands, func(i, j int) bool { return size(cands[i]) > size(cands[j]) })
	var shed int64
	for _, c := range cands {
		if shed >= share {
			break
		}
		if n := size(c); n > 0 {
			shed += int64(n)
			c.abort(codec.StatusTryAgainLater, "server over its memory budget", limBudget)
		}
	}
	clear(cands)
	l.shedScratch = cands[:0]
}

// DefaultMaxBufferedTotal returns the default of Options.MaxBufferedTotal:
// a quarter of physical memory, at most 1 GiB (1 GiB when memory is not
// known).
func DefaultMaxBufferedTotal() int64 {
	const ceiling = 1 << 30
	if m := physicalMemory(); m > 0 {
		return min(m/4, ceiling)
	}
	return ceiling
}
