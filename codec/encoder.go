package codec

import (
	"sync"

	"github.com/gobwas/ws"
)

// HeaderEncoder builds server frame headers (unmasked, RFC 6455 §5.2) with
// ws.WriteHeaderBuffer, without allocating. It is not safe for concurrent
// use: keep one per goroutine (wsd keeps one per event loop).
type HeaderEncoder struct {
	scratch [MaxHeaderSize]byte
	out     headerSink
}

type headerSink struct {
	b [MaxHeaderSize]byte
	n int
}

func (s *headerSink) Write(p []byte) (int, error) {
	s.n = copy(s.b[:], p)
	return len(p), nil
}

// Encode returns the header of a frame with the given FIN bit, RSV bits,
// opcode and payload length. The slice is valid until the next call.
func (e *HeaderEncoder) Encode(fin bool, rsv byte, op OpCode, length int) []byte {
	h := ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Length: int64(length)}
	_ = ws.WriteHeaderBuffer(&e.out, h, e.scratch[:]) // cannot fail: buffer is MaxHeaderSize, length >= 0
	return e.out.b[:e.out.n]
}

// AppendFrame appends one final, unmasked frame carrying payload to dst.
// It allocates only if dst must grow.
func (e *HeaderEncoder) AppendFrame(dst []byte, op OpCode, payload []byte) []byte {
	dst = append(dst, e.Encode(true, 0, op, len(payload))...)
	return append(dst, payload...)
}

var encoders = sync.Pool{New: func() any { return new(HeaderEncoder) }}

// AppendFrameRsv is AppendFrame with RSV bits (Rsv1 for a compressed
// message), with a pooled HeaderEncoder. Safe for concurrent use.
func AppendFrameRsv(dst []byte, rsv byte, op OpCode, payload []byte) []byte {
	e := encoders.Get().(*HeaderEncoder)
	dst = append(dst, e.Encode(true, rsv, op, len(payload))...)
	encoders.Put(e)
	return append(dst, payload...)
}

// AppendFrame appends one final, unmasked frame carrying payload to dst,
// with a pooled HeaderEncoder. Safe for concurrent use; it allocates only if
// dst must grow. Code that owns an encoder (an event loop) should use
// HeaderEncoder.AppendFrame.
func AppendFrame(dst []byte, op OpCode, payload []byte) []byte {
	e := encoders.Get().(*HeaderEncoder)
	dst = e.AppendFrame(dst, op, payload)
	encoders.Put(e)
	return dst
}

// FrameSize is the size on the wire of a server frame with n payload bytes.
func FrameSize(n int) int {
	switch {
	case n < 126:
		return 2 + n
	case n <= 0xffff:
		return 4 + n
	}
	return 10 + n
}
