package engine

import (
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// key returns the table key of an IPv4 address a.b.c.d.
func key(a, b, c, d byte) ipKey {
	k, _ := keyOf(&net.TCPAddr{IP: net.IPv4(a, b, c, d)})
	return k
}

// TestAdmitKeys: IPv4 by address (mapped or not), IPv6 by /64, no key for
// unix sockets.
func TestAdmitKeys(t *testing.T) {
	k := func(ip string) ipKey {
		t.Helper()
		k, ok := keyOf(&net.TCPAddr{IP: net.ParseIP(ip), Port: 1234})
		if !ok {
			t.Fatalf("no key for %s", ip)
		}
		return k
	}
	v4 := k("192.0.2.1")
	if v4 != k("::ffff:192.0.2.1") || v4 != key(192, 0, 2, 1) {
		t.Error("an IPv4 address and its IPv4-mapped form differ")
	}
	if v4 == k("192.0.2.2") {
		t.Error("two IPv4 addresses share a key")
	}
	if k("2001:db8:1:2::1") != k("2001:db8:1:2:ffff:1:2:3") {
		t.Error("two addresses of one IPv6 /64 differ")
	}
	if k("2001:db8:1:2::1") == k("2001:db8:1:3::1") {
		t.Error("two IPv6 /64s share a key")
	}
	if k("::") == k("0.0.0.0") {
		t.Error("the IPv6 ::/64 and IPv4 0.0.0.0 share a key")
	}
	for _, a := range []net.Addr{&net.UnixAddr{Name: "/x.sock", Net: "unix"}, (*net.TCPAddr)(nil), &net.TCPAddr{}, nil} {
		if _, ok := keyOf(a); ok {
			t.Errorf("%#v has a key", a)
		}
	}
}

// TestAdmitTableCounts: the count per address, refusal at the cap, release.
func TestAdmitTableCounts(t *testing.T) {
	tb := newIPTable(4, 16, 2, 0, 0)
	a, b := key(10, 0, 0, 1), key(10, 0, 0, 2)
	steps := []struct {
		release bool
		k       ipKey
		want    ipResult
	}{
		{k: a, want: ipAdmitted},
		{k: a, want: ipAdmitted},
		{k: a, want: ipOverCount},
		{k: b, want: ipAdmitted},
		{k: a, want: ipOverCount},
		{release: true, k: a},
		{k: a, want: ipAdmitted},
		{k: a, want: ipOverCount},
		{k: b, want: ipAdmitted},
		{k: b, want: ipOverCount},
	}
	for i, s := range steps {
		if s.release {
			tb.release(s.k)
			continue
		}
		if got := tb.acquire(s.k, 0); got != s.want {
			t.Fatalf("step %d: acquire %v = %d, want %d", i, s.k[12:], got, s.want)
		}
	}
	if n := tb.conns(a); n != 2 {
		t.Fatalf("a holds %d connections, want 2", n)
	}
}

// conns returns the table's count for k (-1 when k has no entry).
func (t *ipTable) conns(k ipKey) int32 {
	s, h := t.locate(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.index == nil {
		return -1
	}
	i, _ := s.find(&k, h)
	if i < 0 {
		return -1
	}
	return s.ents[i].conns
}

// TestAdmitTableRate: the bucket refills lazily, at the rate, up to the
// burst, on an injected clock.
func TestAdmitTableRate(t *testing.T) {
	tb := newIPTable(1, 16, 0, 5, 5)
	a := key(10, 0, 0, 1)
	const ms = int64(time.Millisecond)
	t0 := int64(1000 * time.Second)
	steps := []struct {
		at   int64 // ms after t0
		n    int   // attempts
		want int   // admitted of them (the rest refused for the rate)
	}{
		{0, 6, 5},     // the burst, then empty
		{199, 1, 0},   // not yet a token
		{200, 2, 1},   // one token after 1/rate
		{400, 1, 1},   // the next one
		{10000, 8, 5}, // full again, never over the burst
		{10100, 1, 0}, // half a token
		{10200, 1, 1},
	}
	for _, s := range steps {
		got := 0
		for range s.n {
			switch tb.acquire(a, t0+s.at*ms) {
			case ipAdmitted:
				got++
			case ipOverRate:
			default:
				t.Fatal("refused for something other than the rate")
			}
		}
		if got != s.want {
			t.Fatalf("at %d ms: %d of %d admitted, want %d", s.at, got, s.n, s.want)
		}
	}
	// Another address has its own bucket.
	if got := tb.acquire(key(10, 0, 0, 2), t0+10200*ms); got != ipAdmitted {
		t.Fatalf("a second address: %d", got)
	}
}

// TestAdmitTableRateAndCount: an attempt refused for the count still takes
// a token.
func TestAdmitTableRateAndCount(t *testing.T) {
	tb := newIPTable(1, 16, 1, 1, 2)
	a := key(10, 0, 0, 1)
	now := int64(time.Hour)
	for i, want := range []ipResult{ipAdmitted, ipOverCount, ipOverRate} {
		if got := tb.acquire(a, now); got != want {
			t.Fatalf("attempt %d: %d, want %d", i, got, want)
		}
	}
}

// TestAdmitTableEviction: an address with connections keeps its entry; an
// idle one is reused once its bucket is full again, least recently used
// first; when none can be, new addresses are not tracked.
func TestAdmitTableEviction(t *testing.T) {
	const sec = int64(time.Second)
	t.Run("busy entries stay", func(t *testing.T) {
		tb := newIPTable(1, 4, 0, 0, 0)
		for i := range byte(4) {
			if got := tb.acquire(key(10, 0, 0, i), 0); got != ipAdmitted {
				t.Fatalf("address %d: %d", i, got)
			}
		}
		if got := tb.acquire(key(10, 0, 1, 0), 0); got != ipTableFull {
			t.Fatalf("a fifth address in a table of 4 busy entries: %d, want ipTableFull", got)
		}
		tb.release(key(10, 0, 0, 2))
		if got := tb.acquire(key(10, 0, 1, 0), 0); got != ipAdmitted {
			t.Fatalf("after a release: %d", got)
		}
		if tb.conns(key(10, 0, 0, 2)) != -1 {
			t.Fatal("the released address still has an entry")
		}
		for _, i := range []byte{0, 1, 3} {
			if n := tb.conns(key(10, 0, 0, i)); n != 1 {
				t.Fatalf("address %d holds %d connections, want 1", i, n)
			}
		}
	})
	t.Run("idle entries wait for a full bucket", func(t *testing.T) {
		tb := newIPTable(1, 4, 0, 1, 2)
		t0 := 100 * sec          // not 0: a bucket's time 0 means "never used"
		for i := range byte(4) { // each leaves its bucket empty, at times 0..3 s
			now := t0 + int64(i)*sec
			tb.acquire(key(10, 0, 0, i), now)
			tb.acquire(key(10, 0, 0, i), now)
			tb.release(key(10, 0, 0, i))
			tb.release(key(10, 0, 0, i))
		}
		if got := tb.acquire(key(10, 0, 1, 0), t0+2*sec-1); got != ipTableFull {
			t.Fatalf("no bucket full yet: %d, want ipTableFull", got)
		}
		if got := tb.acquire(key(10, 0, 1, 0), t0+2*sec); got != ipAdmitted {
			t.Fatalf("the oldest bucket is full: %d", got)
		}
		if tb.conns(key(10, 0, 0, 0)) != -1 || tb.conns(key(10, 0, 0, 1)) != 0 {
			t.Fatal("not the least recently used entry was reused")
		}
		// Using an idle entry makes it the most recently used: once
		// address 1 has been used again, 2 goes next.
		if got := tb.acquire(key(10, 0, 0, 1), t0+3*sec); got != ipAdmitted {
			t.Fatalf("address 1 at 3 s: %d", got)
		}
		tb.release(key(10, 0, 0, 1))
		if got := tb.acquire(key(10, 0, 1, 1), t0+10*sec); got != ipAdmitted {
			t.Fatalf("a sixth address: %d", got)
		}
		if tb.conns(key(10, 0, 0, 2)) != -1 || tb.conns(key(10, 0, 0, 1)) != 0 {
			t.Fatal("the entry reused is not the least recently used")
		}
	})
	t.Run("a refused attempt is a use", func(t *testing.T) {
		tb := newIPTable(1, 2, 0, 1, 2)
		a, b := key(10, 0, 0, 1), key(10, 0, 0, 2)
		t0 := 100 * sec
		for _, k := range []ipKey{a, b} {
			tb.acquire(k, t0)
			tb.acquire(k, t0)
			tb.release(k)
			tb.release(k)
		}
		if got := tb.acquire(a, t0+sec/2); got != ipOverRate {
			t.Fatalf("a with an empty bucket: %d, want ipOverRate", got)
		}
		if got := tb.acquire(key(10, 0, 0, 3), t0+10*sec); got != ipAdmitted {
			t.Fatalf("a third address: %d", got)
		}
		if tb.conns(a) != 0 || tb.conns(b) != -1 {
			t.Fatal("the entry reused is not the least recently used")
		}
	})
}

// TestAdmitTableModel runs random acquires and releases over more addresses
// than the table holds, against a plain map: every admitted address is
// found with its count (the index survives its deletions), refusals happen
// exactly at the cap, and an address goes untracked only when every entry
// of its shard holds connections.
func TestAdmitTableModel(t *testing.T) {
	const perShard, maxConns = 32, 3
	tb := newIPTable(2, perShard, maxConns, 0, 0)
	model := map[ipKey]int32{}
	var held []ipKey // one element per admitted connection
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 200000 {
		if len(held) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(held))
			k := held[i]
			held[i] = held[len(held)-1]
			held = held[:len(held)-1]
			tb.release(k)
			if model[k]--; model[k] == 0 {
				delete(model, k)
			}
			continue
		}
		k := key(10, 0, byte(rng.IntN(2)), byte(rng.IntN(100)))
		switch got := tb.acquire(k, 0); got {
		case ipAdmitted:
			if model[k] >= maxConns {
				t.Fatalf("step %d: admitted over the cap", step)
			}
			model[k]++
			held = append(held, k)
		case ipOverCount:
			if model[k] != maxConns {
				t.Fatalf("step %d: refused with %d connections", step, model[k])
			}
		case ipTableFull:
			s, _ := tb.locate(&k)
			busy := 0
			for _, en := range s.ents {
				if en.conns > 0 {
					busy++
				}
			}
			if busy != perShard || model[k] != 0 {
				t.Fatalf("step %d: untracked with %d busy entries, %d connections", step, busy, model[k])
			}
		default:
			t.Fatalf("step %d: %d", step, got)
		}
		if step%1000 == 0 {
			for k, n := range model {
				if got := tb.conns(k); got != n {
					t.Fatalf("step %d: the table counts %d for %v, the model %d", step, got, k[12:], n)
				}
			}
		}
	}
}

