package codec

import (
	"unicode/utf8"

	"github.com/wsdproject/wsd/internal/bufpool"
)

// Receiver gets what a Decoder finds. Its methods run inside Decode; a
// non-nil error stops decoding and is returned by Decode.
type Receiver interface {
	// OnMessage gets a complete text or binary message (text already checked
	// to be valid UTF-8). payload is valid only until OnMessage returns:
	// it aliases the caller's input for single-frame messages and the
	// decoder's assembly buffer otherwise.
	OnMessage(op OpCode, payload []byte) error
	// OnControl gets a ping, pong or close frame with its unmasked payload
	// (at most 125 bytes, valid until return). Close payloads are passed as
	// received: check them with ParseClose.
	OnControl(op OpCode, payload []byte) error
}

// CompressedReceiver is a Receiver that takes compressed messages: with
// Decoder.Deflate on, a message whose first frame has RSV1 set goes to
// OnCompressed as received (still compressed, its UTF-8 not checked), and
// the receiver inflates it (Inflater) and checks it. A Decoder with
// Deflate on fails a compressed message with ErrReservedBits if its
// Receiver is not a CompressedReceiver.
type CompressedReceiver interface {
	Receiver
	OnCompressed(op OpCode, payload []byte) error
}

// Decoder is an incremental RFC 6455 frame decoder for the server side of a
// connection. Feed it whatever bytes are buffered; it handles every complete
// frame, streams the payload of a partly received data frame into its
// assembly buffer, and reports how many bytes it consumed. The caller keeps
// the rest (at most a partial header or a partial control frame) and offers
// it again with more bytes.
//
// It enforces the §5.2 header rules, the message size limit (as soon as a
// header announces a length, before the payload arrives), and UTF-8 validity
// of text messages at the first bad byte, even inside an unfinished frame.
//
// The zero value is ready to use and has no size limit. A Decoder is not safe
// for concurrent use. It holds no buffer between messages: the assembly
// buffer comes from a pool when a message spans frames or reads and returns
// to it when the message is delivered (or on Release).
type Decoder struct {
	// MaxMessageSize is the largest message payload accepted, in bytes;
	// a larger one fails with ErrMessageTooBig (close 1009). 0 means no limit.
	MaxMessageSize int64

	inFrame    bool // streaming the payload of hdr
	fragmented bool // a message is in progress (a non-final frame was seen)
	compressed bool // the message in progress is compressed (RSV1 on its first frame)

	// Deflate is the connection's permessage-deflate, if negotiated: it
	// allows RSV1 on the first frame of a data message. (It lives here to
	// keep the connection small; the Decoder itself only uses On.)
	Deflate Deflate

	hdr       Header  // the data frame being streamed
	remaining int64   // payload bytes of hdr not yet seen
	offset    int     // mask offset of the next payload byte of hdr
	msgOp     OpCode  // opcode of the message in progress
	msg       *[]byte // assembly buffer, nil between messages
	utf8      UTF8
}

