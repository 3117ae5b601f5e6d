package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

// cat concatenates byte slices into a new one.
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d} // the mask key of the RFC 6455 §5.7 examples

func TestHeaderLen(t *testing.T) {
	for b1 := 0; b1 < 256; b1++ {
		want := 2
		switch b1 & 0x7f {
		case 126:
			want = 4
		case 127:
			want = 10
		}
		if b1&0x80 != 0 {
			want += 4
		}
		// The first byte (FIN, RSV, opcode) never changes the length.
		for _, b0 := range []byte{0x00, 0x01, 0x81, 0x8a, 0xff} {
			if got := HeaderLen(b0, byte(b1)); got != want {
				t.Errorf("HeaderLen(%#02x, %#02x) = %d, want %d", b0, b1, got, want)
			}
		}
	}
}

func TestParseHeader(t *testing.T) {
	key := testKey[:]
	tests := []struct {
		name string
		in   []byte
		want Header
		err  error
	}{
		{
			name: "rfc6455 masked Hello",
			in:   []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d},
			want: Header{Fin: true, OpCode: OpText, Masked: true, Mask: testKey, Length: 5},
		},
		{
			name: "unmasked 7-bit length 0",
			in:   []byte{0x82, 0x00},
			want: Header{Fin: true, OpCode: OpBinary},
		},
		{
			name: "unmasked 7-bit length 125",
			in:   []byte{0x82, 0x7d},
			want: Header{Fin: true, OpCode: OpBinary, Length: 125},
		},
		{
			name: "masked 7-bit length 125",
			in:   cat([]byte{0x82, 0xfd}, key),
			want: Header{Fin: true, OpCode: OpBinary, Masked: true, Mask: testKey, Length: 125},
		},
		{
			name: "unmasked 16-bit length 256 (rfc6455 example)",
			in:   []byte{0x82, 0x7e, 0x01, 0x00},
			want: Header{Fin: true, OpCode: OpBinary, Length: 256},
		},
		{
			name: "masked 16-bit length 126",
			in:   cat([]byte{0x82, 0xfe, 0x00, 0x7e}, key),
			want: Header{Fin: true, OpCode: OpBinary, Masked: true, Mask: testKey, Length: 126},
		},
		{
			name: "masked 16-bit length 65535",
			in:   cat([]byte{0x82, 0xfe, 0xff, 0xff}, key),
			want: Header{Fin: true, OpCode: OpBinary, Masked: true, Mask: testKey, Length: 65535},
		},
		{
			name: "unmasked 64-bit length 65536 (rfc6455 example)",
			in:   []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0},
			want: Header{Fin: true, OpCode: OpBinary, Length: 65536},
		},
		{
			name: "masked 64-bit length 1<<32",
			in:   cat([]byte{0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0}, key),
			want: Header{Fin: true, OpCode: OpBinary, Masked: true, Mask: testKey, Length: 1 << 32},
		},
		{
			name: "masked 64-bit length MaxInt64",
			in:   cat([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, key),
			want: Header{Fin: true, OpCode: OpBinary, Masked: true, Mask: testKey, Length: math.MaxInt64},
		},
		{
			name: "non-minimal 16-bit length 5 is accepted",
			in:   cat([]byte{0x81, 0xfe, 0x00, 0x05}, key),
			want: Header{Fin: true, OpCode: OpText, Masked: true, Mask: testKey, Length: 5},
		},
		{
			name: "non-minimal 64-bit length 0 is accepted",
			in:   cat([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, key),
			want: Header{Fin: true, OpCode: OpText, Masked: true, Mask: testKey},
		},
		{
			name: "no FIN, all RSV bits, text",
			in:   []byte{0x71, 0x00},
			want: Header{Rsv: 7, OpCode: OpText},
		},
		{
			name: "RSV1 only",
			in:   []byte{0xc1, 0x80, 1, 2, 3, 4},
			want: Header{Fin: true, Rsv: 4, OpCode: OpText, Masked: true, Mask: [4]byte{1, 2, 3, 4}},
		},
		{
			name: "continuation",
			in:   cat([]byte{0x00, 0x83}, key),
			want: Header{OpCode: OpContinuation, Masked: true, Mask: testKey, Length: 3},
		},
		{
			name: "reserved opcode is parsed, not judged",
			in:   []byte{0x8f, 0x01},
			want: Header{Fin: true, OpCode: 0xf, Length: 1},
		},
		{
			name: "64-bit length with MSB set, unmasked",
			in:   []byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0},
			err:  ErrLengthMSB,
		},
		{
			name: "64-bit length with MSB set, masked",
			in:   cat([]byte{0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, key),
			err:  ErrLengthMSB,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantN := len(tt.in)
			if hl := HeaderLen(tt.in[0], tt.in[1]); hl != wantN {
				t.Fatalf("bad test: header is %d bytes, HeaderLen says %d", wantN, hl)
			}
			h, n, err := ParseHeader(tt.in)
			if err != tt.err || n != wantN || h != tt.want {
				t.Fatalf("ParseHeader(% x) = %+v, %d, %v; want %+v, %d, %v", tt.in, h, n, err, tt.want, wantN, tt.err)
			}
			if err != nil && CloseStatus(err) != StatusProtocolError {
				t.Errorf("CloseStatus(%v) = %d, want %d", err, CloseStatus(err), StatusProtocolError)
			}

			// Bytes after the header (its payload, the next frame) change nothing.
			more := cat(tt.in, []byte("payload"))
			h, n, err = ParseHeader(more)
			if err != tt.err || n != wantN || h != tt.want {
				t.Errorf("with trailing bytes: got %+v, %d, %v; want %+v, %d, %v", h, n, err, tt.want, wantN, tt.err)
			}

			// Every truncation asks for more bytes: n > len(b), zero header,
			// no error (not even for the MSB case: it is not known yet).
			for i := 0; i < len(tt.in); i++ {
				h, n, err := ParseHeader(tt.in[:i])
				need := wantN
				if i < 2 {
					need = 2
				}
				if err != nil || n != need || n <= i || h != (Header{}) {
					t.Errorf("ParseHeader(first %d bytes) = %+v, %d, %v; want zero header, %d, nil", i, h, n, err, need)
				}
			}
		})
	}
}

