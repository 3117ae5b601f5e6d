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

	// Unsent is the bytes waiting to be sent (and held by partly received
	// messages) on every loop, as summed at each loop's last tick: what
	// Options.MaxBufferedTotal is checked against.
	Unsent int64       `json:"unsent_bytes"`
	Limits LimitCounts `json:"limits"`

	// Rejected counts the connections refused at admission; IPTableFull
	// the connections admitted without per-IP limits because the table of
	// addresses was full (see Options.MaxConnsPerIP).
	Rejected    RejectCounts `json:"rejected"`
	IPTableFull int64        `json:"ip_table_full"`

	// TLS counts wss handshakes (see Options.TLS).
	TLS TLSCounts `json:"tls"`
}

// TLSCounts counts the TLS handshakes of wss connections.
type TLSCounts struct {
	Handshakes int64 `json:"handshakes"` // completed since Run
	// Failed counts handshakes that failed since Run (a bad or refused
	// ClientHello, an untrusted client certificate, a peer gone or timed
	// out mid-handshake) and peers that sent something else than TLS to a
	// TLS port (answered 400, or with an alert).
	Failed  int64 `json:"failed"`
	Waiting int   `json:"waiting"` // connections waiting now for a handshake slot (Options.MaxTLSHandshakes)
}

// RejectCounts counts the connections refused at admission since Run, by
// limit. A refused connection is answered with an HTTP error and closed; it
// never reaches the Handler.
type RejectCounts struct {
	MaxConns int64 `json:"max_conns"` // over MaxConns (503)
	PerIP    int64 `json:"per_ip"`    // over MaxConnsPerIP (429)
	Rate     int64 `json:"rate"`      // over HandshakeRatePerIP (429)
}

// LimitCounts counts the decisions of the limits since Run: connections
// closed by each limit, and messages dropped by RateLimitDrop.
type LimitCounts struct {
	Backpressure   int64 `json:"backpressure"`    // a write found MaxBuffered unsent, or input piled up while output was blocked (BackpressureCode)
	WriteTimeout   int64 `json:"write_timeout"`   // unsent bytes did not shrink for WriteTimeout (1008)
	Budget         int64 `json:"budget"`          // shed, largest backlog first, to get under MaxBufferedTotal (1013)
	RateLimit      int64 `json:"rate_limit"`      // over MaxMessageRate or MaxByteRate (1008)
	MessageTimeout int64 `json:"message_timeout"` // a message took longer than MessageTimeout (1008)
	RateDropped    int64 `json:"rate_dropped"`    // messages dropped by RateLimitDrop
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
	s := Stats{Conns: int(e.conns.Load()), Upgrades: e.upgrades.Load(), CloseCodes: e.closes.list(), Unsent: e.queued.Load()}
	n := &e.limits.n
	s.Limits = LimitCounts{
		Backpressure: n[limBackpressure].Load(), WriteTimeout: n[limWriteTimeout].Load(), Budget: n[limBudget].Load(),
		RateLimit: n[limRate].Load(), MessageTimeout: n[limMessageTimeout].Load(), RateDropped: n[limRateDropped].Load(),
	}
	s.Rejected = RejectCounts{MaxConns: n[limMaxConns].Load(), PerIP: n[limPerIP].Load(), Rate: n[limHandshakeRate].Load()}
	s.IPTableFull = n[limIPTableFull].Load()
	s.TLS = TLSCounts{Handshakes: e.tlsHandshakes.Load(), Failed: e.tlsFailures.Load(), Waiting: e.gate.queuedNow()}
	for _, l := range *e.list.Load() {
		s.Loops++
		s.MessagesIn += l.stats.messagesIn.Load()
		s.BytesIn += l.stats.bytesIn.Load()
		s.FramesOut += l.stats.framesOut.Load()
		s.BytesOut += l.stats.bytesOut.Load()
		s.Writes += l.stats.writes.Load()
		s.Unsent += l.unsent.Load()
	}
	return s
}
