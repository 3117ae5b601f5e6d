package conformance

import (
	"testing"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// Group 4: reserved opcodes, Autobahn 4.1.1-4.1.5 (non-control 3-7) and
// 4.2.1-4.2.5 (control 11-15). Each fails the connection with 1002; a valid
// text message before it is echoed, the ping after it is not answered.
//
// wsd additions:
//   - 4.3.1, 4.3.2: a reserved opcode (3, 11) frame in the middle of a
//     fragmented text message -> 1002.
func TestConformanceOpcodes(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		hello := ws.Text("Hello, world!")
		ping := ws.Ping([]byte("Hello, world!"))
		payload := []byte("reserved opcode payload")
		alone := func(op byte, p []byte) func(*testing.T, *ws.Client) {
			return func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Msg(op, p))
				c.ExpectFail(ws.CloseProtocolError)
			}
		}
		between := func(op byte, p []byte, chop bool) func(*testing.T, *ws.Client) {
			return func(t *testing.T, c *ws.Client) {
				b := ws.Concat(hello, ws.Msg(op, p), ping)
				if chop {
					_ = c.TryWriteChopped(b, 1)
				} else {
					c.Write(b)
				}
				c.ExpectText("Hello, world!")
				c.ExpectFail(ws.CloseProtocolError)
			}
		}
		midMessage := func(op byte) func(*testing.T, *ws.Client) {
			return func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Frag(ws.OpText, false, []byte("frag1")), ws.Msg(op, nil), ws.Frag(ws.OpContinuation, true, []byte("frag2")))
				c.ExpectFail(ws.CloseProtocolError)
			}
		}
		runScripts(t, tr, []scriptCase{
			{"4.1.1", "opcode 3, empty -> 1002", alone(3, nil)},
			{"4.1.2", "opcode 4 with payload -> 1002", alone(4, payload)},
			{"4.1.3", "text, opcode 5, ping -> echo, 1002", between(5, nil, false)},
			{"4.1.4", "text, opcode 6 with payload, ping -> echo, 1002", between(6, payload, false)},
			{"4.1.5", "text, opcode 7 with payload, ping in 1-byte writes -> echo, 1002", between(7, payload, true)},
			{"4.2.1", "opcode 11, empty -> 1002", alone(11, nil)},
			{"4.2.2", "opcode 12 with payload -> 1002", alone(12, payload)},
			{"4.2.3", "text, opcode 13, ping -> echo, 1002", between(13, nil, false)},
			{"4.2.4", "text, opcode 14 with payload, ping -> echo, 1002", between(14, payload, false)},
			{"4.2.5", "text, opcode 15 with payload, ping in 1-byte writes -> echo, 1002", between(15, payload, true)},
			{"4.3.1", "opcode 3 between text fragments -> 1002", midMessage(3)},
			{"4.3.2", "opcode 11 between text fragments -> 1002", midMessage(11)},
		})
	})
}
