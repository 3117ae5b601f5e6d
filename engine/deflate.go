package engine

import (
	"unicode/utf8"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/bufpool"
)

// Incoming compressed messages (permessage-deflate). The decoder hands a
// message whose first frame had RSV1 over still compressed; the loop's
// Inflater inflates it into the loop's buffer, the size limit applies to
// the inflated bytes as they come (a message that would inflate past
// MaxMessageSize fails with 1009 at that point, the rest never inflated),
// text is checked as UTF-8 after inflating, and the handler gets it like
// any message. The loop's buffer is kept for the next message unless it
// grew past maxKeptInflate.

// maxKeptInflate is the largest inflate buffer a loop keeps between
// messages.
const maxKeptInflate = 1 << 20

// OnCompressed inflates and delivers a compressed message. Loop only.
func (r *receiver) OnCompressed(op codec.OpCode, p []byte) error {
	c := (*Conn)(r)
	if c.state != stateOpen {
		return nil
	}
	l := c.loop
	var dict []byte
	d := c.dec.Deflate
	if d.ClientContextTakeover {
		dict = c.more().window
	}
	out, err := l.inflater.Inflate(l.zin, p, l.e.opts.MaxMessageSize, dict)
	l.zin = out
	defer l.releaseInflated()
	if err != nil {
		return err
	}
	msg := *out
	if op == codec.OpText && !utf8.Valid(msg) {
		return codec.ErrInvalidUTF8
	}
	if d.ClientContextTakeover {
		c.keepWindow(msg, d.ClientMaxWindowBits)
	}
	return r.OnMessage(op, msg)
}

// releaseInflated empties the loop's inflate buffer, letting a large one go
// back to the pool.
func (l *Loop) releaseInflated() {
	if l.zin == nil {
		return
	}
	if cap(*l.zin) > maxKeptInflate {
		bufpool.Put(l.zin)
		l.zin = nil
		return
	}
	*l.zin = (*l.zin)[:0]
}

// keepWindow appends msg to the connection's window of received bytes, for
// a client that compresses with context takeover, keeping the last
// 1<<bits bytes. Loop only.
func (c *Conn) keepWindow(msg []byte, bits uint8) {
	size := 1 << max(bits, 8)
	x := c.more()
	if cap(x.window) < size {
		x.window = make([]byte, 0, size)
	}
	if len(msg) >= size {
		x.window = append(x.window[:0], msg[len(msg)-size:]...)
		return
	}
	if drop := len(x.window) + len(msg) - size; drop > 0 {
		x.window = x.window[:copy(x.window, x.window[drop:])]
	}
	x.window = append(x.window, msg...)
}
