package broadcast

import (
	"errors"

	"github.com/wsdproject/wsd/engine"
)

// ErrTooManySubscriptions is returned by Subscribe when the topics would
// take a connection past Options.MaxSubscriptions; it then subscribes to
// none of them.
var ErrTooManySubscriptions = errors.New("broadcast: too many subscriptions for one connection")

// sub is a connection the hub knows (opened through Hub.Handler), and its
// subscriptions. It is created by the Handler on the connection's loop, and
// everything in it is touched only by that loop.
type sub struct {
	c         *engine.Conn
	in        []membership         // the topics it is subscribed to
	index     map[*loopTopic]int32 // position in in, once in is long (see member)
	pend      [][]byte             // frames queued in this batch, in order
	mark      uint64               // the delivery stamp it last got
	pendBytes int32                // bytes of pend
	dirty     bool                 // in the loop's dirty list
	closing   bool                 // over the cap with policy Close: Flush closes it
	envelope  bool                 // gets publishes in envelopes (SetEnvelope)
}

// membership is one subscription: the loop's set of a topic, and the
// subscriber's position in it.
type membership struct {
	lt  *loopTopic
	idx int32 // position in lt.members; -1 while joining (SubscribeSince)
}

// loopTopic is the subscribers of one topic on one loop.
type loopTopic struct {
	t       *topic
	lh      *loopHub
	members []*sub
	pending int32 // SubscribeSince joins not run yet: the set stays while any is
}

// linearMembers is how many subscriptions a connection has before its
// memberships get an index: below it a scan is faster than a map, and
// costs no memory.
const linearMembers = 8

// member returns the position of lt in s.in, or -1. O(1): a scan of at most
// linearMembers entries, or a map lookup.
func (s *sub) member(lt *loopTopic) int {
	if s.index != nil {
		if i, ok := s.index[lt]; ok {
			return int(i)
		}
		return -1
	}
	for i, m := range s.in {
		if m.lt == lt {
			return i
		}
	}
	return -1
}

// add appends membership m to s.
func (s *sub) add(m membership) {
	s.in = append(s.in, m)
	switch {
	case s.index != nil:
		s.index[m.lt] = int32(len(s.in) - 1)
	case len(s.in) > linearMembers:
		s.index = make(map[*loopTopic]int32, len(s.in))
		for i, m := range s.in {
			s.index[m.lt] = int32(i)
		}
	}
}

// remove deletes membership i of s, moving the last one into its place.
func (s *sub) remove(i int) {
	last := len(s.in) - 1
	if s.index != nil {
		delete(s.index, s.in[i].lt)
		if i != last {
			s.index[s.in[last].lt] = int32(i)
		}
	}
	s.in[i] = s.in[last]
	s.in[last] = membership{}
	s.in = s.in[:last]
	if len(s.in) <= linearMembers/2 {
		s.index = nil
	}
	if cap(s.in) > 2*linearMembers && len(s.in) < cap(s.in)/4 {
		s.in = append([]membership(nil), s.in...) // let a peak's array go
	}
}

// Subscribe adds c to topics. Loop only (call it from c's handlers).
// Subscribing twice to a topic is a no-op; each subscription costs O(1).
// c must have been opened through h.Handler, which removes its
// subscriptions when it closes: otherwise Subscribe returns ErrNotManaged
// and changes nothing. It returns engine.ErrClosed for a connection that is
// closing, and ErrTooManySubscriptions (subscribing to none of topics) when
// they would take c past Options.MaxSubscriptions.
func (h *Hub) Subscribe(c *engine.Conn, topics ...string) error {
	if !c.IsOpen() {
		return engine.ErrClosed
	}
	s := h.conns.get(c.ID())
	if s == nil || s.c != c {
		return ErrNotManaged
	}
	lh := h.loopHubFor(c.Loop())
	if max := h.opts.MaxSubscriptions; max > 0 && len(s.in)+len(topics) > max {
		fresh := 0
		for _, name := range topics {
			if lt := lh.topics[name]; lt == nil || s.member(lt) < 0 {
				fresh++
			}
		}
		if len(s.in)+fresh > max {
			return ErrTooManySubscriptions
		}
	}
	for _, name := range topics {
		lt := lh.topics[name]
		if lt == nil {
			lt = h.addLoopTopic(lh, name)
		} else if s.member(lt) >= 0 {
			continue
		}
		s.add(membership{lt: lt, idx: int32(len(lt.members))})
		lt.members = append(lt.members, s)
		s.count(lt.t, 1)
	}
	return nil
}

// Unsubscribe removes c from topics. Loop only.
func (h *Hub) Unsubscribe(c *engine.Conn, topics ...string) {
	s := h.conns.get(c.ID())
	if s == nil || s.c != c {
		return
	}
	lh := h.loopHubFor(c.Loop())
	for _, name := range topics {
		if lt := lh.topics[name]; lt != nil {
			if i := s.member(lt); i >= 0 {
				h.leave(s, i)
			}
		}
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
	s := h.conns.get(c.ID())
	if s == nil || s.c != c {
		return nil
	}
	out := make([]string, len(s.in))
	for i, m := range s.in {
		out[i] = m.lt.t.name
	}
	return out
}

// forget removes every subscription of s, whose connection closed. Loop
// only.
func (h *Hub) forget(s *sub) {
	for len(s.in) > 0 {
		h.leave(s, len(s.in)-1)
	}
}

// leave removes membership i of s. Loop only. O(1).
func (h *Hub) leave(s *sub, i int) {
	m := s.in[i]
	lt := m.lt
	if m.idx < 0 { // still joining: its joinTask finds it gone
		s.remove(i)
		s.count(lt.t, -1)
		return
	}
	last := len(lt.members) - 1
	if int(m.idx) != last {
		moved := lt.members[last]
		lt.members[m.idx] = moved
		moved.in[moved.member(lt)].idx = m.idx
	}
	lt.members[last] = nil
	lt.members = lt.members[:last]
	if cap(lt.members) > 64 && len(lt.members) < cap(lt.members)/4 {
		lt.members = append([]*sub(nil), lt.members...) // let a peak's array go
	}
	s.remove(i)
	s.count(lt.t, -1)
	if len(lt.members) == 0 && lt.pending == 0 {
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
		if b := h.opts.Broker; b != nil {
			b.Interest(name, true) // the first subscriber on this node
		}
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
		if b := h.opts.Broker; b != nil {
			b.Interest(t.name, false) // the last subscriber on this node left
		}
	}
}
