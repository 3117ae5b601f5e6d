package broadcast

import (
	"sync"
	"sync/atomic"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/bufpool"
)

// message is one encoded frame shared by every loop that delivers it.
type message struct {
	hub   *Hub
	buf   *[]byte
	frame []byte
	refs  atomic.Int32
	res   *pubResult // PublishWait's, or nil
}

var messages = sync.Pool{New: func() any { return new(message) }}

// newMessage encodes payload once into a pooled buffer, with one reference
// held by the caller.
func (h *Hub) newMessage(op codec.OpCode, payload []byte) *message {
	m := messages.Get().(*message)
	m.hub = h
	m.buf = bufpool.Get(codec.FrameSize(len(payload)))
	*m.buf = codec.AppendFrame(*m.buf, op, payload)
	m.frame = *m.buf
	m.refs.Store(1)
	h.live.Add(1)
	return m
}

// release drops one reference; the last one returns the buffer to the pool.
func (m *message) release() {
	if m.refs.Add(-1) != 0 {
		return
	}
	m.hub.live.Add(-1)
	if m.res != nil {
		close(m.res.done)
	}
	bufpool.Put(m.buf)
	m.buf, m.frame, m.hub, m.res = nil, nil, nil, nil
	messages.Put(m)
}
