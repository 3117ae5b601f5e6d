package engine

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Admission: which accepted connections the engine serves
// (Options.MaxConns, MaxConnsPerIP, HandshakeRatePerIP).
//
// The decision is made once per connection, in OnOpen, from counts that
// change only at accept and close: the engine's admitted connections
// against MaxConns and, for TCP peers, one entry per remote address (its
// open connections and a token bucket of new ones) in a table of fixed
// size. A refused connection is not closed at once. It waits, as any
// handshake does, for its request, is answered 503 or 429 with Retry-After,
// and is then half-closed with its input discarded until the peer closes or
// CloseTimeout ends (Conn.linger), so that a TCP reset cannot destroy the
// answer before the peer reads it. The answer waits for the request rather
// than leaving at accept: an HTTP client may take bytes it has not asked
// for yet for a server closing an idle connection (net/http's Transport
// does), and over TLS nothing can be answered before the TLS handshake.
//
// Refused connections never reach the Handler, are not upgrades, and count
// in Stats.Conns but not against MaxConns or MaxConnsPerIP: under a flood
// they come and go while the admitted connections keep their places.

// admission records what a connection holds of the admission limits, or
// why it was refused. It is one byte of Conn.
type admission uint8

const (
	admitSlot    admission = 1 << iota // counted against MaxConns
	admitIP                            // counted in its address's entry of the table
	refusedConns                       // over MaxConns: 503
	refusedPerIP                       // over MaxConnsPerIP: 429
	refusedRate                        // over HandshakeRatePerIP: 429
)

// refused is the set of refusal reasons.
const refused = refusedConns | refusedPerIP | refusedRate

const (
	// retryAfterFull is the Retry-After, in seconds, of the answers for
	// MaxConns and MaxConnsPerIP: when places free up cannot be known, and
	// clients that honour it should not come back in a storm.
	retryAfterFull = 5

	// maxIPEntries is the size of the per-IP table: 64 shards of 1,024
	// entries of 48 bytes, plus an index of 8 bytes per entry, about 3.5 MiB
	// when every shard is in use (each is allocated on first use).
	maxIPEntries = 1 << 16
	ipShards     = 64
)

// admitter is an Engine's admission state.
type admitter struct {
	maxConns int64        // Options.MaxConns; 0: none
	slots    atomic.Int64 // connections holding admitSlot
	ips      *ipTable     // nil without per-IP limits

	// The answers, built once by New: the whole response and the length of
	// its head (a HEAD request gets only that).
	answers [3][]byte // for refusedConns, refusedPerIP, refusedRate
	heads   [3]int
}

func (a *admitter) init(o *Options) {
	a.maxConns = int64(o.MaxConns)
	if o.MaxConnsPerIP > 0 || o.HandshakeRatePerIP > 0 {
		a.ips = newIPTable(ipShards, maxIPEntries/ipShards, o.MaxConnsPerIP, o.HandshakeRatePerIP, float64(o.HandshakeBurstPerIP))
	}
	retryRate := 1
	if o.HandshakeRatePerIP > 0 { // the longest wait for one token
		retryRate = int(min(math.Ceil(1/o.HandshakeRatePerIP), 1<<30))
	}
	a.setAnswer(refusedConns, http.StatusServiceUnavailable, retryAfterFull, "server at its connection limit\n")
	a.setAnswer(refusedPerIP, http.StatusTooManyRequests, retryAfterFull, "too many connections from your address\n")
	a.setAnswer(refusedRate, http.StatusTooManyRequests, retryRate, "too many new connections from your address\n")
}

func (a *admitter) setAnswer(why admission, status, retryAfter int, body string) {
	var u upgrader
	u.answer(&Response{
		Status: status,
		Header: http.Header{"Retry-After": {strconv.Itoa(retryAfter)}, "Content-Type": {"text/plain; charset=utf-8"}},
		Body:   []byte(body),
	})
	i := answerIndex(why)
	a.answers[i], a.heads[i] = u.out, len(u.out)-len(body)
}

func answerIndex(why admission) int {
	switch why {
	case refusedConns:
		return 0
	case refusedPerIP:
		return 1
	}
	return 2
}

