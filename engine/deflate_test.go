package engine_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// payloads returns text-like (compressible) and random (incompressible)
// payloads from 16 bytes to 1 MiB.
func payloads() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	for _, n := range []int{16, 255, 256, 1000, 4096, 65536, 200000, 1 << 20} {
		text := []byte(strings.Repeat(`{"user":"alice","msg":"hello, room"}`, n/36+1)[:n])
		random := make([]byte, n)
		for i := range random {
			random[i] = byte(rng.IntN(256))
		}
		out = append(out, text, random)
	}
	return out
}

// TestDeflateGorilla: gorilla with EnableCompression negotiates
// permessage-deflate and echoes text and binary of every size both ways;
// the answer has no context takeover on either side.
func TestDeflateGorilla(t *testing.T) {
	_, addr := startEngine(t, echo{}, engine.Options{MaxMessageSize: 4 << 20})
	d := gorilla.Dialer{EnableCompression: true}
	ws, resp, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if ext != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
		t.Fatalf("Sec-WebSocket-Extensions %q", ext)
	}
	for _, compress := range []bool{true, false} {
		ws.EnableWriteCompression(compress)
		for i, p := range payloads() {
			op := gorilla.BinaryMessage
			if i%2 == 0 {
				op = gorilla.TextMessage
			}
			if err := ws.WriteMessage(op, p); err != nil {
				t.Fatal(err)
			}
			gotOp, got, err := ws.ReadMessage()
			if err != nil || gotOp != op || !bytes.Equal(got, p) {
				t.Fatalf("compress=%v, %d bytes: echo op %d, %d bytes, %v", compress, len(p), gotOp, len(got), err)
			}
		}
	}
}

// TestDeflateCoderContextTakeover: coder/websocket compressing with
// context takeover is told not to, unless the engine allows it; with it
// allowed, the engine keeps the window and inflates every message.
func TestDeflateCoderContextTakeover(t *testing.T) {
	for _, allow := range []bool{false, true} {
		_, addr := startEngine(t, echo{}, engine.Options{MaxMessageSize: 4 << 20, Compression: engine.Compression{ClientContextTakeover: allow}})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ws, resp, err := websocket.Dial(ctx, "ws://"+addr+"/", &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover, CompressionThreshold: 1})
		if err != nil {
			t.Fatal(err)
		}
		ws.SetReadLimit(8 << 20)
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		if got := strings.Contains(ext, "client_no_context_takeover"); got == allow || !strings.HasPrefix(ext, "permessage-deflate") {
			t.Fatalf("allow=%v: Sec-WebSocket-Extensions %q", allow, ext)
		}
		for _, p := range payloads() {
			for range 2 { // the same message twice: with context takeover the second refers back to the first
				if err := ws.Write(ctx, websocket.MessageBinary, p); err != nil {
					t.Fatal(err)
				}
				_, got, err := ws.Read(ctx)
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("allow=%v, %d bytes: echo of %d bytes, %v", allow, len(p), len(got), err)
				}
			}
		}
		ws.Close(websocket.StatusNormalClosure, "")
		cancel()
	}
}

// TestDeflateOff: with Compression.Off the offer is declined.
func TestDeflateOff(t *testing.T) {
	_, addr := startEngine(t, echo{}, engine.Options{Compression: engine.Compression{Off: true}})
	d := gorilla.Dialer{EnableCompression: true}
	ws, resp, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("Sec-WebSocket-Extensions %q with compression off", ext)
	}
}

// compressedFrame is a masked client frame with RSV1 carrying p compressed.
func compressedFrame(op byte, p []byte) wstest.Frame {
	return wstest.Frame{Fin: true, Rsv: wstest.Rsv1, Opcode: op, Payload: codec.Compress(nil, p, 1)}
}

