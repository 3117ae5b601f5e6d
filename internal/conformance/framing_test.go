package conformance

import (
	"fmt"
	"testing"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// Group 1: framing. Autobahn 1.1.1-1.1.8 (text) and 1.2.1-1.2.8 (binary):
// payload lengths 0, 125 (7-bit length), 126, 127, 128, 65535 (16-bit),
// 65536 (64-bit), and 65536 written in 997-byte chops.
//
// wsd additions:
//   - 1.1.1-chop1 .. 1.1.5-chop1, 1.2.1-chop1 .. 1.2.5-chop1: the same frames
//     written one byte per write.
//   - 1.3.x: framing violations (unmasked client frames, 64-bit lengths
//     with the most significant bit set) -> close 1002.
func TestConformanceFraming(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		type echoCase struct {
			id   string
			op   byte
			n    int
			chop int
		}
		lens := []int{0, 125, 126, 127, 128, 65535, 65536}
		var cases []echoCase
		for g, op := range []byte{ws.OpText, ws.OpBinary} {
			for i, n := range lens {
				cases = append(cases, echoCase{fmt.Sprintf("1.%d.%d", g+1, i+1), op, n, 0})
			}
			cases = append(cases, echoCase{fmt.Sprintf("1.%d.8", g+1), op, 65536, 997})
			for i, n := range lens[:5] {
				cases = append(cases, echoCase{fmt.Sprintf("1.%d.%d-chop1", g+1, i+1), op, n, 1})
			}
		}
		for _, tc := range cases {
			t.Run(tc.id, func(t *testing.T) {
				parallel(t)
				t.Logf("send a %s message of %d bytes (chop %d), expect it echoed", ws.OpcodeName(tc.op), tc.n, tc.chop)
				c := tr.open(t)
				var p []byte
				if tc.op == ws.OpText {
					p = textPayload(tc.n)
				} else {
					p = binaryPayload(tc.n)
				}
				b := ws.Msg(tc.op, p).Bytes()
				if tc.chop > 0 {
					c.WriteChopped(b, tc.chop)
				} else {
					c.Write(b)
				}
				c.ExpectMessage(tc.op, p)
				c.CloseHandshake()
			})
		}

		runScripts(t, tr, []scriptCase{
			{"1.3.1", "unmasked text frame -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(unmasked(ws.Text("Hello, world!")))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"1.3.2", "valid text, unmasked binary, ping in one write -> echo, 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Text("Hello, world!"), unmasked(ws.Binary([]byte{1, 2, 3})), ws.Ping([]byte("after")))
				c.ExpectText("Hello, world!")
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"1.3.3", "unmasked ping -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(unmasked(ws.Ping([]byte("ping"))))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"1.3.4", "text header with 64-bit length 0x8000000000000000 (header only) -> 1002", func(t *testing.T, c *ws.Client) {
				c.Write(headerOnly(ws.OpText, true, 1<<63))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"1.3.5", "binary header with 64-bit length 0xffffffffffffffff (header only) -> 1002", func(t *testing.T, c *ws.Client) {
				c.Write(headerOnly(ws.OpBinary, true, ^uint64(0)))
				c.ExpectFail(ws.CloseProtocolError)
			}},
		})
	})
}
