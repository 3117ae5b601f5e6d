package broadcast

import (
	"sync"
	"sync/atomic"

	"github.com/wsdproject/wsd/engine"
)

// loopHub is the hub's state on one event loop. Everything but the
// counters is touched only by that loop's goroutine.
type loopHub struct {
	hub    *Hub
	loop   *engine.Loop
	topics map[string]*loopTopic

	dirty     []*sub     // subscribers with frames queued in this batch
	held      []*message // messages referenced by queued frames
	flushing  bool       // a Flush is scheduled
	mark      uint64     // delivery stamp, to give each subscriber a message once
	delivered atomic.Int64
	dropped   atomic.Int64
	queued    atomic.Int64 // bytes of deliveries posted to the loop and not run yet

	slowClosed atomic.Int64
}

func newLoopHub(h *Hub, l *engine.Loop) *loopHub {
	return &loopHub{hub: h, loop: l, topics: make(map[string]*loopTopic)}
}

// delivery is one published message for one loop: the loop's sets of the
// message's topics. Pooled.
type delivery struct {
	lh      *loopHub
	msg     *message
	exclude uint64
	sets    []*loopTopic
}

var deliveries = sync.Pool{New: func() any { return &delivery{sets: make([]*loopTopic, 0, 4)} }}

// admit counts n bytes as queued for the loop, unless Options.MaxQueued
// are already waiting. Any goroutine.
func (lh *loopHub) admit(n int) bool {
	if max := lh.hub.opts.MaxQueued; max > 0 && lh.queued.Load() >= max {
		return false
	}
	lh.queued.Add(int64(n))
	return true
}

// recycle returns an unused delivery to its pool.
func (d *delivery) recycle() {
	d.lh, d.msg, d.exclude = nil, nil, 0
	clear(d.sets)
	d.sets = d.sets[:0]
	deliveries.Put(d)
}

// Run queues the message for each local subscriber. Loop only.
func (d *delivery) Run(*engine.Loop) {
	lh, msg, res := d.lh, d.msg, d.msg.res
	lh.queued.Add(-int64(len(msg.frame)))
	var queued, dropped, closed int64
	lh.mark++
	mark := lh.mark
	max := lh.hub.opts.MaxBuffered
	for _, lt := range d.sets {
		for _, s := range lt.members {
			if s.mark == mark || (d.exclude != 0 && s.c.ID() == d.exclude) {
				continue
			}
			s.mark = mark
			if !s.c.IsOpen() || s.closing {
				continue
			}
			// A connection with room takes the whole frame, however large:
			// the caps bound the backlog, not the size of one message.
			if s.c.Full(int(s.pendBytes)) || max > 0 && s.c.Buffered()+int(s.pendBytes) >= max {
				if lh.slow(s) {
					closed++
				} else {
					dropped++
				}
				continue
			}
			frame := msg.frameFor(s.c)
			if s.envelope {
				if frame = msg.envFor(lt.t.name); frame == nil {
					continue // published before s subscribed (see SetEnvelope)
				}
			}
			queued++
			s.pend = append(s.pend, frame)
			s.pendBytes += int32(min(len(frame), maxPendBytes-int(s.pendBytes)))
			if !s.dirty {
				s.dirty = true
				lh.dirty = append(lh.dirty, s)
			}
		}
	}
	lh.held = append(lh.held, d.msg)
	if !lh.flushing {
		lh.flushing = true
		lh.loop.FlushLater(lh)
	}
	if res != nil {
		res.queued.Add(queued)
		res.dropped.Add(dropped)
		res.closed.Add(closed)
	}
	d.recycle()
}

// slow applies the slow-consumer policy to s and reports whether it closes
// s. Loop only. The close is left to Flush, after the batch: every
// publish of the batch sees s as closing, and none is written to it.
func (lh *loopHub) slow(s *sub) bool {
	if lh.hub.opts.Policy == Close {
		lh.slowClosed.Add(1)
		s.closing = true
		if !s.dirty {
			s.dirty = true
			lh.dirty = append(lh.dirty, s)
		}
		return true
	}
	lh.dropped.Add(1)
	return false
}

// maxPendBytes is where a subscriber's pendBytes stops counting: it only
// needs to reach the caps, which an int32 holds.
const maxPendBytes = 1<<31 - 1

// maxKeptPend is the largest per-subscriber frame queue kept between
// batches: ordinary traffic reuses it without allocating, and a burst's
// longer queue (thousands of frames for every subscriber) is freed.
const maxKeptPend = 64

// Flush writes every subscriber's queued frames with one call each and
// releases the messages of the batch. Loop only.
func (lh *loopHub) Flush(*engine.Loop) {
	var n int64
	for i, s := range lh.dirty {
		if s.closing {
			s.closing = false
			s.c.CloseNow(lh.hub.opts.CloseCode, "slow consumer")
		} else if len(s.pend) > 0 && s.c.IsOpen() {
			if s.c.WriteFrames(s.pend) == nil {
				n += int64(len(s.pend))
			}
		}
		if cap(s.pend) > maxKeptPend {
			s.pend = nil // a burst grew it: let it go rather than keep it per subscriber
		} else {
			clear(s.pend)
			s.pend = s.pend[:0]
		}
		s.pendBytes = 0
		s.dirty = false
		lh.dirty[i] = nil
	}
	lh.dirty = shrink(lh.dirty)
	lh.delivered.Add(n)
	for i, m := range lh.held {
		m.release()
		lh.held[i] = nil
	}
	lh.held = shrink(lh.held)
	lh.flushing = false
}

// maxKeptBatch is the largest per-loop batch list kept between batches.
const maxKeptBatch = 4096

// shrink empties a per-loop list, letting a burst's large array go.
func shrink[T any](s []T) []T {
	if cap(s) > maxKeptBatch {
		return nil
	}
	return s[:0]
}
