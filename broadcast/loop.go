package broadcast

import (
	"sync"
	"sync/atomic"

	"github.com/wsdproject/wsd/engine"
)

// loopHub is the hub's state on one event loop. Everything but the
// counters is touched only by that loop's goroutine.
type loopHub struct {
	hub    *Hub
	loop   *engine.Loop
	topics map[string]*loopTopic
	subs   map[*engine.Conn]*sub

	dirty     []*sub     // subscribers with frames queued in this batch
	held      []*message // messages referenced by queued frames
	flushing  bool       // a Flush is scheduled
	mark      uint64     // delivery stamp, to give each subscriber a message once
	delivered atomic.Int64
	dropped   atomic.Int64

	slowClosed atomic.Int64
}

func newLoopHub(h *Hub, l *engine.Loop) *loopHub {
	return &loopHub{hub: h, loop: l, topics: make(map[string]*loopTopic), subs: make(map[*engine.Conn]*sub)}
}

// loopTopic is the subscribers of one topic on one loop.
type loopTopic struct {
	t       *topic
	lh      *loopHub
	members []*sub
}

// sub is one subscribed connection on a loop.
type sub struct {
	c         *engine.Conn
	in        []membership
	pend      [][]byte // frames queued in this batch, in order
	pendBytes int
	mark      uint64
	dirty     bool
	closing   bool // over the cap with policy Close: Flush closes it
}

type membership struct {
	lt  *loopTopic
	idx int // position in lt.members
}

// Subscribe adds c to topics. Loop only (call it from c's handlers).
// Subscribing twice to a topic is a no-op. c must have been opened through
// h.Handler, which removes its subscriptions when it closes: otherwise
// Subscribe returns ErrNotManaged and changes nothing. It returns
// engine.ErrClosed for a connection that is closing.
func (h *Hub) Subscribe(c *engine.Conn, topics ...string) error {
	if !c.IsOpen() {
		return engine.ErrClosed
	}
	if h.conns.get(c.ID()) != c {
		return ErrNotManaged
	}
	lh := h.loopHubFor(c.Loop())
	s := lh.subs[c]
	if s == nil {
		s = &sub{c: c}
		lh.subs[c] = s
	}
	for _, name := range topics {
		lt := lh.topics[name]
		if lt == nil {
			lt = h.addLoopTopic(lh, name)
		} else if s.member(lt) >= 0 {
			continue
		}
		s.in = append(s.in, membership{lt: lt, idx: len(lt.members)})
		lt.members = append(lt.members, s)
		lt.t.count.Add(1)
	}
	return nil
}

// Unsubscribe removes c from topics. Loop only.
func (h *Hub) Unsubscribe(c *engine.Conn, topics ...string) {
	lh := h.loopHubFor(c.Loop())
	s := lh.subs[c]
	if s == nil {
		return
	}
	for _, name := range topics {
		if lt := lh.topics[name]; lt != nil {
			if i := s.member(lt); i >= 0 {
				h.leave(s, i)
			}
		}
	}
	if len(s.in) == 0 {
		delete(lh.subs, c)
	}
}

// SubscribeAsync is Subscribe for any goroutine: it runs on c's loop soon.
func (h *Hub) SubscribeAsync(c *engine.Conn, topics ...string) {
	c.Loop().Post(&asyncSub{h: h, c: c, topics: topics, on: true})
}

// UnsubscribeAsync is Unsubscribe for any goroutine.
func (h *Hub) UnsubscribeAsync(c *engine.Conn, topics ...string) {
	c.Loop().Post(&asyncSub{h: h, c: c, topics: topics})
}

type asyncSub struct {
	h      *Hub
	c      *engine.Conn
	topics []string
	on     bool
}

func (a *asyncSub) Run(*engine.Loop) {
	if a.on {
		_ = a.h.Subscribe(a.c, a.topics...) // a closed or unmanaged connection subscribes to nothing
	} else {
		a.h.Unsubscribe(a.c, a.topics...)
	}
}

// Subscriptions returns the topics c is subscribed to. Loop only.
func (h *Hub) Subscriptions(c *engine.Conn) []string {
	s := h.loopHubFor(c.Loop()).subs[c]
	if s == nil {
		return nil
	}
	out := make([]string, len(s.in))
	for i, m := range s.in {
		out[i] = m.lt.t.name
	}
	return out
}

// forget removes every subscription of c. Loop only.
func (h *Hub) forget(c *engine.Conn) {
	lh := h.loopHubFor(c.Loop())
	s := lh.subs[c]
	if s == nil {
		return
	}
	for len(s.in) > 0 {
		h.leave(s, len(s.in)-1)
	}
	delete(lh.subs, c)
}

func (s *sub) member(lt *loopTopic) int {
	for i, m := range s.in {
		if m.lt == lt {
			return i
		}
	}
	return -1
}

