package wstest

import (
	"testing"

	"github.com/wsdproject/wsd/internal/bufpool"
)

// TestPoolAllocs: Allocs leaves out a cold buffer pool's first allocations,
// but not a pool that never gets its buffers back.
func TestPoolAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	class := 1 << 20 // a class no other test here uses: cold at the first run
	reused := Allocs(0, 1000, func() { bufpool.Put(bufpool.Get(class)) })
	if reused.Total != 0 {
		t.Errorf("a buffer taken and given back: %v, want 0:\n%s", reused, reused.Where())
	}
	var kept []*[]byte
	lost := Allocs(0, 1000, func() { kept = append(kept[:0], bufpool.Get(class)) })
	if lost.Total < 1000-coldPool {
		t.Errorf("a buffer taken and never given back: %v, want at least %d", lost, 1000-coldPool)
	}
}
