package codec

import "encoding/binary"

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
func (u *UTF8) Write(p []byte) bool {
	i, n := 0, len(p)
	for i < n {
		if u.need > 0 {
			b := p[i]
			if b < u.lo || b > u.hi {
				return false
			}
			u.need--
			u.lo, u.hi = 0x80, 0xbf
			i++
			continue
		}
		for i+8 <= n && binary.LittleEndian.Uint64(p[i:])&0x8080808080808080 == 0 {
			i += 8
		}
		if i == n {
			break
		}
		b := p[i]
		i++
		if b < 0x80 {
			continue
		}
		switch {
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
	}
	return true
}
