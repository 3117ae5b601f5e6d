package codec

import (
	"bytes"
	stdflate "compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestNegotiateDeflate: RFC 7692 section 7, offer by offer: the first
// acceptable offer is taken, an offer with an unknown, repeated or invalid
// parameter is declined, and the answer has exactly what the RFC allows.
func TestNegotiateDeflate(t *testing.T) {
	const base = "permessage-deflate; server_no_context_takeover"
	const noClient = "; client_no_context_takeover"
	tests := []struct {
		name     string
		offer    string
		takeover bool // allow client context takeover
		want     string
		bits     uint8 // ServerMaxWindowBits
	}{
		{"plain", "permessage-deflate", false, base + noClient, 15},
		{"Chrome, Node, python", "permessage-deflate; client_max_window_bits", false, base + noClient, 15},
		{"client_no_context_takeover", "permessage-deflate; client_no_context_takeover", false, base + noClient, 15},
		{"server_no_context_takeover", "permessage-deflate; server_no_context_takeover", false, base + noClient, 15},
		{"server window echoed", "permessage-deflate; server_max_window_bits=10", false, base + "; server_max_window_bits=10" + noClient, 10},
		{"server window 8", "permessage-deflate; server_max_window_bits=8", false, base + "; server_max_window_bits=8" + noClient, 8},
		{"quoted value", `permessage-deflate; server_max_window_bits="12"`, false, base + "; server_max_window_bits=12" + noClient, 12},
		{"client window with a value", "permessage-deflate; client_max_window_bits=9", false, base + noClient, 15},
		{"case and spaces", "  Permessage-Deflate ;  Client_Max_Window_Bits  ", false, base + noClient, 15},
		{"empty parameter", "permessage-deflate;", false, base + noClient, 15},
		{"other extension first", "x-webkit-deflate-frame, permessage-deflate", false, base + noClient, 15},
		{"first acceptable of three", "permessage-deflate; foo, permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=9", false, base + "; server_max_window_bits=9" + noClient, 9},
		{"Autobahn 13.7", "permessage-deflate; client_no_context_takeover; client_max_window_bits, permessage-deflate; server_no_context_takeover, permessage-deflate", false, base + noClient, 15},
		{"takeover allowed", "permessage-deflate; client_max_window_bits", true, base + "; client_max_window_bits=12", 15},
		{"takeover allowed, Firefox", "permessage-deflate", true, base, 15},
		{"takeover allowed, window offered", "permessage-deflate; client_max_window_bits=10", true, base + "; client_max_window_bits=10", 15},
		{"takeover allowed, client declines it", "permessage-deflate; client_no_context_takeover", true, base + noClient, 15},
		{"unknown parameter", "permessage-deflate; foo", false, "", 0},
		{"unknown parameter with value", "permessage-deflate; foo=1", false, "", 0},
		{"repeated parameter", "permessage-deflate; server_no_context_takeover; server_no_context_takeover", false, "", 0},
		{"repeated window", "permessage-deflate; client_max_window_bits; client_max_window_bits=10", false, "", 0},
		{"window 7", "permessage-deflate; server_max_window_bits=7", false, "", 0},
		{"window 16", "permessage-deflate; server_max_window_bits=16", false, "", 0},
		{"window 08", "permessage-deflate; server_max_window_bits=08", false, "", 0},
		{"window not a number", "permessage-deflate; client_max_window_bits=ten", false, "", 0},
		{"window with a sign", "permessage-deflate; server_max_window_bits=+9", false, "", 0},
		{"client window with a sign", "permessage-deflate; client_max_window_bits=+9", false, "", 0},
		{"server window without value", "permessage-deflate; server_max_window_bits", false, "", 0},
		{"value on no_context_takeover", "permessage-deflate; client_no_context_takeover=1", false, "", 0},
		{"no deflate offered", "x-webkit-deflate-frame", false, "", 0},
		{"empty", "", false, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, got := NegotiateDeflate(tt.offer, tt.takeover)
			if got != tt.want || d.On != (tt.want != "") || d.ServerMaxWindowBits != tt.bits {
				t.Fatalf("NegotiateDeflate(%q) = %+v, %q; want %q (window %d)", tt.offer, d, got, tt.want, tt.bits)
			}
			if d.On && d.ClientContextTakeover != (tt.takeover && !strings.Contains(got, "client_no_context_takeover")) {
				t.Fatalf("ClientContextTakeover %v with answer %q", d.ClientContextTakeover, got)
			}
		})
	}
}