func TestParseHeaderNilInput(t *testing.T) {
	h, n, err := ParseHeader(nil)
	if h != (Header{}) || n != 2 || err != nil {
		t.Fatalf("ParseHeader(nil) = %+v, %d, %v; want zero, 2, nil", h, n, err)
	}
}

// TestParseHeaderMatchesGobwas compares ParseHeader with gobwas ws.ReadHeader
// on random header bytes, whole and truncated.
func TestParseHeaderMatchesGobwas(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, MaxHeaderSize)
	for iter := 0; iter < 20000; iter++ {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		// Make the interesting length forms and the MSB common.
		switch iter % 4 {
		case 0:
			buf[1] = buf[1]&0x80 | 126
		case 1:
			buf[1] = buf[1]&0x80 | 127
			buf[2] &= 0x81 // small 64-bit lengths, MSB half of the time
		}
		hl := HeaderLen(buf[0], buf[1])
		for _, cut := range []int{0, 1, 2, hl - 1, hl, MaxHeaderSize} {
			if cut < 0 || cut > len(buf) {
				continue
			}
			b := buf[:cut]
			h, n, err := ParseHeader(b)
			r := bytes.NewReader(b)
			wh, werr := ws.ReadHeader(r)
			switch {
			case errors.Is(werr, io.EOF) || errors.Is(werr, io.ErrUnexpectedEOF):
				if err != nil || n <= len(b) {
					t.Fatalf("% x: gobwas needs more bytes (%v), ParseHeader returned n=%d err=%v", b, werr, n, err)
				}
			case errors.Is(werr, ws.ErrHeaderLengthMSB):
				if err != ErrLengthMSB {
					t.Fatalf("% x: gobwas %v, ParseHeader err=%v", b, werr, err)
				}
			case werr != nil:
				t.Fatalf("% x: unexpected gobwas error %v", b, werr)
			default:
				read := len(b) - r.Len()
				if err != nil || n != read || h != wh {
					t.Fatalf("% x: ParseHeader = %+v, %d, %v; gobwas = %+v, %d", b, h, n, err, wh, read)
				}
			}
		}
	}
}

