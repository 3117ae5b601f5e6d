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

// SeedHistory does to topic's history what SubscribeSinceAsync does with
// a complete page of the messages after offset after, read from the
// Broker.
func SeedHistory(h *Hub, topic string, page HistoryPage, after uint64) {
	if hs := h.lockHistory(topic); hs != nil {
		defer hs.mu.Unlock()
		hs.seed(page, after, h.hist.now())
	}
}
