package engine

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

const validRequest = "GET /chat?room=a HTTP/1.1\r\n" +
	"Host: example.com\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Origin: https://good.example\r\n" +
	"Sec-WebSocket-Protocol: v1, v2\r\n\r\n"

func fuzzUpgrader(t testing.TB) *upgrader {
	o, err := Options{
		MaxHeaderBytes: 1024,
		AllowedOrigins: []string{"https://good.example"},
		Subprotocols:   []string{"v2", "v1"},
		OnUpgrade: func(r *Request) *Response {
			if strings.HasPrefix(r.Path(), "/private") {
				return &Response{Status: http.StatusUnauthorized, Body: []byte("no")}
			}
			r.Context = r.Query("room")
			return nil
		},
		HTTPHandler: func(r *Request) *Response {
			if r.Path() == "/" {
				return &Response{Body: []byte("page")}
			}
			return nil
		},
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return newUpgrader(&o)
}

// TestUpgradeProcess checks the outcome of the upgrade logic on whole
// requests, on every prefix of them, and the exact 101 answer (RFC 6455 §1.3
// sample key).
func TestUpgradeProcess(t *testing.T) {
	u := fuzzUpgrader(t)
	req := []byte(validRequest + "\x81\x85frame")
	res, n, hs := u.process(req, len(req), 0, nil)
	if res != upgraded || n != len(validRequest) || hs.Protocol != "v2" {
		t.Fatalf("got outcome %d, length %d, protocol %q", res, n, hs.Protocol)
	}
	if !bytes.Contains(u.out, []byte("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")) {
		t.Fatalf("bad 101:\n%s", u.out)
	}
	if u.req.Context != "a" {
		t.Fatalf("OnUpgrade context %v", u.req.Context)
	}
	for i := range len(validRequest) - 1 {
		if res, _, _ := u.process(req[:i], i, 0, nil); res != needMore {
			t.Fatalf("prefix of %d bytes: outcome %d, want needMore", i, res)
		}
	}
}

// FuzzUpgrade feeds arbitrary request bytes to the upgrade logic: it must
// never panic, wait only while no complete header under the cap is
// buffered, upgrade only with a correct 101, and otherwise produce a
// well-formed HTTP error response.
func FuzzUpgrade(f *testing.F) {
	seeds := []string{
		validRequest,
		strings.Replace(validRequest, "13", "8", 1),
		strings.Replace(validRequest, "GET /chat", "GET /private", 1),
		strings.Replace(validRequest, "good", "evil", 1),
		strings.Replace(validRequest, "Upgrade: websocket", "Upgrade: h2c", 1),
		strings.Replace(validRequest, "HTTP/1.1", "HTTP/1.0", 1),
		strings.Replace(validRequest, "GET", "POST", 1),
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /x HTTP/1.1\r\n\r\n",
		"PUT / HTTP/1.1\r\n\r\n",
		"\r\n\r\n",
		"GET  HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nHost: a\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x\r\n\r\n",
		"GET / HTTP/1.1\r\nX: " + strings.Repeat("y", 1100),
		"HEAD / HTTP/1.1\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	u := fuzzUpgrader(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		buf := data[:min(len(data), u.o.MaxHeaderBytes)]
		res, n, _ := u.process(buf, len(data), 0, nil)
		switch res {
		case needMore:
			if len(data) >= u.o.MaxHeaderBytes || bytes.Contains(buf, []byte("\r\n\r\n")) {
				t.Fatalf("waits for more with %d bytes buffered", len(data))
			}
			if len(u.out) != 0 {
				t.Fatal("answered while waiting for more")
			}
		case upgraded:
			if n > len(buf) || !bytes.HasSuffix(buf[:n], []byte("\r\n\r\n")) {
				t.Fatalf("upgrade with header length %d", n)
			}
			if !bytes.HasPrefix(u.out, []byte("HTTP/1.1 101 Switching Protocols\r\n")) || !bytes.Contains(u.out, []byte("Sec-WebSocket-Accept: ")) {
				t.Fatalf("bad 101:\n%s", u.out)
			}
		case answered:
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(u.out)), nil)
			if err != nil {
				t.Fatalf("unparsable answer %q: %v", u.out, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode < 200 || resp.StatusCode == http.StatusSwitchingProtocols {
				t.Fatalf("answer with status %d", resp.StatusCode)
			}
		default:
			t.Fatalf("outcome %d", res)
		}
	})
}
