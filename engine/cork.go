package engine

import "github.com/wsdproject/wsd/codec"

// Output corking. While a loop handles one connection's input (every frame
// of one read) or a run of frames queued for it by Send, that connection is
// "corked": the frames written to it are gathered in the loop's cork buffer
// and leave together, with one write(2), when the batch ends. A client that
// sends ten messages in one TCP segment gets its ten replies in one segment
// and the server makes one syscall instead of ten; a client that sends one
// message at a time sees no difference (the frame was copied next to its
// header for a single write(2) before corking too).
//
// One connection is corked at a time. A frame larger than smallFrame goes
// out at once, uncopied, in one writev with whatever was gathered before
// it; at most corkSize bytes are gathered before they are written. Every
// other way out for the connection (WriteFrames, the close handshake's
// half-close, closing) sends the gathered bytes first, so order is kept.

// corkSize is the most bytes gathered for one connection before a write.
const corkSize = 64 << 10

// corkTo makes c the corked connection, sending what was gathered for
// another one first. Loop only.
func (l *Loop) corkTo(c *Conn) {
	if l.corked != c {
		l.uncork()
		l.corked = c
	}
}

// uncork sends what was gathered and ends corking. Loop only.
func (l *Loop) uncork() {
	c := l.corked
	if c == nil {
		return
	}
	_ = l.writeCork(c)
	l.corked = nil
}

// uncorkConn ends corking if c is the corked connection. Loop only.
func (l *Loop) uncorkConn(c *Conn) {
	if l.corked == c {
		l.uncork()
	}
}

// flushCork writes what was gathered for c, if c is corked, and keeps
// gathering. Loop only.
func (l *Loop) flushCork(c *Conn) error {
	if l.corked != c {
		return nil
	}
	return l.writeCork(c)
}

// writeCork writes the gathered bytes to c. gnet closes c if the socket
// fails; OnClose then drops the cork.
func (l *Loop) writeCork(c *Conn) error {
	if len(l.cork) == 0 {
		return nil
	}
	b := l.cork
	l.cork = l.cork[:0]
	if c.state == stateClosed {
		return ErrClosed
	}
	err := c.output(b)
	l.afterWrite(c)
	return err
}

// dropCork forgets what was gathered for c, which is gone. Loop only.
func (l *Loop) dropCork(c *Conn) {
	if l.corked == c {
		l.corked = nil
		l.cork = l.cork[:0]
	}
}

// send writes a and then b (either may be empty) to c as one piece: it
// gathers them while c is corked, and otherwise makes one write(2) (small
// frames, copied into the loop's scratch buffer) or one writev(2). Loop
// only. gnet copies what the socket does not take, so a and b may be reused
// when send returns.
func (l *Loop) send(c *Conn, a, b []byte) error {
	if c.state != stateOpen {
		return ErrClosed // a close frame is sent before the state changes
	}
	n := len(a) + len(b)
	small := n <= smallFrame+codec.MaxHeaderSize
	if l.corked == c {
		if small {
			if len(l.cork)+n > corkSize {
				if err := l.writeCork(c); err != nil {
					return err
				}
			}
			if l.cork == nil {
				l.cork = make([]byte, 0, corkSize)
			}
			l.cork = append(append(l.cork, a...), b...)
			return nil
		}
		if len(l.cork) > 0 { // what was gathered, then this frame, in one writev
			if len(b) > 0 && c.tlsConn() != nil { // the header joins the gathered plaintext rather than take a TLS record of its own
				l.cork = append(l.cork, a...)
				a = nil
			}
			err := c.output3(l.cork, a, b)
			l.cork = l.cork[:0]
			l.afterWrite(c)
			return err
		}
	}
	var err error
	switch {
	case len(b) == 0:
		err = c.output(a)
	case small:
		err = c.output(append(append(l.wbuf[:0], a...), b...))
	default:
		err = c.output3(a, b, nil)
	}
	l.afterWrite(c)
	return err
}
