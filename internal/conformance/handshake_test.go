package conformance

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// rawCase is a case that starts from a bare TCP connection.
type rawCase struct {
	id   string
	desc string
	run  func(t *testing.T, c *ws.Client)
}

// expectHTTPError reads a complete HTTP response (headers and body, within
// the client's deadline) and fails unless its status is one of statuses.
func expectHTTPError(t *testing.T, c *ws.Client, statuses ...int) *http.Response {
	t.Helper()
	resp, err := c.ReadResponse()
	if err != nil {
		t.Fatalf("expected an HTTP response with status %v, got: %v", statuses, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("status %q: reading the body: %v (a complete response was expected)", resp.Status, err)
	}
	for _, s := range statuses {
		if resp.StatusCode == s {
			return resp
		}
	}
	t.Fatalf("status %q, want one of %v; headers %v; body %q", resp.Status, statuses, resp.Header, body)
	return nil
}

// Group H: the opening handshake (RFC 6455, section 4).
//
//   - H.1: the upgrade request written one byte per write still upgrades.
//   - H.2: frames pipelined in the same write as the request are answered.
//   - H.3: a header block over 8 KiB (one long field) -> 431.
//   - H.4: Sec-WebSocket-Version: 8 -> 426 with Sec-WebSocket-Version: 13.
//   - H.5: no Sec-WebSocket-Key -> 400.
//   - H.6: no Upgrade field -> 400.
//   - H.7: a plain GET without upgrade fields -> a complete 426 or 404.
//   - H.8: the RFC 6455 example key gets the RFC's Sec-WebSocket-Accept.
//   - H.9: an offered permessage-deflate is negotiated without context
//     takeover; an uncompressed message under the threshold still echoes
//     uncompressed.
//   - H.10: any path upgrades.
//   - H.11: a header block over 8 KiB made of many small fields -> 431.
func TestConformanceHandshake(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		hostHeaders := func(c *ws.Client, key string) []ws.Header {
			return ws.UpgradeHeaders(c.Conn.RemoteAddr().String(), key)
		}
		cases := []rawCase{
			{"H.1", "upgrade request in 1-byte writes -> 101, then echo", func(t *testing.T, c *ws.Client) {
				key := ws.NewKey()
				c.WriteChopped(ws.BuildRequest("GET", "/", hostHeaders(c, key)), 1)
				c.ExpectUpgrade(key)
				c.WriteFrames(ws.Text("after a slow handshake"))
				c.ExpectText("after a slow handshake")
				c.CloseHandshake()
			}},
			{"H.2", "request, text, binary, ping in one write -> 101, echo, echo, pong", func(t *testing.T, c *ws.Client) {
				key := ws.NewKey()
				req := ws.BuildRequest("GET", "/", hostHeaders(c, key))
				c.Write(append(req, ws.Concat(ws.Text("pipelined"), ws.Binary([]byte{0, 0xff, 1}), ws.Ping([]byte("p")))...))
				c.ExpectUpgrade(key)
				c.ExpectText("pipelined")
				c.ExpectBinary([]byte{0, 0xff, 1})
				c.ExpectPong([]byte("p"))
				c.CloseHandshake()
			}},
			{"H.3", "header block over 8 KiB (one 9000-byte field) -> 431", func(t *testing.T, c *ws.Client) {
				hs := append(hostHeaders(c, ws.NewKey()), ws.Header{Name: "X-Filler", Value: strings.Repeat("a", 9000)})
				c.Write(ws.BuildRequest("GET", "/", hs))
				expectHTTPError(t, c, http.StatusRequestHeaderFieldsTooLarge)
			}},
			{"H.4", "Sec-WebSocket-Version: 8 -> 426 with Sec-WebSocket-Version: 13", func(t *testing.T, c *ws.Client) {
				hs := ws.WithHeader(hostHeaders(c, ws.NewKey()), "Sec-WebSocket-Version", "8")
				c.Write(ws.BuildRequest("GET", "/", hs))
				resp := expectHTTPError(t, c, http.StatusUpgradeRequired)
				ok := false
				for _, v := range resp.Header.Values("Sec-WebSocket-Version") {
					for _, tok := range strings.Split(v, ",") {
						ok = ok || strings.TrimSpace(tok) == "13"
					}
				}
				if !ok {
					t.Fatalf("426 without Sec-WebSocket-Version: 13; headers %v", resp.Header)
				}
			}},
			{"H.5", "no Sec-WebSocket-Key -> 400", func(t *testing.T, c *ws.Client) {
				hs := ws.WithoutHeader(hostHeaders(c, ws.NewKey()), "Sec-WebSocket-Key")
				c.Write(ws.BuildRequest("GET", "/", hs))
				expectHTTPError(t, c, http.StatusBadRequest)
			}},
			{"H.6", "no Upgrade field -> 400", func(t *testing.T, c *ws.Client) {
				hs := ws.WithoutHeader(hostHeaders(c, ws.NewKey()), "Upgrade")
				c.Write(ws.BuildRequest("GET", "/", hs))
				expectHTTPError(t, c, http.StatusBadRequest)
			}},
			{"H.7", "plain GET / -> complete 426 or 404", func(t *testing.T, c *ws.Client) {
				c.Write(ws.BuildRequest("GET", "/", []ws.Header{{Name: "Host", Value: c.Conn.RemoteAddr().String()}}))
				expectHTTPError(t, c, http.StatusUpgradeRequired, http.StatusNotFound)
			}},
			{"H.8", "RFC 6455 example key -> s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", func(t *testing.T, c *ws.Client) {
				const key = "dGhlIHNhbXBsZSBub25jZQ=="
				c.Write(ws.BuildRequest("GET", "/chat", hostHeaders(c, key)))
				resp := c.ExpectUpgrade(key)
				if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
					t.Fatalf("Sec-WebSocket-Accept %q", got)
				}
				c.CloseHandshake()
			}},
			{"H.9", "permessage-deflate offered -> negotiated without context takeover; uncompressed messages still pass", func(t *testing.T, c *ws.Client) {
				key := ws.NewKey()
				hs := append(hostHeaders(c, key), ws.Header{Name: "Sec-WebSocket-Extensions", Value: "permessage-deflate; client_max_window_bits"})
				c.Write(ws.BuildRequest("GET", "/", hs))
				resp := c.ExpectUpgrade(key)
				want := "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
				if ext := resp.Header.Values("Sec-WebSocket-Extensions"); len(ext) != 1 || ext[0] != want {
					t.Fatalf("Sec-WebSocket-Extensions %q, want %q", ext, want)
				}
				c.WriteFrames(ws.Text("uncompressed"))
				c.ExpectText("uncompressed")
				c.CloseHandshake()
			}},
			{"H.10", "upgrade on path /any/deep/path?x=1 -> 101", func(t *testing.T, c *ws.Client) {
				c.Handshake("/any/deep/path?x=1")
				c.WriteFrames(ws.Text("path"))
				c.ExpectText("path")
				c.CloseHandshake()
			}},
			{"H.11", "header block over 8 KiB in 200 small fields -> 431", func(t *testing.T, c *ws.Client) {
				hs := hostHeaders(c, ws.NewKey())
				for i := range 200 {
					hs = append(hs, ws.Header{Name: fmt.Sprintf("X-Filler-%03d", i), Value: strings.Repeat("b", 40)})
				}
				c.Write(ws.BuildRequest("GET", "/", hs))
				expectHTTPError(t, c, http.StatusRequestHeaderFieldsTooLarge)
			}},
		}
		for _, tc := range cases {
			t.Run(tc.id, func(t *testing.T) {
				parallel(t)
				t.Log(tc.desc)
				tc.run(t, tr.dial(t))
			})
		}
	})
}
