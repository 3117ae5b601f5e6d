package broadcast

import "time"

// SetHistoryClock makes h's history read the time from now.
func SetHistoryClock(h *Hub, now func() time.Time) { h.hist.clock.Store(&now) }