// stdInflate inflates a permessage-deflate message with the standard
// library, an implementation independent of Compress.
func stdInflate(t *testing.T, z []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(stdflate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
	if err != nil {
		t.Fatalf("inflating %d bytes: %v", len(z), err)
	}
	return out
}

// stdCompress compresses like a client would, with the standard library.
func stdCompress(p []byte) []byte {
	var b bytes.Buffer
	w, _ := stdflate.NewWriter(&b, stdflate.BestSpeed)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

func samples() [][]byte {
	rng := rand.New(rand.NewPCG(3, 4))
	out := [][]byte{{}, []byte("a")}
	for _, n := range []int{16, 300, 4096, 70000, 1 << 20} {
		random := make([]byte, n)
		for i := range random {
			random[i] = byte(rng.IntN(256))
		}
		out = append(out, random, bytes.Repeat([]byte(`{"k":"v","n":12}`), n/16+1)[:n])
	}
	return out
}

// TestCompressInflate: what Compress makes inflates with the standard
// library, what the standard library makes inflates with Inflater, and
// both ways give back the message, from 0 bytes to 1 MiB, appending to dst.
func TestCompressInflate(t *testing.T) {
	var f Inflater
	var out *[]byte
	for _, p := range samples() {
		for level := 1; level <= 9; level += 4 {
			z := Compress([]byte("prefix"), p, level)
			if !bytes.HasPrefix(z, []byte("prefix")) {
				t.Fatal("Compress did not append to dst")
			}
			if got := stdInflate(t, z[len("prefix"):]); !bytes.Equal(got, p) {
				t.Fatalf("level %d, %d bytes: the standard library inflates %d bytes", level, len(p), len(got))
			}
		}
		var err error
		if out != nil {
			*out = (*out)[:0]
		}
		out, err = f.Inflate(out, stdCompress(p), 0, nil)
		if err != nil || !bytes.Equal(*out, p) {
			t.Fatalf("%d bytes: Inflate gave %d bytes, %v", len(p), len(*out), err)
		}
	}
}

// TestInflateLimit: a message that inflates past the limit fails with
// ErrMessageTooBig without being inflated whole; exactly the limit passes.
func TestInflateLimit(t *testing.T) {
	const max = 16 << 20
	bomb := stdCompress(make([]byte, max+1)) // about 16 KiB
	var f Inflater
	out, err := f.Inflate(nil, bomb, max, nil)
	if !errors.Is(err, ErrMessageTooBig) {
		t.Fatalf("inflating %d bytes of zeros with a %d limit: %v", len(bomb), max, err)
	}
	if n := len(*out); n > max+inflateChunk*2 {
		t.Fatalf("%d bytes inflated before failing", n)
	}
	*out = (*out)[:0]
	if out, err = f.Inflate(out, stdCompress(make([]byte, max)), max, nil); err != nil || len(*out) != max {
		t.Fatalf("exactly the limit: %d bytes, %v", len(*out), err)
	}
	if _, err := f.Inflate(nil, []byte{0xff, 0xfe, 0xfd}, 0, nil); !errors.Is(err, ErrInflate) {
		t.Fatalf("garbage: %v, want ErrInflate", err)
	}
	if out, err := f.Inflate(nil, stdCompress([]byte("after garbage")), 0, nil); err != nil || string(*out) != "after garbage" {
		t.Fatalf("after a failure the Inflater still works: %q, %v", *out, err)
	}
}

// TestInflateDict: with context takeover, a message that refers back into
// earlier ones inflates with their bytes as dict.
func TestInflateDict(t *testing.T) {
	first := []byte(strings.Repeat("context takeover ", 50))
	var b bytes.Buffer
	w, _ := stdflate.NewWriter(&b, stdflate.BestSpeed)
	_, _ = w.Write(first)
	_ = w.Flush()
	n := b.Len()
	_, _ = w.Write(first) // the second message, compressed with the first in the window
	_ = w.Flush()
	second := bytes.TrimSuffix(b.Bytes()[n:], []byte{0, 0, 0xff, 0xff})
	var f Inflater
	out, err := f.Inflate(nil, second, 0, first)
	if err != nil || !bytes.Equal(*out, first) {
		t.Fatalf("with dict: %q, %v", *out, err)
	}
}

// TestDeflateFits: a message is sent compressed only within the window the
// peer allowed.
func TestDeflateFits(t *testing.T) {
	if !(Deflate{ServerMaxWindowBits: 15}).Fits(1 << 30) {
		t.Fatal("window 15 limits nothing")
	}
	d := Deflate{ServerMaxWindowBits: 9}
	if !d.Fits(512) || d.Fits(513) {
		t.Fatal("window 9 takes messages up to 512 bytes")
	}
}

// TestDecoderCompressedLimit: MaxMessageSize holds on the inflated size, so
// a compressed message may be a little longer on the wire than the limit
// (incompressible data in stored blocks), but not more than that.
func TestDecoderCompressedLimit(t *testing.T) {
	const max = 1 << 20
	for _, tt := range []struct {
		length int64
		rsv    byte
		err    error
	}{
		{max + 100, Rsv1, nil},
		{DeflateBound(max), Rsv1, nil},
		{DeflateBound(max) + 1, Rsv1, ErrMessageTooBig},
		{max + 1, 0, ErrMessageTooBig},
	} {
		d := Decoder{MaxMessageSize: max, Deflate: Deflate{On: true}}
		hdr := make([]byte, 0, 14)
		hdr = append(hdr, 0x80|tt.rsv<<4|byte(OpBinary), 0x80|127)
		for i := 7; i >= 0; i-- {
			hdr = append(hdr, byte(tt.length>>(8*i)))
		}
		hdr = append(hdr, 1, 2, 3, 4)
		_, err := d.Decode(hdr, nopReceiver{})
		if !errors.Is(err, tt.err) && !(err == nil && tt.err == nil) {
			t.Fatalf("length %d, rsv %d: %v, want %v", tt.length, tt.rsv, err, tt.err)
		}
		d.Release()
	}
}

type nopReceiver struct{}

func (nopReceiver) OnMessage(OpCode, []byte) error    { return nil }
func (nopReceiver) OnControl(OpCode, []byte) error    { return nil }
func (nopReceiver) OnCompressed(OpCode, []byte) error { return nil }
