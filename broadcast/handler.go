package broadcast

import (
	"sync"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// Handler wraps next so that the hub knows every open connection (for
// SendTo) and removes a connection's subscriptions when it closes, before
// next.OnClose runs.
func (h *Hub) Handler(next engine.Handler) engine.Handler {
	return &hubHandler{hub: h, next: next}
}

type hubHandler struct {
	hub  *Hub
	next engine.Handler
}

func (w *hubHandler) OnOpen(c *engine.Conn) {
	w.hub.conns.put(&sub{c: c})
	if f := w.hub.opts.UserOf; f != nil {
		if u := f(c); u != "" {
			w.hub.users.add(u, c)
		}
	}
	w.next.OnOpen(c)
}

func (w *hubHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	w.next.OnMessage(c, op, p)
}

func (w *hubHandler) OnClose(c *engine.Conn, err error) {
	if s := w.hub.conns.del(c.ID()); s != nil {
		w.hub.forget(s)
	}
	if f := w.hub.opts.UserOf; f != nil {
		if u := f(c); u != "" {
			w.hub.users.remove(u, c)
		}
	}
	w.next.OnClose(c, err)
}

// connIndex maps connection ids to the hub's subscribers, sharded to keep
// loops from contending on one lock. It holds every connection opened
// through Hub.Handler: that is how SendTo finds one, and how Subscribe
// knows the hub will see it close.
type connIndex struct {
	shards [32]struct {
		sync.RWMutex
		m    map[uint64]*sub
		peak int // the most entries m held since it was made
	}
}

func (x *connIndex) init() {
	for i := range x.shards {
		x.shards[i].m = make(map[uint64]*sub)
	}
}

func (x *connIndex) put(s *sub) {
	id := s.c.ID()
	sh := &x.shards[id%uint64(len(x.shards))]
	sh.Lock()
	sh.m[id] = s
	sh.peak = max(sh.peak, len(sh.m))
	sh.Unlock()
}

// del removes id and returns its entry. A Go map keeps the memory of its
// peak: a shard that falls to a quarter of its peak is copied into a fresh
// map, so a million connections that came and went do not stay.
func (x *connIndex) del(id uint64) *sub {
	sh := &x.shards[id%uint64(len(x.shards))]
	sh.Lock()
	defer sh.Unlock()
	s := sh.m[id]
	delete(sh.m, id)
	if sh.peak > 1024 && len(sh.m) < sh.peak/4 {
		m := make(map[uint64]*sub, len(sh.m))
		for k, v := range sh.m {
			m[k] = v
		}
		sh.m, sh.peak = m, len(m)
	}
	return s
}

func (x *connIndex) get(id uint64) *sub {
	s := &x.shards[id%uint64(len(x.shards))]
	s.RLock()
	defer s.RUnlock()
	return s.m[id]
}

func (x *connIndex) len() int {
	n := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.RLock()
		n += len(s.m)
		s.RUnlock()
	}
	return n
}
