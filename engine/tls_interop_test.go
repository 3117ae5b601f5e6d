package engine_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// deflateSeen echoes and records whether connections negotiated
// permessage-deflate.
type deflateSeen struct {
	echo
	on chan bool
}

func (h *deflateSeen) OnOpen(c *engine.Conn) { h.on <- c.Compression().On }

// interopMessages are echoed by each client: text and binary, empty to
// 1 MiB, compressible (repeated text) or not (pseudo-random bytes).
func interopMessages() [][]byte {
	random := make([]byte, 300_000)
	x := uint32(1)
	for i := range random {
		x = x*1664525 + 1013904223
		random[i] = byte(x >> 24)
	}
	return [][]byte{
		nil,
		[]byte("hello over TLS"),
		bytes.Repeat([]byte("compressible text, "), 1000),
		random,
		bytes.Repeat([]byte("a"), 1<<20),
	}
}

func TestTLSGorilla(t *testing.T) {
	h := &deflateSeen{on: make(chan bool, 4)}
	_, addr, pki := startWSS(t, h, engine.Options{})
	for _, compress := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "permessage-deflate"}[compress]
		t.Run(name, func(t *testing.T) {
			d := gorilla.Dialer{TLSClientConfig: clientTLS(pki, 0), EnableCompression: compress, HandshakeTimeout: 10 * time.Second}
			conn, resp, err := d.Dial("wss://"+addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate"); got != compress {
				t.Fatalf("permessage-deflate negotiated: %v, want %v", got, compress)
			}
			if on := <-h.on; on != compress {
				t.Fatalf("the server's Conn.Compression().On is %v, want %v", on, compress)
			}
			conn.EnableWriteCompression(compress)
			for _, msg := range interopMessages() {
				for _, typ := range []int{gorilla.TextMessage, gorilla.BinaryMessage} {
					if typ == gorilla.TextMessage && bytes.ContainsFunc(msg, func(r rune) bool { return r > 0x7e }) {
						continue // not valid UTF-8
					}
					_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if err := conn.WriteMessage(typ, msg); err != nil {
						t.Fatal(err)
					}
					_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
					gotType, got, err := conn.ReadMessage()
					if err != nil {
						t.Fatal(err)
					}
					if gotType != typ || !bytes.Equal(got, msg) {
						t.Fatalf("echo of %d bytes: got type %d, %d bytes", len(msg), gotType, len(got))
					}
				}
			}
			_ = conn.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, ""), time.Now().Add(time.Second))
			if _, _, err := conn.ReadMessage(); !gorilla.IsCloseError(err, gorilla.CloseNormalClosure) {
				t.Fatalf("after the close: %v, want the server's close 1000", err)
			}
		})
	}
}

func TestTLSCoder(t *testing.T) {
	h := &deflateSeen{on: make(chan bool, 4)}
	_, addr, pki := startWSS(t, h, engine.Options{})
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionNoContextTakeover, websocket.CompressionContextTakeover} {
		t.Run(map[websocket.CompressionMode]string{
			websocket.CompressionDisabled: "plain", websocket.CompressionNoContextTakeover: "deflate, no context takeover", websocket.CompressionContextTakeover: "deflate, context takeover",
		}[mode], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(pki, 0)}}
			defer client.CloseIdleConnections()
			conn, _, err := websocket.Dial(ctx, "wss://"+addr+"/", &websocket.DialOptions{HTTPClient: client, CompressionMode: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseNow()
			if on := <-h.on; on != (mode != websocket.CompressionDisabled) {
				t.Fatalf("the server's Conn.Compression().On is %v with mode %v", on, mode)
			}
			conn.SetReadLimit(2 << 20)
			for _, msg := range interopMessages() {
				if err := conn.Write(ctx, websocket.MessageBinary, msg); err != nil {
					t.Fatal(err)
				}
				typ, got, err := conn.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes: got %v, %d bytes", len(msg), typ, len(got))
				}
			}
			if err := conn.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatalf("closing handshake: %v", err)
			}
		})
	}
}

// TestTLSCompressedWrites: the server compresses what it writes over TLS
// too, and the client inflates it.
func TestTLSCompressedWrites(t *testing.T) {
	msg := bytes.Repeat([]byte("server side compression over TLS. "), 500)
	h := &writeOnOpen{msg: msg}
	_, addr, pki := startWSS(t, h, engine.Options{})
	d := gorilla.Dialer{TLSClientConfig: clientTLS(pki, 0), EnableCompression: true}
	conn, _, err := d.Dial("wss://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, got, err := conn.ReadMessage()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes, %v; want the %d-byte message", len(got), err, len(msg))
	}
}

type writeOnOpen struct {
	engine.NopHandler
	msg []byte
}

func (h *writeOnOpen) OnOpen(c *engine.Conn) { _ = c.Write(codec.OpText, h.msg) }
