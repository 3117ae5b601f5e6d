package servers_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// compressing are the peer servers that take -compress.
var compressing = []string{"gorilla", "gws"}

// TestCompressEcho: with -compress the server accepts permessage-deflate
// without context takeover either way, and echoes what a compressing client
// sends (gorilla's client inflates and checks every message it gets).
func TestCompressEcho(t *testing.T) {
	for _, name := range compressing {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, name, "echo", "-compress")
			d := websocket.Dialer{EnableCompression: true}
			c, resp, err := d.Dial("ws://"+s.addr+"/ws", nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			_ = resp.Body.Close()
			ext := resp.Header.Get("Sec-WebSocket-Extensions")
			if !strings.HasPrefix(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") || !strings.Contains(ext, "client_no_context_takeover") {
				t.Fatalf("answer %q: want permessage-deflate without context takeover", ext)
			}
			for _, m := range []struct {
				typ  int
				data []byte
			}{
				{websocket.TextMessage, loadgen.JSONPayload(nil, 1, 1024)},
				{websocket.TextMessage, bytes.Repeat(loadgen.JSONPayload(nil, 2, 4096), 256)},
				{websocket.BinaryMessage, randomBytes(t, 100<<10)},
			} {
				write(t, name, c, m.typ, m.data)
				if got := read(t, name, c); !same(got, m.typ, m.data) {
					t.Fatalf("echo of %d bytes: got %v", len(m.data), got)
				}
			}
			s.stop(t)
		})
	}
}

// TestCompressBroadcast: a 1 KiB JSON broadcast reaches a subscriber that
// offered permessage-deflate as one compressed frame (RSV1) that inflates
// to the message.
func TestCompressBroadcast(t *testing.T) {
	for _, name := range compressing {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, name, "broadcast", "-compress")
			sub, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			_ = sub.SetDeadline(time.Now().Add(ioTimeout))
			_, err = io.WriteString(sub, "GET /ws HTTP/1.1\r\nHost: "+s.addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: "+loadgen.DeflateOffer+"\r\n\r\n")
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(sub)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "server_no_context_takeover") {
				t.Fatalf("answer %q", ext)
			}
			frames := make(chan frame, 64)
			go readFrames(br, frames)

			pub := s.dial(t)
			go func() { // the publisher hears its own messages
				for {
					if _, _, err := pub.ReadMessage(); err != nil {
						return
					}
				}
			}()
			// The server may add the subscriber to the room a little after
			// its handshake: publish until it hears one.
			deadline := time.Now().Add(10 * time.Second)
			for seq := uint64(1); ; seq++ {
				msg := loadgen.JSONPayload(nil, seq, 1024)
				write(t, name, pub, websocket.TextMessage, msg)
				select {
				case f, ok := <-frames:
					if !ok {
						t.Fatal("subscriber: connection closed")
					}
					if f.b0 != 0x80|0x40|websocket.TextMessage || len(f.payload) >= len(msg) {
						t.Fatalf("first byte %#x, %d bytes for a 1 KiB message: want one compressed text frame", f.b0, len(f.payload))
					}
					got, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(f.payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
					if err != nil {
						t.Fatalf("inflate: %v", err)
					}
					if n, _, ok := loadgen.BroadcastStamp(got); !ok || n < 1 || n > seq || len(got) != 1024 || !json.Valid(got) {
						t.Fatalf("inflated %d bytes (seq %d of %d): not the JSON message sent", len(got), n, seq)
					}
					s.stop(t)
					return
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatal("the subscriber heard nothing in 10 s")
				}
			}
		})
	}
}

// TestCompressRefused: servers whose library does not compress refuse
// -compress rather than run without it.
func TestCompressRefused(t *testing.T) {
	for _, name := range []string{"gobwas", "nbio"} {
		out, err := exec.Command(filepath.Join(binDir, name), "-addr", "127.0.0.1:0", "-compress").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "does not compress") {
			t.Errorf("%s -compress: %v %q, want exit status 2", name, err, out)
		}
	}
}

type frame struct {
	b0      byte
	payload []byte
}

// readFrames reads unmasked server frames until an error.
func readFrames(r io.Reader, out chan<- frame) {
	defer close(out)
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var x [2]byte
			if _, err := io.ReadFull(r, x[:]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(x[:]))
		case 127:
			var x [8]byte
			if _, err := io.ReadFull(r, x[:]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(x[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		out <- frame{h[0], p}
	}
}
