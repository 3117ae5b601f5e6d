package engine

// A connection's bytes in and out. A plain ws connection reads gnet's
// inbound buffer and writes to gnet directly; a wss connection (one with a
// tlsConn) reads the plaintext its TLS layer decrypted from gnet's inbound
// buffer, and its writes are encrypted on the way out (tls.go). The upgrade
// parser, the frame decoder and the writers above use only these methods,
// so they do not know which kind of connection they serve. For ws each
// costs one load and one predictable branch.

// inBuffered returns the number of input bytes ready for the parsers.
// Loop only.
func (c *Conn) inBuffered() int {
	if t := c.tlsConn(); t != nil {
		return t.buffered()
	}
	return c.gc.InboundBuffered()
}

// peekIn returns the first n input bytes (n <= inBuffered) without
// consuming them. They stay valid until the next discardIn or the end of
// the current event; the parsers may modify them (unmasking in place).
// Loop only.
func (c *Conn) peekIn(n int) ([]byte, error) {
	if t := c.tlsConn(); t != nil {
		return t.peek(n), nil
	}
	return c.gc.Peek(n)
}

// discardIn consumes the first n input bytes; n must be positive (gnet's
// Discard(0) would drop everything). Loop only.
func (c *Conn) discardIn(n int) {
	if t := c.tlsConn(); t != nil {
		t.discard(n)
		return
	}
	_, _ = c.gc.Discard(n)
}

// discardAll drops all input: what gnet holds and, for wss, the plaintext
// not yet parsed. Loop only.
func (c *Conn) discardAll() {
	if t := c.tlsConn(); t != nil {
		t.discardAll()
	}
	_, _ = c.gc.Discard(-1)
}

// inHeld returns the bytes received and not yet consumed, as the input
// cap of holdInput counts them: gnet's inbound buffer, plus for wss the
// plaintext kept between reads. Loop only.
func (c *Conn) inHeld() int {
	n := c.gc.InboundBuffered()
	if t := c.tlsConn(); t != nil {
		n += t.buffered()
	}
	return n
}

// output writes b, encrypted for wss, with one write to gnet, and counts
// the write. gnet copies what the socket does not take, so b may be reused
// when output returns. gnet closes the connection (and OnClose runs) if the
// socket fails. Loop only.
func (c *Conn) output(b []byte) error {
	if t := c.tlsConn(); t != nil {
		return t.write(b, nil, nil)
	}
	c.loop.stats.writes.Add(1)
	_, err := c.gc.Write(b)
	return err
}

// output3 writes a, b and c2 (any may be empty) as one piece: one writev
// for ws, their records gathered into one write for wss. Loop only.
func (c *Conn) output3(a, b, c2 []byte) error {
	if t := c.tlsConn(); t != nil {
		return t.write(a, b, c2)
	}
	l := c.loop
	l.stats.writes.Add(1)
	iov := l.iov[:0]
	for _, p := range [...][]byte{a, b, c2} {
		if len(p) > 0 {
			iov = append(iov, p)
		}
	}
	_, err := c.gc.Writev(iov)
	l.iov = [3][]byte{}
	return err
}
