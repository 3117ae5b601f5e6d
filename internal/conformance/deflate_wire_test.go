package conformance

import (
	"bytes"
	"compress/flate"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// wsd additions to group 12, on connections that negotiated
// permessage-deflate with Autobahn's default offer unless a case says
// otherwise.
//
//   - 12.9.1-12.9.8: hand-made compressed messages (rfc7692Examples): the
//     examples of RFC 7692 section 7.2.3 ("Hello" in one and in two frames,
//     in a stored block, with BFINAL set, in two deflate blocks), and empty
//     messages (0x00 of section 7.2.3.6, an empty fixed Huffman block, the
//     same with BFINAL) -> echo.
//   - 12.9.9-12.9.15: empty compressed binary; an empty first frame with
//     RSV1; 1-byte frames with a ping among them; multi-byte text in 7-byte
//     frames; compressed and plain messages alternating; ten compressed
//     messages in one write; a compressed frame in 1-byte writes.
//   - 12.10.1-12.10.13: RSV bits. RSV1 on a ping, pong or close; on a
//     continuation frame (with and without RSV1 on the first frame);
//     without permessage-deflate offered, or with the offer declined; RSV2,
//     RSV3 and combinations on a compressed message -> 1002.
//   - 12.10.14-12.10.23: compressed text that inflates to invalid UTF-8
//     (one frame, three frames, an incomplete code point at the end, after
//     a valid message); data that is not valid deflate (garbageDeflate);
//     a message that refers to the one before it, context takeover the
//     answer ruled out -> 1007.
//   - 12.11.1-12.11.8, on a daemon with -max-message-size 1MiB: 1 MiB of
//     zeros compressed, in one frame and in 1 KiB frames -> echo; 1 MiB + 1
//     of zeros (binary, text, in 1 KiB frames) and 512 MiB of zeros in
//     about 500 KiB -> 1009 within limitCloseWithin; 1 MiB of random bytes
//     compressed (stored blocks, so the compressed payload is a little over
//     1 MiB) and plain -> echo (the limit is on the message, which is the
//     inflated data).
//   - 12.11.9-12.11.10, on the shared daemon (16 MiB): 16 MiB of zeros
//     compressed -> echo; 16 MiB + 1 -> 1009.

// rfc7692Examples are compressed messages written by hand, each as its
// frames' payloads.
var rfc7692Examples = []struct {
	desc   string
	frames [][]byte
	want   string
}{
	{"RFC 7692 7.2.3.1: \"Hello\" in one frame", [][]byte{{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}}, "Hello"},
	{"RFC 7692 7.2.3.1: \"Hello\" in two frames", [][]byte{{0xf2, 0x48, 0xcd}, {0xc9, 0xc9, 0x07, 0x00}}, "Hello"},
	{"RFC 7692 7.2.3.3: \"Hello\" in a stored block", [][]byte{{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}}, "Hello"},
	{"RFC 7692 7.2.3.4: \"Hello\" with BFINAL set", [][]byte{{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}}, "Hello"},
	{"RFC 7692 7.2.3.5: \"Hello\" in two deflate blocks", [][]byte{{0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00}}, "Hello"},
	{"RFC 7692 7.2.3.6: empty message, 0x00", [][]byte{{0x00}}, ""},
	{"empty message, an empty fixed Huffman block", [][]byte{{0x02, 0x00}}, ""},
	{"empty message, an empty fixed Huffman block with BFINAL", [][]byte{{0x03, 0x00}}, ""},
}

// garbageDeflate are compressed payloads that are not valid deflate data
// for a receiver without a preset window.
var garbageDeflate = []struct {
	desc string
	z    []byte
}{
	{"block type 3 (reserved)", []byte{0xff, 0xff, 0xff, 0xff}},
	{"stored block whose LEN and NLEN do not match", []byte{0x00, 0x05, 0x00, 0x00, 0x00, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}},
	{"stored block of 10 bytes with 2 sent", []byte{0x00, 0x0a, 0x00, 0xf5, 0xff, 0x48, 0x65}},
	{"dynamic block without any code", []byte{0x05, 0x00, 0x00, 0x00}},
	{"a back-reference to before the message", deflateWithDict([]byte("Hello, world"), flate.BestCompression, []byte("Hello, world"))},
}

// limitCloseWithin is how soon the server must answer a message that
// inflates past its limit.
const limitCloseWithin = time.Second

// zeroBomb returns n zero bytes compressed: 1 MiB of zeros compressed and
// sync-flushed (about 1 KiB), repeated, then the rest, without the final
// 00 00 ff ff.
func zeroBomb(n int) []byte {
	const chunk = 1 << 20
	full := zeroChunk()
	var z []byte
	for ; n >= chunk; n -= chunk {
		z = append(z, full...)
	}
	return append(z, deflateMessage(make([]byte, n), flate.BestCompression)...)
}

var zeroChunk = sync.OnceValue(func() []byte {
	return append(deflateMessage(make([]byte, 1<<20), flate.BestCompression), syncTail...)
})

// deflateScript is a case on a connection that offered permessage-deflate.
type deflateScript struct {
	id   string
	desc string
	run  func(t *testing.T, d *deflateConn)
}

// runDeflateScripts runs each case as a parallel subtest on a fresh
// connection over tr to s (the shared daemon if nil) that offered
// Autobahn's default offer and got wsd's answer.
func runDeflateScripts(t *testing.T, tr *transport, s *server, cases []deflateScript) {
	t.Helper()
	for i, tc := range cases {
		if slices.ContainsFunc(cases[:i], func(o deflateScript) bool { return o.id == tc.id }) {
			t.Fatalf("duplicate case id %s", tc.id)
		}
		t.Run(tc.id, func(t *testing.T) {
			parallel(t)
			t.Log(tc.desc)
			var c *ws.Client
			if s == nil {
				c = tr.dial(t)
			} else {
				c = tr.dialAddr(t, s.addr(tr))
			}
			d := upgradeDeflate(c, deflateOffer12)
			d.expectAnswer(answerBase)
			tc.run(t, d)
		})
	}
}

// inOneWrite returns a case that sends n messages of op, message(i)
// encoded as encode(i, message(i)), all in one write, and expects their
// echoes in order.
func inOneWrite(op byte, n int, message func(i int) []byte, encode func(i int, p []byte) []ws.Frame) func(*testing.T, *deflateConn) {
	return func(t *testing.T, d *deflateConn) {
		var fs []ws.Frame
		want := make([][]byte, n)
		for i := range want {
			want[i] = message(i)
			fs = append(fs, encode(i, want[i])...)
		}
		d.WriteFrames(fs...)
		for _, p := range want {
			d.expectMessage(op, p)
		}
		d.CloseHandshake()
	}
}

// compressedText returns a text message frame carrying s compressed.
func compressedText(s string) ws.Frame {
	return compressedFrames(ws.OpText, deflateMessage([]byte(s), flate.BestSpeed), 0)[0]
}

func TestConformanceDeflateWire(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		var cases []deflateScript
		for i, ex := range rfc7692Examples {
			cases = append(cases, deflateScript{fmt.Sprintf("12.9.%d", i+1), ex.desc + " -> echo", func(t *testing.T, d *deflateConn) {
				fs := make([]ws.Frame, len(ex.frames))
				for k, p := range ex.frames {
					fs[k] = ws.Frag(ws.OpContinuation, k == len(ex.frames)-1, p)
				}
				fs[0].Opcode, fs[0].Rsv = ws.OpText, ws.Rsv1
				d.WriteFrames(fs...)
				d.expectMessage(ws.OpText, []byte(ex.want))
				d.CloseHandshake()
			}})
		}
		json := deflateSets()[0]
		cases = append(cases,
			deflateScript{"12.9.9", "empty binary message compressed (0x00) -> empty echo", func(t *testing.T, d *deflateConn) {
				d.WriteFrames(compressedFrames(ws.OpBinary, []byte{0x00}, 0)...)
				d.expectMessage(ws.OpBinary, []byte{})
				d.CloseHandshake()
			}},
			deflateScript{"12.9.10", "compressed text: empty first frame with RSV1, the data, an empty final frame -> echo", func(t *testing.T, d *deflateConn) {
				p := json.message(2000, 1)
				d.WriteFrames(
					ws.Frame{Opcode: ws.OpText, Rsv: ws.Rsv1},
					ws.Frag(ws.OpContinuation, false, deflateMessage(p, flate.BestSpeed)),
					ws.Frag(ws.OpContinuation, true, nil))
				d.expectMessage(ws.OpText, p)
				d.CloseHandshake()
			}},
			deflateScript{"12.9.11", "compressed 4 KiB text in 1-byte frames, a ping after the tenth -> pong, echo", func(t *testing.T, d *deflateConn) {
				p := json.message(4096, 2)
				fs := compressedFrames(ws.OpText, deflateMessage(p, flate.DefaultCompression), 1)
				fs = append(fs[:10:10], append([]ws.Frame{ws.Ping([]byte("mid-message"))}, fs[10:]...)...)
				d.WriteFrames(fs...)
				d.ExpectPong([]byte("mid-message"))
				d.expectMessage(ws.OpText, p)
				d.CloseHandshake()
			}},
			deflateScript{"12.9.12", "compressed multi-byte text in 7-byte frames -> echo", func(t *testing.T, d *deflateConn) {
				p := textPayload(3000)
				d.WriteFrames(compressedFrames(ws.OpText, deflateMessage(p, flate.HuffmanOnly), 7)...)
				d.expectMessage(ws.OpText, p)
				d.CloseHandshake()
			}},
			deflateScript{"12.9.13", "compressed, plain, compressed, plain messages in one write -> four echoes",
				inOneWrite(ws.OpText, 4, func(i int) []byte { return json.message(700, i) }, func(i int, p []byte) []ws.Frame {
					if i%2 == 1 {
						return []ws.Frame{ws.Msg(ws.OpText, p)}
					}
					return compressedFrames(ws.OpText, deflateMessage(p, flate.BestSpeed), 0)
				})},
			deflateScript{"12.9.14", "ten compressed binary messages of 100 B to 50 KiB in one write -> ten echoes",
				inOneWrite(ws.OpBinary, 10, func(i int) []byte { return deflateSets()[1].message(100+i*5000, i) }, func(i int, p []byte) []ws.Frame {
					return compressedFrames(ws.OpBinary, deflateMessage(p, deflateLevels[i%len(deflateLevels)]), 0)
				})},
			deflateScript{"12.9.15", "compressed 2 KiB text frame in 1-byte writes -> echo", func(t *testing.T, d *deflateConn) {
				p := json.message(2048, 3)
				d.WriteChopped(ws.Concat(compressedFrames(ws.OpText, deflateMessage(p, flate.BestSpeed), 0)...), 1)
				d.expectMessage(ws.OpText, p)
				d.CloseHandshake()
			}},
		)

		hello := compressedText("Hello, world!")
		rsvFail := func(frames ...ws.Frame) func(*testing.T, *deflateConn) {
			return func(t *testing.T, d *deflateConn) {
				d.WriteFrames(frames...)
				d.ExpectFail(ws.CloseProtocolError)
			}
		}
		z := deflateMessage(json.message(1000, 4), flate.BestSpeed)
		first, second := ws.Frag(ws.OpText, false, z[:len(z)/2]), ws.Frag(ws.OpContinuation, true, z[len(z)/2:])
		cases = append(cases,
			deflateScript{"12.10.1", "compressed text, ping with RSV1, in one write -> echo, 1002", func(t *testing.T, d *deflateConn) {
				d.WriteFrames(hello, withRsv(ws.Ping([]byte("rsv1")), ws.Rsv1))
				d.expectMessage(ws.OpText, []byte("Hello, world!"))
				d.ExpectFail(ws.CloseProtocolError)
			}},
			deflateScript{"12.10.2", "pong with RSV1 -> 1002", rsvFail(withRsv(ws.Pong([]byte("rsv1")), ws.Rsv1))},
			deflateScript{"12.10.3", "close 1000 with RSV1 -> 1002", rsvFail(withRsv(ws.Close(ws.CloseNormal, ""), ws.Rsv1))},
			deflateScript{"12.10.4", "compressed text in 2 frames, RSV1 on both -> 1002", rsvFail(withRsv(first, ws.Rsv1), withRsv(second, ws.Rsv1))},
			deflateScript{"12.10.5", "plain text in 2 frames, RSV1 on the continuation -> 1002",
				rsvFail(ws.Frag(ws.OpText, false, []byte("plain ")), withRsv(ws.Frag(ws.OpContinuation, true, []byte("text")), ws.Rsv1))},
		)
		for i, rsv := range []byte{ws.Rsv2, ws.Rsv3, ws.Rsv1 | ws.Rsv2, ws.Rsv1 | ws.Rsv3, ws.Rsv1 | ws.Rsv2 | ws.Rsv3} {
			cases = append(cases, deflateScript{fmt.Sprintf("12.10.%d", 8+i), fmt.Sprintf("compressed text with RSV=%d -> 1002", rsv), rsvFail(withRsv(hello, rsv))})
		}
		cases = append(cases,
			deflateScript{"12.10.13", "compressed text in 2 frames, RSV2 on the continuation -> 1002", rsvFail(withRsv(first, ws.Rsv1), withRsv(second, ws.Rsv2))},
		)

		invalid := []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")
		fails1007 := func(frames ...ws.Frame) func(*testing.T, *deflateConn) {
			return func(t *testing.T, d *deflateConn) {
				d.WriteFrames(frames...)
				d.ExpectFail(ws.CloseInvalidPayload)
			}
		}
		zi := deflateMessage(bytes.Repeat(invalid, 20), flate.DefaultCompression)
		cases = append(cases,
			deflateScript{"12.10.14", "compressed text inflating to invalid UTF-8 (a surrogate) -> 1007", fails1007(compressedFrames(ws.OpText, zi, 0)...)},
			deflateScript{"12.10.15", "same, in 3 frames -> 1007", fails1007(compressedFrames(ws.OpText, zi, len(zi)/3+1)...)},
			deflateScript{"12.10.16", "compressed text ending with the first byte of a 3-byte code point -> 1007",
				fails1007(compressedFrames(ws.OpText, deflateMessage(append(textPayload(500), 0xe2), flate.BestSpeed), 0)...)},
			deflateScript{"12.10.17", "compressed valid text, then compressed text inflating to invalid UTF-8 -> echo, 1007", func(t *testing.T, d *deflateConn) {
				d.WriteFrames(hello, compressedFrames(ws.OpText, zi, 0)[0])
				d.expectMessage(ws.OpText, []byte("Hello, world!"))
				d.ExpectFail(ws.CloseInvalidPayload)
			}},
		)
		for i, g := range garbageDeflate {
			op := []byte{ws.OpBinary, ws.OpText}[i%2]
			cases = append(cases, deflateScript{fmt.Sprintf("12.10.%d", 18+i), fmt.Sprintf("compressed %s message: %s -> 1007", ws.OpcodeName(op), g.desc),
				fails1007(compressedFrames(op, g.z, 0)...)})
		}
		cases = append(cases, deflateScript{"12.10.23", "compressed text, then one compressed with the first as its window (client context takeover, which the answer ruled out) -> echo, 1007", func(t *testing.T, d *deflateConn) {
			p := json.message(600, 5)
			d.WriteFrames(compressedFrames(ws.OpText, deflateMessage(p, flate.BestSpeed), 0)...)
			d.expectMessage(ws.OpText, p)
			z := deflateWithDict(p, flate.BestCompression, p)
			if _, err := walkDeflate(append(z, syncTail...)); err == nil {
				t.Fatal("the second message does not refer to the first")
			}
			d.WriteFrames(compressedFrames(ws.OpText, z, 0)...)
			d.ExpectFail(ws.CloseInvalidPayload)
		}})
		runDeflateScripts(t, tr, nil, cases)

		// RSV1 where permessage-deflate is not in use: the cases of their own
		// handshake.
		runScripts(t, tr, []scriptCase{
			{"12.10.6", "no extension offered, compressed text with RSV1 -> 1002", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(hello)
				c.ExpectFail(ws.CloseProtocolError)
			}},
		})
		t.Run("12.10.7", func(t *testing.T) {
			parallel(t)
			t.Log("offer declined (unknown parameter), compressed binary with RSV1 -> 1002")
			d := openDeflate(t, tr, "permessage-deflate; x-unknown")
			d.expectAnswer("")
			d.WriteFrames(compressedFrames(ws.OpBinary, deflateMessage([]byte("declined"), flate.BestSpeed), 0)...)
			d.ExpectFail(ws.CloseProtocolError)
		})
	})
}

