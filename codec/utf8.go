package codec

import "unicode/utf8"

// UTF8 validates UTF-8 incrementally, across any split of the input: a text
// message can be checked fragment by fragment, chunk by chunk, and fails at
// the first byte that cannot start or continue a valid sequence (overlongs,
// surrogates and code points above U+10FFFF included), as RFC 6455 §8.1 asks
// of an endpoint that fails fast. The zero value is ready to use; it holds
// 3 bytes of state and never allocates.
type UTF8 struct {
	need   uint8 // continuation bytes still expected in the current sequence
	lo, hi uint8 // accepted range for the next continuation byte
}

// Reset forgets any partial sequence.
func (u *UTF8) Reset() { *u = UTF8{} }

// Complete reports whether the input so far ends on a sequence boundary.
// A text message is valid when every Write returned true and Complete does.
func (u *UTF8) Complete() bool { return u.need == 0 }

// Write feeds p and reports whether it is still a valid prefix of UTF-8 text.
// After it returns false the state is undefined until Reset.
//
// A sequence left open by the previous Write and the one left open at the
// end of p are checked byte by byte; everything between is checked by
// unicode/utf8.Valid, which is several times faster.
func (u *UTF8) Write(p []byte) bool {
	for u.need > 0 && len(p) > 0 {
		if !u.step(p[0]) {
			return false
		}
		p = p[1:]
	}
	if len(p) == 0 {
		return true
	}
	cut := len(p) - openTail(p)
	if !utf8.Valid(p[:cut]) {
		return false
	}
	for _, b := range p[cut:] {
		if !u.step(b) {
			return false
		}
	}
	return true
}

// openTail returns the length of the sequence that a lead byte among the
// last three bytes of p starts but p does not finish, or 0.
func openTail(p []byte) int {
	for k := 1; k <= 3 && k <= len(p); k++ {
		b := p[len(p)-k]
		switch {
		case b < 0x80:
			return 0
		case b < 0xc0:
			continue // a continuation byte: look further back
		case b < 0xe0 && k < 2, b >= 0xe0 && b < 0xf0 && k < 3, b >= 0xf0 && k < 4:
			return k
		}
		return 0
	}
	return 0
}

// step feeds one byte to the state machine.
func (u *UTF8) step(b byte) bool {
	if u.need > 0 {
		if b < u.lo || b > u.hi {
			return false
		}
		u.need--
		u.lo, u.hi = 0x80, 0xbf
		return true
	}
	switch {
	case b < 0x80:
	case b >= 0xc2 && b <= 0xdf:
		u.need, u.lo, u.hi = 1, 0x80, 0xbf
	case b == 0xe0:
		u.need, u.lo, u.hi = 2, 0xa0, 0xbf // no overlongs
	case b == 0xed:
		u.need, u.lo, u.hi = 2, 0x80, 0x9f // no surrogates
	case b >= 0xe1 && b <= 0xef:
		u.need, u.lo, u.hi = 2, 0x80, 0xbf
	case b == 0xf0:
		u.need, u.lo, u.hi = 3, 0x90, 0xbf // no overlongs
	case b >= 0xf1 && b <= 0xf3:
		u.need, u.lo, u.hi = 3, 0x80, 0xbf
	case b == 0xf4:
		u.need, u.lo, u.hi = 3, 0x80, 0x8f // nothing above U+10FFFF
	default: // 0x80-0xc1 and 0xf5-0xff never start a sequence
		return false
	}
	return true
}
