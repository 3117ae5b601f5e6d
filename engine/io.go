package engine

// A connection's bytes in and out. The upgrade parser, the frame decoder
// and the writers above use only these methods, not gnet's buffer
// directly, so that a layer (TLS) can sit between them and the socket.

// inBuffered returns the number of input bytes ready for the parsers.
// Loop only.
func (c *Conn) inBuffered() int { return c.gc.InboundBuffered() }

// peekIn returns the first n input bytes (n <= inBuffered) without
// consuming them. They stay valid until the next discardIn or the end of
// the current event; the parsers may modify them (unmasking in place).
// Loop only.
func (c *Conn) peekIn(n int) ([]byte, error) { return c.gc.Peek(n) }

// discardIn consumes the first n input bytes; n must be positive (gnet's
// Discard(0) would drop everything). Loop only.
func (c *Conn) discardIn(n int) { _, _ = c.gc.Discard(n) }

// discardAll drops all input. Loop only.
func (c *Conn) discardAll() { _, _ = c.gc.Discard(-1) }

// inHeld returns the bytes received and not yet consumed, as the input
// cap of holdInput counts them. Loop only.
func (c *Conn) inHeld() int { return c.gc.InboundBuffered() }

// output writes b with one write to gnet, and counts the write. gnet
// copies what the socket does not take, so b may be reused when output
// returns. gnet closes the connection (and OnClose runs) if the socket
// fails. Loop only.
func (c *Conn) output(b []byte) error {
	c.loop.stats.writes.Add(1)
	_, err := c.gc.Write(b)
	return err
}

// output3 writes a, b and c2 (any may be empty) as one piece, with one
// writev. Loop only.
func (c *Conn) output3(a, b, c2 []byte) error {
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
