package broadcast_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// The known allocations of one Publish to one event loop, whatever the
// number of subscribers:
const (
	// publishAllocs: allocations per Publish besides waking the loop.
	publishAllocs = 0
	// wakeAllocs: waking the loop with gnet's Execute (the engine's
	// doorbell) allocates its closure and its queue node. A publish finds
	// the doorbell already rung, and wakes nothing itself, when the
	// engine's ticker rang it a moment before.
	wakeAllocs = 2
)

// wakeFunc is where the doorbell's allocations are made.
const wakeFunc = "github.com/panjf2000/gnet/v2.(*eventloop).Execute"

// fanoutAllocs measures the allocations of the whole process (server,
// publisher and n reading clients) while 2,000 times a 64-byte message is
// published to n subscribers on one event loop, each Publish waiting until
// the hub has handed the frame to all n sockets.
//
// One loop, so that every n wakes the same number of loops.
func fanoutAllocs(t *testing.T, n int) wstest.AllocCount {
	return topicFanoutAllocs(t, broadcast.Options{}, "feed", n)
}

// topicFanoutAllocs is fanoutAllocs for a hub with options o, publishing to
// topic.
func topicFanoutAllocs(t *testing.T, o broadcast.Options, topic string, n int) wstest.AllocCount {
	hub, _, addr := startHub(t, o, 1)
	cs := dialMany(t, addr, n, func(int) string { return "/" + topic }, dialOptions{})
	waitFor(t, 10*time.Second, "every subscription", func() bool { return hub.Count(topic) == n })
	var readers sync.WaitGroup
	for _, c := range cs {
		// One deadline for every read, set once: SetReadDeadline per read
		// would be the client's cost, not the hub's.
		_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
		readers.Go(func() {
			buf := make([]byte, 16<<10)
			for {
				if _, err := c.conn.Read(buf); err != nil {
					return
				}
			}
		})
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.conn.Close()
		}
		readers.Wait()
	})

	payload := make([]byte, 64)
	deadline := time.Now().Add(time.Minute)
	stuck := false
	publish := func() {
		target := hub.Stats().Delivered + int64(n)
		hub.Publish(topic, codec.OpBinary, payload)
		for hub.Stats().Delivered < target && !stuck {
			if time.Now().After(deadline) {
				stuck = true
			}
			runtime.Gosched()
		}
	}
	// A few messages in flight at once first, so that the hub's pools hold
	// a few: a publish may start while the loop, having counted the
	// previous message delivered, is still returning it to its pool. With
	// GOMAXPROCS already 1 as Allocs sets it: changing it empties the pools.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const inFlight = 4
	target := hub.Stats().Delivered + inFlight*int64(n)
	for range inFlight {
		hub.Publish(topic, codec.OpBinary, payload)
	}
	waitFor(t, time.Minute, "the first messages delivered", func() bool { return hub.Stats().Delivered >= target })
	a := wstest.Allocs(200, 2000, publish)
	if stuck {
		t.Fatalf("deliveries stalled: stats %+v", hub.Stats())
	}
	if s := hub.Stats(); s.Dropped != 0 {
		t.Fatalf("stats %+v: want nothing dropped", s)
	}
	return a
}

// TestHubFanoutAllocs guards the fan-out path at zero allocations per
// subscriber, and Publish at its known allocations per publish: the same
// with 1 and with 200 subscribers, exactly, over 2,000 publishes.
func TestHubFanoutAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var per [2]wstest.AllocCount
	for i, n := range []int{1, 200} {
		t.Run(fmt.Sprintf("subs=%d", n), func(t *testing.T) {
			a := fanoutAllocs(t, n)
			per[i] = a
			wake := a.Under(wakeFunc)
			t.Logf("%v to %d subscribers; %d of them waking the loop", a, n, wake)
			if other := a.Total - wake; other != publishAllocs*uint64(a.Runs) {
				t.Errorf("%d allocations in %d publishes besides waking the loop, want %d per publish:\n%s",
					other, a.Runs, publishAllocs, a.Where())
			}
			// Fewer when the ticker had woken the loop already; the 1%
			// allows the odd extra allocation inside gnet (an odd total has
			// been seen, once).
			if runs := uint64(a.Runs); wake > wakeAllocs*runs+runs/100 || wake < wakeAllocs*runs/2 {
				t.Errorf("%d allocations waking the loop in %d publishes, want %d per publish:\n%s",
					wake, a.Runs, wakeAllocs, a.Where())
			}
		})
	}
	if t.Failed() {
		return
	}
	if d := (per[1].Total - per[1].Under(wakeFunc)) - (per[0].Total - per[0].Under(wakeFunc)); d != 0 {
		t.Fatalf("%d more allocations publishing to 200 subscribers than to 1 (%v, %v): the fan-out allocates per subscriber", d, per[1], per[0])
	}
}
