package codec

import (
	"encoding/binary"
	"unicode/utf8"
)

// ParseClose validates a received close payload (RFC 6455 §5.5.1, §7.4):
// either empty, or a 2-byte status code valid on the wire followed by a UTF-8
// reason. An empty payload yields StatusNoStatusRcvd. reason aliases p.
func ParseClose(p []byte) (code StatusCode, reason []byte, err error) {
	switch len(p) {
	case 0:
		return StatusNoStatusRcvd, nil, nil
	case 1:
		return 0, nil, ErrCloseOneByte
	}
	code = StatusCode(binary.BigEndian.Uint16(p))
	if !code.ValidOnWire() {
		return 0, nil, ErrCloseCode
	}
	reason = p[2:]
	if !utf8.Valid(reason) {
		return 0, nil, ErrInvalidCloseUTF8
	}
	return code, reason, nil
}

// AppendClose appends a close payload to dst: the big-endian code, then
// reason, cut to fit the 125-byte control payload limit at a rune boundary
// and cut before its first byte that is not valid UTF-8, so the peer always
// gets a payload ParseClose accepts. A zero code appends nothing, which
// sends a close frame without status. It does not allocate beyond dst.
func AppendClose(dst []byte, code StatusCode, reason string) []byte {
	if code == 0 {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason[:validCloseReason(reason)]...)
}

// validCloseReason returns the length of the longest prefix of reason that
// is valid UTF-8 and fits a close payload with its 2-byte code.
func validCloseReason(reason string) int {
	n := 0
	for n < len(reason) {
		r, size := utf8.DecodeRuneInString(reason[n:])
		if r == utf8.RuneError && size <= 1 || n+size > MaxControlPayload-2 {
			break
		}
		n += size
	}
	return n
}
