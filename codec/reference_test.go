package codec

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// verdict is what a server makes of a client-to-server stream: the messages
// and control frames it delivers, each with the stream offset at which it
// was complete; and, if the stream breaks a rule, the close code it fails
// the connection with and the offset of the byte that shows the fault. The
// stream ends at the first close frame. A stream that is not faulty but
// ends inside a frame is incomplete (a server would wait for more).
type verdict struct {
	events    []event
	at        []int
	code      StatusCode // 0: no fault
	failAt    int        // with code: bytes read when the fault shows
	closed    bool       // the stream ended with a close frame
	inMessage bool       // without code: it ends inside a data message
}

// refDecode decodes a client-to-server stream the plain way, as RFC 6455
// reads, sharing no code with Decoder: headers come from gobwas/ws's
// ReadHeader over a bytes.Reader, payloads are unmasked byte by byte, text is
// checked with unicode/utf8 one byte at a time, close payloads against the
// §7.4 table below. limit is the largest message payload (0: none).
//
// Where a fault shows is part of the verdict: a header fault at the end of
// the header (mask key included), a message over limit there too, a byte
// that cannot continue valid UTF-8 text at that byte, text that ends inside
// a character at the end of its last frame, and a bad close payload at the
// end of its frame. Header faults are all 1002 and come before the size
// limit (1009).
func refDecode(data []byte, limit int64) verdict {
	var v verdict
	r := bytes.NewReader(data)
	pos := func() int { return len(data) - r.Len() }
	fail := func(code StatusCode) verdict {
		v.code, v.failAt = code, pos()
		return v
	}
	var (
		msgOp OpCode // opcode of the message in progress
		inMsg bool   // a message is in progress: only continuations may follow
		msg   []byte // its payload so far, empty between messages
		runes int    // bytes of msg that form complete characters
	)
	for {
		h, err := ws.ReadHeader(r)
		if errors.Is(err, ws.ErrHeaderLengthMSB) {
			return fail(StatusProtocolError) // §5.2: the MSB must be 0
		}
		if err != nil { // the stream ends inside a header
			v.inMessage = inMsg
			return v
		}

		control := h.OpCode&0x8 != 0
		switch {
		// §5.2: opcodes %x3-7 and %xB-F are reserved, and the RSV bits are
		// 0 since no extension was negotiated. §5.1: a client masks every
		// frame. §5.5: a control frame is final and carries at most 125
		// bytes. §5.4: continuation frames, and only they, follow a
		// non-final data frame.
		case !definedOpcode(h.OpCode), h.Rsv != 0, !h.Masked,
			control && (h.Length > 125 || !h.Fin),
			!control && (h.OpCode == OpContinuation) != inMsg:
			return fail(StatusProtocolError)
		case !control && limit > 0 && h.Length > limit-int64(len(msg)):
			return fail(StatusMessageTooBig)
		}

		if control {
			if int64(r.Len()) < h.Length {
				v.inMessage = inMsg
				return v
			}
			p := make([]byte, h.Length)
			_, _ = r.Read(p)
			unmask(p, h.Mask)
			v.events = append(v.events, ctlEv(h.OpCode, string(p)))
			v.at = append(v.at, pos())
			if h.OpCode == OpClose {
				v.closed = true
				if code := refCheckClose(p); code != 0 {
					return fail(code)
				}
				return v
			}
			continue
		}

		if h.OpCode != OpContinuation {
			msgOp, inMsg = h.OpCode, true
		}
		for i := range h.Length {
			b, err := r.ReadByte()
			if err != nil { // the stream ends inside the payload
				v.inMessage = true
				return v
			}
			msg = append(msg, b^h.Mask[i%4])
			if msgOp != OpText {
				continue
			}
			// §8.1: fail at the first byte that cannot be part of UTF-8
			// text. utf8.FullRune is false only for a proper prefix of a
			// valid encoding.
			if tail := msg[runes:]; utf8.FullRune(tail) {
				c, size := utf8.DecodeRune(tail)
				if c == utf8.RuneError && size == 1 {
					return fail(StatusInvalidPayload)
				}
				runes += size
			}
		}
		if !h.Fin {
			continue
		}
		if runes != len(msg) && msgOp == OpText { // ends inside a character
			return fail(StatusInvalidPayload)
		}
		v.events = append(v.events, msgEv(msgOp, string(msg)))
		v.at = append(v.at, pos())
		inMsg, msg, runes = false, msg[:0], 0
	}
}

