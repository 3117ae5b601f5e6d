package natsbroker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// A topic travels on one NATS subject, <prefix>.t.<token>, where token is
// the topic escaped by EscapeToken. NATS gives meaning to '.', '*', '>',
// whitespace and a leading '$', and tools print subjects, so a token keeps
// only the printable ASCII bytes without such a meaning and writes every
// other byte as %XX. A topic whose token would exceed MaxTokenLen goes on
// <prefix>.h.<hex SHA-256 of the topic, 128 bits> instead: NATS servers
// refuse protocol lines longer than 4 KiB (max_control_line), and every
// message names its topics in full anyway (see wire.go).

// MaxTokenLen is the longest escaped topic used as a subject token; a
// longer one is replaced by a hash of the topic.
const MaxTokenLen = 256

// errToken is returned by UnescapeToken.
var errToken = errors.New("natsbroker: not an escaped subject token")

// tokenSafe reports whether byte c stands for itself in a token.
func tokenSafe(c byte) bool {
	return c > ' ' && c < 0x7f && c != '.' && c != '*' && c != '>' && c != '%' && c != '$'
}

const upperHex = "0123456789ABCDEF"

// EscapeToken returns s as one NATS subject token, reversibly: bytes other
// than printable ASCII, and '.', '*', '>', '%' and '$', become %XX (two
// upper-case hex digits); the empty string becomes "%". UnescapeToken
// undoes it. A token never contains '.', whitespace or a wildcard, and
// never starts with '$'.
func EscapeToken(s string) string {
	if s == "" {
		return "%"
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !tokenSafe(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	return string(appendEscaped(make([]byte, 0, len(s)+2*n), s))
}

// appendEscaped appends EscapeToken(s) to dst.
func appendEscaped(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, '%')
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenSafe(c) {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

// escapedLen returns len(EscapeToken(s)) without building it.
func escapedLen(s string) int {
	if s == "" {
		return 1
	}
	n := len(s)
	for i := 0; i < len(s); i++ {
		if !tokenSafe(s[i]) {
			n += 2
		}
	}
	return n
}

// UnescapeToken returns the string EscapeToken turned into tok. It accepts
// only what EscapeToken produces (upper-case hex, and only for bytes that
// need it), so the two are inverse bijections.
func UnescapeToken(tok string) (string, error) {
	if tok == "%" {
		return "", nil
	}
	if tok == "" {
		return "", errToken
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '%':
			if i+2 >= len(tok) {
				return "", errToken
			}
			hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
			if hi < 0 || lo < 0 {
				return "", errToken
			}
			b := byte(hi<<4 | lo)
			if tokenSafe(b) {
				return "", errToken // not canonical
			}
			out = append(out, b)
			i += 2
		case tokenSafe(c):
			out = append(out, c)
		default:
			return "", errToken
		}
	}
	return string(out), nil
}

// unhex returns the value of an upper-case hex digit, or -1.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// appendTopicSubject appends the subject of topic under prefix to dst.
func appendTopicSubject(dst []byte, prefix, topic string) []byte {
	dst = append(dst, prefix...)
	if escapedLen(topic) > MaxTokenLen {
		sum := sha256.Sum256([]byte(topic))
		dst = append(dst, ".h."...)
		return hex.AppendEncode(dst, sum[:16])
	}
	dst = append(dst, ".t."...)
	return appendEscaped(dst, topic)
}
