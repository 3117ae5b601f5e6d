package conformance

import (
	"testing"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// delivery says how a case's byte stream is written.
type delivery int

const (
	oneWrite   delivery = iota // all frames in a single write
	frameWise                  // one write per frame
	octetWise                  // one write per byte
	frameWiseT                 // one write per frame, stop quietly at the first error
	octetWiseT                 // one write per byte, stop quietly at the first error
)

// tolerant returns the variant of how that stops quietly at the first write
// error, for streams the server may reject (and close) half-way.
func tolerant(how delivery) delivery {
	switch how {
	case frameWise:
		return frameWiseT
	case octetWise:
		return octetWiseT
	}
	return how
}

func deliver(c *ws.Client, how delivery, frames ...ws.Frame) {
	c.T.Helper()
	switch how {
	case oneWrite:
		c.WriteFrames(frames...)
	case frameWise:
		c.WriteFramewise(frames...)
	case frameWiseT:
		for _, f := range frames {
			if err := c.TryWrite(f.Bytes()); err != nil {
				return
			}
		}
	case octetWise:
		c.WriteChopped(ws.Concat(frames...), 1)
	case octetWiseT:
		_ = c.TryWriteChopped(ws.Concat(frames...), 1)
	}
}

// Group 5: fragmentation, Autobahn 5.1-5.20. A message sent in fragments
// comes back as one unfragmented frame; pings between fragments are
// answered at once; continuation frames without a message in progress, and
// a new data frame inside a message, fail the connection with 1002.
func TestConformanceFragmentation(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		f1, f2 := []byte("fragment1"), []byte("fragment2")
		frag := func(op byte, fin bool, p []byte) ws.Frame { return ws.Frag(op, fin, p) }
		twoFragments := func(how delivery) func(*testing.T, *ws.Client) {
			return func(t *testing.T, c *ws.Client) {
				deliver(c, how, frag(ws.OpText, false, f1), frag(ws.OpContinuation, true, f2))
				c.ExpectText("fragment1fragment2")
				c.CloseHandshake()
			}
		}
		pingBetween := func(how delivery) func(*testing.T, *ws.Client) {
			return func(t *testing.T, c *ws.Client) {
				deliver(c, how, frag(ws.OpText, false, f1), ws.Ping([]byte("pongme!")), frag(ws.OpContinuation, true, f2))
				c.ExpectPong([]byte("pongme!"))
				c.ExpectText("fragment1fragment2")
				c.CloseHandshake()
			}
		}
		strayContinuation := func(fin bool, how delivery) func(*testing.T, *ws.Client) {
			return func(t *testing.T, c *ws.Client) {
				deliver(c, tolerant(how), frag(ws.OpContinuation, fin, []byte("non-continuation payload")), ws.Text("Hello, world!"))
				c.ExpectFail(ws.CloseProtocolError)
			}
		}
		repeatedStray := func(fin bool) func(*testing.T, *ws.Client) {
			return func(t *testing.T, c *ws.Client) {
				var fs []ws.Frame
				for range 2 {
					fs = append(fs,
						frag(ws.OpContinuation, fin, []byte("fragment1")),
						frag(ws.OpText, false, []byte("fragment2")),
						frag(ws.OpContinuation, true, []byte("fragment3")))
				}
				c.WriteFrames(fs...)
				c.ExpectFail(ws.CloseProtocolError)
			}
		}
		fivePieces := func(how delivery) func(*testing.T, *ws.Client) {
			return func(t *testing.T, c *ws.Client) {
				// Autobahn waits 1 s after the first ping; instead we require
				// the first pong before sending the rest, which proves the ping
				// is answered while the message is still incomplete.
				deliver(c, how,
					frag(ws.OpText, false, []byte("fragment1")),
					frag(ws.OpContinuation, false, []byte("fragment2")),
					ws.Ping([]byte("pongme 1!")))
				c.ExpectPong([]byte("pongme 1!"))
				deliver(c, how,
					frag(ws.OpContinuation, false, []byte("fragment3")),
					frag(ws.OpContinuation, false, []byte("fragment4")),
					ws.Ping([]byte("pongme 2!")))
				c.ExpectPong([]byte("pongme 2!"))
				deliver(c, how, frag(ws.OpContinuation, true, []byte("fragment5")))
				c.ExpectText("fragment1fragment2fragment3fragment4fragment5")
				c.CloseHandshake()
			}
		}
		runScripts(t, tr, []scriptCase{
			{"5.1", "ping in 2 fragments -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(frag(ws.OpPing, false, f1), frag(ws.OpContinuation, true, f2))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"5.2", "pong in 2 fragments -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(frag(ws.OpPong, false, f1), frag(ws.OpContinuation, true, f2))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"5.3", "text in 2 fragments -> one echo", twoFragments(oneWrite)},
			{"5.4", "text in 2 fragments, one write per frame -> one echo", twoFragments(frameWise)},
			{"5.5", "text in 2 fragments, 1-byte writes -> one echo", twoFragments(octetWise)},
			{"5.6", "text in 2 fragments with a ping between -> pong, echo", pingBetween(oneWrite)},
			{"5.7", "same as 5.6, one write per frame", pingBetween(frameWise)},
			{"5.8", "same as 5.6, 1-byte writes", pingBetween(octetWise)},
			{"5.9", "continuation FIN=1 with no message in progress, then text -> 1002", strayContinuation(true, oneWrite)},
			{"5.10", "same as 5.9, one write per frame", strayContinuation(true, frameWise)},
			{"5.11", "same as 5.9, 1-byte writes", strayContinuation(true, octetWise)},
			{"5.12", "continuation FIN=0 with no message in progress, then text -> 1002", strayContinuation(false, oneWrite)},
			{"5.13", "same as 5.12, one write per frame", strayContinuation(false, frameWise)},
			{"5.14", "same as 5.12, 1-byte writes", strayContinuation(false, octetWise)},
			{"5.15", "text in 2 fragments, stray continuation FIN=0, text, one write -> echo, 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(
					frag(ws.OpText, false, []byte("fragment1")),
					frag(ws.OpContinuation, true, []byte("fragment2")),
					frag(ws.OpContinuation, false, []byte("fragment3")),
					frag(ws.OpText, true, []byte("fragment4")))
				c.ExpectText("fragment1fragment2")
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"5.16", "2x (stray continuation FIN=0, text in 2 fragments) -> 1002", repeatedStray(false)},
			{"5.17", "2x (stray continuation FIN=1, text in 2 fragments) -> 1002", repeatedStray(true)},
			{"5.18", "text FIN=0 followed by another text frame -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(frag(ws.OpText, false, f1), frag(ws.OpText, true, f2))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"5.19", "text in 5 fragments with 2 pings between, pongs awaited mid-message -> pong, pong, echo", fivePieces(oneWrite)},
			{"5.20", "same as 5.19, one write per frame", fivePieces(frameWise)},
		})
	})
}
