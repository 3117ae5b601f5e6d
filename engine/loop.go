package engine

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/bufpool"
)

// Loop is one event loop: the goroutine that owns a set of connections and
// runs their Handler callbacks. Code running on a loop (callbacks, and Tasks
// posted to it) may use the loop-only Conn methods of its connections.
// Everything in it except the task queue is touched only by its goroutine.
type Loop struct {
	e     *Engine
	el    gnet.EventLoop
	index int

	enc  codec.HeaderEncoder
	wbuf []byte    // scratch for small frames and HTTP answers
	iov  [3][]byte // buffers for one writev
	// pieces are frames cut for gnet's pool, for a connection with a
	// backlog (writePieces, limits.go).
	pieces [maxIovecs][]byte
	cork   []byte // frames gathered for the corked connection (cork.go)

	// wss (tls.go): the records one write of a connection makes, handed
	// to gnet together, and the scratch its input is decrypted into; the
	// connections whose crypto/tls buffers are let go when they are quiet
	// (tls_quiet.go), and how many (read by tests).
	tlsOut    []byte
	plain     []byte
	tlsQuiet  []*tlsConn
	tlsListed atomic.Int64

	// permessage-deflate: scratch for compressing outgoing messages, and
	// the inflater and buffer for incoming ones (deflate.go).
	zout     []byte
	inflater codec.Inflater
	zin      *[]byte

	corked *Conn // the connection whose frames are gathered, or nil
	up     *upgrader

	conns connList // every connection of this loop
	wheel wheel

	// The task queue: other goroutines append under mu and ring the
	// doorbell; the loop swaps the slice out and runs it in order.
	// gnet's Execute is only the doorbell: two Execute tasks can run out of
	// order under load, and each costs allocations.
	mu       sync.Mutex
	queue    []task
	spare    []task
	ringing  atomic.Bool
	timerDue atomic.Bool
	drainFn  gnet.RunnableFunc

	flushers []Flusher // to run once the current batch of work is done

	// Limits (limits.go): connections a limit watches, walked every tick.
	watched     []*Conn
	watchSpare  []*Conn
	freeGuards  []*guard
	shedScratch []*Conn
	unsent      atomic.Int64 // unsent and held bytes of the watched connections at the last tick

	// inEvent is set while the loop runs Handler code for one gnet event
	// (a connection's input, a batch of tasks, a close); Handler.OnClose
	// calls that come up meanwhile wait in gone (see closed).
	inEvent bool
	gone    []goneConn

	stats loopStats
}

type taskKind uint8

const (
	taskFrame    taskKind = iota + 1 // write buf (an encoded frame) to c, then return buf to the pool
	taskClose                        // start the closing handshake of c
	taskShutdown                     // close every connection with 1001
	taskRun                          // run a posted Task
	taskHangUp                       // close c's TCP connection (a closing handshake that does not wait)
	taskAbort                        // close c for backpressure (Send found its queue full)
	taskRaw                          // write buf to c as it is (a TLS handshake's flight), then return buf to the pool
)

type task struct {
	kind   taskKind
	run    Task
	c      *Conn
	buf    *[]byte
	code   codec.StatusCode
	reason string
}

func newLoop(e *Engine, el gnet.EventLoop, index int) *Loop {
	l := &Loop{e: e, el: el, index: index, wbuf: make([]byte, 0, smallFrame+codec.MaxHeaderSize)}
	l.up = newUpgrader(&e.opts)
	l.wheel.init(e.tickEvery, e.clock())
	l.drainFn = l.drain
	return l
}

// enqueue adds t to the loop's queue and rings the doorbell. Any goroutine.
func (l *Loop) enqueue(t task) {
	l.mu.Lock()
	l.queue = append(l.queue, t)
	l.mu.Unlock()
	l.ring()
}

// ring makes sure a drain is scheduled on the loop; rings coalesce.
func (l *Loop) ring() {
	if l.ringing.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l.drainFn); err != nil {
			l.ringing.Store(false) // the engine is stopping; OnClose will clean up
		}
	}
}