func TestParseHeaderZeroAllocs(t *testing.T) {
	b := cat([]byte{0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0}, testKey[:])
	var sink int64
	allocs := testing.AllocsPerRun(100, func() {
		h, _, _ := ParseHeader(b)
		sink += h.Length
	})
	if allocs != 0 {
		t.Fatalf("ParseHeader: %v allocs per run, want 0", allocs)
	}
	_ = sink
}

func TestCheckHeader(t *testing.T) {
	masked := func(h Header) Header { h.Masked = true; return h }
	tests := []struct {
		name       string
		h          Header
		fragmented bool
		rsvAllowed byte
		err        error
	}{
		{name: "text", h: masked(Header{Fin: true, OpCode: OpText, Length: 10})},
		{name: "binary huge", h: masked(Header{Fin: true, OpCode: OpBinary, Length: math.MaxInt64})},
		{name: "text first fragment", h: masked(Header{OpCode: OpText})},
		{name: "continuation while fragmented", h: masked(Header{OpCode: OpContinuation, Length: 3}), fragmented: true},
		{name: "final continuation while fragmented", h: masked(Header{Fin: true, OpCode: OpContinuation}), fragmented: true},
		{name: "ping", h: masked(Header{Fin: true, OpCode: OpPing, Length: 125})},
		{name: "pong empty", h: masked(Header{Fin: true, OpCode: OpPong})},
		{name: "close", h: masked(Header{Fin: true, OpCode: OpClose, Length: 2})},
		{name: "ping between fragments", h: masked(Header{Fin: true, OpCode: OpPing, Length: 4}), fragmented: true},
		{name: "close between fragments", h: masked(Header{Fin: true, OpCode: OpClose}), fragmented: true},
		{name: "RSV1 allowed by extension", h: masked(Header{Fin: true, Rsv: 4, OpCode: OpText}), rsvAllowed: 4},
		{name: "all RSV allowed", h: masked(Header{Fin: true, Rsv: 7, OpCode: OpBinary}), rsvAllowed: 7},

		{name: "reserved opcode 3", h: masked(Header{Fin: true, OpCode: 3}), err: ErrReservedOpcode},
		{name: "reserved opcode 7", h: masked(Header{Fin: true, OpCode: 7}), err: ErrReservedOpcode},
		{name: "reserved opcode 0xb", h: masked(Header{Fin: true, OpCode: 0xb}), err: ErrReservedOpcode},
		{name: "reserved opcode 0xf", h: masked(Header{Fin: true, OpCode: 0xf}), err: ErrReservedOpcode},
		{name: "RSV1 without extension", h: masked(Header{Fin: true, Rsv: 4, OpCode: OpText}), err: ErrReservedBits},
		{name: "RSV2 without extension", h: masked(Header{Fin: true, Rsv: 2, OpCode: OpText}), err: ErrReservedBits},
		{name: "RSV3 without extension", h: masked(Header{Fin: true, Rsv: 1, OpCode: OpBinary}), err: ErrReservedBits},
		{name: "RSV2 with only RSV1 allowed", h: masked(Header{Fin: true, Rsv: 6, OpCode: OpText}), rsvAllowed: 4, err: ErrReservedBits},
		{name: "RSV on ping", h: masked(Header{Fin: true, Rsv: 1, OpCode: OpPing}), err: ErrReservedBits},
		{name: "unmasked text", h: Header{Fin: true, OpCode: OpText, Length: 1}, err: ErrUnmasked},
		{name: "unmasked ping", h: Header{Fin: true, OpCode: OpPing}, err: ErrUnmasked},
		{name: "ping of 126 bytes", h: masked(Header{Fin: true, OpCode: OpPing, Length: 126}), err: ErrControlTooLong},
		{name: "close of MaxInt64 bytes", h: masked(Header{Fin: true, OpCode: OpClose, Length: math.MaxInt64}), err: ErrControlTooLong},
		{name: "fragmented ping", h: masked(Header{OpCode: OpPing, Length: 1}), err: ErrControlFragmented},
		{name: "fragmented close", h: masked(Header{OpCode: OpClose}), err: ErrControlFragmented},
		{name: "continuation without message", h: masked(Header{Fin: true, OpCode: OpContinuation}), err: ErrUnexpectedContinuation},
		{name: "non-final continuation without message", h: masked(Header{OpCode: OpContinuation}), err: ErrUnexpectedContinuation},
		{name: "text while fragmented", h: masked(Header{Fin: true, OpCode: OpText}), fragmented: true, err: ErrContinuationExpected},
		{name: "binary fragment while fragmented", h: masked(Header{OpCode: OpBinary}), fragmented: true, err: ErrContinuationExpected},

		// When several rules are broken, the order is: opcode, RSV, mask, control rules.
		{name: "reserved opcode and RSV", h: Header{Fin: true, Rsv: 4, OpCode: 0xb}, err: ErrReservedOpcode},
		{name: "RSV and unmasked", h: Header{Fin: true, Rsv: 4, OpCode: OpText}, err: ErrReservedBits},
		{name: "unmasked long ping", h: Header{Fin: true, OpCode: OpPing, Length: 200}, err: ErrUnmasked},
		{name: "long fragmented ping", h: masked(Header{OpCode: OpPing, Length: 200}), err: ErrControlTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHeader(tt.h, tt.fragmented, tt.rsvAllowed)
			if err != tt.err {
				t.Fatalf("CheckHeader(%+v, %v, %d) = %v, want %v", tt.h, tt.fragmented, tt.rsvAllowed, err, tt.err)
			}
			if err != nil && CloseStatus(err) != StatusProtocolError {
				t.Fatalf("CloseStatus(%v) = %d, want %d", err, CloseStatus(err), StatusProtocolError)
			}
		})
	}
}