// deflateClient connects a raw client that offered permessage-deflate.
func deflateClient(t *testing.T, addr string) *wstest.Client {
	t.Helper()
	cl := wstest.Dial(t, addr)
	key := wstest.NewKey()
	hs := wstest.WithHeader(wstest.UpgradeHeaders(addr, key), "Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
	cl.Write(wstest.BuildRequest(http.MethodGet, "/", hs))
	resp := cl.ExpectUpgrade(key)
	if !strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
		t.Fatalf("deflate not negotiated: %q", resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	return cl
}

// TestDeflateLimits: the size limit holds on the inflated size (a bomb of
// zeros fails with 1009), RSV1 is refused on control and continuation
// frames and without negotiation (1002), and text is checked as UTF-8
// after inflating (1007).
func TestDeflateLimits(t *testing.T) {
	const max = 1 << 20
	_, addr := startEngine(t, echo{}, engine.Options{MaxMessageSize: max})
	zeros := make([]byte, max+1)
	tests := []struct {
		name  string
		deflt bool
		frame wstest.Frame
		code  int
	}{
		{"bomb over the limit", true, compressedFrame(wstest.OpBinary, zeros), 1009},
		{"RSV1 on a ping", true, wstest.Frame{Fin: true, Rsv: wstest.Rsv1, Opcode: wstest.OpPing}, 1002},
		{"RSV1 on a continuation", true, wstest.Frame{Fin: true, Rsv: wstest.Rsv1, Opcode: wstest.OpContinuation}, 1002},
		{"RSV1 not negotiated", false, compressedFrame(wstest.OpText, []byte("hello")), 1002},
		{"RSV2", true, wstest.Frame{Fin: true, Rsv: wstest.Rsv2, Opcode: wstest.OpText, Payload: []byte("x")}, 1002},
		{"bad UTF-8 inside", true, compressedFrame(wstest.OpText, []byte("ok \xff")), 1007},
		{"not deflate data", true, wstest.Frame{Fin: true, Rsv: wstest.Rsv1, Opcode: wstest.OpBinary, Payload: []byte{0xff, 0xff, 0xff, 0xff}}, 1007},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cl *wstest.Client
			if tt.deflt {
				cl = deflateClient(t, addr)
			} else {
				cl = wstest.Connect(t, addr)
			}
			if tt.name == "RSV1 on a continuation" {
				cl.WriteFrames(compressedFrame(wstest.OpText, []byte("a"))) // a message before it, to show the connection works
				cl.ExpectText("a")
				cl.WriteFrames(wstest.Frag(wstest.OpText, false, []byte("b")), tt.frame)
			} else {
				cl.WriteFrames(tt.frame)
			}
			cl.ExpectFail(tt.code)
		})
	}
	t.Run("exactly the limit", func(t *testing.T) {
		cl := deflateClient(t, addr)
		cl.WriteFrames(compressedFrame(wstest.OpBinary, zeros[:max]))
		f := readFrame(t, cl)
		if f.Opcode != wstest.OpBinary || f.Rsv != wstest.Rsv1 {
			t.Fatalf("got %v, want a compressed binary echo", f)
		}
	})
	t.Run("fragmented compressed message", func(t *testing.T) {
		cl := deflateClient(t, addr)
		z := codec.Compress(nil, []byte(strings.Repeat("fragmented ", 100)), 1)
		cl.WriteFrames(
			wstest.Frame{Rsv: wstest.Rsv1, Opcode: wstest.OpText, Payload: z[:10]},
			wstest.Ping([]byte("between")),
			wstest.Frame{Opcode: wstest.OpContinuation, Payload: z[10:20]},
			wstest.Frame{Fin: true, Opcode: wstest.OpContinuation, Payload: z[20:]},
		)
		cl.ExpectPong([]byte("between"))
		f := readFrame(t, cl)
		if f.Opcode != wstest.OpText || f.Rsv != wstest.Rsv1 {
			t.Fatalf("got %v, want a compressed text echo", f)
		}
	})
}

// readFrame reads a frame that may have RSV1 set (ExpectFrame refuses RSV
// bits, since most tests negotiate no extension).
func readFrame(t *testing.T, cl *wstest.Client) *wstest.ServerFrame {
	t.Helper()
	f, err := cl.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return f
}