// drain runs queued tasks and due timers. Loop only.
func (l *Loop) drain(context.Context) error {
	if l.enter() {
		defer l.exit()
	}
	l.ringing.Store(false) // before taking the queue: a later enqueue rings again
	l.mu.Lock()
	q := l.queue
	l.queue = l.spare[:0]
	l.mu.Unlock()
	for i := range q {
		l.run(&q[i])
		q[i] = task{}
	}
	l.uncork()
	if cap(q) <= maxKeptTasks {
		l.spare = q[:0]
	} else {
		l.spare = nil // a burst grew it: let it go
	}
	l.flush()
	if l.timerDue.Swap(false) {
		now := l.e.clock()
		l.wheel.advance(now, l.onTimer)
		l.walkWatched(now)
		l.releaseQuietTLS()
		l.flush()
	}
	return nil
}

// maxKeptTasks is the largest task queue a loop keeps between batches.
const maxKeptTasks = 1024

func (l *Loop) run(t *task) {
	c := t.c
	if t.kind == taskFrame { // consecutive frames for one connection leave together
		// corkTo first: writing another connection's frames may close it,
		// and its OnClose may close c.
		l.corkTo(c)
		n := int64(len(*t.buf))
		c.sendQueued.Add(-n)
		l.e.queued.Add(-n)
		if c.state == stateOpen && c.Full(0) {
			_ = c.refuse()
		} else if l.send(c, *t.buf, nil) == nil {
			l.stats.framesOut.Add(1)
			l.stats.bytesOut.Add(n)
		}
		bufpool.Put(t.buf)
		return
	}
	l.uncork() // other tasks run with nothing gathered
	switch t.kind {
	case taskClose:
		c.startClose(t.code, t.reason, false)
	case taskRun:
		t.run.Run(l)
	case taskHangUp:
		if c.state == stateClosing || c.state == stateHandshake {
			c.closeNow()
		}
	case taskAbort:
		c.abort(l.e.opts.BackpressureCode, "send queue full", limBackpressure)
	case taskRaw:
		if c.state != stateClosed { // gnet may have given the socket to another connection
			_, _ = c.gc.Write(*t.buf)
		}
		bufpool.Put(t.buf)
	case taskShutdown:
		for c := l.conns.head; c != nil; {
			next := c.next
			switch c.state {
			case stateOpen:
				c.startClose(codec.StatusGoingAway, "server shutting down", false)
			case stateHandshake:
				c.closeNow()
			}
			c = next
		}
	}
}

// open finishes an upgrade: c is now a WebSocket connection. Loop only.
func (l *Loop) open(c *Conn) {
	e := l.e
	c.state = stateOpen
	c.opened = true
	c.id = e.nextID.Add(1)
	now := e.clock()
	c.lastRead, c.lastPing = now, now
	l.wheel.unschedule(c)
	l.scheduleKeepalive(c, now)
	e.upgrades.Add(1)
	e.h.OnOpen(c)
}

// scheduleKeepalive puts c in the wheel for its next ping or idle check.
func (l *Loop) scheduleKeepalive(c *Conn, now int64) {
	o := &l.e.opts
	var at int64
	if o.PingInterval > 0 {
		at = max(c.lastRead, c.lastPing) + int64(o.PingInterval)
	}
	if o.IdleTimeout > 0 {
		idle := c.lastRead + int64(o.IdleTimeout)
		if at == 0 || idle < at {
			at = idle
		}
	}
	if t := c.timerAt(); t != 0 && (at == 0 || t < at) { // Conn.SetTimer (conn_timer.go)
		at = t
	}
	if at != 0 {
		l.wheel.schedule(c, max(at, now))
	}
}

