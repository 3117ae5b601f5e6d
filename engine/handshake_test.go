package engine_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

func TestEngineHandshakeSplitAndPipelined(t *testing.T) {
	_, addr := startEngine(t, echo{}, engine.Options{})
	tests := []struct {
		name  string
		chunk int
	}{
		{"one write", 0},
		{"byte at a time", 1},
		{"7-byte chunks", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := wstest.Dial(t, addr)
			key := wstest.NewKey()
			req := wstest.BuildRequest("GET", "/any/path?x=1", wstest.UpgradeHeaders(addr, key))
			// Two frames pipelined behind the request, in the same bytes.
			all := append(req, wstest.Concat(wstest.Text("first"), wstest.Binary([]byte{1, 2, 3}))...)
			if tt.chunk == 0 {
				c.Write(all)
			} else {
				c.WriteChopped(all, tt.chunk)
			}
			c.ExpectUpgrade(key)
			c.ExpectText("first")
			c.ExpectBinary([]byte{1, 2, 3})
			c.CloseHandshake()
		})
	}
}

func TestEngineHandshakeRejections(t *testing.T) {
	_, addr := startEngine(t, echo{}, engine.Options{})
	up := func(mod func([]wstest.Header) []wstest.Header) []byte {
		return wstest.BuildRequest("GET", "/", mod(wstest.UpgradeHeaders(addr, wstest.NewKey())))
	}
	same := func(h []wstest.Header) []wstest.Header { return h }
	tests := []struct {
		name       string
		req        []byte
		status     int
		wantHeader [2]string
	}{
		{"plain GET", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), http.StatusUpgradeRequired, [2]string{"Sec-WebSocket-Version", "13"}},
		{"plain POST", []byte("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), http.StatusMethodNotAllowed, [2]string{}},
		{"version 8", up(func(h []wstest.Header) []wstest.Header { return wstest.WithHeader(h, "Sec-WebSocket-Version", "8") }), http.StatusUpgradeRequired, [2]string{"Sec-WebSocket-Version", "13"}},
		{"no key", up(func(h []wstest.Header) []wstest.Header { return wstest.WithoutHeader(h, "Sec-WebSocket-Key") }), http.StatusBadRequest, [2]string{}},
		{"no upgrade header", up(func(h []wstest.Header) []wstest.Header { return wstest.WithoutHeader(h, "Upgrade") }), http.StatusBadRequest, [2]string{}},
		{"no connection", up(func(h []wstest.Header) []wstest.Header { return wstest.WithoutHeader(h, "Connection") }), http.StatusBadRequest, [2]string{}},
		{"upgrade not websocket", up(func(h []wstest.Header) []wstest.Header { return wstest.WithHeader(h, "Upgrade", "h2c") }), http.StatusBadRequest, [2]string{}},
		{"bad key length", up(func(h []wstest.Header) []wstest.Header { return wstest.WithHeader(h, "Sec-WebSocket-Key", "c2hvcnQ=") }), http.StatusBadRequest, [2]string{}},
		{"HTTP/1.0", []byte(strings.Replace(string(up(same)), "HTTP/1.1", "HTTP/1.0", 1)), http.StatusHTTPVersionNotSupported, [2]string{}},
		{"malformed request line", []byte("GARBAGE\r\n\r\n"), http.StatusBadRequest, [2]string{}},
		{"header too large", []byte("GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n"), http.StatusRequestHeaderFieldsTooLarge, [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := wstest.Dial(t, addr)
			c.Write(tt.req)
			resp, err := c.ReadResponse()
			if err != nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tt.status, body)
			}
			if k := tt.wantHeader[0]; k != "" && resp.Header.Get(k) != tt.wantHeader[1] {
				t.Errorf("header %s = %q, want %q", k, resp.Header.Get(k), tt.wantHeader[1])
			}
			c.ExpectTCPClosed()
		})
	}
}