// admissionDefaults fills in and checks the admission options: negative
// limits mean none, as 0 does, and the burst defaults to twice the rate.
func (o *Options) admissionDefaults() error {
	o.MaxConns = max(o.MaxConns, 0)
	o.MaxConnsPerIP = max(o.MaxConnsPerIP, 0)
	r := o.HandshakeRatePerIP
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return fmt.Errorf("engine: HandshakeRatePerIP %v is not a number of connections per second", r)
	}
	if o.HandshakeBurstPerIP < 0 {
		return fmt.Errorf("engine: HandshakeBurstPerIP %d is negative", o.HandshakeBurstPerIP)
	}
	switch {
	case r <= 0:
		o.HandshakeRatePerIP, o.HandshakeBurstPerIP = 0, 0
	case o.HandshakeBurstPerIP == 0:
		o.HandshakeBurstPerIP = int(max(1, min(2*r, 1<<30)))
	}
	return nil
}

// admit decides whether to serve c, just accepted (OnOpen, once its
// handshake deadline is set), and records in c.admit what it holds or why
// it is refused. Loop only; the loops decide at the same time.
func (e *Engine) admit(c *Conn) {
	a := &e.adm
	if a.maxConns <= 0 && a.ips == nil {
		return
	}
	var k ipKey
	var ok bool
	if a.ips != nil {
		if k, ok = keyOf(c.remote); ok {
			var now int64
			if a.ips.rate > 0 {
				now = time.Now().UnixNano() // the engine's clock moves once per tick: too coarse for a rate
			}
			switch a.ips.acquire(k, now) {
			case ipAdmitted:
				c.admit |= admitIP
			case ipOverCount:
				e.refuseConn(c, refusedPerIP, limPerIP)
				return
			case ipOverRate:
				e.refuseConn(c, refusedRate, limHandshakeRate)
				return
			case ipTableFull:
				e.note(limIPTableFull, c)
			}
		}
	}
	if a.maxConns > 0 {
		if !a.takeSlot() {
			if c.admit&admitIP != 0 {
				a.ips.release(k)
				c.admit &^= admitIP
			}
			e.refuseConn(c, refusedConns, limMaxConns)
			return
		}
		c.admit |= admitSlot
	}
}

