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
// reason cut to fit the 125-byte control payload limit (at a rune boundary,
// so the reason stays valid UTF-8). A zero code appends nothing, which sends
// a close frame without status.
func AppendClose(dst []byte, code StatusCode, reason string) []byte {
	if code == 0 {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	if len(reason) > MaxControlPayload-2 {
		reason = reason[:MaxControlPayload-2]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	return append(dst, reason...)
}
