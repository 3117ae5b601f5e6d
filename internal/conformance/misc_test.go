package conformance

import (
	"testing"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// Group 10: miscellaneous. 10.1.1: a 65536-byte text message sent in
// fragments of 1300 bytes comes back as one unfragmented message.
//
// wsd addition: 10.1.2, the same with a binary message.
func TestConformanceMisc(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		runScripts(t, tr, []scriptCase{
			{"10.1.1", "65536-byte text in 1300-byte fragments -> one echo", func(t *testing.T, c *ws.Client) {
				p := repeatTo("*", 65536)
				c.WriteFrames(ws.Fragments(ws.OpText, p, 1300)...)
				c.ExpectMessage(ws.OpText, p)
				c.CloseHandshake()
			}},
			{"10.1.2", "65536-byte binary in 1300-byte fragments -> one echo", func(t *testing.T, c *ws.Client) {
				p := binaryPayload(65536)
				c.WriteFrames(ws.Fragments(ws.OpBinary, p, 1300)...)
				c.ExpectMessage(ws.OpBinary, p)
				c.CloseHandshake()
			}},
		})
	})
}
