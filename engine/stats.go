package engine

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/wsdproject/wsd/codec"
)

// loopStats are one loop's counters. Only the loop writes them; atomics let
// Stats read them from any goroutine without a lock.
type loopStats struct {
	messagesIn atomic.Int64
	bytesIn    atomic.Int64
	framesOut  atomic.Int64
	bytesOut   atomic.Int64
	writes     atomic.Int64
	_          [32]byte // keep loops' counters off each other's cache lines
}

// Stats are an Engine's counters since Run.
type Stats struct {
	Conns      int          `json:"connections"` // open TCP connections, upgraded or not
	Upgrades   int64        `json:"upgrades"`    // successful WebSocket upgrades
	MessagesIn int64        `json:"messages_in"` // complete messages received
	BytesIn    int64        `json:"bytes_in"`    // payload bytes of those messages
	FramesOut  int64        `json:"frames_out"`  // frames sent (data and control)
	BytesOut   int64        `json:"bytes_out"`   // bytes of those frames, headers included
	Writes     int64        `json:"writes"`      // write or writev calls that carried them (FramesOut/Writes is the batching; a call made while gnet still buffers earlier bytes only appends to its buffer)
	Loops      int          `json:"event_loops"` // event loops with connections so far
	CloseCodes []CloseCount `json:"close_codes"`
}

// CloseCount is how many connections ended with a close code (1006 when
// without a close handshake).
type CloseCount struct {
	Code  codec.StatusCode `json:"code"`
	Count int64            `json:"count"`
}

// closeCounts counts connection ends by close code.
type closeCounts struct {
	mu sync.Mutex
	m  map[codec.StatusCode]int64
}

func (cc *closeCounts) add(code codec.StatusCode) {
	cc.mu.Lock()
	if cc.m == nil {
		cc.m = make(map[codec.StatusCode]int64)
	}
	cc.m[code]++
	cc.mu.Unlock()
}

func (cc *closeCounts) list() []CloseCount {
	cc.mu.Lock()
	out := make([]CloseCount, 0, len(cc.m))
	for code, n := range cc.m {
		out = append(out, CloseCount{Code: code, Count: n})
	}
	cc.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Stats returns the engine's counters. Any goroutine.
func (e *Engine) Stats() Stats {
	s := Stats{Conns: int(e.conns.Load()), Upgrades: e.upgrades.Load(), CloseCodes: e.closes.list()}
	for _, l := range *e.list.Load() {
		s.Loops++
		s.MessagesIn += l.stats.messagesIn.Load()
		s.BytesIn += l.stats.bytesIn.Load()
		s.FramesOut += l.stats.framesOut.Load()
		s.BytesOut += l.stats.bytesOut.Load()
		s.Writes += l.stats.writes.Load()
	}
	return s
}
