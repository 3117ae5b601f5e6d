package codec

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// The reference for fail-fast validation is naive on purpose and shares no
// code with UTF8: a byte sequence is a valid prefix of a rune when some
// continuation bytes complete it into a rune that unicode/utf8 decodes.

var (
	prefixMu   sync.Mutex
	prefixMemo = map[string]bool{}
)

// validRunePrefix reports whether t (1 to 4 bytes) is the start of, or all
// of, the encoding of one valid rune.
func validRunePrefix(t []byte) bool {
	prefixMu.Lock()
	defer prefixMu.Unlock()
	return validRunePrefixLocked(string(t))
}

func validRunePrefixLocked(t string) bool {
	if v, ok := prefixMemo[t]; ok {
		return v
	}
	var v bool
	if utf8.FullRuneInString(t) {
		r, size := utf8.DecodeRuneInString(t)
		v = size == len(t) && !(r == utf8.RuneError && size == 1)
	} else {
		for c := 0x80; c <= 0xbf && !v; c++ {
			v = validRunePrefixLocked(t + string([]byte{byte(c)}))
		}
	}
	prefixMemo[t] = v
	return v
}

// utf8Ref returns the index of the first byte of p at which p stops being a
// prefix of valid UTF-8 (-1 if it never does) and whether p is valid UTF-8.
func utf8Ref(p []byte) (failAt int, valid bool) {
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r != utf8.RuneError || size > 1 {
			i += size
			continue
		}
		j := 0
		for i+j < len(p) && validRunePrefix(p[i:i+j+1]) {
			j++
		}
		if i+j == len(p) {
			return -1, false // ends inside a sequence that could still complete
		}
		return i + j, false
	}
	return -1, true
}

// checkUTF8Splits feeds p to UTF8 whole, byte at a time and in two pieces at
// every split point, and compares each outcome with the reference.
func checkUTF8Splits(t testing.TB, p []byte) {
	t.Helper()
	failAt, valid := utf8Ref(p)
	if failAt < 0 && valid != utf8.Valid(p) {
		t.Fatalf("reference disagrees with utf8.Valid on %q", p)
	}

	var u UTF8
	ok := u.Write(p)
	if ok != (failAt < 0) {
		t.Fatalf("Write(%q) = %v, want %v (first bad byte %d)", p, ok, failAt < 0, failAt)
	}
	if ok && u.Complete() != utf8.Valid(p) {
		t.Fatalf("Write(%q) then Complete() = %v, utf8.Valid = %v", p, u.Complete(), utf8.Valid(p))
	}

	u.Reset()
	for i := range p {
		ok := u.Write(p[i : i+1])
		if !ok {
			if i != failAt {
				t.Fatalf("%q byte at a time: Write failed at byte %d, want %d", p, i, failAt)
			}
			break
		}
		if i == failAt {
			t.Fatalf("%q byte at a time: Write accepted byte %d (%#02x)", p, i, p[i])
		}
		if u.Complete() != utf8.Valid(p[:i+1]) {
			t.Fatalf("%q byte at a time: Complete after %d bytes = %v, utf8.Valid = %v", p, i+1, u.Complete(), utf8.Valid(p[:i+1]))
		}
	}

	for s := 0; s <= len(p); s++ {
		u.Reset()
		ok1 := u.Write(p[:s])
		if want := failAt < 0 || failAt >= s; ok1 != want {
			t.Fatalf("%q split at %d: first Write = %v, want %v (first bad byte %d)", p, s, ok1, want, failAt)
		}
		if !ok1 {
			continue
		}
		ok2 := u.Write(p[s:])
		if ok2 != (failAt < 0) {
			t.Fatalf("%q split at %d: second Write = %v, want %v", p, s, ok2, failAt < 0)
		}
		if ok2 && u.Complete() != valid {
			t.Fatalf("%q split at %d: Complete = %v, want %v", p, s, u.Complete(), valid)
		}
	}
}

