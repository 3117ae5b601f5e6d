package codec

import (
	"testing"
)

// FuzzDecoder feeds arbitrary bytes to the Decoder in one read, byte at a
// time, in two reads split at a fuzzed offset and in reads of a fuzzed size,
// with a fuzzed MaxMessageSize (0: none). It checks that decoding never
// panics, that every way of cutting the input yields the same events and the
// same error, raised in the read that brings the faulty byte, that every
// error carries a close code, that consumed counts stay in range and that
// unconsumed bytes are left untouched (drive checks the last two on every
// call).
//
// The seed corpus is in testdata/fuzz/FuzzDecoder; the f.Add seeds below
// cover the basics.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte{}, uint16(0), uint16(0), uint16(0))
	f.Add([]byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, uint16(3), uint16(2), uint16(0))
	f.Add(wire(first(OpText, "frag"), ping("p"), last("ment")), uint16(9), uint16(5), uint16(0))
	f.Add(wire(text("bad \xff utf8")), uint16(8), uint16(1), uint16(0))
	f.Add(wire(bin(binOf(300)), text("next")), uint16(100), uint16(7), uint16(299))
	f.Add(wire(text("x").withRsv(4)), uint16(1), uint16(1), uint16(0))
	f.Add(wire(first(OpBinary, "1234"), last("5678")), uint16(4), uint16(3), uint16(7))

	f.Fuzz(func(t *testing.T, data []byte, split, chunk, limit uint16) {
		maxSize := int64(limit)
		n := len(data)

		bytewise := make([]int, n)
		for i := range bytewise {
			bytewise[i] = i + 1
		}
		s := int(split) % (n + 1)
		c := 1 + int(chunk)%max(n, 1)
		var pieces []int
		for off := 0; off < n; {
			off = min(n, off+c)
			pieces = append(pieces, off)
		}

		oneShot := drive(t, data, []int{n}, maxSize, 0)
		ref := drive(t, data, bytewise, maxSize, 0)
		if oneShot.err != nil && CloseStatus(oneShot.err) == 0 {
			t.Fatalf("error %v has no close code", oneShot.err)
		}
		if oneShot.consumed > n {
			t.Fatalf("consumed %d of %d bytes", oneShot.consumed, n)
		}
		if oneShot.err == nil && oneShot.consumed+oneShot.leftover != n {
			t.Fatalf("consumed %d and left %d of %d bytes", oneShot.consumed, oneShot.leftover, n)
		}

		for _, ch := range []chunking{
			{"byte at a time", bytewise},
			{"split", []int{s, n}},
			{"pieces", pieces},
			{"one-shot", []int{n}},
		} {
			got := drive(t, data, ch.ends, maxSize, 0)
			if !eventsEqual(got.events, oneShot.events) {
				t.Fatalf("%s %v: events\n got %v\nwant %v (one-shot)", ch.name, ch.ends, got.events, oneShot.events)
			}
			if got.err != oneShot.err {
				t.Fatalf("%s %v: error %v, one-shot %v", ch.name, ch.ends, got.err, oneShot.err)
			}
			if got.err != nil {
				// The byte-at-a-time run tells which byte completes the fault.
				if want := firstEndAtLeast(ch.ends, ref.fed); got.fed != want {
					t.Fatalf("%s %v: error after %d bytes fed, want after %d", ch.name, ch.ends, got.fed, want)
				}
				continue
			}
			if got.consumed != oneShot.consumed || got.leftover != oneShot.leftover || got.inMessage != oneShot.inMessage {
				t.Fatalf("%s %v: consumed %d, left %d, in message %v; one-shot %d, %d, %v",
					ch.name, ch.ends, got.consumed, got.leftover, got.inMessage, oneShot.consumed, oneShot.leftover, oneShot.inMessage)
			}
			for k, at := range got.at {
				if want := firstEndAtLeast(ch.ends, ref.at[k]); at != want {
					t.Fatalf("%s %v: event %d delivered after %d bytes, want after %d", ch.name, ch.ends, k, at, want)
				}
			}
		}
	})
}