// onTimer handles a connection whose timer came due. Loop only.
func (l *Loop) onTimer(c *Conn, now int64) {
	o := &l.e.opts
	switch c.state {
	case stateHandshake, stateClosing:
		if now >= c.deadline {
			if !l.expirePending(c) { // a deferred upgrade gets a 503
				c.closeNow()
			}
			return
		}
		if c.state == stateClosing && c.closeRemote {
			// The peer's close was answered while output was still
			// queued (readFrames): close once it has all left, looking
			// every tick.
			if c.gc.OutboundBuffered() == 0 {
				c.closeNow()
				return
			}
			l.wheel.schedule(c, min(c.deadline, now+l.e.tickEvery))
			return
		}
		l.wheel.schedule(c, c.deadline)
	case stateOpen:
		if !l.fireTimer(c, now) { // Conn.SetTimer's; OnTimer may close c
			return
		}
		if o.IdleTimeout > 0 && now-c.lastRead >= int64(o.IdleTimeout) {
			c.startClose(codec.StatusGoingAway, "idle timeout", true)
			return
		}
		if o.PingInterval > 0 && now-max(c.lastRead, c.lastPing) >= int64(o.PingInterval) {
			if c.writeFrame(codec.OpPing, nil) != nil {
				return // gnet closed it
			}
			c.lastPing = now
		}
		l.scheduleKeepalive(c, now)
	}
}

// connList is an intrusive doubly linked list of connections.
type connList struct {
	head *Conn
	n    int
}

func (s *connList) add(c *Conn) {
	c.prev, c.next = nil, s.head
	if s.head != nil {
		s.head.prev = c
	}
	s.head = c
	s.n++
}

func (s *connList) remove(c *Conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if s.head == c {
		s.head = c.next
	} else {
		return // not in the list
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	s.n--
}

// Task is work posted to a Loop with Post. Run runs on the loop's goroutine.
type Task interface {
	Run(l *Loop)
}

// Flusher is work deferred with FlushLater.
type Flusher interface {
	Flush(l *Loop)
}

// Index returns the loop's number, from 0 to the number of loops - 1, in the
// order loops received their first connection. Any goroutine.
func (l *Loop) Index() int { return l.index }

// Post queues t to run on the loop. Any goroutine. Tasks run in the order
// they were posted; posting wakes the loop at most once per batch (gnet's
// Execute is only the doorbell), and costs no allocation when t is a
// pointer and the loop is already awake.
func (l *Loop) Post(t Task) {
	l.enqueue(task{kind: taskRun, run: t})
}

// FlushLater makes the loop call f.Flush once the batch of work it is
// running (the queued tasks, or the input of one connection) is done, so
// that a Task can gather writes for many connections and send each
// connection's share with one syscall. Loop only. f is called once per
// FlushLater call.
func (l *Loop) FlushLater(f Flusher) {
	l.flushers = append(l.flushers, f)
}

// flush runs the deferred Flushers. Loop only.
func (l *Loop) flush() {
	for i := 0; i < len(l.flushers); i++ { // a Flusher may add another
		l.flushers[i].Flush(l)
		l.flushers[i] = nil
	}
	l.flushers = l.flushers[:0]
}

// goneConn is a connection whose Handler.OnClose waits for the current
// event to end.
type goneConn struct {
	c   *Conn
	err *CloseError
}

// enter marks the start of an event in which Handler code may run. Events
// do not nest; enter inside one is a no-op. Loop only.
func (l *Loop) enter() bool {
	if l.inEvent {
		return false
	}
	l.inEvent = true
	return true
}

// exit ends the event: it runs the Handler.OnClose calls that waited for
// it, in the order the connections closed (a close they cause waits its
// turn in the same list). Loop only.
func (l *Loop) exit() {
	for i := 0; i < len(l.gone); i++ {
		g := l.gone[i]
		l.gone[i] = goneConn{}
		l.e.h.OnClose(g.c, g.err)
	}
	l.gone = l.gone[:0]
	l.inEvent = false
}

// closed delivers Handler.OnClose for c. gnet closes a connection whose
// write fails at once, inside the callback that wrote: a handler writing to
// connection B from OnMessage(A), or a broadcast task walking its
// subscribers, would otherwise see B's OnClose run nested in its own call
// and change the state it is walking. So during an event the call waits
// until the event's Handler code has returned (exit); the connection is
// already closed for writes (Write returns ErrClosed, IsOpen is false).
// Loop only.
func (l *Loop) closed(c *Conn, ce *CloseError) {
	if l.inEvent {
		l.gone = append(l.gone, goneConn{c: c, err: ce})
		return
	}
	l.enter()
	l.e.h.OnClose(c, ce)
	l.exit()
}
