package wstest

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// WebSocket opcodes (RFC 6455, section 5.2).
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// Reserved bits as used in Frame.Rsv: the value is the 3-bit number
// RSV1<<2 | RSV2<<1 | RSV3, so Rsv = 4 sets only RSV1 and Rsv = 7 sets all
// three.
const (
	Rsv1 byte = 4
	Rsv2 byte = 2
	Rsv3 byte = 1
)

// Close status codes used by the tests (RFC 6455, section 7.4.1).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	CloseNoStatus        = 1005 // never on the wire; reported for an empty close payload
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseMessageTooBig   = 1009
)

// LengthEncoding selects how a frame header encodes the payload length.
type LengthEncoding int

const (
	// LenMinimal uses the shortest encoding, as RFC 6455 requires: 7 bits for
	// 0..125, 16 bits for 126..65535, 64 bits above.
	LenMinimal LengthEncoding = iota
	// Len7 forces the 7-bit form (lengths 0..125 only).
	Len7
	// Len16 forces the 16-bit extended form (marker 126).
	Len16
	// Len64 forces the 64-bit extended form (marker 127).
	Len64
)

// DefaultMaskKey is the masking key used when Frame.MaskKey is nil. It is
// fixed (the example key of RFC 6455, section 5.7) so that every byte a test
// sends is reproducible; its four bytes differ, so a server that applies the
// key at the wrong offset corrupts the payload.
var DefaultMaskKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// Frame describes a client-to-server frame, valid or deliberately invalid.
// The zero value is a masked, non-final continuation frame with no payload.
type Frame struct {
	Fin    bool
	Rsv    byte // 0..7, see Rsv1, Rsv2, Rsv3
	Opcode byte // 0..15, reserved values included
	// Payload is the unmasked application data; Bytes masks a copy.
	Payload []byte
	// Unmasked sends the frame without the MASK bit and masking key, which a
	// server must reject.
	Unmasked bool
	// MaskKey overrides DefaultMaskKey.
	MaskKey *[4]byte
	// LenEncoding selects the length encoding; LenMinimal by default.
	LenEncoding LengthEncoding
	// If DeclareLength is set the header announces Length instead of
	// len(Payload); used to announce a payload that is never sent.
	DeclareLength bool
	Length        uint64
}

// Msg returns a final (FIN=1) frame with the given opcode and payload.
func Msg(opcode byte, payload []byte) Frame {
	return Frame{Fin: true, Opcode: opcode, Payload: payload}
}

// Frag returns a frame with the given opcode, FIN bit and payload.
func Frag(opcode byte, fin bool, payload []byte) Frame {
	return Frame{Fin: fin, Opcode: opcode, Payload: payload}
}

// Text returns an unfragmented text frame.
func Text(s string) Frame { return Msg(OpText, []byte(s)) }

// Binary returns an unfragmented binary frame.
func Binary(b []byte) Frame { return Msg(OpBinary, b) }

// Ping returns a ping frame.
func Ping(payload []byte) Frame { return Msg(OpPing, payload) }

// Pong returns a pong frame.
func Pong(payload []byte) Frame { return Msg(OpPong, payload) }

// Close returns a close frame carrying code and reason.
func Close(code uint16, reason string) Frame {
	return Msg(OpClose, ClosePayload(code, reason))
}

// ClosePayload returns the body of a close frame: the 2-byte big-endian code
// followed by the reason.
func ClosePayload(code uint16, reason string) []byte {
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, code)
	return append(p, reason...)
}

// Fragments splits a message into frames of at most size payload bytes:
// the first has the given opcode, the rest are continuations, the last has
// FIN set. An empty payload gives one frame.
func Fragments(opcode byte, payload []byte, size int) []Frame {
	if size <= 0 {
		panic("wstest: fragment size must be positive")
	}
	var fs []Frame
	op := opcode
	for {
		n := min(size, len(payload))
		fs = append(fs, Frag(op, n == len(payload), payload[:n]))
		payload = payload[n:]
		op = OpContinuation
		if len(payload) == 0 {
			return fs
		}
	}
}