// TestAdmitAllocs: admitting and releasing allocates nothing once the
// table's shards exist, whether an address is known or takes over an idle
// entry. The count is exact (testing.AllocsPerRun rounds down). MemStats
// counts the whole process, where a goroutine an earlier test left winding
// down, or the runtime's cleanups, may allocate at any time; such noise
// comes and goes, while an allocation of the table comes back every time
// (the runs cycle through the same addresses), so one clean attempt in five
// passes.
func TestAdmitAllocs(t *testing.T) {
	tb := newIPTable(ipShards, 4, 2, 1000, 2000)
	now := int64(time.Hour)
	var keys [1024]ipKey
	for i := range keys {
		keys[i] = key(10, 1, byte(i>>8), byte(i))
		tb.acquire(keys[i], now) // allocates every shard
		tb.release(keys[i])
	}
	i := 0
	run := func() {
		now += int64(time.Second) // every bucket full again: idle entries may be reused
		k := keys[i%len(keys)]
		i++
		if tb.acquire(k, now) == ipAdmitted {
			tb.release(k)
		}
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var counts []uint64
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10000 {
			run()
		}
		runtime.ReadMemStats(&after)
		n := after.Mallocs - before.Mallocs
		if n == 0 {
			return
		}
		counts = append(counts, n)
	}
	t.Fatalf("allocations in five attempts of 10000 admissions: %v", counts)
}

