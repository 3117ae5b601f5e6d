package codec

import (
	"fmt"
	"testing"
	"unicode/utf8"
)

var benchSizes = []int{16, 128, 1024, 16384, 65536}

// Sinks keep benchmark results alive.
var (
	sinkInt   int
	sinkBool  bool
	sinkBytes []byte
)

// zeroKey masks with an all-zero key: Decode still runs the whole unmasking
// code (ws.Cipher does not look at the key's value), but the buffer is the
// same after each run, so the benchmark loop needs no re-masking and
// measures decoding alone.
var zeroKey = [4]byte{}

func withZeroKey(f wireFrame) wireFrame { f.key = zeroKey; return f }

func BenchmarkDecode(b *testing.B) {
	for _, kind := range []struct {
		name string
		op   OpCode
		gen  func(int) string
	}{
		{"binary", OpBinary, binOf},
		{"text", OpText, textOf},
	} {
		b.Run(kind.name, func(b *testing.B) {
			for _, n := range benchSizes {
				b.Run(fmt.Sprintf("bytes=%d", n), func(b *testing.B) {
					buf := withZeroKey(frame(true, kind.op, kind.gen(n))).bytes()
					var d Decoder
					r := new(countingReceiver)
					b.ReportAllocs()
					b.SetBytes(int64(n))
					for b.Loop() {
						c, err := d.Decode(buf, r)
						if err != nil {
							b.Fatal(err)
						}
						sinkInt += c
					}
					if r.messages == 0 {
						b.Fatal("no message decoded")
					}
				})
			}
		})
	}
}

// BenchmarkDecodeFragmented decodes a text message of N bytes sent as four
// fragments, assembled in the pooled buffer.
func BenchmarkDecodeFragmented(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("bytes=%d", n), func(b *testing.B) {
			s := textOf(n)
			q := n / 4
			// Cut at byte offsets, not rune boundaries: runes span fragments.
			buf := wire(
				withZeroKey(first(OpText, s[:q])),
				withZeroKey(cont(s[q:2*q])),
				withZeroKey(cont(s[2*q:3*q])),
				withZeroKey(last(s[3*q:])),
			)
			var d Decoder
			defer d.Release()
			r := new(countingReceiver)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				c, err := d.Decode(buf, r)
				if err != nil {
					b.Fatal(err)
				}
				sinkInt += c
			}
			if r.bytes == 0 {
				b.Fatal("no message decoded")
			}
		})
	}
}

func BenchmarkUnmask(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("bytes=%d", n), func(b *testing.B) {
			buf := []byte(binOf(n))
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				Unmask(buf, testKey, 1)
			}
			sinkBytes = buf
		})
	}
}

func BenchmarkUTF8(b *testing.B) {
	inputs := []struct {
		name string
		gen  func(int) string
	}{
		{"ascii", func(n int) string { return binOfASCII(n) }},
		{"mixed", textOf},
	}
	for _, in := range inputs {
		for _, impl := range []string{"codec", "stdlib"} {
			b.Run(in.name+"/"+impl, func(b *testing.B) {
				for _, n := range benchSizes {
					b.Run(fmt.Sprintf("bytes=%d", n), func(b *testing.B) {
						p := []byte(in.gen(n))
						b.ReportAllocs()
						b.SetBytes(int64(n))
						var ok bool
						if impl == "codec" {
							var u UTF8
							for b.Loop() {
								u.Reset()
								ok = u.Write(p) && u.Complete()
							}
						} else {
							for b.Loop() {
								ok = utf8.Valid(p)
							}
						}
						if !ok {
							b.Fatal("valid text rejected")
						}
						sinkBool = ok
					})
				}
			})
		}
	}
}

func binOfASCII(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// BenchmarkEncodeHeader encodes the header of an N-byte frame; SetBytes
// counts the header bytes produced.
func BenchmarkEncodeHeader(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("bytes=%d", n), func(b *testing.B) {
			var e HeaderEncoder
			b.ReportAllocs()
			b.SetBytes(int64(FrameSize(n) - n))
			for b.Loop() {
				sinkBytes = e.Encode(true, 0, OpBinary, n)
			}
		})
	}
}

// BenchmarkAppendFrame appends an N-byte frame to a buffer with room for it.
func BenchmarkAppendFrame(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("bytes=%d", n), func(b *testing.B) {
			var e HeaderEncoder
			payload := []byte(binOf(n))
			dst := make([]byte, 0, FrameSize(n))
			b.ReportAllocs()
			b.SetBytes(int64(FrameSize(n)))
			for b.Loop() {
				dst = e.AppendFrame(dst[:0], OpBinary, payload)
			}
			sinkBytes = dst
		})
	}
}
