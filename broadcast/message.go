package broadcast

import (
	"sync"
	"sync/atomic"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/bufpool"
)

// message is one encoded frame shared by every loop that delivers it, and
// its compressed twin when some subscriber negotiated permessage-deflate.
type message struct {
	hub    *Hub
	buf    *[]byte
	frame  []byte
	zbuf   *[]byte
	zframe []byte // the frame compressed (RSV1), or nil
	plen   int    // payload length, to check a subscriber's window
	refs   atomic.Int32
	res    *pubResult // PublishWait's, or nil
	envs   []envFrame // envelopes (Options.Envelope), one per topic with envelope subscribers
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
	m.plen = len(payload)
	m.refs.Store(1)
	h.live.Add(1)
	return m
}

// compress adds the compressed frame, once, when it is smaller, and
// reports whether it did. Called by the publisher before any loop sees the
// message.
func (m *message) compress(op codec.OpCode, payload []byte, level int) bool {
	zp := bufpool.Get(len(payload))
	*zp = codec.Compress(*zp, payload, level)
	if len(*zp) >= len(payload) {
		bufpool.Put(zp)
		return false
	}
	m.zbuf = bufpool.Get(codec.FrameSize(len(*zp)))
	*m.zbuf = codec.AppendFrameRsv(*m.zbuf, codec.Rsv1, op, *zp)
	m.zframe = *m.zbuf
	bufpool.Put(zp)
	return true
}

// frameFor returns the frame to send to c: the compressed one if c
// negotiated permessage-deflate and the message fits its window.
func (m *message) frameFor(c *engine.Conn) []byte {
	if m.zframe != nil {
		if d := c.Compression(); d.On && d.Fits(m.plen) {
			return m.zframe
		}
	}
	return m.frame
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
	if m.zbuf != nil {
		bufpool.Put(m.zbuf)
	}
	if len(m.envs) > 0 {
		m.releaseEnvelopes()
	}
	m.buf, m.frame, m.zbuf, m.zframe, m.hub, m.res = nil, nil, nil, nil, nil, nil
	messages.Put(m)
}
