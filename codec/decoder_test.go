package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/wsdproject/wsd/internal/bufpool"
)

// wireFrame describes a client frame to put on the wire. Build one with
// frame and adjust it with the chained methods.
type wireFrame struct {
	fin       bool
	rsv       byte
	op        OpCode
	payload   []byte
	unmasked  bool
	lenForm   int   // 0: shortest length encoding; 16 or 64: force that form
	announce  int64 // payload length written in the header if announced
	announced bool  // announce overrides len(payload)
	key       [4]byte
}

func frame(fin bool, op OpCode, payload string) wireFrame {
	n := byte(len(payload))
	return wireFrame{fin: fin, op: op, payload: []byte(payload), key: [4]byte{0x37 ^ n, 0xfa, 0x21 + n, 0x3d}}
}

func text(s string) wireFrame   { return frame(true, OpText, s) }
func bin(s string) wireFrame    { return frame(true, OpBinary, s) }
func ping(s string) wireFrame   { return frame(true, OpPing, s) }
func pong(s string) wireFrame   { return frame(true, OpPong, s) }
func closeF(s string) wireFrame { return frame(true, OpClose, s) }

// first, cont and last build the frames of a fragmented message.
func first(op OpCode, s string) wireFrame { return frame(false, op, s) }
func cont(s string) wireFrame             { return frame(false, OpContinuation, s) }
func last(s string) wireFrame             { return frame(true, OpContinuation, s) }

func (f wireFrame) withRsv(rsv byte) wireFrame   { f.rsv = rsv; return f }
func (f wireFrame) noMask() wireFrame            { f.unmasked = true; return f }
func (f wireFrame) len16() wireFrame             { f.lenForm = 16; return f }
func (f wireFrame) len64() wireFrame             { f.lenForm = 64; return f }
func (f wireFrame) announcing(n int64) wireFrame { f.announce, f.announced = n, true; return f }

func (f wireFrame) length() int64 {
	if f.announced {
		return f.announce
	}
	return int64(len(f.payload))
}

// header returns the frame header as written by an independent encoder.
func (f wireFrame) header() []byte {
	b0 := f.rsv<<4 | byte(f.op)
	if f.fin {
		b0 |= 0x80
	}
	var mask byte
	if !f.unmasked {
		mask = 0x80
	}
	n := f.length()
	form := f.lenForm
	if form == 0 {
		switch {
		case n < 126:
			form = 7
		case n <= 0xffff:
			form = 16
		default:
			form = 64
		}
	}
	var h []byte
	switch form {
	case 7:
		h = []byte{b0, mask | byte(n)}
	case 16:
		h = binary.BigEndian.AppendUint16([]byte{b0, mask | 126}, uint16(n))
	default:
		h = binary.BigEndian.AppendUint64([]byte{b0, mask | 127}, uint64(n))
	}
	if !f.unmasked {
		h = append(h, f.key[:]...)
	}
	return h
}

func (f wireFrame) hdrLen() int { return len(f.header()) }

// bytes returns the frame on the wire: header and masked payload.
func (f wireFrame) bytes() []byte {
	p := bytes.Clone(f.payload)
	if !f.unmasked {
		naiveMask(p, f.key, 0)
	}
	return append(f.header(), p...)
}

func (f wireFrame) size() int { return len(f.bytes()) }

// wire concatenates frames into one stream.
func wire(frames ...wireFrame) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f.bytes()...)
	}
	return b
}

// sizeOf is the number of bytes frames take on the wire.
func sizeOf(frames ...wireFrame) int { return len(wire(frames...)) }

// textOf returns valid UTF-8 text of exactly n bytes mixing runes of every
// encoded length.
func textOf(n int) string {
	var b strings.Builder
	runes := []rune{'a', 'é', '€', '😀', 'z', 'κ', ' '}
	for i := 0; ; i++ {
		r := runes[i%len(runes)]
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		b.WriteRune(r)
	}
	for b.Len() < n {
		b.WriteByte('a')
	}
	return b.String()
}

func binOf(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return string(b)
}

// event is what a Receiver saw, with the payload copied.
type event struct {
	ctl     bool
	op      OpCode
	payload string
}

func msgEv(op OpCode, s string) event { return event{op: op, payload: s} }
func ctlEv(op OpCode, s string) event { return event{ctl: true, op: op, payload: s} }

