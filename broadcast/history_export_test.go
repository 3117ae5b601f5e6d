package broadcast

import "time"

// SetHistoryClock makes h's history read the time from now.
func SetHistoryClock(h *Hub, now func() time.Time) { h.hist.clock.Store(&now) }

// SetHistoryLookupHook makes h call f each time it has looked a topic's
// history up, before it locks it (nil: no more).
func SetHistoryLookupHook(h *Hub, f func()) {
	if f == nil {
		h.hist.lookedUp.Store(nil)
		return
	}
	h.hist.lookedUp.Store(&f)
}
