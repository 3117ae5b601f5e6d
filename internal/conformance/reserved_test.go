package conformance

import (
	"fmt"
	"testing"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// Group 3: reserved bits, Autobahn 3.1-3.7. No extension is negotiated, so
// any RSV bit fails the connection with 1002; valid frames before the bad
// one are answered, nothing after it is.
//
// wsd additions:
//   - 3.8.1-3.8.21: RSV values 1..7 on a text, binary and ping frame, each
//     written in one write between a valid text message and a ping; case
//     3.8.(7*k+rsv) with k = 0 text, 1 binary, 2 ping.
//   - 3.9.1-3.9.7: RSV values 1..7 on the final continuation frame of a
//     fragmented text message.
func TestConformanceReservedBits(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		hello := ws.Text("Hello, world!")
		ping := ws.Ping([]byte("Hello, world!"))
		cases := []scriptCase{
			{"3.1", "text with RSV=1 -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(withRsv(hello, 1))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"3.2", "text, text with RSV=2, ping in one write -> echo, 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(hello, withRsv(hello, 2), ping)
				c.ExpectText("Hello, world!")
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"3.3", "text, text with RSV=3, ping, one write per frame -> echo, 1002", func(t *testing.T, c *ws.Client) {
				c.Write(hello.Bytes())
				c.ExpectText("Hello, world!")
				c.Write(withRsv(hello, 3).Bytes())
				_ = c.TryWrite(ping.Bytes())
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"3.4", "text, text with RSV=4, ping in 1-byte writes -> echo, 1002", func(t *testing.T, c *ws.Client) {
				_ = c.TryWriteChopped(ws.Concat(hello, withRsv(hello, 4), ping), 1)
				c.ExpectText("Hello, world!")
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"3.5", "binary with RSV=5 -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(withRsv(ws.Binary([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), 5))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"3.6", "ping with RSV=6 -> 1002, no pong", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(withRsv(ping, 6))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"3.7", "close with RSV=7 -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(withRsv(ws.Close(ws.CloseNormal, ""), 7))
				c.ExpectFail(ws.CloseProtocolError)
			}},
		}
		kinds := []struct {
			name string
			f    ws.Frame
		}{
			{"text", ws.Text("reserved bits")},
			{"binary", ws.Binary([]byte{0xde, 0xad, 0xbe, 0xef})},
			{"ping", ws.Ping([]byte("reserved bits"))},
		}
		for k, kind := range kinds {
			for rsv := byte(1); rsv <= 7; rsv++ {
				bad := withRsv(kind.f, rsv)
				cases = append(cases, scriptCase{
					fmt.Sprintf("3.8.%d", 7*k+int(rsv)),
					fmt.Sprintf("text, %s with RSV=%d, ping in one write -> echo, 1002", kind.name, rsv),
					func(t *testing.T, c *ws.Client) {
						c.WriteFrames(ws.Text("before"), bad, ws.Ping([]byte("after")))
						c.ExpectText("before")
						c.ExpectFail(ws.CloseProtocolError)
					}})
			}
		}
		for rsv := byte(1); rsv <= 7; rsv++ {
			cases = append(cases, scriptCase{
				fmt.Sprintf("3.9.%d", rsv),
				fmt.Sprintf("text fragment, final continuation with RSV=%d -> 1002", rsv),
				func(t *testing.T, c *ws.Client) {
					c.WriteFrames(ws.Frag(ws.OpText, false, []byte("frag1")), withRsv(ws.Frag(ws.OpContinuation, true, []byte("frag2")), rsv))
					c.ExpectFail(ws.CloseProtocolError)
				}})
		}
		runScripts(t, tr, cases)
	})
}