// TestAdmitOptions: negative limits mean none, the burst defaults to twice
// the rate (at least 1), and nonsense is refused with the field's name.
func TestAdmitOptions(t *testing.T) {
	tests := []struct {
		in                  Options
		conns, perIP, burst int
		rate                float64
		err                 string
	}{
		{in: Options{}},
		{in: Options{MaxConns: -1, MaxConnsPerIP: -5, HandshakeRatePerIP: -1, HandshakeBurstPerIP: 3}},
		{in: Options{MaxConns: 10, MaxConnsPerIP: 2, HandshakeRatePerIP: 5}, conns: 10, perIP: 2, rate: 5, burst: 10},
		{in: Options{HandshakeRatePerIP: 0.1}, rate: 0.1, burst: 1},
		{in: Options{HandshakeRatePerIP: 5, HandshakeBurstPerIP: 7}, rate: 5, burst: 7},
		{in: Options{HandshakeRatePerIP: 1e300}, rate: 1e300, burst: 1 << 30},
		{in: Options{HandshakeRatePerIP: math.NaN()}, err: "HandshakeRatePerIP NaN"},
		{in: Options{HandshakeRatePerIP: math.Inf(1)}, err: "HandshakeRatePerIP +Inf"},
		{in: Options{HandshakeRatePerIP: 1, HandshakeBurstPerIP: -1}, err: "HandshakeBurstPerIP -1"},
	}
	for _, tt := range tests {
		o, err := tt.in.withDefaults()
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%+v: error %v, want %q", tt.in, err, tt.err)
			}
		case err != nil:
			t.Errorf("%+v: %v", tt.in, err)
		case o.MaxConns != tt.conns || o.MaxConnsPerIP != tt.perIP || o.HandshakeRatePerIP != tt.rate || o.HandshakeBurstPerIP != tt.burst:
			t.Errorf("%+v: got %d %d %v %d, want %d %d %v %d", tt.in, o.MaxConns, o.MaxConnsPerIP, o.HandshakeRatePerIP,
				o.HandshakeBurstPerIP, tt.conns, tt.perIP, tt.rate, tt.burst)
		}
	}
}