// definedOpcode reports whether op is one of the six opcodes of RFC 6455 §5.2.
func definedOpcode(op OpCode) bool {
	switch op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
		return true
	}
	return false
}

// unmask applies a client's mask key to a whole payload (§5.3).
func unmask(p []byte, key [4]byte) {
	for i := range p {
		p[i] ^= key[i%4]
	}
}

// refCheckClose returns the close code a close payload fails the connection
// with, or 0 if it is valid (§5.5.1, §7.4): empty, or a 2-byte code that
// may be sent followed by UTF-8. Codes that may be sent: the §7.4.1 codes
// except 1004 (reserved), 1005 and 1006 (never sent), the IANA
// registrations 1012-1014, and 3000-4999 (libraries and applications).
func refCheckClose(p []byte) StatusCode {
	if len(p) == 0 {
		return 0
	}
	if len(p) == 1 {
		return StatusProtocolError
	}
	code := int(p[0])<<8 | int(p[1])
	switch {
	case code == 1000, code == 1001, code == 1002, code == 1003,
		code >= 1007 && code <= 1014,
		code >= 3000 && code <= 4999:
	default:
		return StatusProtocolError
	}
	if !utf8.Valid(p[2:]) {
		return StatusInvalidPayload
	}
	return 0
}

// serverVerdict turns what a Decoder did with a stream (drive's outcome)
// into the verdict of a server using it: the stream ends at the first close
// frame, whose payload ParseClose checks.
func serverVerdict(o outcome) verdict {
	v := verdict{inMessage: o.inMessage}
	for i, e := range o.events {
		v.events = append(v.events, e)
		v.at = append(v.at, o.at[i])
		if e.ctl && e.op == OpClose {
			v.closed = true
			if _, _, err := ParseClose([]byte(e.payload)); err != nil {
				v.code, v.failAt = CloseStatus(err), o.at[i]
			}
			return v
		}
	}
	if o.err != nil {
		v.code, v.failAt = CloseStatus(o.err), o.fed
	}
	return v
}

// disagreement describes how got differs from want, or returns "". With
// positions it also compares where events and the fault come (meaningful
// for byte-at-a-time decoding only).
func disagreement(got, want verdict, positions bool) string {
	switch {
	case !eventsEqual(got.events, want.events):
		return fmt.Sprintf("events\n got %v\nwant %v", got.events, want.events)
	case got.code != want.code:
		return fmt.Sprintf("close code %d, want %d (events %v)", got.code, want.code, want.events)
	case got.closed != want.closed:
		return fmt.Sprintf("closed %v, want %v", got.closed, want.closed)
	case !positions:
		return ""
	case got.code != 0 && got.failAt != want.failAt:
		return fmt.Sprintf("fault %d after %d bytes, want after %d", got.code, got.failAt, want.failAt)
	case got.code == 0 && !got.closed && got.inMessage != want.inMessage:
		return fmt.Sprintf("ends inside a message: %v, want %v", got.inMessage, want.inMessage)
	}
	for i := range got.at {
		if got.at[i] != want.at[i] {
			return fmt.Sprintf("event %d %v complete after %d bytes, want after %d", i, got.events[i], got.at[i], want.at[i])
		}
	}
	return ""
}

// FuzzDecoderReference decodes arbitrary client-to-server bytes with a
// Decoder (in one read, and byte at a time) and with refDecode, with a
// fuzzed MaxMessageSize (0: none), and checks that both deliver the same
// messages and control frames, and fail the same streams with the same close
// code at the same byte. Close payloads are checked with ParseClose, as the
// engine does.
//
// The seed corpus is in testdata/fuzz/FuzzDecoderReference. The fuzzer
// minimises every input that finds new coverage for up to a minute, with no
// executions counted meanwhile; short runs get more done with
// -fuzzminimizetime=1s.
func FuzzDecoderReference(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		want := refDecode(data, int64(limit))
		bytewise := make([]int, len(data))
		for i := range bytewise {
			bytewise[i] = i + 1
		}
		for _, ch := range []chunking{
			{"one-shot", []int{len(data)}},
			{"byte at a time", bytewise},
		} {
			got := serverVerdict(drive(t, data, ch.ends, int64(limit), 0))
			if d := disagreement(got, want, len(ch.ends) > 1); d != "" {
				t.Fatalf("%s, MaxMessageSize %d: Decoder and reference disagree: %s", ch.name, limit, d)
			}
		}
	})
}