func TestConformanceDeflateLimits(t *testing.T) {
	daemon1M := startServer(t, "-mode", "echo", "-max-message-size", "1MiB")
	eachTransport(t, func(t *testing.T, tr *transport) {
		const limit = 1 << 20
		zeros := make([]byte, limit)
		random := binaryPayload(limit)
		closesPromptly := func(frames ...ws.Frame) func(*testing.T, *deflateConn) {
			return func(t *testing.T, d *deflateConn) {
				b := ws.Concat(frames...)
				d.Write(b)
				start := time.Now()
				d.ExpectClose(ws.CloseMessageTooBig)
				took := time.Since(start)
				d.ExpectTCPClosed()
				t.Logf("%d bytes sent; close 1009 %v after the write", len(b), took)
				if took > limitCloseWithin {
					t.Fatalf("close 1009 came %v after the message, want within %v", took, limitCloseWithin)
				}
			}
		}
		echoes := func(op byte, p []byte, frames ...ws.Frame) func(*testing.T, *deflateConn) {
			return func(t *testing.T, d *deflateConn) {
				d.Timeout = bigTimeout
				d.WriteFrames(frames...)
				d.expectMessage(op, p)
				d.CloseHandshake()
			}
		}
		runDeflateScripts(t, tr, daemon1M, []deflateScript{
			{"12.11.1", "1 MiB of zeros compressed, binary -> echo", echoes(ws.OpBinary, zeros, compressedFrames(ws.OpBinary, zeroBomb(limit), 0)...)},
			{"12.11.2", "1 MiB of zeros compressed, text in 1 KiB frames -> echo", echoes(ws.OpText, zeros, compressedFrames(ws.OpText, zeroBomb(limit), 1024)...)},
			{"12.11.3", "1 MiB + 1 of zeros compressed, binary -> 1009 at once", closesPromptly(compressedFrames(ws.OpBinary, zeroBomb(limit+1), 0)...)},
			{"12.11.4", "1 MiB + 1 of zeros compressed, text -> 1009 at once", closesPromptly(compressedFrames(ws.OpText, zeroBomb(limit+1), 0)...)},
			{"12.11.5", "1 MiB + 1 of zeros compressed, binary in 1 KiB frames -> 1009 at once", closesPromptly(compressedFrames(ws.OpBinary, zeroBomb(limit+1), 1024)...)},
			{"12.11.6", "512 MiB of zeros compressed (about 500 KiB), binary -> 1009 at once", closesPromptly(compressedFrames(ws.OpBinary, zeroBomb(512<<20), 0)...)},
			{"12.11.7", "1 MiB of random bytes compressed in stored blocks (a little over 1 MiB on the wire) -> echo",
				echoes(ws.OpBinary, random, compressedFrames(ws.OpBinary, deflateMessage(random, flate.NoCompression), 0)...)},
			{"12.11.8", "1 MiB of random bytes, plain -> echo", echoes(ws.OpBinary, random, ws.Binary(random))},
		})
		t.Cleanup(func() {
			if daemon1M.Exited() {
				t.Errorf("wsd -max-message-size 1MiB exited during the cases; output:\n%s", tail(daemon1M.Output(), 4096))
			}
		})

		bigZeros := make([]byte, maxMessage)
		runDeflateScripts(t, tr, nil, []deflateScript{
			{"12.11.9", "16 MiB of zeros compressed, binary -> echo", echoes(ws.OpBinary, bigZeros, compressedFrames(ws.OpBinary, zeroBomb(maxMessage), 0)...)},
			{"12.11.10", "16 MiB + 1 of zeros compressed, binary -> 1009 at once", closesPromptly(compressedFrames(ws.OpBinary, zeroBomb(maxMessage+1), 0)...)},
		})
	})
}
