package engine

import (
	"testing"
	"time"
)

// The engine gives memory back once limits closed connections and then
// none for reclaimQuiet, or once a burst of connections settled; at most
// once per reclaimEvery, and never while things move.
func TestReclaimDue(t *testing.T) {
	s := int64(time.Second)
	type look struct {
		at            int64 // s
		closes, conns int64
		due           bool
	}
	for _, tc := range []struct {
		name  string
		looks []look
	}{
		{"nothing happens", []look{{1, 0, 10, false}, {5, 0, 10, false}, {100, 0, 10, false}}},
		{"limit closes, then quiet", []look{{1, 3, 0, false}, {2, 5, 0, false}, {4, 5, 0, false}, {5, 5, 0, true}, {9, 5, 0, false}}},
		{"closes go on", []look{{1, 1, 0, false}, {3, 2, 0, false}, {5, 3, 0, false}, {7, 4, 0, false}}},
		{"a burst settles", []look{{1, 0, 600, false}, {2, 0, 1200, false}, {4, 0, 1200, false}, {5, 0, 1200, true}, {30, 0, 1200, false}}},
		{"a small burst", []look{{1, 0, 999, false}, {10, 0, 999, false}}},
		{"conns still move", []look{{1, 0, 1500, false}, {3, 0, 1490, false}, {5, 0, 1500, false}, {7, 0, 1510, false}, {10, 0, 1510, true}}},
		{"closed again do not count", []look{{1, 0, 800, false}, {2, 0, 0, false}, {3, 0, 800, false}, {10, 0, 800, false}}},
		{"once a minute", []look{{1, 1, 2000, false}, {4, 1, 2000, true}, {5, 2, 0, false}, {9, 2, 3000, false}, {20, 2, 3000, false}, {63, 2, 3000, false}, {64, 2, 3000, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r reclaimer
			for _, l := range tc.looks {
				if got := r.due(l.closes, l.conns, l.at*s); got != l.due {
					t.Fatalf("at %ds (%d closes, %d conns): due %v, want %v", l.at, l.closes, l.conns, got, l.due)
				}
			}
		})
	}
}
