package engine

import (
	"bytes"
	"math/bits"
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// piecesConn records the buffers each Writev hands to gnet.
type piecesConn struct {
	gnet.Conn
	calls [][]int
	out   []byte
}

func (c *piecesConn) Writev(bs [][]byte) (int, error) {
	var sizes []int
	n := 0
	for _, b := range bs {
		sizes = append(sizes, len(b))
		c.out = append(c.out, b...)
		n += len(b)
	}
	c.calls = append(c.calls, sizes)
	return n, nil
}

// pooled is the capacity gnet's byte-slice pool gives a copy of n bytes.
func pooled(n int) int { return 1 << bits.Len(uint(n-1)) }

// Frames written behind a backlog reach gnet whole and in order, in pieces
// that fill its pool's power-of-two slices: less than pieceMin of slack
// per frame (a 32 KiB broadcast frame took a 64 KiB slice), at most
// maxIovecs buffers per Writev.
func TestWritePieces(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		{"a 32 KiB broadcast", []int{32<<10 + 4}},
		{"small frames", []int{100, 200, 6}},
		{"more buffers than one writev", []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100}},
		{"64 KiB and a header", []int{64<<10 + 4, 10}},
		{"a MiB", []int{1<<20 + 10}},
		{"odd sizes", []int{pieceMin + 1, 3*pieceMin - 1, 100<<10 + 77}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var frames [][]byte
			var want []byte
			for i, n := range tc.sizes {
				f := bytes.Repeat([]byte{byte('a' + i)}, n)
				frames = append(frames, f)
				want = append(want, f...)
			}
			gc := &piecesConn{}
			l := &Loop{}
			if err := l.writePieces(&Conn{gc: gc, loop: l}, frames); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gc.out, want) {
				t.Fatalf("gnet got %d bytes, not the %d of the frames in order", len(gc.out), len(want))
			}
			var pieces []int
			for _, call := range gc.calls {
				if len(call) > maxIovecs {
					t.Errorf("a Writev of %d buffers, want at most %d", len(call), maxIovecs)
				}
				pieces = append(pieces, call...)
			}
			held, i := 0, 0
			for _, n := range tc.sizes {
				slack := 0
				for rest := n; rest > 0; i++ {
					slack += pooled(pieces[i]) - pieces[i]
					rest -= pieces[i]
				}
				if slack >= pieceMin {
					t.Errorf("a frame of %d bytes takes %d bytes of slack in gnet's pool, want less than %d (pieces %v)", n, slack, pieceMin, pieces)
				}
				held += n + slack
			}
			t.Logf("%v: pieces %v, %d bytes held for %d", tc.sizes, pieces, held, len(want))
			for _, b := range l.pieces {
				if b != nil {
					t.Fatal("the loop still refers to the frames")
				}
			}
		})
	}
}
