package interop

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
	gorilla "github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/internal/wstest"
)

// permessage-deflate (RFC 7692) between the wsd daemon and third-party
// clients. Each test records the wire (through the client's dialer, or a
// Proxy for the clients in other languages) and checks both sides: the
// answer the daemon gave, which messages the client sent compressed (so
// that the daemon had to inflate them, with the client's window if it uses
// context takeover), which ones the daemon sent compressed, byte for byte
// as codec.Compress makes them at its level, and that every echo is the
// message sent.

// Answers of the daemon to the usual offers.
const (
	answerNoTakeover = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	answerTakeover   = "permessage-deflate; server_no_context_takeover" // -compression-client-context-takeover
	// ... to an offer with client_max_window_bits: the server keeps a 4 KiB window.
	answerTakeoverWindow = answerTakeover + "; client_max_window_bits=12"
)

// deflateSizes are the sizes of the messages each client sends: from 16 B
// to 1 MiB, around the daemon's 256-byte threshold, and across 1<<10 for
// the windows of 10 bits.
var deflateSizes = []int{16, 200, 256, 1 << 10, 1<<10 + 1, 4 << 10, 64 << 10, 1 << 20}

// jsonRecords returns n bytes of JSON records (ASCII), cut at n: text that
// compresses like the messages of a real service.
func jsonRecords(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	events := []string{"trade", "quote", "cancel"}
	b := []byte("[")
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"id":%d,"user":"u%d","event":"%s","price":%.2f,"qty":%d,"ts":"2026-03-01T12:%02d:%02d.%03dZ"},`,
			1000+i, r.IntN(10000), events[r.IntN(3)], 50+r.Float64()*100, 1+r.IntN(99), i/60%60, i%60, r.IntN(1000))
	}
	return b[:n]
}

// binaryRecords returns n bytes of 16-byte records with slowly changing
// fields, binary data that compresses.
func binaryRecords(n int) []byte {
	b := make([]byte, 0, n+16)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "%04x", i)
		b = append(b, byte(i), byte(i>>8), 0, 0, 0x40, 0x59, byte(i%50), 0, 1, 2, 3, 4)
	}
	return b[:n]
}

// jsonDoc returns a JSON document of a little under n bytes: a publish of
// a push service, sequence number seq.
func jsonDoc(seq, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(seq), 2))
	symbols := []string{"ACME", "GLOBX", "INITECH", "UMBRL", "HOOLI", "WAYNE", "STARK", "TYRELL"}
	b := fmt.Appendf(nil, `{"seq":%d,"type":"quotes","items":[`, seq)
	for i := 0; ; i++ {
		item := fmt.Appendf(nil, `{"symbol":"%s","bid":%.2f,"ask":%.2f,"volume":%d,"ts":%d}`,
			symbols[r.IntN(len(symbols))], 10+r.Float64()*500, 10+r.Float64()*500, r.IntN(1000000), 1772366400000+int64(r.IntN(60000)))
		if len(b)+len(item)+3 > n {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, item...)
	}
	return append(b, "]}"...)
}

// deflateMsg is a message a test sends.
type deflateMsg struct {
	binary bool
	p      []byte
}

// deflateMessages returns, for each of deflateSizes, a text message of
// JSON records and a binary one of records, and up to 64 KiB a binary one
// of random bytes too (which does not compress: the daemon must send it as
// it is). They are made once; nothing may change them.
var deflateMessages = sync.OnceValue(func() []deflateMsg {
	var out []deflateMsg
	for _, n := range deflateSizes {
		out = append(out, deflateMsg{false, jsonRecords(n)}, deflateMsg{true, binaryRecords(n)})
		if n <= maxRandom {
			out = append(out, deflateMsg{true, randomBytes(uint64(n), n)})
		}
	}
	return out
})

// maxRandom is the largest message of random bytes the tests send.
const maxRandom = 64 << 10

// checkSentMsgs checks that the client sent want, as ups shows it.
func checkSentMsgs(t *testing.T, ups []WireMessage, want []deflateMsg) {
	t.Helper()
	if len(ups) != len(want) {
		t.Fatalf("%d messages from the client on the wire, want %d", len(ups), len(want))
	}
	for i, c := range ups {
		if !bytes.Equal(c.Payload, want[i].p) || (c.Op == ws.OpBinary) != want[i].binary {
			t.Fatalf("message %d: the client sent %d bytes of op %v, not the test's %d bytes", i, len(c.Payload), c.Op, len(want[i].p))
		}
	}
}

// wireAnswer returns the Sec-WebSocket-Extensions of the daemon's upgrade
// response at the start of down ("" if none).
func wireAnswer(t *testing.T, down []byte) string {
	t.Helper()
	a, err := Answer(down)
	if err != nil {
		t.Fatalf("reading the recorded upgrade response: %v", err)
	}
	return a
}

// checkAnswer fails the test unless the daemon answered want, as the
// client saw it (got) and on the wire.
func checkAnswer(t *testing.T, got, want string, down []byte) {
	t.Helper()
	if wire := wireAnswer(t, down); got != want || wire != want {
		t.Fatalf("Sec-WebSocket-Extensions: the client got %q (on the wire %q), want %q", got, wire, want)
	}
}

func TestDeflateGorilla(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		args   []string
		answer string
	}{
		{"default", nil, answerNoTakeover},
		// gorilla offers client_no_context_takeover: the answer keeps it.
		{"client-takeover-allowed", []string{"-compression-client-context-takeover"}, answerNoTakeover},
		{"compression-off", []string{"-compression=false"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := wstest.StartDaemon(t, append([]string{"-mode", "echo"}, tc.args...)...)
			rec := &recorder{}
			dialer := gorillaDialer(rec.DialContext)
			dialer.EnableCompression = true
			c, resp := dialGorilla(t, dialer, echoURL(d), nil)
			rc := rec.only(t)
			checkAnswer(t, resp.Header.Get("Sec-WebSocket-Extensions"), tc.answer, rc.Received())
			msgs := deflateMessages()
			for _, m := range msgs {
				typ := gorilla.TextMessage
				if m.binary {
					typ = gorilla.BinaryMessage
				}
				gorillaEcho(t, c, typ, m.p)
			}
			// gorilla compresses every message once it is negotiated.
			ups, _ := EchoWire{Off: tc.answer == "", ClientCompresses: func(int) bool { return true }}.Check(t, rc.Written(), rc.Received())
			checkSentMsgs(t, ups, msgs)
		})
	}
}

func TestDeflateCoder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		mode     websocket.CompressionMode
		answer   string
		takeover bool // the client compresses with context takeover
		min      int  // coder compresses messages of at least this many bytes
	}{
		{"no-context-takeover", nil, websocket.CompressionNoContextTakeover, answerNoTakeover, false, 512},
		// coder offers plain "permessage-deflate"; wsd allows the client's
		// context takeover only with the flag.
		{"context-takeover", []string{"-compression-client-context-takeover"}, websocket.CompressionContextTakeover, answerTakeover, true, 128},
		{"context-takeover-declined", nil, websocket.CompressionContextTakeover, answerNoTakeover, false, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := wstest.StartDaemon(t, append([]string{"-mode", "echo"}, tc.args...)...)
			rec := &recorder{}
			opts := coderOptions(rec.DialContext)
			opts.CompressionMode = tc.mode
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, echoURL(d), opts)
			if err != nil {
				t.Fatalf("coder dial: %v", err)
			}
			defer c.CloseNow()
			c.SetReadLimit(2 << 20)
			rc := rec.only(t)
			checkAnswer(t, resp.Header.Get("Sec-WebSocket-Extensions"), tc.answer, rc.Received())
			// The same document three times: with context takeover the
			// second and third refer to the first.
			doc := jsonDoc(1, 1024)
			msgs := slices.Clip(deflateMessages()) // appending copies
			for range 3 {
				msgs = append(msgs, deflateMsg{false, doc})
			}
			for _, m := range msgs {
				typ := websocket.MessageText
				if m.binary {
					typ = websocket.MessageBinary
				}
				if err := c.Write(ctx, typ, m.p); err != nil {
					t.Fatalf("write %d bytes: %v", len(m.p), err)
				}
				gotTyp, got, err := c.Read(ctx)
				if err != nil || gotTyp != typ || !bytes.Equal(got, m.p) {
					t.Fatalf("echo of %d bytes: %v, %d bytes, %v", len(m.p), gotTyp, len(got), err)
				}
			}
			ups, _ := EchoWire{ClientTakeover: tc.takeover, ClientCompresses: func(n int) bool { return n >= tc.min }}.Check(t, rc.Written(), rc.Received())
			checkSentMsgs(t, ups, msgs)
			first, again := ups[len(ups)-3].Bytes, ups[len(ups)-1].Bytes
			t.Logf("the %d-byte document: %d bytes on the wire the first time, %d the third", len(doc), first, again)
			if tc.takeover && again > first/4 {
				t.Errorf("with context takeover the repeated document took %d bytes on the wire, the first %d: the window is not used", again, first)
			}
			if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}

// wsflateConn is a client of gobwas/ws with its wsflate extension: every
// message it sends is compressed, and it inflates the compressed ones it
// gets.
type wsflateConn struct {
	conn   io.ReadWriter
	rd     wsutil.Reader
	ctl    wsutil.FrameHandlerFunc
	state  wsflate.MessageState // RSV1 of the message being read
	fr     *wsflate.Reader
	answer wsflate.Parameters
}

func dialWsflate(t *testing.T, rec *recorder, url string, offer wsflate.Parameters) *wsflateConn {
	t.Helper()
	d := ws.Dialer{Timeout: ioTimeout, NetDial: rec.DialContext}
	d.Extensions = append(d.Extensions, offer.Option())
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("gobwas dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsflateConn{conn: conn}
	if len(hs.Extensions) != 1 {
		t.Fatalf("%d extensions accepted, want permessage-deflate", len(hs.Extensions))
	}
	if err := c.answer.Parse(hs.Extensions[0]); err != nil {
		t.Fatalf("the answer's parameters: %v", err)
	}
	var src io.Reader = conn
	if br != nil {
		src = br
	}
	c.ctl = wsutil.ControlFrameHandler(conn, ws.StateClientSide)
	c.rd = wsutil.Reader{
		Source:         src,
		State:          ws.StateClientSide | ws.StateExtended,
		OnIntermediate: c.ctl,
		Extensions:     []wsutil.RecvExtension{&c.state},
	}
	c.fr = wsflate.NewReader(nil, func(r io.Reader) wsflate.Decompressor { return flate.NewReader(r) })
	return c
}

// write sends p compressed, in frames of at most 4 KiB (wsutil.Writer's
// buffer), RSV1 on the first.
func (c *wsflateConn) write(op ws.OpCode, p []byte) error {
	var st wsflate.MessageState
	st.SetCompressed(true)
	wr := wsutil.NewWriter(c.conn, ws.StateClientSide|ws.StateExtended, op)
	wr.SetExtensions(&st)
	fw := wsflate.NewWriter(wr, func(w io.Writer) wsflate.Compressor {
		f, _ := flate.NewWriter(w, flate.BestSpeed)
		return f
	})
	if _, err := fw.Write(p); err != nil {
		return err
	}
	if err := fw.Close(); err != nil {
		return err
	}
	return wr.Flush()
}

// read returns the next data message, inflated if it came compressed.
func (c *wsflateConn) read() (ws.OpCode, []byte, error) {
	for {
		h, err := c.rd.NextFrame()
		if err != nil {
			return 0, nil, err
		}
		if h.OpCode.IsControl() { // between messages: OnIntermediate sees only those within one
			if err := c.ctl(h, &c.rd); err != nil {
				return 0, nil, err
			}
			continue
		}
		var src io.Reader = &c.rd
		if c.state.IsCompressed() {
			c.fr.Reset(src)
			src = c.fr
		}
		p, err := io.ReadAll(src)
		return h.OpCode, p, err
	}
}

func TestDeflateGobwas(t *testing.T) {
	t.Parallel()
	bits10 := wsflate.DefaultParameters
	bits10.ServerMaxWindowBits = 10
	for _, tc := range []struct {
		name   string
		offer  wsflate.Parameters
		answer wsflate.Parameters
		bits   uint8
	}{
		{"no-context-takeover", wsflate.DefaultParameters, wsflate.DefaultParameters, 0},
		// The daemon echoes server_max_window_bits and sends compressed
		// only the messages that fit the window.
		{"server-max-window-bits-10", bits10, bits10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := wstest.StartDaemon(t, "-mode", "echo")
			rec := &recorder{}
			c := dialWsflate(t, rec, echoURL(d), tc.offer)
			if c.answer != tc.answer {
				t.Fatalf("the daemon answered %+v, want %+v", c.answer, tc.answer)
			}
			rc := rec.only(t)
			t.Logf("answer %q", wireAnswer(t, rc.Received()))
			msgs := deflateMessages()
			for _, m := range msgs {
				op := ws.OpText
				if m.binary {
					op = ws.OpBinary
				}
				if err := c.write(op, m.p); err != nil {
					t.Fatalf("write %d bytes: %v", len(m.p), err)
				}
				gotOp, got, err := c.read()
				if err != nil || gotOp != op || !bytes.Equal(got, m.p) {
					t.Fatalf("echo of %d bytes: %v, %d bytes, %v", len(m.p), gotOp, len(got), err)
				}
			}
			ups, _ := EchoWire{ServerBits: tc.bits, ClientCompresses: func(int) bool { return true }}.Check(t, rc.Written(), rc.Received())
			checkSentMsgs(t, ups, msgs)
		})
	}
}
