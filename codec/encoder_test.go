package codec

import (
	"bytes"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

const len4G = int64(1) << 32

func TestHeaderEncoderEncode(t *testing.T) {
	tests := []struct {
		name   string
		fin    bool
		rsv    byte
		op     OpCode
		length int64
		want   []byte
	}{
		{name: "empty text", fin: true, op: OpText, length: 0, want: []byte{0x81, 0x00}},
		{name: "Hello (rfc6455 example)", fin: true, op: OpText, length: 5, want: []byte{0x81, 0x05}},
		{name: "125 bytes", fin: true, op: OpBinary, length: 125, want: []byte{0x82, 0x7d}},
		{name: "126 bytes", fin: true, op: OpBinary, length: 126, want: []byte{0x82, 0x7e, 0x00, 0x7e}},
		{name: "256 bytes (rfc6455 example)", fin: true, op: OpBinary, length: 256, want: []byte{0x82, 0x7e, 0x01, 0x00}},
		{name: "65535 bytes", fin: true, op: OpBinary, length: 65535, want: []byte{0x82, 0x7e, 0xff, 0xff}},
		{name: "65536 bytes (rfc6455 example)", fin: true, op: OpBinary, length: 65536, want: []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}},
		{name: "4 GiB", fin: true, op: OpBinary, length: len4G, want: []byte{0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0}},
		{name: "first fragment", fin: false, op: OpText, length: 3, want: []byte{0x01, 0x03}},
		{name: "continuation", fin: false, op: OpContinuation, length: 300, want: []byte{0x00, 0x7e, 0x01, 0x2c}},
		{name: "final continuation", fin: true, op: OpContinuation, length: 0, want: []byte{0x80, 0x00}},
		{name: "RSV1 (permessage-deflate)", fin: true, rsv: 4, op: OpText, length: 1, want: []byte{0xc1, 0x01}},
		{name: "all RSV bits", fin: true, rsv: 7, op: OpBinary, length: 1, want: []byte{0xf2, 0x01}},
		{name: "ping", fin: true, op: OpPing, length: 125, want: []byte{0x89, 0x7d}},
		{name: "pong", fin: true, op: OpPong, length: 5, want: []byte{0x8a, 0x05}},
		{name: "close", fin: true, op: OpClose, length: 2, want: []byte{0x88, 0x02}},
	}
	var e HeaderEncoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.Encode(tt.fin, tt.rsv, tt.op, int(tt.length))
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Encode = % x, want % x", got, tt.want)
			}
			if len(got) != FrameSize(int(tt.length))-int(tt.length) {
				t.Fatalf("header is %d bytes, FrameSize(%d) implies %d", len(got), tt.length, FrameSize(int(tt.length))-int(tt.length))
			}
			wantH := Header{Fin: tt.fin, Rsv: tt.rsv, OpCode: tt.op, Length: tt.length}

			h, n, err := ParseHeader(got)
			if err != nil || n != len(got) || h != wantH {
				t.Fatalf("ParseHeader(Encode(...)) = %+v, %d, %v; want %+v, %d", h, n, err, wantH, len(got))
			}

			r := bytes.NewReader(got)
			h, err = ws.ReadHeader(r)
			if err != nil || r.Len() != 0 || h != wantH {
				t.Fatalf("ws.ReadHeader(Encode(...)) = %+v, %v, %d bytes left; want %+v", h, err, r.Len(), wantH)
			}
		})
	}
}

// TestHeaderEncoderReuse checks that one encoder gives correct results call
// after call, whatever the previous header length was.
func TestHeaderEncoderReuse(t *testing.T) {
	var e HeaderEncoder
	lengths := []int{65536, 0, 126, 125, int(len4G), 1, 65535}
	for i, n := range lengths {
		got := e.Encode(true, 0, OpBinary, n)
		h, hl, err := ParseHeader(got)
		if err != nil || hl != len(got) || h.Length != int64(n) {
			t.Fatalf("call %d: Encode(length %d) = % x", i, n, got)
		}
	}
}

func TestFrameSize(t *testing.T) {
	tests := []struct{ n, want int }{
		{0, 2}, {1, 3}, {125, 127}, {126, 130}, {127, 131}, {65535, 65539}, {65536, 65546}, {int(len4G), int(len4G) + 10},
	}
	for _, tt := range tests {
		if got := FrameSize(tt.n); got != tt.want {
			t.Errorf("FrameSize(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestHeaderEncoderAppendFrame(t *testing.T) {
	var e HeaderEncoder
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'p'}, n)
		for _, op := range []OpCode{OpText, OpBinary, OpPing} {
			if op == OpPing && n > MaxControlPayload {
				continue
			}
			prefix := []byte("previous frame")
			got := e.AppendFrame(bytes.Clone(prefix), op, payload)
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("n=%d op=%v: dst contents lost", n, op)
			}
			frame := got[len(prefix):]
			if len(frame) != FrameSize(n) {
				t.Fatalf("n=%d op=%v: frame of %d bytes, FrameSize = %d", n, op, len(frame), FrameSize(n))
			}
			// Read it back with gobwas, as a client would.
			r := bytes.NewReader(frame)
			h, err := ws.ReadHeader(r)
			if err != nil {
				t.Fatalf("n=%d op=%v: ws.ReadHeader: %v", n, op, err)
			}
			rest, _ := io.ReadAll(r)
			want := Header{Fin: true, OpCode: op, Length: int64(n)}
			if h != want || !bytes.Equal(rest, payload) {
				t.Fatalf("n=%d op=%v: read back %+v with %d payload bytes", n, op, h, len(rest))
			}
		}
	}
}

func TestHeaderEncoderZeroAllocs(t *testing.T) {
	e := new(HeaderEncoder)
	payload := bytes.Repeat([]byte{'z'}, 1000)
	dst := make([]byte, 0, FrameSize(len(payload)))
	lengths := []int{0, 125, 126, 65535, 65536, int(len4G)}
	var sink int
	allocs := testing.AllocsPerRun(100, func() {
		for _, n := range lengths {
			sink += len(e.Encode(true, 0, OpBinary, n))
		}
	})
	if allocs != 0 {
		t.Errorf("Encode: %v allocs per run, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() {
		dst = e.AppendFrame(dst[:0], OpText, payload)
	})
	if allocs != 0 {
		t.Errorf("AppendFrame with room in dst: %v allocs per run, want 0", allocs)
	}
	if len(dst) != FrameSize(len(payload)) || sink == 0 {
		t.Fatalf("AppendFrame wrote %d bytes", len(dst))
	}
}

// The pooled AppendFrame writes what an owned encoder writes, without
// allocating once the pool is warm.
func TestAppendFramePooledZeroAllocs(t *testing.T) {
	payload := bytes.Repeat([]byte{'p'}, 300)
	want := new(HeaderEncoder).AppendFrame(nil, OpBinary, payload)
	if got := AppendFrame(nil, OpBinary, payload); !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame = %x, want %x", got[:8], want[:8])
	}
	if raceEnabled {
		return // sync.Pool drops items at random under the race detector
	}
	dst := make([]byte, 0, FrameSize(len(payload)))
	if allocs := testing.AllocsPerRun(100, func() { dst = AppendFrame(dst[:0], OpText, payload) }); allocs != 0 {
		t.Fatalf("AppendFrame: %v allocs per run, want 0", allocs)
	}
}
