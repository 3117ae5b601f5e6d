package loadgen

import (
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d > 0.04 || d < -0.04 {
			t.Errorf("q%.2f = %v, want %v within 4%%", tc.q, got, tc.want)
		}
	}
	var m Hist
	m.FromSparse(h.Sparse())
	m.N, m.Max, m.Sum = h.N, h.Max, h.Sum
	var sum Hist
	sum.Merge(&m)
	sum.Merge(&h)
	if sum.N != 2000 || sum.Quantile(0.5) != h.Quantile(0.5) {
		t.Fatalf("merge: n=%d p50=%v", sum.N, sum.Quantile(0.5))
	}
	for _, ns := range []int64{0, 1, 31, 32, 33, 1000, 1 << 40} {
		i := histIndex(ns)
		if v := histValue(i); v > ns || (ns > 32 && float64(ns-v)/float64(ns) > 0.04) {
			t.Errorf("%d -> bucket %d -> %d", ns, i, v)
		}
	}
}
