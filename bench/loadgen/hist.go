package loadgen

import (
	"math/bits"
	"time"
)

// Hist is a latency histogram with about 3% relative error: 32 linear
// sub-buckets per power of two of nanoseconds. The zero value is ready to
// use; Merge adds another; it is not safe for concurrent use.
type Hist struct {
	Counts [64 * 32]uint64 `json:"-"`
	N      uint64          `json:"n"`
	Max    int64           `json:"max_ns"`
	Sum    int64           `json:"sum_ns"`
}

func histIndex(ns int64) int {
	if ns < 32 {
		if ns < 0 {
			ns = 0
		}
		return int(ns)
	}
	e := bits.Len64(uint64(ns)) - 5 // ns >> e is in [16, 32)
	return e*32 + int(uint64(ns)>>e)
}

func histValue(i int) int64 {
	if i < 32 {
		return int64(i)
	}
	e, m := i/32, i%32
	return int64(m) << e
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	ns := int64(d)
	h.Counts[histIndex(ns)]++
	h.N++
	h.Sum += ns
	if ns > h.Max {
		h.Max = ns
	}
}

// Merge adds o's samples to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
	h.Sum += o.Sum
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the latency at quantile q (0..1), to the histogram's
// precision, or 0 without samples.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	rank := uint64(q*float64(h.N-1)) + 1
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histValue(i), h.Max))
		}
	}
	return time.Duration(h.Max)
}

// Sparse returns the non-zero buckets as index -> count, for JSON.
func (h *Hist) Sparse() map[int]uint64 {
	m := make(map[int]uint64)
	for i, c := range h.Counts {
		if c != 0 {
			m[i] = c
		}
	}
	return m
}

// FromSparse rebuilds the buckets from Sparse's output.
func (h *Hist) FromSparse(m map[int]uint64) {
	for i, c := range m {
		if i >= 0 && i < len(h.Counts) {
			h.Counts[i] = c
		}
	}
}

// SparseHist is a Hist as JSON: its non-zero buckets only.
type SparseHist struct {
	N       uint64         `json:"n"`
	Max     int64          `json:"max_ns"`
	Sum     int64          `json:"sum_ns"`
	Buckets map[int]uint64 `json:"buckets"`
}

// ToSparse returns h as a SparseHist.
func (h *Hist) ToSparse() SparseHist {
	return SparseHist{N: h.N, Max: h.Max, Sum: h.Sum, Buckets: h.Sparse()}
}

// Hist rebuilds the histogram.
func (s SparseHist) Hist() *Hist {
	h := &Hist{N: s.N, Max: s.Max, Sum: s.Sum}
	h.FromSparse(s.Buckets)
	return h
}
