package engine

import "time"

// TimerHandler is implemented by a Handler that sets timers on its
// connections with Conn.SetTimer: OnTimer runs on the connection's loop
// when the timer comes due (a token's expiry, a deadline for the client's
// first message). Like every Handler method it must not block.
type TimerHandler interface {
	OnTimer(c *Conn)
}

// SetTimer makes the engine call the Handler's OnTimer (see TimerHandler)
// for c once, at about at: the timer lives in the loop's timing wheel with
// the pings and idle checks, so it fires on the first engine tick at or
// after at (a quarter of the shortest timeout of Options, 10 ms to 1 s);
// no timer or goroutine of its own. A connection has one such timer:
// SetTimer replaces it, and a zero at cancels it. It does nothing unless c
// is open; a connection that closes loses its timer. The first call costs
// a 96-byte connExtra (unless the connection has one, as wss does) and a
// 16-byte connAux; later calls allocate nothing. Loop only.
func (c *Conn) SetTimer(at time.Time) {
	if c.state != stateOpen {
		return
	}
	var ns int64
	if !at.IsZero() {
		ns = max(at.UnixNano(), 1)
	} else if x := c.extra.Load(); x == nil || x.aux == nil {
		return // nothing to cancel
	}
	c.more().moreAux().timerAt = ns
	l := c.loop
	now := l.e.clock()
	l.wheel.unschedule(c)
	l.scheduleKeepalive(c, now)
}

// timerAt returns c's SetTimer time (0: none). Loop only.
func (c *Conn) timerAt() int64 {
	if x := c.extra.Load(); x != nil && x.aux != nil {
		return x.aux.timerAt
	}
	return 0
}

// fireTimer runs OnTimer for c if its SetTimer time has come, and
// reports whether c is still open. Loop only.
func (l *Loop) fireTimer(c *Conn, now int64) bool {
	at := c.timerAt()
	if at == 0 || now < at {
		return true
	}
	c.extra.Load().aux.timerAt = 0
	if th, ok := l.e.h.(TimerHandler); ok {
		th.OnTimer(c)
	}
	return c.state == stateOpen
}