// TestCheckHeaderExhaustive checks every opcode, RSV combination, FIN, mask
// and fragmentation state against a reference written from RFC 6455 §5.2-5.5.
func TestCheckHeaderExhaustive(t *testing.T) {
	valid := func(h Header, fragmented bool, rsvAllowed byte) bool {
		switch h.OpCode {
		case OpContinuation:
			if !fragmented {
				return false
			}
		case OpText, OpBinary:
			if fragmented {
				return false
			}
		case OpClose, OpPing, OpPong:
			if !h.Fin || h.Length > 125 {
				return false
			}
		default:
			return false
		}
		return h.Masked && h.Rsv&^rsvAllowed == 0
	}
	for op := OpCode(0); op < 16; op++ {
		for rsv := byte(0); rsv < 8; rsv++ {
			for _, allowed := range []byte{0, 4, 7} {
				for _, length := range []int64{0, 125, 126, 1 << 40} {
					for flags := 0; flags < 8; flags++ {
						h := Header{Fin: flags&1 != 0, Masked: flags&2 != 0, Rsv: rsv, OpCode: op, Length: length}
						fragmented := flags&4 != 0
						err := CheckHeader(h, fragmented, allowed)
						if want := valid(h, fragmented, allowed); want != (err == nil) {
							t.Fatalf("CheckHeader(%+v, fragmented=%v, rsvAllowed=%d) = %v, want valid=%v", h, fragmented, allowed, err, want)
						}
						if err != nil && CloseStatus(err) != StatusProtocolError {
							t.Fatalf("CheckHeader(%+v): %v has close code %d", h, err, CloseStatus(err))
						}
					}
				}
			}
		}
	}
}

