package engine

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Giving memory back after abuse, and after a burst of connections. The
// connections a limit closes leave their buffers (gnet's pooled read and
// write buffers, assembly buffers) as garbage; so do the handshakes of
// thousands of connections opened at once (each upgrade's request, header
// values, answer). An idle server collects garbage only at Go's periodic
// GC (every two minutes at most), and the runtime keeps the freed pages
// while the heap stays under its goal (twice the live heap by default), so
// RSS would stay at its peak for minutes, or for good. So once limits have
// closed connections and then none for reclaimQuiet, or once at least
// reclaimBurst connections were opened and the number of open connections
// then held still for reclaimQuiet, the engine runs two collections
// (buffers in a sync.Pool survive the first) and returns free pages
// (debug.FreeOSMemory): RSS is back within a few seconds of the abusers
// going away, and close to the live heap once a burst of connections has
// settled. It runs at most once per reclaimEvery, from the ticker
// goroutine, never on a loop; a server whose connections come and go all
// the time never holds still, and collects as Go decides.

const (
	reclaimQuiet = 3 * time.Second
	reclaimEvery = time.Minute
	reclaimBurst = 1000
)

// reclaimer decides when to give memory back. Only the ticker goroutine
// uses it.
type reclaimer struct {
	seen      int64 // limit closes counted at the last look
	lastClose int64 // when that count last grew, ns; 0: nothing to give back
	lastFree  int64 // when memory was last given back, ns
	conns     int64 // open connections at the last look
	opened    int64 // connections opened (net) since memory was last given back
	lastMove  int64 // when the number of open connections last changed, ns
}

// tick looks at the limit counters and the open connections once per
// engine tick, and gives memory back when due.
func (r *reclaimer) tick(e *Engine, now int64) {
	var closes int64
	for w := limBackpressure; w <= limMessageTimeout; w++ {
		closes += e.limits.n[w].Load()
	}
	if !r.due(closes, e.conns.Load(), now) {
		return
	}
	runtime.GC()         // the first collection moves sync.Pool contents (gnet's buffers) aside,
	debug.FreeOSMemory() // the second frees them, and free pages go back to the system
}

// due takes one look (the limit closes counted so far, the connections open
// now, the time in ns) and reports whether memory is to be given back now.
func (r *reclaimer) due(closes, conns, now int64) bool {
	if conns != r.conns {
		r.opened = max(0, r.opened+conns-r.conns)
		r.conns, r.lastMove = conns, now
	}
	if closes != r.seen {
		r.seen, r.lastClose = closes, now
		return false
	}
	abused := r.lastClose != 0 && now-r.lastClose >= int64(reclaimQuiet)
	settled := r.opened >= reclaimBurst && now-r.lastMove >= int64(reclaimQuiet)
	if !abused && !settled || r.lastFree != 0 && now-r.lastFree < int64(reclaimEvery) {
		return false
	}
	r.lastClose, r.lastFree, r.opened = 0, now, 0
	return true
}