// RuneFragments splits a text payload into one frame per code point as
// utf8.DecodeRune sees them (an invalid byte is a code point of its own).
func RuneFragments(payload []byte) []Frame {
	if len(payload) == 0 {
		return []Frame{Msg(OpText, nil)}
	}
	var fs []Frame
	op := OpText
	for len(payload) > 0 {
		_, n := utf8.DecodeRune(payload)
		fs = append(fs, Frag(op, n == len(payload), payload[:n]))
		payload = payload[n:]
		op = OpContinuation
	}
	return fs
}

// HeaderLen returns the number of header bytes (including the masking key)
// that Bytes writes before the payload.
func (f Frame) HeaderLen() int { return len(f.Header()) }

// Header returns the frame header: the two fixed bytes, the extended length
// if any and the masking key unless Unmasked.
func (f Frame) Header() []byte {
	n := uint64(len(f.Payload))
	if f.DeclareLength {
		n = f.Length
	}
	enc := f.LenEncoding
	if enc == LenMinimal {
		switch {
		case n <= 125:
			enc = Len7
		case n <= 0xffff:
			enc = Len16
		default:
			enc = Len64
		}
	}
	b0 := f.Opcode&0x0f | (f.Rsv&7)<<4
	if f.Fin {
		b0 |= 0x80
	}
	var b1 byte
	if !f.Unmasked {
		b1 = 0x80
	}
	h := make([]byte, 0, 14)
	switch enc {
	case Len7:
		if n > 125 {
			panic(fmt.Sprintf("wstest: length %d does not fit the 7-bit encoding", n))
		}
		h = append(h, b0, b1|byte(n))
	case Len16:
		if n > 0xffff {
			panic(fmt.Sprintf("wstest: length %d does not fit the 16-bit encoding", n))
		}
		h = append(h, b0, b1|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	case Len64:
		h = append(h, b0, b1|127)
		h = binary.BigEndian.AppendUint64(h, n)
	default:
		panic("wstest: bad length encoding")
	}
	if !f.Unmasked {
		key := f.key()
		h = append(h, key[:]...)
	}
	return h
}

func (f Frame) key() [4]byte {
	if f.MaskKey != nil {
		return *f.MaskKey
	}
	return DefaultMaskKey
}

// Bytes returns the frame as it goes on the wire: header then the payload,
// masked unless Unmasked. f.Payload is not modified.
func (f Frame) Bytes() []byte { return f.AppendTo(nil) }

// AppendTo appends the wire form of f to dst and returns the result.
func (f Frame) AppendTo(dst []byte) []byte {
	dst = append(dst, f.Header()...)
	start := len(dst)
	dst = append(dst, f.Payload...)
	if !f.Unmasked {
		MaskBytes(f.key(), 0, dst[start:])
	}
	return dst
}

// Concat returns the wire form of all frames back to back, for sending them
// in a single write.
func Concat(frames ...Frame) []byte {
	size := 0
	for _, f := range frames {
		size += 14 + len(f.Payload)
	}
	b := make([]byte, 0, size)
	for _, f := range frames {
		b = f.AppendTo(b)
	}
	return b
}

// MaskBytes XORs b in place with key, as if b started at byte offset pos of
// a payload (RFC 6455, section 5.3). Masking twice restores the data.
func MaskBytes(key [4]byte, pos int, b []byte) {
	// Rotate the key so that b[0] uses key[pos%4].
	var k [4]byte
	for i := range k {
		k[i] = key[(pos+i)&3]
	}
	k32 := uint64(binary.LittleEndian.Uint32(k[:]))
	k64 := k32<<32 | k32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], v^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&3]
	}
}

// OpcodeName returns a short name for an opcode ("text", "ping", "op3", ...).
func OpcodeName(op byte) string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("op%d", op)
}