func naiveMask(p []byte, key [4]byte, offset int) {
	for i := range p {
		p[i] ^= key[(offset+i)%4]
	}
}

// TestUnmask checks Unmask against a byte-by-byte reference for every length
// up to a few SIMD blocks, every starting offset, and pieces of every size.
func TestUnmask(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]byte, 300)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	key := [4]byte{0x01, 0x80, 0xfe, 0x3c}
	for n := 0; n <= len(src); n++ {
		for off := 0; off < 8; off++ {
			want := bytes.Clone(src[:n])
			naiveMask(want, key, off)
			got := bytes.Clone(src[:n])
			Unmask(got, key, off)
			if !bytes.Equal(got, want) {
				t.Fatalf("Unmask(len=%d, offset=%d) differs from the reference", n, off)
			}
			Unmask(got, key, off)
			if !bytes.Equal(got, src[:n]) {
				t.Fatalf("Unmask twice (len=%d, offset=%d) is not the identity", n, off)
			}
		}
	}
	// In pieces, as a payload is unmasked when it arrives across reads.
	want := bytes.Clone(src)
	naiveMask(want, key, 0)
	for piece := 1; piece <= 70; piece++ {
		got := bytes.Clone(src)
		for off := 0; off < len(got); off += piece {
			end := min(off+piece, len(got))
			Unmask(got[off:end], key, off)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Unmask in pieces of %d differs from the whole", piece)
		}
	}
}

func TestUnmaskDoesNotTouchNeighbours(t *testing.T) {
	for n := 0; n < 100; n++ {
		buf := make([]byte, n+64)
		Unmask(buf[32:32+n], [4]byte{0xff, 0xff, 0xff, 0xff}, 1)
		for i, b := range buf {
			inside := i >= 32 && i < 32+n
			if inside != (b == 0xff) {
				t.Fatalf("n=%d: byte %d = %#x after Unmask", n, i, b)
			}
		}
	}
}

func TestCloseStatus(t *testing.T) {
	tests := []struct {
		err  error
		want StatusCode
	}{
		{nil, 0},
		{io.EOF, 0},
		{ErrReservedOpcode, StatusProtocolError},
		{ErrInvalidUTF8, StatusInvalidPayload},
		{ErrInvalidCloseUTF8, StatusInvalidPayload},
		{ErrMessageTooBig, StatusMessageTooBig},
		{fmt.Errorf("conn 7: %w", ErrMessageTooBig), StatusMessageTooBig},
	}
	for _, tt := range tests {
		if got := CloseStatus(tt.err); got != tt.want {
			t.Errorf("CloseStatus(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// TestErrorsHaveCloseCodes makes sure every exported protocol error carries
// a code a server may send and a message naming the package.
func TestErrorsHaveCloseCodes(t *testing.T) {
	all := map[*Error]StatusCode{
		ErrReservedOpcode:         StatusProtocolError,
		ErrReservedBits:           StatusProtocolError,
		ErrUnmasked:               StatusProtocolError,
		ErrControlTooLong:         StatusProtocolError,
		ErrControlFragmented:      StatusProtocolError,
		ErrContinuationExpected:   StatusProtocolError,
		ErrUnexpectedContinuation: StatusProtocolError,
		ErrLengthMSB:              StatusProtocolError,
		ErrCloseOneByte:           StatusProtocolError,
		ErrCloseCode:              StatusProtocolError,
		ErrInvalidUTF8:            StatusInvalidPayload,
		ErrInvalidCloseUTF8:       StatusInvalidPayload,
		ErrMessageTooBig:          StatusMessageTooBig,
	}
	msgs := map[string]bool{}
	for e, code := range all {
		if e.Code != code || !code.ValidOnWire() {
			t.Errorf("%v: code %d, want %d", e, e.Code, code)
		}
		if msg := e.Error(); len(msg) < len("codec: x") || msg[:7] != "codec: " || msgs[msg] {
			t.Errorf("bad or duplicate message %q", msg)
		}
		msgs[e.Error()] = true
	}
}
