package bufpool

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

func TestGetCapacityClasses(t *testing.T) {
	tests := []struct {
		n       int
		wantCap int
	}{
		{-1, 512},
		{0, 512},
		{1, 512},
		{511, 512},
		{512, 512},
		{513, 1024},
		{1000, 1024},
		{1024, 1024},
		{1025, 2048},
		{4096, 4096},
		{4097, 8192},
		{65536, 65536},
		{65537, 131072},
		{1 << 20, 1 << 20},
		{1<<20 + 1, 1 << 21},
		{1<<26 - 1, 1 << 26},
		{1 << 26, 1 << 26},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d", tt.n), func(t *testing.T) {
			// Fresh and recycled buffers alike.
			for i := 0; i < 3; i++ {
				b := Get(tt.n)
				if b == nil || len(*b) != 0 || cap(*b) != tt.wantCap {
					t.Fatalf("Get(%d): len %d cap %d, want len 0 cap %d", tt.n, len(*b), cap(*b), tt.wantCap)
				}
				*b = append(*b, "dirty"...)
				Put(b)
			}
		})
	}
}

// TestGetAboveLargestClass: a request above 64 MiB is allocated to size
// and not pooled.
func TestGetAboveLargestClass(t *testing.T) {
	n := 1<<26 + 1
	b := Get(n)
	if len(*b) != 0 || cap(*b) != n {
		t.Fatalf("Get(%d): len %d cap %d, want len 0 cap %d", n, len(*b), cap(*b), n)
	}
	Put(b) // dropped: must not panic or land in a class
	for c := range pools {
		if v := pools[c].Get(); v == b {
			t.Fatalf("oversized buffer pooled in class %d", c)
		} else if v != nil {
			pools[c].Put(v)
		}
	}
}

// TestPutRecycles: a buffer of a class size comes back from Get of that
// class, emptied. sync.Pool gives no guarantee, and drops Puts at random
// under the race detector, so the test only asks for it to happen at least
// once in many tries on one goroutine.
func TestPutRecycles(t *testing.T) {
	hits := 0
	for i := 0; i < 100; i++ {
		b := Get(3000)
		*b = append(*b, "data"...)
		Put(b)
		got := Get(2049)
		if got == b {
			hits++
			if len(*got) != 0 {
				t.Fatalf("recycled buffer has length %d", len(*got))
			}
		}
		Put(got)
	}
	if hits == 0 {
		t.Fatal("a buffer put back was never handed out again")
	}
}

// TestPutDropsForeignCapacities: buffers whose capacity is not a class size
// never enter a pool.
func TestPutDropsForeignCapacities(t *testing.T) {
	for _, c := range []int{0, 1, 256, 511, 513, 1000, 1023, 1025, 3000, 1<<20 - 1, 1<<20 + 512, 1<<26 + 1, 1 << 27} {
		t.Run(fmt.Sprintf("cap=%d", c), func(t *testing.T) {
			foreign := make([]byte, 0, c)
			bp := &foreign
			for i := 0; i < 3; i++ {
				Put(bp)
				for class := range pools {
					v := pools[class].Get()
					if v == bp {
						t.Fatalf("buffer of capacity %d pooled in class %d", c, class)
					}
					if v != nil {
						pools[class].Put(v)
					}
				}
				if c > 1<<20 {
					continue // Get would allocate a large buffer for nothing
				}
				if got := Get(c); got == bp {
					t.Fatalf("Get(%d) returned the foreign buffer", c)
				}
			}
		})
	}
	Put(nil) // no-op
}

func TestGrow(t *testing.T) {
	t.Run("nil gets a buffer", func(t *testing.T) {
		b := Grow(nil, 700)
		if b == nil || len(*b) != 0 || cap(*b) != 1024 {
			t.Fatalf("Grow(nil, 700): len %d cap %d", len(*b), cap(*b))
		}
		Put(b)
	})
	t.Run("room left keeps the buffer", func(t *testing.T) {
		b := Get(512)
		*b = append(*b, bytes.Repeat([]byte{'x'}, 500)...)
		if g := Grow(b, 12); g != b {
			t.Fatal("Grow moved a buffer that had room")
		}
		Put(b)
	})
	t.Run("growth preserves contents and at least doubles", func(t *testing.T) {
		want := []byte{}
		b := Grow(nil, 1)
		for i := 0; i < 20000; i++ {
			chunk := []byte(fmt.Sprintf("<%d>", i))
			oldCap := cap(*b)
			nb := Grow(b, len(chunk))
			if cap(*nb)-len(*nb) < len(chunk) {
				t.Fatalf("Grow(len %d, %d): only %d bytes of room", len(*b), len(chunk), cap(*nb)-len(*nb))
			}
			if nb != b {
				if cap(*nb) < 2*oldCap {
					t.Fatalf("grew from %d to %d: less than double", oldCap, cap(*nb))
				}
				if !bytes.Equal(*nb, want) {
					t.Fatalf("contents lost while growing from %d to %d", oldCap, cap(*nb))
				}
			}
			b = nb
			*b = append(*b, chunk...)
			want = append(want, chunk...)
		}
		if !bytes.Equal(*b, want) {
			t.Fatal("final contents differ")
		}
		Put(b)
	})
	t.Run("foreign capacity at least doubles", func(t *testing.T) {
		raw := make([]byte, 1000)
		for i := range raw {
			raw[i] = byte(i)
		}
		nb := Grow(&raw, 1)
		if cap(*nb) < 2000 || !bytes.Equal(*nb, raw) {
			t.Fatalf("Grow(len 1000 cap 1000, 1): cap %d, contents kept %v", cap(*nb), bytes.Equal(*nb, raw))
		}
		Put(nb)
	})
	t.Run("large jump", func(t *testing.T) {
		b := Get(10)
		*b = append(*b, "keep"...)
		nb := Grow(b, 100000)
		if string(*nb) != "keep" || cap(*nb) != 1<<17 {
			t.Fatalf("Grow(4 bytes, 100000): %q cap %d", *nb, cap(*nb))
		}
		Put(nb)
	})
}

// TestConcurrentGetPut hands buffers out on many goroutines: no buffer may
// be held by two of them at once (each writes its id and checks it later),
// and -race watches the rest.
func TestConcurrentGetPut(t *testing.T) {
	const workers, rounds = 8, 500
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(id byte) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				n := 100 + (i*37)%5000
				b := Get(n)
				*b = append(*b, bytes.Repeat([]byte{id}, n)...)
				b = Grow(b, n)
				*b = append(*b, bytes.Repeat([]byte{id}, n)...)
				for _, c := range *b {
					if c != id {
						errs <- fmt.Errorf("worker %d: buffer written by worker %d", id, c)
						return
					}
				}
				Put(b)
			}
		}(byte(w + 1))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestGetPutZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	sizes := []int{1, 600, 5000, 70000}
	for _, n := range sizes { // warm-up: one buffer per class in the pool
		Put(Get(n))
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, n := range sizes {
			b := Get(n)
			*b = append(*b, 'x')
			Put(b)
		}
	})
	if allocs != 0 {
		t.Fatalf("Get/Put after warm-up: %v allocs per run, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		b := Grow(nil, 100)
		b = Grow(b, 1000) // 512 B -> 1 KiB class
		Put(b)
	})
	if allocs != 0 {
		t.Fatalf("Grow/Put after warm-up: %v allocs per run, want 0", allocs)
	}
}