// leave removes membership i of s. Loop only.
func (h *Hub) leave(s *sub, i int) {
	m := s.in[i]
	lt := m.lt
	last := len(lt.members) - 1
	if m.idx != last {
		moved := lt.members[last]
		lt.members[m.idx] = moved
		moved.in[moved.member(lt)].idx = m.idx
	}
	lt.members[last] = nil
	lt.members = lt.members[:last]
	s.in[i] = s.in[len(s.in)-1]
	s.in = s.in[:len(s.in)-1]
	lt.t.count.Add(-1)
	if len(lt.members) == 0 {
		h.removeLoopTopic(lt)
	}
}

// addLoopTopic creates the loop's set for topic name. Loop only.
func (h *Hub) addLoopTopic(lh *loopHub, name string) *loopTopic {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[name]
	if t == nil {
		t = &topic{name: name}
		t.sets.Store(new([]*loopTopic))
		h.topics[name] = t
	}
	lt := &loopTopic{t: t, lh: lh}
	sets := append(append([]*loopTopic(nil), *t.sets.Load()...), lt)
	t.sets.Store(&sets)
	lh.topics[name] = lt
	return lt
}

// removeLoopTopic drops an empty loop set, and the topic with its last set.
// Loop only. A publish that still holds the old set list delivers to the
// empty set, which is harmless.
func (h *Hub) removeLoopTopic(lt *loopTopic) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := lt.t
	old := *t.sets.Load()
	sets := make([]*loopTopic, 0, len(old))
	for _, x := range old {
		if x != lt {
			sets = append(sets, x)
		}
	}
	t.sets.Store(&sets)
	delete(lt.lh.topics, t.name)
	if len(sets) == 0 && h.topics[t.name] == t {
		delete(h.topics, t.name)
	}
}

// delivery is one published message for one loop: the loop's sets of the
// message's topics. Pooled.
type delivery struct {
	lh      *loopHub
	msg     *message
	exclude uint64
	sets    []*loopTopic
}

var deliveries = sync.Pool{New: func() any { return &delivery{sets: make([]*loopTopic, 0, 4)} }}

// Run queues the message for each local subscriber. Loop only.
func (d *delivery) Run(*engine.Loop) {
	lh, frame := d.lh, d.msg.frame
	lh.mark++
	mark := lh.mark
	max := lh.hub.opts.MaxBuffered
	for _, lt := range d.sets {
		for _, s := range lt.members {
			if s.mark == mark || (d.exclude != 0 && s.c.ID() == d.exclude) {
				continue
			}
			s.mark = mark
			if !s.c.IsOpen() || s.closing {
				continue
			}
			if s.c.Buffered()+s.pendBytes+len(frame) > max {
				lh.slow(s)
				continue
			}
			s.pend = append(s.pend, frame)
			s.pendBytes += len(frame)
			if !s.dirty {
				s.dirty = true
				lh.dirty = append(lh.dirty, s)
			}
		}
	}
	lh.held = append(lh.held, d.msg)
	if !lh.flushing {
		lh.flushing = true
		lh.loop.FlushLater(lh)
	}
	d.lh, d.msg, d.exclude = nil, nil, 0
	clear(d.sets)
	d.sets = d.sets[:0]
	deliveries.Put(d)
}

// slow applies the slow-consumer policy to s. Loop only.
//
// Close is left to Flush: writing the close frame can fail, and then the
// engine closes the connection at once and OnClose unsubscribes it, which
// must not happen while Run walks the topic's members.
func (lh *loopHub) slow(s *sub) {
	if lh.hub.opts.Policy == Close {
		lh.slowClosed.Add(1)
		s.closing = true
		if !s.dirty {
			s.dirty = true
			lh.dirty = append(lh.dirty, s)
		}
		return
	}
	lh.dropped.Add(1)
}

// maxKeptPend is the largest per-subscriber frame queue kept between
// batches: ordinary traffic reuses it without allocating, and a burst's
// longer queue (thousands of frames for every subscriber) is freed.
const maxKeptPend = 64

// Flush writes every subscriber's queued frames with one call each and
// releases the messages of the batch. Loop only.
func (lh *loopHub) Flush(*engine.Loop) {
	var n int64
	for i, s := range lh.dirty {
		if s.closing {
			s.closing = false
			s.c.CloseNow(lh.hub.opts.CloseCode, "slow consumer")
		} else if len(s.pend) > 0 && s.c.IsOpen() {
			if s.c.WriteFrames(s.pend) == nil {
				n += int64(len(s.pend))
			}
		}
		if cap(s.pend) > maxKeptPend {
			s.pend = nil // a burst grew it: let it go rather than keep it per subscriber
		} else {
			clear(s.pend)
			s.pend = s.pend[:0]
		}
		s.pendBytes = 0
		s.dirty = false
		lh.dirty[i] = nil
	}
	lh.dirty = lh.dirty[:0]
	lh.delivered.Add(n)
	for i, m := range lh.held {
		m.release()
		lh.held[i] = nil
	}
	lh.held = lh.held[:0]
	lh.flushing = false
}