// A header block that never ends is refused as soon as it passes the cap,
// without waiting for the terminating blank line.
func TestEngineHandshakeHeaderCapWithoutEnd(t *testing.T) {
	_, addr := startEngine(t, echo{}, engine.Options{MaxHeaderBytes: 1024})
	c := wstest.Dial(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\nX-Long: " + strings.Repeat("b", 2000)))
	resp, err := c.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

func TestEngineHandshakeTimeout(t *testing.T) {
	_, addr := startEngine(t, echo{}, engine.Options{HandshakeTimeout: 200 * time.Millisecond})
	c := wstest.Dial(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\n")) // and never the rest
	start := time.Now()
	c.ExpectTCPClosed()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
}

func TestEngineOnUpgradeAndHTTPHandler(t *testing.T) {
	type user struct{ name string }
	got := make(chan string, 4)
	h := &ctxEcho{got: got, name: func(c *engine.Conn) string {
		return c.Context().(user).name + " " + c.Path() + " " + c.Header("X-Extra")
	}}
	_, addr := startEngine(t, h, engine.Options{
		KeepPath:    true,
		KeepHeaders: true,
		OnUpgrade: func(r *engine.Request) *engine.Response {
			if r.Header("Authorization") != "Bearer good" {
				return &engine.Response{Status: http.StatusUnauthorized, Header: http.Header{"Www-Authenticate": {"Bearer"}}, Body: []byte("no token\n")}
			}
			if r.Path() != "/room/a" || r.Query("nick") != "ann" {
				return &engine.Response{Status: http.StatusNotFound, Body: []byte("no such room\n")}
			}
			r.Context = user{name: r.Query("nick")}
			return nil
		},
		HTTPHandler: func(r *engine.Request) *engine.Response {
			if r.Path() == "/" {
				return &engine.Response{Header: http.Header{"Content-Type": {"text/html"}}, Body: []byte("<h1>demo</h1>")}
			}
			return nil
		},
	})
	t.Run("plain page", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "<h1>demo</h1>" || resp.Header.Get("Content-Type") != "text/html" {
			t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
		}
	})
	t.Run("plain fallback", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/other")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("status %d, want 426", resp.StatusCode)
		}
	})
	for _, tt := range []struct {
		name, path, auth string
		status           int
	}{
		{"no token", "/room/a?nick=ann", "", 401},
		{"wrong path", "/room/b?nick=ann", "Bearer good", 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := wstest.Dial(t, addr)
			hs := wstest.UpgradeHeaders(addr, wstest.NewKey())
			if tt.auth != "" {
				hs = wstest.WithHeader(hs, "Authorization", tt.auth)
			}
			c.Write(wstest.BuildRequest("GET", tt.path, hs))
			resp, err := c.ReadResponse()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
	t.Run("accepted with context", func(t *testing.T) {
		c := wstest.Dial(t, addr)
		key := wstest.NewKey()
		hs := wstest.WithHeader(wstest.UpgradeHeaders(addr, key), "Authorization", "Bearer good")
		hs = wstest.WithHeader(hs, "X-Extra", "kept")
		c.Write(wstest.BuildRequest("GET", "/room/a?nick=ann", hs))
		c.ExpectUpgrade(key)
		c.WriteFrames(wstest.Text("who"))
		c.ExpectText("ann /room/a?nick=ann kept")
	})
}

// ctxEcho answers every message with name(conn).
type ctxEcho struct {
	engine.NopHandler
	got  chan string
	name func(*engine.Conn) string
}

func (h *ctxEcho) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	_ = c.Write(op, []byte(h.name(c)))
}

func TestEngineOriginsAndSubprotocols(t *testing.T) {
	_, addr := startEngine(t, echo{}, engine.Options{
		AllowedOrigins: []string{"https://good.example"},
		Subprotocols:   []string{"v2.chat", "v1.chat"},
	})
	tests := []struct {
		name, origin, offer string
		status              int
		proto               string
	}{
		{"allowed origin, prefers server order", "https://GOOD.example", "v1.chat, v2.chat", 101, "v2.chat"},
		{"no origin header (non-browser)", "", "v1.chat", 101, "v1.chat"},
		{"no common subprotocol", "https://good.example", "other", 101, ""},
		{"no offer", "https://good.example", "", 101, ""},
		{"bad origin", "https://evil.example", "v1.chat", 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := wstest.Dial(t, addr)
			key := wstest.NewKey()
			hs := wstest.UpgradeHeaders(addr, key)
			if tt.origin != "" {
				hs = wstest.WithHeader(hs, "Origin", tt.origin)
			}
			if tt.offer != "" {
				hs = wstest.WithHeader(hs, "Sec-WebSocket-Protocol", tt.offer)
			}
			c.Write(wstest.BuildRequest("GET", "/", hs))
			resp, err := http.ReadResponse(bufio.NewReader(c.Conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.proto {
				t.Fatalf("subprotocol %q, want %q", got, tt.proto)
			}
		})
	}
}
