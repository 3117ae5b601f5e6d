package engine

import (
	"errors"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsdproject/wsd/codec"
)

// errCloseNow stops decoding: the close handshake is complete (or answered)
// and the TCP connection must close.
var errCloseNow = errors.New("engine: close handshake done")

// readFrames decodes every complete frame buffered for c. Loop only.
func (l *Loop) readFrames(c *Conn) gnet.Action {
	if c.discard {
		c.discardAll()
		return gnet.None
	}
	n := c.inBuffered()
	if n == 0 {
		return gnet.None
	}
	buf, err := c.peekIn(n)
	if err != nil {
		return gnet.Close
	}
	l.corkTo(c) // the replies to this input leave with one write
	c.busy = true
	used, err := c.dec.Decode(buf, (*receiver)(c))
	c.busy = false
	if err == nil && c.dec.InMessage() && l.e.opts.MessageTimeout > 0 {
		if g := l.watch(c); g.msgStart == 0 {
			g.msgStart = l.e.clock()
		}
	}
	if err != nil && err != errCloseNow && c.state == stateOpen {
		code := codec.CloseStatus(err)
		if code == 0 {
			code = codec.StatusInternalError
		}
		c.startClose(code, "", true) // the close frame leaves with the replies
	}
	l.uncork()
	switch {
	case c.state == stateClosed:
		// A write failed and gnet closed the connection.
		c.dec.Release()
		return gnet.None
	case err == nil:
		if used > 0 { // gnet's Discard(0) would drop everything buffered
			c.discardIn(used)
		}
		return gnet.None
	case err == errCloseNow:
		if c.gc.OutboundBuffered() > 0 {
			// gnet's close writes what the socket takes now and drops the
			// rest, the close frame included: let it leave first. The
			// connection lingers, and closes when the peer does, when
			// the timer finds the output gone (onTimer), or at
			// CloseTimeout.
			if c.state == stateOpen {
				c.linger(true)
				if c.state == stateClosing && l.e.opts.CloseTimeout > 0 {
					l.wheel.schedule(c, min(c.deadline, l.e.clock()+l.e.tickEvery))
				}
			}
			return gnet.None
		}
		return gnet.Close
	}
	c.discard = true
	c.discardAll()
	return gnet.None
}

// receiver is the codec.Receiver face of a Conn.
type receiver Conn

func (r *receiver) OnMessage(op codec.OpCode, p []byte) error {
	c := (*Conn)(r)
	if c.state != stateOpen {
		return nil
	}
	l := c.loop
	if g := c.guard; g != nil {
		g.msgStart = 0 // the message is complete
	}
	st := &l.stats
	st.messagesIn.Add(1)
	st.bytesIn.Add(int64(len(p)))
	if l.e.rateLimited && !l.allowMessage(c, len(p)) {
		return nil // dropped, or the connection is closing and ignores the rest
	}
	l.e.h.OnMessage(c, op, p)
	return nil
}

func (r *receiver) OnControl(op codec.OpCode, p []byte) error {
	c := (*Conn)(r)
	switch op {
	case codec.OpPing:
		if c.state == stateOpen {
			_ = c.writeFrame(codec.OpPong, p)
		}
	case codec.OpClose:
		code, reason, err := codec.ParseClose(p)
		if err != nil {
			return err
		}
		if c.state == stateClosing {
			return errCloseNow // we closed first; the handshake is complete
		}
		c.closeCode, c.closeRemote = code, true
		if len(reason) > 0 {
			c.more().closeReason = string(reason)
		}
		reply := code
		if code == codec.StatusNoStatusRcvd {
			reply = codec.StatusNormalClosure
		}
		c.writeClose(reply, "")
		return errCloseNow
	}
	return nil
}
