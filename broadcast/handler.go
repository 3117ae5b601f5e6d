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
	w.hub.conns.put(c)
	w.next.OnOpen(c)
}

func (w *hubHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	w.next.OnMessage(c, op, p)
}

func (w *hubHandler) OnClose(c *engine.Conn, err error) {
	w.hub.forget(c)
	w.hub.conns.del(c.ID())
	w.next.OnClose(c, err)
}

// connIndex maps connection ids to connections, sharded to keep loops from
// contending on one lock.
type connIndex struct {
	shards [32]struct {
		sync.RWMutex
		m map[uint64]*engine.Conn
	}
}

func (x *connIndex) init() {
	for i := range x.shards {
		x.shards[i].m = make(map[uint64]*engine.Conn)
	}
}

func (x *connIndex) put(c *engine.Conn) {
	s := &x.shards[c.ID()%uint64(len(x.shards))]
	s.Lock()
	s.m[c.ID()] = c
	s.Unlock()
}

func (x *connIndex) del(id uint64) {
	s := &x.shards[id%uint64(len(x.shards))]
	s.Lock()
	delete(s.m, id)
	s.Unlock()
}

func (x *connIndex) get(id uint64) *engine.Conn {
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