// Decode consumes frames from buf and returns the number of bytes consumed.
// It unmasks payloads in place, so buf must be writable, and consumed bytes
// must not be offered again. After an error the connection must be failed
// with CloseStatus(err) (or the Receiver's own error handled); the Decoder
// must not be used again except for Release.
//
// Decode does not allocate, except to grow the pooled assembly buffer.
func (d *Decoder) Decode(buf []byte, r Receiver) (n int, err error) {
	for {
		if d.inFrame {
			k := int(min(d.remaining, int64(len(buf)-n)))
			if k == 0 && d.remaining > 0 {
				return n, nil
			}
			chunk := buf[n : n+k]
			Unmask(chunk, d.hdr.Mask, d.offset)
			n += k
			d.offset += k
			d.remaining -= int64(k)
			if d.msgOp == OpText && !d.compressed && !d.utf8.Write(chunk) {
				return n, ErrInvalidUTF8
			}
			if k > 0 {
				d.msg = bufpool.Grow(d.msg, k)
				*d.msg = append(*d.msg, chunk...)
			}
			if d.remaining > 0 {
				return n, nil
			}
			d.inFrame = false
			if !d.hdr.Fin {
				d.fragmented = true
				continue
			}
			if err = d.deliver(r); err != nil {
				return n, err
			}
			continue
		}

		rest := buf[n:]
		h, hl, err := ParseHeader(rest)
		if err != nil {
			return n, err
		}
		if hl > len(rest) {
			return n, nil
		}
		var rsv byte
		if d.Deflate.On && (h.OpCode == OpText || h.OpCode == OpBinary) {
			rsv = Rsv1 // a compressed message; never on control or continuation frames
		}
		if err = CheckHeader(h, d.fragmented, rsv); err != nil {
			return n, err
		}
		if h.OpCode.IsControl() {
			end := hl + int(h.Length)
			if end > len(rest) {
				return n, nil // at most 131 bytes wait in the caller's buffer
			}
			p := rest[hl:end]
			Unmask(p, h.Mask, 0)
			n += end
			if err = r.OnControl(h.OpCode, p); err != nil {
				return n, err
			}
			continue
		}
		if max := d.sizeLimit(h); max > 0 && h.Length > max-d.assembled() {
			return n, ErrMessageTooBig
		}
		if h.Fin && !d.fragmented && h.Length <= int64(len(rest)-hl) {
			// The common case: a whole single-frame message is buffered.
			// Deliver it in place, without a copy.
			end := hl + int(h.Length)
			p := rest[hl:end]
			Unmask(p, h.Mask, 0)
			n += end
			if h.Rsv&Rsv1 != 0 {
				err = onCompressed(r, h.OpCode, p)
			} else if h.OpCode == OpText && !utf8.Valid(p) {
				err = ErrInvalidUTF8
			} else {
				err = r.OnMessage(h.OpCode, p)
			}
			if err != nil {
				return n, err
			}
			continue
		}
		n += hl
		if !d.fragmented {
			d.msgOp = h.OpCode
			d.compressed = h.Rsv&Rsv1 != 0
			d.utf8.Reset()
		}
		d.hdr, d.remaining, d.offset, d.inFrame = h, h.Length, 0, true
	}
}

// sizeLimit is the most payload bytes a message may have on the wire (0:
// no limit): MaxMessageSize, or for a compressed message (h starts one, or
// one is in progress) the most that MaxMessageSize bytes can take
// compressed, since the limit holds on the inflated size (the receiver
// checks it while inflating).
func (d *Decoder) sizeLimit(h Header) int64 {
	max := d.MaxMessageSize
	if max > 0 && (d.compressed && d.fragmented || !d.fragmented && h.Rsv&Rsv1 != 0) {
		max = DeflateBound(max)
	}
	return max
}

// DeflateBound is the most bytes n bytes can take deflated: incompressible
// data goes in stored blocks of at most 65,535 bytes with 5 bytes of header
// each, plus the few bytes of an empty final block.
func DeflateBound(n int64) int64 { return n + (n/65535+1)*5 + 16 }

// assembled is the number of payload bytes of the message in progress.
func (d *Decoder) assembled() int64 {
	if d.msg == nil {
		return 0
	}
	return int64(len(*d.msg))
}

func (d *Decoder) deliver(r Receiver) error {
	d.fragmented = false
	if d.msgOp == OpText && !d.compressed && !d.utf8.Complete() {
		return ErrInvalidUTF8
	}
	var p []byte
	if d.msg != nil {
		p = *d.msg
	}
	var err error
	if d.compressed {
		d.compressed = false
		err = onCompressed(r, d.msgOp, p)
	} else {
		err = r.OnMessage(d.msgOp, p)
	}
	d.Release()
	return err
}

// onCompressed hands a compressed message to r.
func onCompressed(r Receiver, op OpCode, p []byte) error {
	cr, ok := r.(CompressedReceiver)
	if !ok {
		return ErrReservedBits
	}
	return cr.OnCompressed(op, p)
}

// InMessage reports whether a message is partly received: a frame's payload
// is being streamed or a fragmented message awaits continuation frames.
func (d *Decoder) InMessage() bool { return d.inFrame || d.fragmented }

// Held returns the capacity of the assembly buffer the decoder holds for a
// message in progress: the memory a partly received message costs.
func (d *Decoder) Held() int {
	if d.msg == nil {
		return 0
	}
	return cap(*d.msg)
}

// Release returns the assembly buffer, if any, to the pool. Call it when the
// connection closes; Decode calls it after each assembled message.
func (d *Decoder) Release() {
	if d.msg != nil {
		bufpool.Put(d.msg)
		d.msg = nil
	}
}