func (e event) String() string {
	kind := "msg"
	if e.ctl {
		kind = "ctl"
	}
	p := e.payload
	if len(p) > 24 {
		p = fmt.Sprintf("%q...(%d bytes)", p[:24], len(p))
	} else {
		p = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%s(op=%d, %s)", kind, e.op, p)
}

func eventsEqual(a, b []event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var errStop = errors.New("receiver stops")

// recorder is a Receiver that copies what it gets, checks the Receiver
// contract, and can fail on a chosen callback.
type recorder struct {
	t      testing.TB
	events []event
	at     []int // bytes fed to the decoder when each event arrived
	fed    int
	stopAt int // return errStop from this callback (1-based); 0: never
	max    int64
}

func (r *recorder) OnMessage(op OpCode, p []byte) error {
	if op != OpText && op != OpBinary {
		r.t.Errorf("OnMessage with opcode %d", op)
	}
	if op == OpText && !utf8.Valid(p) {
		r.t.Errorf("OnMessage: invalid UTF-8 text %q", p)
	}
	if r.max > 0 && int64(len(p)) > r.max {
		r.t.Errorf("OnMessage: %d bytes, limit %d", len(p), r.max)
	}
	return r.record(event{op: op, payload: string(p)})
}

func (r *recorder) OnControl(op OpCode, p []byte) error {
	if !op.IsControl() || op.IsReserved() {
		r.t.Errorf("OnControl with opcode %d", op)
	}
	if len(p) > MaxControlPayload {
		r.t.Errorf("OnControl: %d bytes", len(p))
	}
	return r.record(event{ctl: true, op: op, payload: string(p)})
}

func (r *recorder) record(e event) error {
	r.events = append(r.events, e)
	r.at = append(r.at, r.fed)
	if len(r.events) == r.stopAt {
		return errStop
	}
	return nil
}

// outcome is what feeding a stream to a Decoder produced.
type outcome struct {
	events    []event
	at        []int
	err       error
	consumed  int  // total bytes the decoder reported consumed
	fed       int  // bytes offered when decoding stopped (all of them, or up to the failing read)
	leftover  int  // bytes kept by the caller at the end
	inMessage bool // d.InMessage() at the end
}

// drive feeds in to a fresh Decoder the way an event loop does: each read
// (in[previous end : end] for each end in ends) is appended to the bytes
// the decoder left unconsumed, and the whole is offered again. It checks on
// every call that the consumed count is in range, that the bytes left over
// are untouched (still masked) and that no more than a partial header or a
// partial control frame is left over.
func drive(t testing.TB, in []byte, ends []int, maxSize int64, stopAt int) outcome {
	t.Helper()
	d := &Decoder{MaxMessageSize: maxSize}
	defer d.Release()
	rec := &recorder{t: t, stopAt: stopAt, max: maxSize}
	var pending []byte
	consumed, fed := 0, 0
	for _, end := range ends {
		pending = append(pending, in[fed:end]...)
		fed = end
		rec.fed = fed
		n, err := d.Decode(pending, rec)
		if n < 0 || n > len(pending) {
			t.Fatalf("Decode(%d bytes) consumed %d", len(pending), n)
		}
		consumed += n
		if err != nil {
			return outcome{events: rec.events, at: rec.at, err: err, consumed: consumed, fed: fed, leftover: len(pending) - n, inMessage: d.InMessage()}
		}
		if !bytes.Equal(pending[n:], in[consumed:fed]) {
			t.Fatalf("Decode modified the %d bytes it did not consume", len(pending)-n)
		}
		if len(pending)-n >= MaxHeaderSize+MaxControlPayload {
			t.Fatalf("Decode left %d bytes unconsumed, more than a header and a control payload", len(pending)-n)
		}
		pending = append(pending[:0], pending[n:]...)
	}
	return outcome{events: rec.events, at: rec.at, consumed: consumed, fed: fed, leftover: len(pending), inMessage: d.InMessage()}
}

// chunking is one way of cutting a stream into reads.
type chunking struct {
	name string
	ends []int
}

// chunkings returns the ways a stream is fed in the tests, in this order:
// in one read, byte at a time, in two reads split at every offset, and in
// reads of random sizes. Streams longer than 1500 bytes are split at every
// offset within 64 bytes of their ends and within 16 bytes of each frame
// boundary and payload start, and at every 997th offset elsewhere.
func chunkings(in []byte, seed uint64) []chunking {
	n := len(in)
	cs := []chunking{{name: "one-shot", ends: []int{n}}}
	bytewise := make([]int, n)
	for i := range bytewise {
		bytewise[i] = i + 1
	}
	cs = append(cs, chunking{name: "byte at a time", ends: bytewise})
	near := map[int]bool{}
	if n > 1500 {
		for _, b := range frameBoundaries(in) {
			for s := b - 16; s <= b+16; s++ {
				near[s] = true
			}
		}
	}
	for s := 0; s <= n; s++ {
		if n > 1500 && s > 64 && s < n-64 && s%997 != 0 && !near[s] {
			continue
		}
		cs = append(cs, chunking{name: fmt.Sprintf("split at %d", s), ends: []int{s, n}})
	}
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	for i := 0; i < 8; i++ {
		var ends []int
		maxPiece := 1 + rng.IntN(40)
		if i%2 == 1 {
			maxPiece = 1 + rng.IntN(5000)
		}
		for off := 0; off < n; {
			off = min(n, off+1+rng.IntN(maxPiece))
			ends = append(ends, off)
		}
		cs = append(cs, chunking{name: fmt.Sprintf("random reads %d", i), ends: ends})
	}
	return cs
}

// frameBoundaries returns the offsets where frames and their payloads start
// in a stream of well-formed frames, as far as it can tell. It only chooses
// split points: nothing is checked against it.
func frameBoundaries(in []byte) []int {
	var b []int
	for pos := 0; pos < len(in); {
		h, hl, err := ParseHeader(in[pos:])
		if err != nil || hl > len(in)-pos || h.Length > int64(len(in)-pos-hl) {
			break
		}
		b = append(b, pos, pos+hl)
		pos += hl + int(h.Length)
	}
	return b
}

// firstEndAtLeast is the number of bytes fed after the first read that
// brings the total to at least pos.
func firstEndAtLeast(ends []int, pos int) int {
	for _, e := range ends {
		if e >= pos {
			return e
		}
	}
	return -1
}

type decodeCase struct {
	name      string
	in        []byte
	max       int64 // MaxMessageSize
	stopAt    int   // the receiver fails on this callback
	want      []event
	err       error // the error Decode must return, by identity
	failAt    int   // with err: the error must come as soon as this many bytes are fed
	leftover  int   // without err: bytes left unconsumed at the end
	inMessage bool  // without err: InMessage at the end
}

// run feeds the case through every chunking and checks each outcome.
func (c decodeCase) run(t *testing.T) {
	t.Helper()
	var seed uint64
	for _, ch := range c.name {
		seed = seed*31 + uint64(ch)
	}
	var bytewise outcome
	for i, ch := range chunkings(c.in, seed) {
		got := drive(t, c.in, ch.ends, c.max, c.stopAt)
		if i == 1 { // chunkings puts byte at a time second
			bytewise = got
		}
		if !eventsEqual(got.events, c.want) {
			t.Fatalf("%s: events\n got %v\nwant %v", ch.name, got.events, c.want)
		}
		if got.err != c.err {
			t.Fatalf("%s: error %v, want %v", ch.name, got.err, c.err)
		}
		if c.err != nil {
			if want := firstEndAtLeast(ch.ends, c.failAt); got.fed != want {
				t.Fatalf("%s: error after %d bytes were fed, want after %d (byte %d completes the fault)", ch.name, got.fed, want, c.failAt)
			}
			if got.consumed > got.fed {
				t.Fatalf("%s: consumed %d of %d bytes", ch.name, got.consumed, got.fed)
			}
		} else {
			if got.consumed != len(c.in)-c.leftover || got.leftover != c.leftover {
				t.Fatalf("%s: consumed %d, left %d; want consumed %d, left %d", ch.name, got.consumed, got.leftover, len(c.in)-c.leftover, c.leftover)
			}
			if got.inMessage != c.inMessage {
				t.Fatalf("%s: InMessage() = %v, want %v", ch.name, got.inMessage, c.inMessage)
			}
		}
		// Every event is delivered in the read that completes it: the
		// byte-at-a-time run tells where each one ends.
		if i > 1 {
			for k, at := range got.at {
				if want := firstEndAtLeast(ch.ends, bytewise.at[k]); at != want {
					t.Fatalf("%s: event %d delivered after %d bytes, want after %d", ch.name, k, at, want)
				}
			}
		}
	}
	if c.err != nil && CloseStatus(c.err) == 0 && c.err != errStop {
		t.Fatalf("error %v has no close code", c.err)
	}
}

func TestDecoderSingleFrames(t *testing.T) {
	var cases []decodeCase
	for _, n := range []int{0, 1, 2, 5, 125, 126, 127, 1000, 65535, 65536, 70000} {
		s := textOf(n)
		cases = append(cases,
			decodeCase{name: fmt.Sprintf("text %d bytes", n), in: wire(text(s)), want: []event{msgEv(OpText, s)}},
		)
		b := binOf(n)
		cases = append(cases,
			decodeCase{name: fmt.Sprintf("binary %d bytes", n), in: wire(bin(b)), want: []event{msgEv(OpBinary, b)}},
		)
	}
	cases = append(cases,
		decodeCase{
			name: "rfc6455 masked Hello",
			in:   []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},
			want: []event{msgEv(OpText, "Hello")},
		},
		decodeCase{
			name: "rfc6455 masked pong Hello",
			in:   []byte{0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},
			want: []event{ctlEv(OpPong, "Hello")},
		},
		decodeCase{name: "text with 16-bit length form", in: wire(text("short").len16()), want: []event{msgEv(OpText, "short")}},
		decodeCase{name: "text with 64-bit length form", in: wire(text("short").len64()), want: []event{msgEv(OpText, "short")}},
		decodeCase{name: "empty binary with 64-bit length form", in: wire(bin("").len64()), want: []event{msgEv(OpBinary, "")}},
		decodeCase{name: "binary is not UTF-8 checked", in: wire(bin("\xff\xfe\xc0\x80")), want: []event{msgEv(OpBinary, "\xff\xfe\xc0\x80")}},
		decodeCase{name: "ping", in: wire(ping("are you there")), want: []event{ctlEv(OpPing, "are you there")}},
		decodeCase{name: "empty ping", in: wire(ping("")), want: []event{ctlEv(OpPing, "")}},
		decodeCase{name: "ping of 125 bytes", in: wire(ping(binOf(125))), want: []event{ctlEv(OpPing, binOf(125))}},
		decodeCase{name: "ping with 64-bit length form", in: wire(ping("x").len64()), want: []event{ctlEv(OpPing, "x")}},
		decodeCase{name: "pong", in: wire(pong("p")), want: []event{ctlEv(OpPong, "p")}},
		decodeCase{name: "close with code and reason", in: wire(closeF("\x03\xe8bye")), want: []event{ctlEv(OpClose, "\x03\xe8bye")}},
		decodeCase{name: "empty close", in: wire(closeF("")), want: []event{ctlEv(OpClose, "")}},
		decodeCase{name: "close payload is passed as received", in: wire(closeF("\x00")), want: []event{ctlEv(OpClose, "\x00")}},
		decodeCase{
			name: "many messages in one stream",
			in:   wire(text("one"), bin("two"), ping("p"), text(""), text(textOf(300)), pong(""), bin(binOf(70))),
			want: []event{
				msgEv(OpText, "one"), msgEv(OpBinary, "two"), ctlEv(OpPing, "p"), msgEv(OpText, ""),
				msgEv(OpText, textOf(300)), ctlEv(OpPong, ""), msgEv(OpBinary, binOf(70)),
			},
		},
		decodeCase{name: "messages after close are still decoded", in: wire(closeF(""), text("late")), want: []event{ctlEv(OpClose, ""), msgEv(OpText, "late")}},
	)
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

func TestDecoderFragmented(t *testing.T) {
	big := binOf(90000)
	cases := []decodeCase{
		{
			name: "text in three fragments",
			in:   wire(first(OpText, "Hel"), cont("lo, "), last("world")),
			want: []event{msgEv(OpText, "Hello, world")},
		},
		{
			name: "binary in two fragments",
			in:   wire(first(OpBinary, "\x00\x01"), last("\xff")),
			want: []event{msgEv(OpBinary, "\x00\x01\xff")},
		},
		{
			name: "rfc6455 fragmented Hello, masked",
			in:   wire(first(OpText, "Hel"), last("lo")),
			want: []event{msgEv(OpText, "Hello")},
		},
		{
			name: "3-byte rune split across fragments",
			in:   wire(first(OpText, "\xe2\x82"), last("\xac")),
			want: []event{msgEv(OpText, "€")},
		},
		{
			name: "4-byte rune in four fragments",
			in:   wire(first(OpText, "\xf0"), cont("\x9f"), cont("\x98"), last("\x80")),
			want: []event{msgEv(OpText, "😀")},
		},
		{
			name: "zero-length first, middle and last fragments",
			in:   wire(first(OpText, ""), cont("abc"), cont(""), last("")),
			want: []event{msgEv(OpText, "abc")},
		},
		{
			name: "all fragments empty",
			in:   wire(first(OpBinary, ""), cont(""), last("")),
			want: []event{msgEv(OpBinary, "")},
		},
		{
			name: "ping between fragments",
			in:   wire(first(OpText, "ab"), ping("p1"), last("cd")),
			want: []event{ctlEv(OpPing, "p1"), msgEv(OpText, "abcd")},
		},
		{
			name: "controls between every fragment",
			in:   wire(ping("a"), first(OpBinary, "1"), pong(""), ping("b"), cont("2"), closeF("\x03\xe8"), last("3"), ping("c")),
			want: []event{
				ctlEv(OpPing, "a"), ctlEv(OpPong, ""), ctlEv(OpPing, "b"), ctlEv(OpClose, "\x03\xe8"),
				msgEv(OpBinary, "123"), ctlEv(OpPing, "c"),
			},
		},
		{
			name: "rune split around a ping",
			in:   wire(first(OpText, "x\xe2\x82"), ping(binOf(125)), last("\xacy")),
			want: []event{ctlEv(OpPing, binOf(125)), msgEv(OpText, "x€y")},
		},
		{
			name: "large binary in three fragments",
			in:   wire(first(OpBinary, big[:30000]), cont(big[30000:60000]), last(big[60000:])),
			want: []event{msgEv(OpBinary, big)},
		},
		{
			name: "large text in fragments of 16-bit and 64-bit forms",
			in:   wire(first(OpText, textOf(1000)).len64(), cont(textOf(70000)), last(textOf(5)).len16()),
			want: []event{msgEv(OpText, textOf(1000)+textOf(70000)+textOf(5))},
		},
		{
			name: "messages before and after a fragmented one",
			in:   wire(text("a"), first(OpText, "b"), last("c"), bin("d"), first(OpBinary, "e"), last("f"), text("g")),
			want: []event{msgEv(OpText, "a"), msgEv(OpText, "bc"), msgEv(OpBinary, "d"), msgEv(OpBinary, "ef"), msgEv(OpText, "g")},
		},
		{
			name: "text then binary fragmented: UTF-8 state does not leak",
			in:   wire(first(OpText, "é"), last(""), first(OpBinary, "\xa9"), last("\xff")),
			want: []event{msgEv(OpText, "é"), msgEv(OpBinary, "\xa9\xff")},
		},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// TestDecoderPartialInput ends streams in the middle of something: the
// decoder keeps what it must and reports a message in progress.
func TestDecoderPartialInput(t *testing.T) {
	hello := wire(text("Hello"))
	pingB := wire(ping("12345"))
	cases := []decodeCase{
		{name: "first byte of a header", in: hello[:1], leftover: 1},
		{name: "header without mask key", in: hello[:4], leftover: 4},
		{name: "header only", in: hello[:6], inMessage: true},
		{name: "header and part of the payload", in: hello[:8], inMessage: true},
		{name: "64-bit header cut", in: wire(bin(binOf(70000)))[:9], leftover: 9},
		{name: "huge announced length, some payload", in: wire(bin(binOf(100)).announcing(1 << 40)), inMessage: true},
		{name: "control frame without payload", in: pingB[:6], leftover: 6},
		{name: "control frame cut in its payload", in: pingB[:9], leftover: 9},
		{
			// The most a caller ever keeps: a 14-byte header (non-minimal
			// 64-bit length form) and 124 of 125 payload bytes.
			name: "largest partial control frame", in: wire(ping(binOf(125)).len64())[:138], leftover: 138,
		},
		{name: "complete message then partial control", in: cat(hello, pingB[:7]), want: []event{msgEv(OpText, "Hello")}, leftover: 7},
		{
			name:      "fragment then partial control",
			in:        cat(wire(first(OpText, "ab")), pingB[:10]),
			leftover:  10,
			inMessage: true,
		},
		{name: "non-final fragment", in: wire(first(OpBinary, "abc")), inMessage: true},
		{name: "partial header of a continuation", in: cat(wire(first(OpBinary, "abc")), wire(last("d"))[:3]), leftover: 3, inMessage: true},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

func TestDecoderProtocolErrors(t *testing.T) {
	hello := text("Hello")
	frag := first(OpText, "ab")
	cases := []decodeCase{
		{name: "reserved opcode 3", in: wire(frame(true, 3, "x")), err: ErrReservedOpcode, failAt: 6},
		{name: "reserved opcode 7", in: wire(frame(true, 7, "")), err: ErrReservedOpcode, failAt: 6},
		{name: "reserved control opcode 0xb", in: wire(frame(true, 0xb, "x")), err: ErrReservedOpcode, failAt: 6},
		{name: "reserved control opcode 0xf", in: wire(frame(true, 0xf, "x")), err: ErrReservedOpcode, failAt: 6},
		{name: "RSV1", in: wire(text("x").withRsv(4)), err: ErrReservedBits, failAt: 6},
		{name: "RSV2", in: wire(bin("x").withRsv(2)), err: ErrReservedBits, failAt: 6},
		{name: "RSV3", in: wire(ping("x").withRsv(1)), err: ErrReservedBits, failAt: 6},
		{name: "RSV on a continuation", in: wire(frag, last("c").withRsv(4)), err: ErrReservedBits, failAt: frag.size() + 6},
		{name: "unmasked text", in: wire(text("x").noMask()), err: ErrUnmasked, failAt: 2},
		{name: "unmasked 64-bit header", in: wire(bin(binOf(70000)).noMask()), err: ErrUnmasked, failAt: 10},
		{
			name: "unmasked after valid messages", in: wire(hello, ping("p"), pong("").noMask()),
			want: []event{msgEv(OpText, "Hello"), ctlEv(OpPing, "p")}, err: ErrUnmasked, failAt: sizeOf(hello, ping("p")) + 2,
		},
		{name: "ping of 126 bytes", in: wire(ping(binOf(126))), err: ErrControlTooLong, failAt: 8},
		{name: "close of 1<<40 bytes", in: wire(closeF("").announcing(1 << 40)), err: ErrControlTooLong, failAt: 14},
		{name: "fragmented ping", in: wire(frame(false, OpPing, "a"), last("b")), err: ErrControlFragmented, failAt: 6},
		{name: "fragmented close", in: wire(frame(false, OpClose, "")), err: ErrControlFragmented, failAt: 6},
		{name: "continuation first", in: wire(last("x")), err: ErrUnexpectedContinuation, failAt: 6},
		{name: "non-final continuation first", in: wire(cont("x")), err: ErrUnexpectedContinuation, failAt: 6},
		{
			name: "continuation after a complete message", in: wire(hello, last("x")),
			want: []event{msgEv(OpText, "Hello")}, err: ErrUnexpectedContinuation, failAt: hello.size() + 6,
		},
		{
			name: "continuation after a finished fragmented message", in: wire(frag, last("c"), last("d")),
			want: []event{msgEv(OpText, "abc")}, err: ErrUnexpectedContinuation, failAt: sizeOf(frag, last("c")) + 6,
		},
		{name: "text while fragmented", in: wire(frag, text("b")), err: ErrContinuationExpected, failAt: frag.size() + 6},
		{name: "binary fragment while fragmented", in: wire(frag, ping(""), first(OpBinary, "b")), want: []event{ctlEv(OpPing, "")}, err: ErrContinuationExpected, failAt: sizeOf(frag, ping("")) + 6},
		{name: "64-bit length with MSB set", in: wire(bin("").announcing(-1 << 63).len64()), err: ErrLengthMSB, failAt: 14},
		{name: "64-bit length all ones, unmasked", in: []byte{0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, err: ErrLengthMSB, failAt: 10},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

func TestDecoderInvalidUTF8(t *testing.T) {
	f1 := first(OpText, "ab\xe2\x82")
	long := textOf(1000)
	cases := []decodeCase{
		{name: "bad byte in a single frame", in: wire(text("ab\xffcd")), err: ErrInvalidUTF8, failAt: 6 + 3},
		{name: "surrogate in a single frame", in: wire(text("\xed\xa0\x80")), err: ErrInvalidUTF8, failAt: 6 + 2},
		{name: "overlong in a single frame", in: wire(text("\xc0\xaf")), err: ErrInvalidUTF8, failAt: 6 + 1},
		{name: "above U+10FFFF", in: wire(text("\xf4\x90\x80\x80")), err: ErrInvalidUTF8, failAt: 6 + 2},
		{
			name: "bad byte early in a long frame fails before the frame is complete",
			in:   wire(text(long[:10] + "\x80" + long[11:])), err: ErrInvalidUTF8, failAt: 8 + 11,
		},
		{
			name: "bad byte late in a 64-bit frame",
			in:   wire(text(textOf(70000) + "\xff")), err: ErrInvalidUTF8, failAt: 14 + 70001,
		},
		{name: "truncated rune at the end of a single frame", in: wire(text("ab\xe2\x82")), err: ErrInvalidUTF8, failAt: 6 + 4},
		{name: "valid message before the bad one", in: wire(text("ok"), text("\xff")), want: []event{msgEv(OpText, "ok")}, err: ErrInvalidUTF8, failAt: text("ok").size() + 7},
		{name: "across fragments: rune not continued", in: wire(f1, last("x")), err: ErrInvalidUTF8, failAt: f1.size() + 6 + 1},
		{name: "across fragments: surrogate completed", in: wire(first(OpText, "\xed"), last("\xa0\x80")), err: ErrInvalidUTF8, failAt: first(OpText, "\xed").size() + 6 + 1},
		{name: "across fragments: rune cut by the final empty fragment", in: wire(first(OpText, "\xe2"), last("")), err: ErrInvalidUTF8, failAt: first(OpText, "\xe2").size() + 6},
		{name: "across fragments: rune cut at the end", in: wire(first(OpText, "a"), cont("\xf0\x9f"), last("\x98")), err: ErrInvalidUTF8, failAt: sizeOf(first(OpText, "a"), cont("\xf0\x9f"), last("\x98"))},
		{
			name: "across fragments with a ping between",
			in:   wire(f1, ping("p"), last("\xc0")),
			want: []event{ctlEv(OpPing, "p")}, err: ErrInvalidUTF8, failAt: sizeOf(f1, ping("p")) + 6 + 1,
		},
		{name: "bad byte in a non-final fragment", in: wire(first(OpText, "abc\xff"), last("d")), err: ErrInvalidUTF8, failAt: 6 + 4},
		{name: "continuation of a text message in a later fragment", in: wire(first(OpText, "ok"), cont("fine"), last("\xbf")), err: ErrInvalidUTF8, failAt: sizeOf(first(OpText, "ok"), cont("fine")) + 7},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

func TestDecoderMaxMessageSize(t *testing.T) {
	f4 := first(OpBinary, "1234")
	cases := []decodeCase{
		{name: "single frame at the limit", max: 10, in: wire(text("0123456789")), want: []event{msgEv(OpText, "0123456789")}},
		{name: "single frame over the limit", max: 10, in: wire(text("0123456789a")), err: ErrMessageTooBig, failAt: 6},
		{name: "over the limit after a good message", max: 10, in: wire(text("ok"), bin(binOf(11))), want: []event{msgEv(OpText, "ok")}, err: ErrMessageTooBig, failAt: text("ok").size() + 6},
		{name: "64-bit announced length, no payload sent", max: 1 << 20, in: wire(bin("").announcing(1 << 40)), err: ErrMessageTooBig, failAt: 14},
		{name: "16-bit announced length", max: 1000, in: wire(bin(binOf(1001))), err: ErrMessageTooBig, failAt: 8},
		{name: "fragments summing to the limit", max: 10, in: wire(f4, cont("56"), last("7890")), want: []event{msgEv(OpBinary, "1234567890")}},
		{name: "fragments over the limit", max: 10, in: wire(f4, cont("5678"), last("9ab")), err: ErrMessageTooBig, failAt: sizeOf(f4, cont("5678")) + 6},
		{name: "empty final fragment at the limit", max: 4, in: wire(f4, last("")), want: []event{msgEv(OpBinary, "1234")}},
		{name: "one byte over in the last fragment", max: 4, in: wire(f4, last("5")), err: ErrMessageTooBig, failAt: f4.size() + 6},
		{name: "control frames do not count", max: 4, in: wire(f4, ping(binOf(100)), last("")), want: []event{ctlEv(OpPing, binOf(100)), msgEv(OpBinary, "1234")}},
		{name: "limit applies per message", max: 4, in: wire(f4, last(""), text("abcd"), first(OpText, "ab"), last("cd")), want: []event{msgEv(OpBinary, "1234"), msgEv(OpText, "abcd"), msgEv(OpText, "abcd")}},
		{name: "no limit", max: 0, in: wire(bin(binOf(70000))), want: []event{msgEv(OpBinary, binOf(70000))}},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

func TestDecoderReceiverError(t *testing.T) {
	cases := []decodeCase{
		{name: "on a single-frame message", stopAt: 1, in: wire(text("a"), text("b")), want: []event{msgEv(OpText, "a")}, err: errStop, failAt: text("a").size()},
		{name: "on a control frame", stopAt: 2, in: wire(text("a"), ping("p"), text("b")), want: []event{msgEv(OpText, "a"), ctlEv(OpPing, "p")}, err: errStop, failAt: sizeOf(text("a"), ping("p"))},
		{
			name: "on an assembled message", stopAt: 1, in: wire(first(OpBinary, "a"), last("b"), text("c")),
			want: []event{msgEv(OpBinary, "ab")}, err: errStop, failAt: sizeOf(first(OpBinary, "a"), last("b")),
		},
		{
			name: "on a ping between fragments", stopAt: 1, in: wire(first(OpBinary, "a"), ping("p"), last("b")),
			want: []event{ctlEv(OpPing, "p")}, err: errStop, failAt: sizeOf(first(OpBinary, "a"), ping("p")),
		},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
	if CloseStatus(errStop) != 0 {
		t.Fatal("a receiver error must not look like a protocol error")
	}
}

// TestDecoderMaxMessageSizeHeaderOnly offers only the header of an
// oversized frame: the decoder must fail without waiting for the payload.
func TestDecoderMaxMessageSizeHeaderOnly(t *testing.T) {
	d := Decoder{MaxMessageSize: 1 << 20}
	rec := &recorder{t: t}
	hdr := bin("").announcing(1<<20 + 1).header()
	n, err := d.Decode(hdr, rec)
	if err != ErrMessageTooBig || CloseStatus(err) != StatusMessageTooBig || len(rec.events) != 0 {
		t.Fatalf("Decode(header only) = %d, %v; want ErrMessageTooBig (1009)", n, err)
	}
}

// TestDecoderUTF8FailFastPartialFrame offers the start of a long text frame
// whose third byte is invalid: the decoder must fail now.
func TestDecoderUTF8FailFastPartialFrame(t *testing.T) {
	f := text("ok\xff" + textOf(5000))
	b := f.bytes()
	d := Decoder{}
	rec := &recorder{t: t}
	n, err := d.Decode(b[:f.hdrLen()+3], rec)
	if err != ErrInvalidUTF8 || CloseStatus(err) != StatusInvalidPayload {
		t.Fatalf("Decode(header + 3 bytes) = %d, %v; want ErrInvalidUTF8 (1007)", n, err)
	}
}

func TestDecoderSingleFrameZeroCopy(t *testing.T) {
	buf := wire(text("zero copy"), bin("also"))
	var got [][]byte
	r := funcReceiver{onMessage: func(op OpCode, p []byte) error {
		got = append(got, p)
		return nil
	}}
	var d Decoder
	if n, err := d.Decode(buf, r); err != nil || n != len(buf) {
		t.Fatalf("Decode = %d, %v", n, err)
	}
	if len(got) != 2 {
		t.Fatalf("%d messages, want 2", len(got))
	}
	for i, p := range got {
		if !within(p, buf) {
			t.Errorf("message %d was copied: single-frame payloads must alias the input", i)
		}
	}
	// Unmasked in place.
	if !bytes.Contains(buf, []byte("zero copy")) || !bytes.Contains(buf, []byte("also")) {
		t.Error("payloads are not unmasked in the input buffer")
	}
}

func TestDecoderAssembledMessageNotAliased(t *testing.T) {
	buf := wire(first(OpText, "two "), last("parts"))
	var got []byte
	r := funcReceiver{onMessage: func(op OpCode, p []byte) error {
		if within(p, buf) {
			t.Error("assembled message aliases the input")
		}
		got = bytes.Clone(p)
		return nil
	}}
	var d Decoder
	if n, err := d.Decode(buf, r); err != nil || n != len(buf) || string(got) != "two parts" {
		t.Fatalf("Decode = %d, %v, %q", n, err, got)
	}
}

func within(p, buf []byte) bool {
	if len(p) == 0 {
		return true
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return at >= start && at+uintptr(len(p)) <= start+uintptr(len(buf))
}

type funcReceiver struct {
	onMessage func(OpCode, []byte) error
	onControl func(OpCode, []byte) error
}

func (f funcReceiver) OnMessage(op OpCode, p []byte) error {
	if f.onMessage == nil {
		return nil
	}
	return f.onMessage(op, p)
}

func (f funcReceiver) OnControl(op OpCode, p []byte) error {
	if f.onControl == nil {
		return nil
	}
	return f.onControl(op, p)
}

func TestDecoderRelease(t *testing.T) {
	t.Run("holds no buffer between messages", func(t *testing.T) {
		var d Decoder
		b := wire(first(OpText, "a"), last("b"), text("c"))
		if _, err := d.Decode(b, &recorder{t: t}); err != nil {
			t.Fatal(err)
		}
		if d.msg != nil || d.InMessage() {
			t.Fatal("assembly buffer kept after the message was delivered")
		}
	})
	t.Run("returns the buffer of an unfinished message", func(t *testing.T) {
		var d Decoder
		b := wire(first(OpBinary, binOf(600)))
		if _, err := d.Decode(b, &recorder{t: t}); err != nil {
			t.Fatal(err)
		}
		if d.msg == nil || !d.InMessage() {
			t.Fatal("no assembly buffer for an unfinished message")
		}
		d.Release()
		if d.msg != nil {
			t.Fatal("Release kept the buffer")
		}
		d.Release() // idempotent
	})
	t.Run("the released buffer goes back to the pool", func(t *testing.T) {
		// sync.Pool promises nothing (and drops a share of Puts under
		// -race), so try a few times: Get on the same goroutine right after
		// Put normally returns the buffer just put.
		for try := 0; try < 50; try++ {
			var d Decoder
			if _, err := d.Decode(wire(first(OpBinary, binOf(700))), &recorder{t: t}); err != nil {
				t.Fatal(err)
			}
			held := d.msg
			d.Release()
			got := bufpool.Get(cap(*held))
			bufpool.Put(got)
			if got == held {
				return
			}
		}
		t.Fatal("the buffer released was never handed out by the pool again")
	})
	t.Run("after a receiver error on an assembled message", func(t *testing.T) {
		var d Decoder
		b := wire(first(OpBinary, "a"), last("b"))
		if _, err := d.Decode(b, &recorder{t: t, stopAt: 1}); err != errStop {
			t.Fatalf("err = %v, want errStop", err)
		}
		if d.msg != nil {
			t.Fatal("assembly buffer kept after delivery failed")
		}
	})
	t.Run("zero value", func(t *testing.T) {
		var d Decoder
		d.Release()
	})
}

// TestDecoderBuffersNotShared runs decoders on several goroutines, each
// assembling fragmented messages through the shared pool: no message may be
// corrupted by another decoder (and -race watches the buffers).
func TestDecoderBuffersNotShared(t *testing.T) {
	const workers = 4
	done := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			var d Decoder
			defer d.Release()
			for i := 0; i < 200; i++ {
				s := strings.Repeat(string(rune('a'+w)), 300+i)
				b := wire(first(OpText, s[:100]), cont(s[100:250]), last(s[250:]))
				var got string
				r := funcReceiver{onMessage: func(op OpCode, p []byte) error { got = string(p); return nil }}
				if _, err := d.Decode(b, r); err != nil {
					done <- err
					return
				}
				if got != s {
					done <- fmt.Errorf("worker %d message %d corrupted", w, i)
					return
				}
			}
			done <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// randomStream builds a valid stream of random messages: single frames and
// fragmented ones of random sizes and length forms, with control frames
// between fragments, and the events it must produce.
func randomStream(rng *rand.Rand) ([]byte, []event) {
	var frames []wireFrame
	var want []event
	payload := func(op OpCode, max int) string {
		n := rng.IntN(max + 1)
		if op == OpText {
			return textOf(n)
		}
		return binOf(n)
	}
	form := func(f wireFrame) wireFrame {
		switch rng.IntN(6) {
		case 0:
			return f.len16()
		case 1:
			return f.len64()
		}
		return f
	}
	control := func() {
		op := []OpCode{OpPing, OpPong, OpClose}[rng.IntN(3)]
		p := payload(OpBinary, 125)
		frames = append(frames, form(frame(true, op, p)))
		want = append(want, ctlEv(op, p))
	}
	for m := rng.IntN(8); m >= 0; m-- {
		op := []OpCode{OpText, OpBinary}[rng.IntN(2)]
		max := []int{10, 200, 3000}[rng.IntN(3)]
		switch rng.IntN(3) {
		case 0:
			control()
		case 1:
			p := payload(op, max)
			frames = append(frames, form(frame(true, op, p)))
			want = append(want, msgEv(op, p))
		case 2:
			p := payload(op, max)
			// Cut at random offsets, at rune boundaries or not: the message
			// is valid as a whole.
			var cuts []int
			for k := rng.IntN(4); k >= 0; k-- {
				cuts = append(cuts, rng.IntN(len(p)+1))
			}
			cuts = append(cuts, len(p))
			slices.Sort(cuts)
			prev := 0
			for i, c := range cuts {
				fop := OpContinuation
				if i == 0 {
					fop = op
				}
				frames = append(frames, form(frame(i == len(cuts)-1, fop, p[prev:c])))
				prev = c
				if i < len(cuts)-1 && rng.IntN(3) == 0 {
					control()
				}
			}
			want = append(want, msgEv(op, p))
		}
	}
	return wire(frames...), want
}

func TestDecoderRandomStreams(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 60; i++ {
		in, want := randomStream(rng)
		c := decodeCase{name: fmt.Sprintf("stream %d", i), in: in, want: want}
		t.Run(c.name, c.run)
	}
}

// countingReceiver counts what it gets and keeps nothing, so that it does
// not allocate.
type countingReceiver struct {
	messages, controls, bytes int
}

func (r *countingReceiver) OnMessage(op OpCode, p []byte) error {
	r.messages++
	r.bytes += len(p)
	return nil
}

func (r *countingReceiver) OnControl(op OpCode, p []byte) error {
	r.controls++
	r.bytes += len(p)
	return nil
}

func TestDecoderZeroAllocs(t *testing.T) {
	const runs = 200
	tests := []struct {
		name string
		f    wireFrame
	}{
		{"text", text(textOf(1000))},
		{"binary", bin(binOf(70000))},
		{"ping", ping("heartbeat")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := tt.f.bytes()
			hl := tt.f.hdrLen()
			d := new(Decoder)
			r := new(countingReceiver)
			var failed error
			allocs := testing.AllocsPerRun(runs, func() {
				n, err := d.Decode(buf, r)
				if err != nil || n != len(buf) {
					failed = fmt.Errorf("Decode = %d, %v", n, err)
				}
				Unmask(buf[hl:], tt.f.key, 0) // mask the payload again for the next run
			})
			if failed != nil {
				t.Fatal(failed)
			}
			if got := r.messages + r.controls; got != runs+1 { // AllocsPerRun adds a warm-up run
				t.Fatalf("%d frames delivered, want %d", got, runs+1)
			}
			if allocs != 0 {
				t.Fatalf("Decode: %v allocs per run, want 0", allocs)
			}
		})
	}

	// A fragmented message goes through the pooled assembly buffer: after a
	// warm-up, the pool has buffers of the classes it needs (512 B and 1 KiB
	// here, as the buffer grows), so decoding allocates nothing. Under the
	// race detector sync.Pool drops a random share of Puts, so the bound
	// does not hold there.
	t.Run("fragmented", func(t *testing.T) {
		if raceEnabled {
			t.Skip("sync.Pool drops buffers at random under the race detector")
		}
		frames := []wireFrame{first(OpText, textOf(300)), ping("p"), cont(textOf(300)), last(textOf(300))}
		buf := wire(frames...)
		type span struct {
			payload []byte
			key     [4]byte
		}
		var spans []span
		for off, i := 0, 0; i < len(frames); i++ {
			f := frames[i]
			spans = append(spans, span{buf[off+f.hdrLen() : off+f.size()], f.key})
			off += f.size()
		}
		d := new(Decoder)
		r := new(countingReceiver)
		var failed error
		allocs := testing.AllocsPerRun(runs, func() {
			n, err := d.Decode(buf, r)
			if err != nil || n != len(buf) {
				failed = fmt.Errorf("Decode = %d, %v", n, err)
			}
			for _, s := range spans { // mask the payloads again for the next run
				Unmask(s.payload, s.key, 0)
			}
		})
		if failed != nil {
			t.Fatal(failed)
		}
		if r.messages != runs+1 || r.controls != runs+1 {
			t.Fatalf("%d messages and %d controls, want %d each", r.messages, r.controls, runs+1)
		}
		if allocs != 0 {
			t.Fatalf("Decode of a fragmented message: %v allocs per run, want 0", allocs)
		}
	})
}