func TestUTF8(t *testing.T) {
	const incomplete = -1 // valid so far, but ends inside a sequence
	tests := []struct {
		name   string
		in     string
		valid  bool
		failAt int // first byte Write rejects; -1 if none
	}{
		{"empty", "", true, -1},
		{"ascii", "Hello, world", true, -1},
		{"NUL and DEL", "\x00\x7f", true, -1},
		{"greek kosme", "κόσμε", true, -1},
		{"2-byte min U+0080", "\xc2\x80", true, -1},
		{"2-byte max U+07FF", "\xdf\xbf", true, -1},
		{"3-byte min U+0800", "\xe0\xa0\x80", true, -1},
		{"U+D7FF before surrogates", "\xed\x9f\xbf", true, -1},
		{"U+E000 after surrogates", "\xee\x80\x80", true, -1},
		{"U+FFFD", "\xef\xbf\xbd", true, -1},
		{"U+FFFF", "\xef\xbf\xbf", true, -1},
		{"4-byte min U+10000", "\xf0\x90\x80\x80", true, -1},
		{"U+10FFFF", "\xf4\x8f\xbf\xbf", true, -1},
		{"mixed with long ascii runs", "abcdefghijklmnop€xyz€abcdefgh😀12345678", true, -1},

		{"overlong NUL 2-byte C0", "\xc0\x80", false, 0},
		{"overlong slash C0 AF", "\xc0\xaf", false, 0},
		{"overlong C1", "\xc1\xbf", false, 0},
		{"overlong 3-byte NUL", "\xe0\x80\x80", false, 1},
		{"overlong 3-byte max", "\xe0\x9f\xbf", false, 1},
		{"overlong 3-byte slash", "\xe0\x80\xaf", false, 1},
		{"overlong 4-byte NUL", "\xf0\x80\x80\x80", false, 1},
		{"overlong 4-byte max", "\xf0\x8f\xbf\xbf", false, 1},
		{"surrogate D800", "\xed\xa0\x80", false, 1},
		{"surrogate DB7F", "\xed\xad\xbf", false, 1},
		{"surrogate DC00", "\xed\xb0\x80", false, 1},
		{"surrogate DFFF", "\xed\xbf\xbf", false, 1},
		{"surrogate pair", "\xed\xa0\x80\xed\xb0\x80", false, 1},
		{"U+110000", "\xf4\x90\x80\x80", false, 1},
		{"F5 lead", "\xf5\x80\x80\x80", false, 0},
		{"F7 lead", "\xf7\xbf\xbf\xbf", false, 0},
		{"F8 5-byte form", "\xf8\x88\x80\x80\x80", false, 0},
		{"FC 6-byte form", "\xfc\x84\x80\x80\x80\x80", false, 0},
		{"FE", "\xfe", false, 0},
		{"FF", "\xff", false, 0},
		{"lone continuation 80", "\x80", false, 0},
		{"lone continuation BF after ascii", "a\xbf", false, 1},
		{"continuation after complete rune", "€\x80", false, 3},
		{"extra continuation", "\xc2\x80\x80", false, 2},
		{"truncated 2-byte", "\xc2", false, incomplete},
		{"truncated 3-byte", "a\xe2\x82", false, incomplete},
		{"truncated 4-byte", "\xf0\x9f\x98", false, incomplete},
		{"truncated 2-byte then ascii", "\xc2a", false, 1},
		{"truncated 3-byte then ascii", "\xe2\x82a", false, 2},
		{"truncated 4-byte then ascii", "\xf0\x9fa", false, 2},
		{"truncated 3-byte then new lead", "\xe2\xe2\x82\xac", false, 1},
		{"autobahn 6.3.1 kosme + surrogate", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", false, 12},
		{"bad byte right after 8 ascii", "abcdefgh\xff", false, 8},
		{"bad byte after 16 ascii", "abcdefghijklmnop\xc0", false, 16},
		{"bad byte inside an 8-byte block", "abcdefg\x80hijklmn", false, 7},
		{"bad byte at the end of a long text", strings.Repeat("héllo wörld ", 20) + "\xf8", false, 20 * len("héllo wörld ")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := []byte(tt.in)
			if utf8.Valid(p) != tt.valid {
				t.Fatalf("bad test: utf8.Valid = %v", utf8.Valid(p))
			}
			if failAt, valid := utf8Ref(p); failAt != tt.failAt || valid != tt.valid {
				t.Fatalf("bad reference: utf8Ref = %d, %v; want %d, %v", failAt, valid, tt.failAt, tt.valid)
			}
			checkUTF8Splits(t, p)
		})
	}
}

