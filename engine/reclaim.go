package engine

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Giving memory back after abuse. The connections a limit closes leave
// their buffers (gnet's pooled read and write buffers, assembly buffers)
// as garbage; an idle server collects it only at Go's periodic GC (every
// two minutes at most), and the runtime returns freed pages to the system
// gradually after that, so RSS would stay high for minutes. So once limits
// have closed connections and then none for reclaimQuiet, the engine runs
// two collections (buffers in a sync.Pool survive the first) and returns
// free pages (debug.FreeOSMemory): RSS is back within a few seconds of the
// abusers going away. It runs at most
// once per reclaimEvery, from the ticker goroutine, never on a loop.

const (
	reclaimQuiet = 3 * time.Second
	reclaimEvery = time.Minute
)

// reclaimer decides when to give memory back. Only the ticker goroutine
// uses it.
type reclaimer struct {
	seen      int64 // limit closes counted at the last look
	lastClose int64 // when that count last grew, ns; 0: nothing to give back
	lastFree  int64 // when memory was last given back, ns
}

// tick looks at the limit counters once per engine tick.
func (r *reclaimer) tick(e *Engine, now int64) {
	var n int64
	for w := limBackpressure; w <= limMessageTimeout; w++ {
		n += e.limits.n[w].Load()
	}
	if n != r.seen {
		r.seen, r.lastClose = n, now
		return
	}
	if r.lastClose == 0 || now-r.lastClose < int64(reclaimQuiet) || now-r.lastFree < int64(reclaimEvery) {
		return
	}
	r.lastClose, r.lastFree = 0, now
	runtime.GC()         // the first collection moves sync.Pool contents (gnet's buffers) aside,
	debug.FreeOSMemory() // the second frees them, and free pages go back to the system
}
