package engine

// wheel is a hashed timing wheel of connections, one per event loop: no
// timer and no goroutine per connection. Each connection is in at most one
// slot, for the tick it is next due at (handshake deadline, ping, idle
// check or close deadline). A read does not touch the wheel: the idle check
// fires at the earliest possible time, looks at the connection's last read,
// and reschedules itself. The engine's ticker rings every loop once per
// tick; the loop then walks only the slots that came due.
type wheel struct {
	slots []*Conn
	res   int64 // tick length, ns
	cur   int64 // last tick processed
}

const wheelSlots = 1024

func (w *wheel) init(res, now int64) {
	w.slots = make([]*Conn, wheelSlots)
	w.res = res
	w.cur = now / res
}

// schedule (re)places c to fire at the first tick at or after at (ns).
func (w *wheel) schedule(c *Conn, at int64) {
	w.unschedule(c)
	due := (at + w.res - 1) / w.res
	if due <= w.cur {
		due = w.cur + 1
	}
	c.tdue = due
	s := &w.slots[due%wheelSlots]
	c.tprev, c.tnext = nil, *s
	if *s != nil {
		(*s).tprev = c
	}
	*s = c
}

// unschedule removes c from the wheel, if it is in it.
func (w *wheel) unschedule(c *Conn) {
	if c.tdue == 0 {
		return
	}
	if c.tprev != nil {
		c.tprev.tnext = c.tnext
	} else {
		w.slots[c.tdue%wheelSlots] = c.tnext
	}
	if c.tnext != nil {
		c.tnext.tprev = c.tprev
	}
	c.tprev, c.tnext, c.tdue = nil, nil, 0
}

// advance fires every connection due at or before now. fire may schedule
// the connection again or close it.
func (w *wheel) advance(now int64, fire func(c *Conn, now int64)) {
	target := now / w.res
	if target <= w.cur {
		return
	}
	from := w.cur + 1
	if target-from >= wheelSlots {
		from = target - wheelSlots + 1 // every slot is visited once
	}
	w.cur = target
	for t := from; t <= target; t++ {
		for c := w.slots[t%wheelSlots]; c != nil; {
			next := c.tnext
			if c.tdue <= target {
				w.unschedule(c)
				fire(c, now)
			}
			c = next
		}
	}
}
