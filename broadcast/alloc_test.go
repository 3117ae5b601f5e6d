package broadcast_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// fanoutAllocs returns the allocations per Publish, over the whole process
// (server, publisher and n reading clients), of a 64-byte message to n
// subscribers on one event loop, each Publish waiting until the hub has
// handed the frame to all n sockets.
//
// One loop, so that every n wakes the same number of loops: waking a loop
// (gnet's Execute, the engine's doorbell) costs allocations of its own, per
// publish and loop.
func fanoutAllocs(t *testing.T, n int) float64 {
	hub, _, addr := startHub(t, broadcast.Options{}, 1)
	cs := dialMany(t, addr, n, func(int) string { return "/feed" }, dialOptions{})
	waitFor(t, 10*time.Second, "every subscription", func() bool { return hub.Count("feed") == n })
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
		hub.Publish("feed", codec.OpBinary, payload)
		for hub.Stats().Delivered < target && !stuck {
			if time.Now().After(deadline) {
				stuck = true
			}
			runtime.Gosched()
		}
	}
	for range 200 { // warm up pools, slices and buffers
		publish()
	}
	allocs := testing.AllocsPerRun(500, publish)
	if stuck {
		t.Fatalf("deliveries stalled: stats %+v", hub.Stats())
	}
	if s := hub.Stats(); s.Dropped != 0 {
		t.Fatalf("stats %+v: want nothing dropped", s)
	}
	return allocs
}

// TestHubFanoutAllocs guards the fan-out path at zero allocations per
// subscriber: the allocations per Publish with 200 subscribers must not
// exceed those with 1 subscriber by more than 0.5. (Per-publish costs, like
// waking the loop, may allocate a little.)
func TestHubFanoutAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var per [2]float64
	for i, n := range []int{1, 200} {
		t.Run(fmt.Sprintf("subs=%d", n), func(t *testing.T) {
			per[i] = fanoutAllocs(t, n)
			t.Logf("%.3f allocations per Publish to %d subscribers", per[i], n)
		})
	}
	if t.Failed() {
		return
	}
	if per[1] > per[0]+0.5 {
		t.Fatalf("%.3f allocations per Publish to 200 subscribers, %.3f to 1: the fan-out allocates per subscriber", per[1], per[0])
	}
}
