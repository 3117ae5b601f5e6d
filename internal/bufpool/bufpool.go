// Package bufpool is a size-classed pool of byte slices shared by the codec,
// the engine and the broadcast hub.
//
// Classes are powers of two from 512 B to 64 MiB; a request above the largest
// class is allocated and never pooled. Slices are handed out as *[]byte so
// that Put does not allocate. Get and Put are safe for concurrent use.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 9  // 512 B
	maxShift = 26 // 64 MiB
)

var pools [maxShift - minShift + 1]sync.Pool

func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}

// Get returns a buffer with length 0 and capacity at least n. Its contents
// are undefined. Return it with Put when done.
func Get(n int) *[]byte {
	c := class(n)
	if c >= len(pools) {
		b := make([]byte, 0, n)
		return &b
	}
	if v := pools[c].Get(); v != nil {
		bp := v.(*[]byte)
		*bp = (*bp)[:0]
		return bp
	}
	b := make([]byte, 0, 1<<(c+minShift))
	return &b
}

// Put returns b to its class. b must not be used afterwards. Buffers whose
// capacity is not a class size (grown elsewhere, or oversized) are dropped.
func Put(b *[]byte) {
	if b == nil {
		return
	}
	c := cap(*b)
	if c < 1<<minShift || c > 1<<maxShift || c&(c-1) != 0 {
		return
	}
	pools[bits.Len(uint(c))-1-minShift].Put(b)
}

// Grow makes sure *bp (which may be nil) has room for n more bytes, moving
// its contents into a larger pooled buffer when needed, and returns the
// buffer to use from then on. Growth at least doubles the capacity.
func Grow(bp *[]byte, n int) *[]byte {
	if bp == nil {
		return Get(n)
	}
	need := len(*bp) + n
	if need <= cap(*bp) {
		return bp
	}
	nb := Get(max(need, 2*cap(*bp)))
	*nb = append(*nb, *bp...)
	Put(bp)
	return nb
}
