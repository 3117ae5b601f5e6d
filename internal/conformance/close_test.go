package conformance

import (
	"fmt"
	"strings"
	"testing"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// Group 7: close handling.
//
//   - 7.1.1-7.1.6: after a close frame the server sends only its own close
//     and ignores whatever follows in the same write.
//   - 7.3.1-7.3.6: close payload sizes 0, 1 (-> 1002), 2, with reason,
//     123-byte reason, 124-byte reason (payload 126 -> 1002).
//   - 7.5.1: invalid UTF-8 reason -> 1007.
//   - 7.7.1-7.7.13: valid codes are echoed in the server's close.
//   - 7.9.1-7.9.9: invalid codes -> 1002.
//   - 7.13.1, 7.13.2: codes 5000 and 65535 -> 1002.
//
// wsd additions:
//   - 7.3.7: close frame with FIN=0 -> 1002.
//   - 7.7.14-7.7.16: codes 1012, 1013, 1014 (valid, echoed).
//   - 7.9.10: code 1015 -> 1002.
func TestConformanceClose(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		closeN := ws.Close(ws.CloseNormal, "")
		cases := []scriptCase{
			{"7.1.1", "text then close in one write -> echo, close 1000", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Text("Hello World!"), closeN)
				c.ExpectText("Hello World!")
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.1.2", "two close frames in one write -> one close 1000", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(closeN, closeN)
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.1.3", "close then ping in one write -> close 1000, no pong", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(closeN, ws.Ping([]byte("Hello World!")))
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.1.4", "close then text in one write -> close 1000, no echo", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(closeN, ws.Text("Hello World!"))
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.1.5", "text fragment, close, final fragment in one write -> close 1000 only", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Frag(ws.OpText, false, []byte("fragment1")), closeN, ws.Frag(ws.OpContinuation, true, []byte("fragment2")))
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.1.6", "256 KiB text, small text, close, ping in one write -> both echoes, close 1000", func(t *testing.T, c *ws.Client) {
				big := repeatTo("BAsd7&jh23", 256<<10)
				c.WriteFrames(ws.Msg(ws.OpText, big), ws.Text("Hello World!"), closeN, ws.Ping(nil))
				c.ExpectMessage(ws.OpText, big)
				c.ExpectText("Hello World!")
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.3.1", "close with empty payload -> close 1000", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Msg(ws.OpClose, nil))
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.3.2", "close with 1-byte payload -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Msg(ws.OpClose, []byte("a")))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"7.3.3", "close 1000 without reason -> close 1000", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(closeN)
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.3.4", "close 1000 with reason -> close 1000", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Close(ws.CloseNormal, "Hello World!"))
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.3.5", "close 1000 with 123-byte reason (payload 125) -> close 1000", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Close(ws.CloseNormal, strings.Repeat("*", 123)))
				c.ExpectClose(ws.CloseNormal)
				c.ExpectTCPClosed()
			}},
			{"7.3.6", "close 1000 with 124-byte reason (payload 126) -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Close(ws.CloseNormal, strings.Repeat("*", 124)))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"7.3.7", "close 1000 with FIN=0 -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Frag(ws.OpClose, false, ws.ClosePayload(ws.CloseNormal, "")))
				c.ExpectFail(ws.CloseProtocolError)
			}},
			{"7.5.1", "close 1000 with invalid UTF-8 reason -> 1007", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Close(ws.CloseNormal, kosme+"\xed\xa0\x80edited"))
				c.ExpectFail(ws.CloseInvalidPayload)
			}},
		}
		valid := []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999, 1012, 1013, 1014}
		for i, code := range valid {
			cases = append(cases, scriptCase{fmt.Sprintf("7.7.%d", i+1), fmt.Sprintf("close %d -> close %d", code, code), func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Close(uint16(code), ""))
				c.ExpectClose(code)
				c.ExpectTCPClosed()
			}})
		}
		invalid := []int{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 1015}
		for i, code := range invalid {
			cases = append(cases, scriptCase{fmt.Sprintf("7.9.%d", i+1), fmt.Sprintf("close %d -> 1002", code), func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Close(uint16(code), ""))
				c.ExpectFail(ws.CloseProtocolError)
			}})
		}
		for i, code := range []int{5000, 65535} {
			cases = append(cases, scriptCase{fmt.Sprintf("7.13.%d", i+1), fmt.Sprintf("close %d -> 1002", code), func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Close(uint16(code), ""))
				c.ExpectFail(ws.CloseProtocolError)
			}})
		}
		runScripts(t, tr, cases)
	})
}