// takeSlot counts one more connection against MaxConns unless it is
// reached. Any goroutine.
func (a *admitter) takeSlot() bool {
	for {
		n := a.slots.Load()
		if n >= a.maxConns {
			return false
		}
		if a.slots.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// refuseConn marks c refused for why, counts and logs it, and makes sure
// it has a deadline for its request even when HandshakeTimeout is off.
// Loop only.
func (e *Engine) refuseConn(c *Conn, why admission, w limit) {
	c.admit = why
	e.note(w, c)
	if c.deadline == 0 {
		c.deadline = e.clock() + int64(DefaultHandshakeTimeout)
		c.loop.wheel.schedule(c, c.deadline)
	}
}

// release gives back what c held of the admission limits. It runs once,
// from OnClose. Loop only.
func (e *Engine) release(c *Conn) {
	if c.admit&admitSlot != 0 {
		e.adm.slots.Add(-1)
	}
	if c.admit&admitIP != 0 {
		if k, ok := keyOf(c.remote); ok {
			e.adm.ips.release(k)
		}
	}
	c.admit &^= admitSlot | admitIP
}

// answerRefused answers a refused connection once its request head has
// arrived (or MaxHeaderBytes of it), then half-closes it and discards its
// input until the peer goes away (Conn.linger). Loop only.
func (l *Loop) answerRefused(c *Conn) gnet.Action {
	maxHead := l.e.opts.MaxHeaderBytes
	n := c.inBuffered()
	buf, err := c.peekIn(min(n, maxHead))
	if err != nil {
		return gnet.Close
	}
	if n < maxHead && !bytes.Contains(buf[min(int(c.searched), len(buf)):], headEnd) {
		c.searched = uint32(resumeAt(buf))
		return gnet.None
	}
	i := answerIndex(c.admit & refused)
	resp := l.e.adm.answers[i]
	if bytes.HasPrefix(buf, []byte("HEAD ")) {
		resp = resp[:l.e.adm.heads[i]]
	}
	c.discardAll()
	if err := c.output(resp); err == nil {
		c.linger(true)
	}
	return gnet.None
}

// ipKey is a remote address as the per-IP limits see it: an IPv4 address
// (IPv4-mapped, so that IPv4 peers of a dual-stack listener count as
// IPv4), or the /64 prefix of an IPv6 address (the rest zero).
type ipKey [16]byte

// keyOf returns the key of a TCP peer's address; false for other peers
// (unix sockets). It does not allocate.
func keyOf(a net.Addr) (ipKey, bool) {
	var k ipKey
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return k, false
	}
	if v4 := ta.IP.To4(); v4 != nil {
		k[10], k[11] = 0xff, 0xff
		copy(k[12:], v4)
		return k, true
	}
	if len(ta.IP) != net.IPv6len {
		return k, false
	}
	copy(k[:8], ta.IP[:8])
	return k, true
}

// ipTable holds the per-IP counts: shards of a fixed number of entries,
// each shard behind its own mutex, so that the loops rarely wait for one
// another. An entry lives in its shard's open-addressing index (linear
// probing, at most half full, deletion by backward shift: no tombstones),
// and, while its address has no connection, in the shard's list of idle
// entries, least recently used first. A new address takes a never-used
// entry, or else the first idle entry once its bucket is full again (its
// address then starts afresh, exactly as if remembered); both are O(1).
// When neither exists the address is not tracked (ipTableFull).
type ipTable struct {
	seed     maphash.Seed
	perShard int32
	maxConns int32   // per address; 0: none
	rate     float64 // tokens per second; 0: none
	burst    float64
	shards   []ipShard
}

type ipShard struct {
	mu    sync.Mutex
	index []int32   // entry number + 1, 0 when free; twice perShard slots, a power of two
	ents  []ipEntry // perShard entries, allocated on first use
	used  int32     // ents[:used] have been handed out
	idle  ipList    // entries with no connection, least recently used first
	_     [64]byte  // keep shards' mutexes off each other's cache lines
}

// ipList is a doubly linked list of entries by number + 1 (0 ends it).
type ipList struct{ head, tail int32 }

type ipEntry struct {
	key        ipKey
	hash       uint32 // low bits of the key's hash: its home slot in the index
	conns      int32
	prev, next int32 // links in the idle list, by number + 1
	tokens     bucket
}

// ipResult is what acquire decided.
type ipResult uint8

const (
	ipAdmitted  ipResult = iota // counted: release it at close
	ipOverCount                 // the address has maxConns connections
	ipOverRate                  // the address's bucket is empty
	ipTableFull                 // no entry for the address: admitted, not counted
)

func newIPTable(shards, perShard, maxConns int, rate, burst float64) *ipTable {
	if rate > 0 && burst < 1 {
		burst = 1
	}
	return &ipTable{
		seed:     maphash.MakeSeed(),
		perShard: int32(perShard),
		maxConns: int32(min(maxConns, math.MaxInt32)),
		rate:     rate,
		burst:    burst,
		shards:   make([]ipShard, shards),
	}
}

// locate returns k's shard and the low bits of its hash.
func (t *ipTable) locate(k *ipKey) (*ipShard, uint32) {
	h := maphash.Bytes(t.seed, k[:])
	return &t.shards[(h>>32)%uint64(len(t.shards))], uint32(h)
}

// acquire applies the per-IP limits to a new connection from k at now (ns;
// 0 when there is no rate). An attempt takes a token even when the count
// then refuses it: the rate limits attempts. Any goroutine.
func (t *ipTable) acquire(k ipKey, now int64) ipResult {
	s, h := t.locate(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ents == nil {
		s.ents = make([]ipEntry, t.perShard)
		s.index = make([]int32, indexSize(t.perShard))
	}
	i, _ := s.find(&k, h)
	if i < 0 {
		if i = s.take(t, now); i < 0 {
			return ipTableFull
		}
		_, slot := s.find(&k, h) // after take: reusing an entry may move others in the index
		s.index[slot] = i + 1
		s.ents[i] = ipEntry{key: k, hash: h}
		s.idle.push(s.ents, i)
	}
	en := &s.ents[i]
	if en.conns == 0 { // the most recently used idle entry now
		s.idle.remove(s.ents, i)
		s.idle.push(s.ents, i)
	}
	if t.rate > 0 && !en.tokens.take(now, t.rate, t.burst, 1) {
		return ipOverRate
	}
	if t.maxConns > 0 && en.conns >= t.maxConns {
		return ipOverCount
	}
	if en.conns == 0 {
		s.idle.remove(s.ents, i)
	}
	en.conns++
	return ipAdmitted
}

// release takes back a connection acquire admitted for k. Any goroutine.
func (t *ipTable) release(k ipKey) {
	s, h := t.locate(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := s.find(&k, h)
	if i < 0 || s.ents[i].conns == 0 {
		return // cannot happen: an entry with connections is never reused
	}
	en := &s.ents[i]
	if en.conns--; en.conns == 0 {
		s.idle.push(s.ents, i)
	}
}

// indexSize returns the number of index slots for n entries: a power of
// two at least twice n, so that probe sequences stay short.
func indexSize(n int32) int {
	size := 2
	for size < 2*int(n) {
		size <<= 1
	}
	return size
}

// find returns k's entry number, or -1 and the free slot that ends its
// probe sequence. The index always has a free slot.
func (s *ipShard) find(k *ipKey, h uint32) (entry int32, slot int) {
	mask := len(s.index) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		e := s.index[i]
		if e == 0 {
			return -1, i
		}
		if en := &s.ents[e-1]; en.hash == h && en.key == *k {
			return e - 1, i
		}
	}
}

// take returns an entry for a new address: a never-used one, or the least
// recently used idle one if its bucket is full at now (it is removed from
// the index and the idle list); -1 if there is none.
func (s *ipShard) take(t *ipTable, now int64) int32 {
	if s.used < t.perShard {
		s.used++
		return s.used - 1
	}
	if s.idle.head == 0 {
		return -1
	}
	i := s.idle.head - 1
	en := &s.ents[i]
	if t.rate > 0 && !en.tokens.fullAt(now, t.rate, t.burst) {
		return -1
	}
	s.idle.remove(s.ents, i)
	_, slot := s.find(&en.key, en.hash)
	s.unindex(slot)
	return i
}

// unindex empties slot, shifting back the entries after it that would no
// longer be found (linear probing's deletion without tombstones).
func (s *ipShard) unindex(slot int) {
	mask := len(s.index) - 1
	hole := slot
	for j := (hole + 1) & mask; s.index[j] != 0; j = (j + 1) & mask {
		home := int(s.ents[s.index[j]-1].hash) & mask
		// The entry at j may move to hole unless its home lies cyclically
		// in (hole, j]: then hole is not on its probe sequence.
		if (j-home)&mask >= (j-hole)&mask {
			s.index[hole] = s.index[j]
			hole = j
		}
	}
	s.index[hole] = 0
}

func (l *ipList) push(ents []ipEntry, i int32) {
	en := &ents[i]
	en.prev, en.next = l.tail, 0
	if l.tail != 0 {
		ents[l.tail-1].next = i + 1
	} else {
		l.head = i + 1
	}
	l.tail = i + 1
}

func (l *ipList) remove(ents []ipEntry, i int32) {
	en := &ents[i]
	if en.prev != 0 {
		ents[en.prev-1].next = en.next
	} else {
		l.head = en.next
	}
	if en.next != 0 {
		ents[en.next-1].prev = en.prev
	} else {
		l.tail = en.prev
	}
	en.prev, en.next = 0, 0
}

// fullAt reports whether the bucket holds burst tokens at now.
func (b *bucket) fullAt(now int64, rate, burst float64) bool {
	return b.last == 0 || b.tokens+float64(now-b.last)*rate/1e9 >= burst
}