func TestUTF8Reset(t *testing.T) {
	var u UTF8
	if !u.Complete() {
		t.Fatal("zero value is not Complete")
	}
	if !u.Write([]byte("a\xe2\x82")) || u.Complete() {
		t.Fatal(`Write("a\xe2\x82"): want true and not Complete`)
	}
	u.Reset()
	if !u.Complete() {
		t.Fatal("Complete after Reset = false")
	}
	// A continuation byte is an error again once the partial sequence is forgotten.
	if u.Write([]byte{0xac}) {
		t.Fatal("Write(0xac) after Reset = true")
	}
	u.Reset()
	if !u.Write([]byte("€")) || !u.Complete() {
		t.Fatal("UTF8 unusable after a failure and Reset")
	}
}

// TestUTF8AllShortInputs checks every input of 1 and 2 bytes.
func TestUTF8AllShortInputs(t *testing.T) {
	p := make([]byte, 2)
	for a := 0; a < 256; a++ {
		p[0] = byte(a)
		checkUTF8Splits(t, p[:1])
		for b := 0; b < 256; b++ {
			p[1] = byte(b)
			checkUTF8Splits(t, p)
		}
	}
}

// TestUTF8StructuredInputs checks 4-byte inputs built around every lead byte
// and the edges of every continuation range.
func TestUTF8StructuredInputs(t *testing.T) {
	edges := []byte{0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xed, 0xf0, 0xff}
	p := make([]byte, 4)
	for lead := 0xc0; lead <= 0xff; lead++ {
		p[0] = byte(lead)
		for b := 0; b < 256; b++ {
			p[1] = byte(b)
			for _, c := range []byte{0x41, 0x80, 0xbf} {
				p[2] = c
				for _, d := range []byte{0x41, 0x80, 0xbf} {
					p[3] = d
					checkUTF8Splits(t, p)
				}
			}
		}
		for _, b := range edges {
			p[1] = b
			for _, c := range edges {
				p[2] = c
				for _, d := range edges {
					p[3] = d
					checkUTF8Splits(t, p)
				}
			}
		}
	}
}

// randomText returns text made of runes of every encoded length, with
// occasional corruptions: a replaced byte, a cut rune, a surrogate, an
// overlong form, a stray continuation byte or a code point above U+10FFFF.
func randomText(rng *rand.Rand, maxRunes int) []byte {
	var b []byte
	n := rng.IntN(maxRunes + 1)
	for i := 0; i < n; i++ {
		switch rng.IntN(10) {
		case 0, 1, 2:
			b = append(b, "abcdefghijklmnop"[:1+rng.IntN(16)]...)
		case 3:
			b = utf8.AppendRune(b, rune(0x80+rng.IntN(0x800-0x80)))
		case 4:
			b = utf8.AppendRune(b, rune(0x800+rng.IntN(0x10000-0x800)))
		case 5:
			b = utf8.AppendRune(b, rune(0x10000+rng.IntN(0x110000-0x10000)))
		case 6:
			b = utf8.AppendRune(b, []rune{0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff}[rng.IntN(10)])
		}
	}
	if len(b) > 0 && rng.IntN(3) == 0 {
		switch rng.IntN(7) {
		case 0:
			b[rng.IntN(len(b))] = byte(rng.Uint32())
		case 1:
			b = b[:rng.IntN(len(b))]
		case 2:
			b = append(b, "\xed\xa0\x80\xed\xbf\xbf"[rng.IntN(2)*3:][:3]...)
		case 3:
			b = append(b, [][]byte{{0xc0, 0xaf}, {0xe0, 0x80, 0xaf}, {0xf0, 0x80, 0x80, 0xaf}}[rng.IntN(3)]...)
		case 4:
			b = append(b, byte(0x80+rng.IntN(0x40)))
		case 5:
			b = append(b, 0xf4, byte(0x90+rng.IntN(0x30)), 0x80, 0x80)
		case 6:
			b = append(b, byte(0xf5+rng.IntN(11)))
		}
		b = append(b, "tail"...)
	}
	return b
}

