package conformance

import (
	"fmt"
	"testing"
	"time"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// maxMessage is the daemon's default message size limit.
const maxMessage = 16 << 20

// bigTimeout is the read and write deadline for cases moving megabytes.
const bigTimeout = 30 * time.Second

// Group 9: limits and performance. These cases run one at a time.
//
//   - 9.1.1-9.1.6 / 9.2.1-9.2.6: text / binary message of 64 KiB, 256 KiB,
//     1 MiB, 4 MiB, 8 MiB, 16 MiB in one frame.
//   - 9.3.1-9.3.9 / 9.4.1-9.4.9: 4 MiB text / binary message in fragments
//     of 64 B, 256 B, 1 KiB, 4 KiB, 16 KiB, 64 KiB, 256 KiB, 1 MiB, 4 MiB.
//   - 9.5.1-9.5.6 / 9.6.1-9.6.6: 1 MiB text / binary message in one frame
//     written in chops of 64, 128, 256, 512, 1024, 2048 bytes.
//   - 9.7.1-9.7.6 / 9.8.1-9.8.6: 1000 text / binary messages of 0, 16, 64,
//     256, 1024, 4096 bytes, one round trip each.
//
// The text payloads mix 1- to 4-byte UTF-8 sequences, so fragment and chop
// boundaries fall inside code points.
//
// wsd additions (the 16 MiB limit):
//   - 9.9.1 / 9.9.2: a text / binary frame header announcing 16 MiB + 1;
//     close 1009 must come with no payload sent.
//   - 9.9.3: a 16 MiB binary fragment (FIN=0), then a continuation header
//     announcing 1 more byte -> 1009 before that byte is sent.
//   - 9.9.4: an 8 MiB binary fragment, then a continuation header
//     announcing 8 MiB + 1 -> 1009 before its payload is sent.
//   - 9.9.5: a 16 MiB text message in 4 fragments of 4 MiB -> one echo.
func TestConformanceLimits(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		type bigCase struct {
			id   string
			op   byte
			n    int // message size
			frag int // fragment size, 0 = one frame
			chop int // write size, 0 = one write
		}
		var cases []bigCase
		ops := []byte{ws.OpText, ws.OpBinary}
		for g, op := range ops {
			for i, n := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20} {
				cases = append(cases, bigCase{fmt.Sprintf("9.%d.%d", 1+g, i+1), op, n, 0, 0})
			}
		}
		for g, op := range ops {
			for i, fs := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
				cases = append(cases, bigCase{fmt.Sprintf("9.%d.%d", 3+g, i+1), op, 4 << 20, fs, 0})
			}
		}
		for g, op := range ops {
			for i, cs := range []int{64, 128, 256, 512, 1024, 2048} {
				cases = append(cases, bigCase{fmt.Sprintf("9.%d.%d", 5+g, i+1), op, 1 << 20, 0, cs})
			}
		}
		cases = append(cases, bigCase{"9.9.5", ws.OpText, 16 << 20, 4 << 20, 0})

		payloadFor := func(op byte, n int) []byte {
			if op == ws.OpText {
				return textPayload(n)
			}
			return binaryPayload(n)
		}
		for _, tc := range cases {
			t.Run(tc.id, func(t *testing.T) {
				t.Logf("%s message of %s, fragments %s, chops %s -> one echo", ws.OpcodeName(tc.op), fmtSize(tc.n), fmtSize(tc.frag), fmtSize(tc.chop))
				c := tr.open(t)
				c.Timeout = bigTimeout
				p := payloadFor(tc.op, tc.n)
				var b []byte
				if tc.frag > 0 {
					b = ws.Concat(ws.Fragments(tc.op, p, tc.frag)...)
				} else {
					b = ws.Msg(tc.op, p).Bytes()
				}
				start := time.Now()
				if tc.chop > 0 {
					c.WriteChopped(b, tc.chop)
				} else {
					c.Write(b)
				}
				c.ExpectMessage(tc.op, p)
				t.Logf("round trip %v", time.Since(start))
				c.Timeout = ws.DefaultTimeout
				c.CloseHandshake()
			})
		}

		for g, op := range ops {
			for i, n := range []int{0, 16, 64, 256, 1024, 4096} {
				t.Run(fmt.Sprintf("9.%d.%d", 7+g, i+1), func(t *testing.T) {
					t.Logf("1000 %s messages of %d bytes, one round trip each", ws.OpcodeName(op), n)
					c := tr.open(t)
					p := payloadFor(op, n)
					b := ws.Msg(op, p).Bytes()
					start := time.Now()
					for range 1000 {
						c.Write(b)
						c.ExpectMessage(op, p)
					}
					t.Logf("1000 round trips in %v", time.Since(start))
					c.CloseHandshake()
				})
			}
		}

		t.Run("9.9.1", func(t *testing.T) {
			t.Log("text frame header announcing 16 MiB + 1, no payload -> 1009")
			c := tr.open(t)
			c.Write(headerOnly(ws.OpText, true, maxMessage+1))
			c.ExpectFail(ws.CloseMessageTooBig)
		})
		t.Run("9.9.2", func(t *testing.T) {
			t.Log("binary frame header announcing 16 MiB + 1, no payload -> 1009")
			c := tr.open(t)
			c.Write(headerOnly(ws.OpBinary, true, maxMessage+1))
			c.ExpectFail(ws.CloseMessageTooBig)
		})
		t.Run("9.9.3", func(t *testing.T) {
			t.Log("16 MiB binary fragment, then continuation header announcing 1 byte -> 1009")
			c := tr.open(t)
			c.Timeout = bigTimeout
			c.WriteFrames(ws.Frag(ws.OpBinary, false, binaryPayload(maxMessage)))
			c.Write(headerOnly(ws.OpContinuation, true, 1))
			c.ExpectFail(ws.CloseMessageTooBig)
		})
		t.Run("9.9.4", func(t *testing.T) {
			t.Log("8 MiB binary fragment, then continuation header announcing 8 MiB + 1 -> 1009")
			c := tr.open(t)
			c.Timeout = bigTimeout
			c.WriteFrames(ws.Frag(ws.OpBinary, false, binaryPayload(maxMessage/2)))
			c.Write(headerOnly(ws.OpContinuation, true, maxMessage/2+1))
			c.ExpectFail(ws.CloseMessageTooBig)
		})
	})
}
