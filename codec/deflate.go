package codec

import (
	"io"
	"sync"

	"github.com/klauspost/compress/flate"

	"github.com/wsdproject/wsd/internal/bufpool"
)

// permessage-deflate (RFC 7692), the parts that are pure functions of
// bytes: compressing a message, inflating one, and the RSV1 bit. The
// negotiation is in deflate_negotiate.go.
//
// wsd keeps no compression state per connection: the server never uses
// context takeover, so a message is compressed on its own by a pooled
// compressor (any goroutine), and a message is inflated by an Inflater that
// its event loop owns. Only a client that negotiated client context
// takeover (opt-in) needs a window of its own, passed to Inflate as dict.

// Rsv1 is the RSV bit (in Header.Rsv) that marks the first frame of a
// compressed message.
const Rsv1 byte = 0x4

// DefaultCompressionLevel is the level of compressors when none is given:
// klauspost/compress level 1, its fastest.
const DefaultCompressionLevel = 1

// tail is what RFC 7692 §7.2.1 has a sender strip from a compressed
// message (the empty stored block of a sync flush), followed by an empty
// final stored block, so that the inflater reaches a clean end of stream.
var tail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// compressor is a pooled flate writer with its output buffer.
type compressor struct {
	w   *flate.Writer
	out appendWriter
}

type appendWriter struct{ b []byte }

func (a *appendWriter) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// compressors are pooled per level (flate.HuffmanOnly -2 to BestCompression 9).
var compressors [12]sync.Pool

// Compress appends the permessage-deflate encoding of p to dst: p
// compressed on its own (no context takeover) at level (1 to 9, 0 for
// DefaultCompressionLevel) and sync-flushed, without the final
// 00 00 ff ff. Safe for concurrent use: compressors (about 475 KiB each at
// level 1) are pooled, never held per connection. It allocates only if dst
// must grow (and for a pool's new compressor).
func Compress(dst, p []byte, level int) []byte {
	if level == 0 {
		level = DefaultCompressionLevel
	}
	level = min(max(level, flate.HuffmanOnly), flate.BestCompression)
	pool := &compressors[level-flate.HuffmanOnly]
	c, _ := pool.Get().(*compressor)
	if c == nil {
		c = new(compressor)
		c.w, _ = flate.NewWriter(&c.out, level) // the level is in range: no error
	}
	c.out.b = dst
	c.w.Reset(&c.out)
	_, _ = c.w.Write(p) // appendWriter does not fail
	_ = c.w.Flush()
	out := c.out.b
	c.out.b = nil
	pool.Put(c)
	if n := len(out) - 4; n >= len(dst) && n >= 0 { // strip the sync flush's 00 00 ff ff
		out = out[:n]
	}
	return out
}

// Inflater inflates compressed messages. It is not safe for concurrent
// use: keep one per goroutine (wsd keeps one per event loop). Its flate
// reader (about 35 KiB) is made on first use and reused.
type Inflater struct {
	fr  io.ReadCloser
	src source
}

// source reads a message's compressed bytes, then tail; it is an
// io.ByteReader so the flate reader reads it without a bufio of its own.
type source struct {
	p    []byte
	tail []byte
}

func (s *source) Read(b []byte) (int, error) {
	if len(s.p) == 0 {
		if len(s.tail) == 0 {
			return 0, io.EOF
		}
		n := copy(b, s.tail)
		s.tail = s.tail[n:]
		return n, nil
	}
	n := copy(b, s.p)
	s.p = s.p[n:]
	return n, nil
}

func (s *source) ReadByte() (byte, error) {
	if len(s.p) > 0 {
		c := s.p[0]
		s.p = s.p[1:]
		return c, nil
	}
	if len(s.tail) > 0 {
		c := s.tail[0]
		s.tail = s.tail[1:]
		return c, nil
	}
	return 0, io.EOF
}

// inflateChunk is the least room Inflate gives the reader per read.
const inflateChunk = 16 << 10

// Inflate decompresses the compressed message p (as received, without the
// 00 00 ff ff that RFC 7692 has the sender strip) into the pooled buffer
// *out (which may be nil; it is grown with bufpool and returned), with
// dict as the window of earlier messages when the peer uses context
// takeover (nil otherwise). It stops with ErrMessageTooBig as soon as the
// output passes max bytes (0: no limit), without inflating the rest, and
// returns ErrInflate for data that is not valid deflate. It does not
// allocate once the reader exists and *out has room.
func (f *Inflater) Inflate(out *[]byte, p []byte, max int64, dict []byte) (*[]byte, error) {
	f.src = source{p: p, tail: tail}
	if f.fr == nil {
		f.fr = flate.NewReaderDict(&f.src, dict)
	} else if err := f.fr.(flate.Resetter).Reset(&f.src, dict); err != nil {
		return out, ErrInflate
	}
	for {
		if out == nil || cap(*out)-len(*out) < inflateChunk/4 {
			out = bufpool.Grow(out, inflateChunk)
		}
		b := *out
		n, err := f.fr.Read(b[len(b):cap(b)])
		*out = b[:len(b)+n]
		if max > 0 && int64(len(*out)) > max {
			return out, ErrMessageTooBig
		}
		switch err {
		case nil:
		case io.EOF:
			f.src = source{}
			return out, nil
		default:
			f.src = source{}
			return out, ErrInflate
		}
	}
}