func TestUTF8MatchesStdlibRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 3000; i++ {
		checkUTF8Splits(t, randomText(rng, 12))
	}
	// Random bytes, mostly high ones so that sequences start and break often.
	alphabet := []byte{0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf1, 0xf4}
	for i := 0; i < 3000; i++ {
		p := make([]byte, rng.IntN(24))
		for j := range p {
			if rng.IntN(4) == 0 {
				p[j] = byte(rng.Uint32())
			} else {
				p[j] = alphabet[rng.IntN(len(alphabet))]
			}
		}
		checkUTF8Splits(t, p)
	}
}

// TestUTF8LongInputs uses inputs long enough for the 8-byte ASCII fast path,
// fed in pieces of every size: the fast path must not skip a pending
// continuation byte nor a bad byte in the middle of a block.
func TestUTF8LongInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 200; i++ {
		p := randomText(rng, 80)
		failAt, valid := utf8Ref(p)
		for piece := 1; piece <= 17; piece++ {
			var u UTF8
			got := -1
			for off := 0; off < len(p); off += piece {
				end := min(off+piece, len(p))
				if !u.Write(p[off:end]) {
					got = off
					break
				}
			}
			wantChunk := -1
			if failAt >= 0 {
				wantChunk = failAt / piece * piece
			}
			if got != wantChunk {
				t.Fatalf("%q in pieces of %d: failed in the piece at %d, want the piece at %d", p, piece, got, wantChunk)
			}
			if got < 0 && u.Complete() != valid {
				t.Fatalf("%q in pieces of %d: Complete = %v, want %v", p, piece, u.Complete(), valid)
			}
		}
	}
}

func TestUTF8ZeroAllocs(t *testing.T) {
	p := []byte(strings.Repeat("héllo wörld €😀 ", 10))
	var u UTF8
	allocs := testing.AllocsPerRun(100, func() {
		u.Reset()
		if !u.Write(p) {
			panic("valid text rejected")
		}
	})
	if allocs != 0 {
		t.Fatalf("UTF8.Write: %v allocs per run, want 0", allocs)
	}
}

func FuzzUTF8(f *testing.F) {
	for _, s := range []string{
		"", "hello", "κόσμε", "\xc2\x80", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xf0\x90\x80\x80",
		"\xc0\x80", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5", "\xff",
		"\x80", "\xe2\x82", "\xe2\x82a", "abcdefgh\xff", "abcdefg\x80hijklmn",
		"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, p []byte, split uint8) {
		failAt, valid := utf8Ref(p)
		if failAt < 0 && valid != utf8.Valid(p) {
			t.Fatalf("reference disagrees with utf8.Valid on %q", p)
		}
		var u UTF8
		ok := u.Write(p)
		if ok != (failAt < 0) || (ok && u.Complete() != utf8.Valid(p)) {
			t.Fatalf("Write(%q) = %v, Complete = %v; utf8.Valid = %v, first bad byte %d", p, ok, u.Complete(), utf8.Valid(p), failAt)
		}
		s := int(split) % (len(p) + 1)
		u.Reset()
		ok1 := u.Write(p[:s])
		ok2 := ok1 && u.Write(p[s:])
		if ok1 != (failAt < 0 || failAt >= s) || ok2 != (failAt < 0) || (ok2 && u.Complete() != valid) {
			t.Fatalf("%q split at %d: Write = %v, %v; Complete = %v; want first bad byte %d, valid %v", p, s, ok1, ok2, u.Complete(), failAt, valid)
		}
		u.Reset()
		for i := range p {
			if !u.Write(p[i : i+1]) {
				if i != failAt {
					t.Fatalf("%q byte at a time: failed at %d, want %d", p, i, failAt)
				}
				return
			}
		}
		if failAt >= 0 {
			t.Fatalf("%q byte at a time: never failed, want failure at %d", p, failAt)
		}
		if u.Complete() != valid {
			t.Fatalf("%q byte at a time: Complete = %v, want %v", p, u.Complete(), valid)
		}
	})
}
