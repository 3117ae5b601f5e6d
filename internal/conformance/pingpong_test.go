package conformance

import (
	"bytes"
	"fmt"
	"testing"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// Group 2: pings and pongs, Autobahn 2.1-2.11.
//
// wsd additions:
//   - 2.12: ping carrying 125 bytes of all kinds of byte values.
//   - 2.13: a ping between two messages in one write is answered in order.
func TestConformancePingPong(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		tenPings := func() ([]ws.Frame, [][]byte) {
			var fs []ws.Frame
			var ps [][]byte
			for i := range 10 {
				p := []byte(fmt.Sprintf("payload-%d", i))
				fs = append(fs, ws.Ping(p))
				ps = append(ps, p)
			}
			return fs, ps
		}
		runScripts(t, tr, []scriptCase{
			{"2.1", "ping without payload -> pong without payload", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Ping(nil))
				c.ExpectPong(nil)
				c.CloseHandshake()
			}},
			{"2.2", "ping with small text payload -> same pong", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Ping([]byte("Hello, world!")))
				c.ExpectPong([]byte("Hello, world!"))
				c.CloseHandshake()
			}},
			{"2.3", "ping with small binary payload -> same pong", func(t *testing.T, c *ws.Client) {
				p := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
				c.WriteFrames(ws.Ping(p))
				c.ExpectPong(p)
				c.CloseHandshake()
			}},
			{"2.4", "ping with 125-byte binary payload -> same pong", func(t *testing.T, c *ws.Client) {
				p := bytes.Repeat([]byte{0xfe}, 125)
				c.WriteFrames(ws.Ping(p))
				c.ExpectPong(p)
				c.CloseHandshake()
			}},
			{"2.5", "ping with 126-byte payload -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Ping(bytes.Repeat([]byte{0xfe}, 126)))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"2.6", "ping with 125-byte payload in 1-byte writes -> same pong", func(t *testing.T, c *ws.Client) {
				p := bytes.Repeat([]byte{0xfe}, 125)
				c.WriteChopped(ws.Ping(p).Bytes(), 1)
				c.ExpectPong(p)
				c.CloseHandshake()
			}},
			{"2.7", "unsolicited pong without payload -> nothing", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Pong(nil))
				c.CloseHandshake()
			}},
			{"2.8", "unsolicited pong with payload -> nothing", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Pong([]byte("unsolicited pong payload")))
				c.CloseHandshake()
			}},
			{"2.9", "unsolicited pong, then ping -> pong for the ping only", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Pong([]byte("unsolicited pong payload")), ws.Ping([]byte("ping payload")))
				c.ExpectPong([]byte("ping payload"))
				c.CloseHandshake()
			}},
			{"2.10", "10 pings in a row -> 10 pongs in order", func(t *testing.T, c *ws.Client) {
				fs, ps := tenPings()
				c.WriteFramewise(fs...)
				for _, p := range ps {
					c.ExpectPong(p)
				}
				c.CloseHandshake()
			}},
			{"2.11", "10 pings in 1-byte writes -> 10 pongs in order", func(t *testing.T, c *ws.Client) {
				fs, ps := tenPings()
				c.WriteChopped(ws.Concat(fs...), 1)
				for _, p := range ps {
					c.ExpectPong(p)
				}
				c.CloseHandshake()
			}},
			{"2.12", "ping with 125 bytes of every kind of byte value -> same pong", func(t *testing.T, c *ws.Client) {
				p := binaryPayload(125)
				c.WriteFrames(ws.Ping(p))
				c.ExpectPong(p)
				c.CloseHandshake()
			}},
			{"2.13", "text, ping, binary in one write -> echo, pong, echo in order", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Text("first"), ws.Ping([]byte("middle")), ws.Binary([]byte{0, 1, 2}))
				c.ExpectText("first")
				c.ExpectPong([]byte("middle"))
				c.ExpectBinary([]byte{0, 1, 2})
				c.CloseHandshake()
			}},
		})
	})
}
