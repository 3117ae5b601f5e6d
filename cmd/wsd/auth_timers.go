package main

import (
	"sync"
	"time"
)

// authTimers keeps the deadlines of the sessions (the auth message's, a
// token's expiry, the end of its refresh grace) in slots of authTick, one
// slot per session at most: a hashed wheel for the whole daemon, not a
// timer per connection. One goroutine walks it while it holds a deadline,
// and exits when it is empty; it only posts each due session to its event
// loop, which decides there what the deadline means (a session refreshed
// or closed meanwhile is left alone).
type authTimers struct {
	mu      sync.Mutex
	slots   map[int64][]*session
	n       int   // sessions in slots
	cur     int64 // the last slot fired
	running bool
	fire    func(*session)
}

// authTick is the resolution of the deadlines.
const authTick = 100 * time.Millisecond

// schedule (re)places s to fire at the first tick at or after at (unix ns).
func (t *authTimers) schedule(s *session, at int64) {
	slot := (at + int64(authTick) - 1) / int64(authTick)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.remove(s)
	if t.slots == nil {
		t.slots = map[int64][]*session{}
	}
	if !t.running {
		t.cur = time.Now().UnixNano()/int64(authTick) - 1
	}
	slot = max(slot, t.cur+1)
	t.slots[slot] = append(t.slots[slot], s)
	s.due = slot
	t.n++
	if !t.running {
		t.running = true
		go t.run()
	}
}

// unschedule takes s out of the wheel.
func (t *authTimers) unschedule(s *session) {
	t.mu.Lock()
	t.remove(s)
	t.mu.Unlock()
}

// remove takes s out of its slot. Under mu.
func (t *authTimers) remove(s *session) {
	if s.due == 0 {
		return
	}
	list := t.slots[s.due]
	for i, o := range list {
		if o == s {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			t.n--
			break
		}
	}
	if len(list) == 0 {
		delete(t.slots, s.due)
	} else {
		t.slots[s.due] = list
	}
	s.due = 0
}

// run fires the due sessions every tick, until the wheel is empty.
func (t *authTimers) run() {
	tick := time.NewTicker(authTick)
	defer tick.Stop()
	var due []*session
	for range tick.C {
		now := time.Now().UnixNano() / int64(authTick)
		t.mu.Lock()
		for ; t.cur < now; t.cur++ {
			list := t.slots[t.cur+1]
			for _, s := range list {
				s.due = 0
			}
			due = append(due, list...)
			t.n -= len(list)
			delete(t.slots, t.cur+1)
		}
		if t.n == 0 {
			t.running = false
		}
		stop := !t.running
		t.mu.Unlock()
		for i, s := range due {
			t.fire(s)
			due[i] = nil
		}
		due = due[:0]
		if stop {
			return
		}
	}
}
