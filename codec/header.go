package codec

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// HeaderLen returns the length of a frame header whose first two bytes are
// b0 and b1: 2, plus 2 or 8 bytes of extended length, plus 4 of mask key.
func HeaderLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// ParseHeader decodes the frame header at the start of b (RFC 6455 §5.2).
// It returns the header and its length n. When b is too short to hold the
// whole header, it returns n > len(b), the number of bytes needed, and a
// zero Header; call again when that many bytes are buffered. It fails only
// on a 64-bit length with the most significant bit set. It does not copy b
// and does not allocate.
func ParseHeader(b []byte) (h Header, n int, err error) {
	if len(b) < 2 {
		return h, 2, nil
	}
	n = HeaderLen(b[0], b[1])
	if len(b) < n {
		return h, n, nil
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] >> 4) & 0x7
	h.OpCode = OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	p := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		p = 4
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u>>63 != 0 {
			return Header{}, n, ErrLengthMSB
		}
		h.Length = int64(u)
		p = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], b[p:p+4])
	}
	return h, n, nil
}

// CheckHeader applies the RFC 6455 §5.2-§5.5 rules a server enforces on a
// client frame: known opcode, no RSV bits beyond rsvAllowed (a bit mask of
// the RSV bits negotiated extensions define, 0 without extensions), a mask
// key, control frames final and at most 125 bytes, and continuation frames
// exactly when a fragmented message is in progress.
func CheckHeader(h Header, fragmented bool, rsvAllowed byte) error {
	if h.OpCode.IsReserved() {
		return ErrReservedOpcode
	}
	if h.Rsv&^rsvAllowed != 0 {
		return ErrReservedBits
	}
	if !h.Masked {
		return ErrUnmasked
	}
	if h.OpCode.IsControl() {
		if h.Length > MaxControlPayload {
			return ErrControlTooLong
		}
		if !h.Fin {
			return ErrControlFragmented
		}
		return nil
	}
	if h.OpCode == OpContinuation {
		if !fragmented {
			return ErrUnexpectedContinuation
		}
	} else if fragmented {
		return ErrContinuationExpected
	}
	return nil
}

// Unmask applies the 4-byte mask key to p in place (RFC 6455 §5.3). offset
// is the position of p[0] within the frame payload, so a payload can be
// unmasked in pieces as it arrives. It uses ws.Cipher (SIMD on amd64) and
// does not allocate.
func Unmask(p []byte, mask [4]byte, offset int) {
	ws.Cipher(p, mask, offset)
}
