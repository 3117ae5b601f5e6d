package codec_test

import (
	"bytes"
	"testing"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestDeflateZeroAllocs: compressing with a pooled compressor and
// inflating with a warm Inflater allocate nothing per message (counted
// over every run, with no collection emptying the pools meanwhile).
func TestDeflateZeroAllocs(t *testing.T) {
	if raceOn {
		t.Skip("the race detector makes sync.Pool drop values; make guards runs this without it")
	}
	p := bytes.Repeat([]byte(`{"user":"alice","msg":"hello"}`), 40)
	dst := make([]byte, 0, 4096)
	z := codec.Compress(nil, p, 1)
	var f codec.Inflater
	out, _ := f.Inflate(nil, z, 0, nil)
	a := wstest.Allocs(100, 2000, func() {
		dst = codec.Compress(dst[:0], p, 1)
		*out = (*out)[:0]
		out, _ = f.Inflate(out, z, 0, nil)
	})
	if a.Total != 0 {
		t.Fatalf("%v per compress and inflate, want 0\n%s", a, a.Where())
	}
}
