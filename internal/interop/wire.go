package interop

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"

	"github.com/wsdproject/wsd/codec"
)

// What a client and the daemon say on the wire, for the tests that must see
// it: a recording TCP proxy to put between a client that cannot be handed a
// net.Conn (Node, Python, a browser) and the daemon, a reader of the
// recorded bytes that gives back each message as sent, compressed or not
// (RFC 7692), and what it inflates to, and the check of an echo connection
// with permessage-deflate. The browser tests use them too.

// Proxy forwards the connections made to Addr to a target address,
// recording the bytes of each direction.
type Proxy struct {
	Addr   string // host:port for clients
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu    sync.Mutex
	taps  []*Tap
	conns []net.Conn
}

// Tap is the bytes of one proxied connection, each direction recorded
// before it is passed on: whatever one side has received is in the record.
type Tap struct {
	mu       sync.Mutex
	up, down bytes.Buffer // client to server, server to client
}

// Up returns a copy of the bytes the client sent so far.
func (t *Tap) Up() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.up.Bytes())
}

// Down returns a copy of the bytes the server sent so far.
func (t *Tap) Down() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.down.Bytes())
}

// StartProxy listens on a free loopback port and forwards every connection
// to target until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Taps returns the connections proxied so far, in the order they came.
func (p *Proxy) Taps() []*Tap {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Tap(nil), p.taps...)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		tap := new(Tap)
		p.mu.Lock()
		p.taps = append(p.taps, tap)
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(server, client, tap, &tap.up)
		go p.pipe(client, server, tap, &tap.down)
	}
}

// pipe copies src to dst, recording into rec, and passes the end of src on
// as a half close of dst.
func (p *Proxy) pipe(dst, src net.Conn, tap *Tap, rec *bytes.Buffer) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			tap.mu.Lock()
			rec.Write(buf[:n])
			tap.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// Answer returns the Sec-WebSocket-Extensions of the upgrade response at
// the start of down, the recorded bytes from the daemon ("" if it has
// none).
func Answer(down []byte) (string, error) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(down)), nil)
	if err != nil {
		return "", err
	}
	return strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ", "), nil
}

// WireMessage is one data message as it went over the wire.
type WireMessage struct {
	Op         ws.OpCode // OpText or OpBinary
	Compressed bool      // RSV1 on its first frame
	Frames     int
	Bytes      int    // on the wire: its frames, headers included
	Raw        []byte // the payload as sent, unmasked: compressed if Compressed
	Payload    []byte // the message: Raw, inflated if Compressed
}

// maxWindow is the largest LZ77 window of permessage-deflate, 2^15 bytes.
const maxWindow = 1 << 15

// ReadMessages reads the data messages of one direction of a recorded
// connection, b, which starts with the HTTP upgrade request or response;
// control frames are left out, and a frame not complete at the end of b
// ends the list. A compressed message is inflated on its own, or, with
// takeover (the sender uses context takeover), with the messages it
// compressed before as its window.
func ReadMessages(b []byte, takeover bool) ([]WireMessage, error) {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return nil, errors.New("no end of the HTTP head")
	}
	r := bytes.NewReader(b[i+4:])
	var (
		out    []WireMessage
		cur    *WireMessage
		window []byte
	)
	for r.Len() > 0 {
		start := r.Len()
		h, err := ws.ReadHeader(r)
		if err != nil || int64(r.Len()) < h.Length {
			break // the end of the record, mid-frame
		}
		p := make([]byte, h.Length)
		_, _ = io.ReadFull(r, p)
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		n := start - r.Len()
		switch {
		case h.OpCode.IsControl():
			continue
		case h.OpCode == ws.OpContinuation && cur == nil, h.OpCode != ws.OpContinuation && cur != nil:
			return out, fmt.Errorf("message %d: frame %v out of order", len(out), h.OpCode)
		case h.OpCode != ws.OpContinuation:
			cur = &WireMessage{Op: h.OpCode, Compressed: h.Rsv&0x4 != 0}
		case h.Rsv != 0:
			return out, fmt.Errorf("message %d: continuation frame with RSV bits %d", len(out), h.Rsv)
		}
		cur.Frames++
		cur.Bytes += n
		cur.Raw = append(cur.Raw, p...)
		if !h.Fin {
			continue
		}
		cur.Payload = cur.Raw
		if cur.Compressed {
			var dict []byte
			if takeover {
				dict = window
			}
			if cur.Payload, err = inflate(cur.Raw, dict); err != nil {
				return out, fmt.Errorf("message %d: %v", len(out), err)
			}
			if takeover {
				window = append(window, cur.Payload...)
				window = window[max(0, len(window)-maxWindow):]
			}
		}
		out = append(out, *cur)
		cur = nil
	}
	return out, nil
}

// deflateTail is the end of a sync flush, which RFC 7692 has the sender
// strip, and an empty final block.
var deflateTail = []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

// inflate decompresses one permessage-deflate message with the standard
// library's reader, dict being the window of earlier messages.
func inflate(p, dict []byte) ([]byte, error) {
	fr := flate.NewReaderDict(io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateTail)), dict)
	return io.ReadAll(fr)
}

// EchoWire is what a test expects on the wire of a connection to the echo
// daemon with permessage-deflate negotiated.
type EchoWire struct {
	Level      int   // the daemon's -compression-level; 0 means 1
	Threshold  int   // its -compression-threshold; 0 means 256
	ServerBits uint8 // server_max_window_bits of the answer; 0 means 15 (no limit)
	// ClientTakeover: the client compresses with context takeover.
	ClientTakeover bool
	// ClientCompresses reports whether the client sends a message of n
	// bytes compressed; nil leaves it unchecked.
	ClientCompresses func(n int) bool
	// Off: the daemon declined (-compression=false): nothing is compressed.
	Off bool
}

// ServerCompresses reports whether the daemon sends p compressed, and as
// what: at least the threshold, within the window, and smaller.
func (w EchoWire) ServerCompresses(p []byte) ([]byte, bool) {
	if w.Off || len(p) < orDefault(w.Threshold, 256) || w.ServerBits != 0 && w.ServerBits < 15 && len(p) > 1<<w.ServerBits {
		return nil, false
	}
	z := codec.Compress(nil, p, orDefault(w.Level, 1))
	return z, len(z) < len(p)
}

// orDefault returns v, or def if v is 0.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Check reads the messages of a recorded echo connection, up (client to
// daemon) and down, and checks each pair: the daemon sent back in one frame
// what the client sent (inflated on both sides), compressed exactly when
// ServerCompresses says, as codec.Compress makes it; and the client
// compressed what ClientCompresses says. It returns the messages of both
// sides.
func (w EchoWire) Check(t testing.TB, up, down []byte) (ups, downs []WireMessage) {
	t.Helper()
	ups, err := ReadMessages(up, w.ClientTakeover)
	if err != nil {
		t.Fatalf("client to daemon: %v", err)
	}
	downs, err = ReadMessages(down, false)
	if err != nil {
		t.Fatalf("daemon to client: %v", err)
	}
	if len(ups) != len(downs) {
		t.Fatalf("%d messages from the client, %d from the daemon", len(ups), len(downs))
	}
	var upZ, downZ, upBytes, downBytes, payload int
	for i, c := range ups {
		s := downs[i]
		what := fmt.Sprintf("message %d (%d bytes, op %v)", i, len(c.Payload), c.Op)
		if s.Op != c.Op || !bytes.Equal(s.Payload, c.Payload) || s.Frames != 1 {
			t.Fatalf("%s: the daemon sent %d frames of op %v, %d bytes inflated, want one frame echoing it", what, s.Frames, s.Op, len(s.Payload))
		}
		if w.ClientCompresses != nil && c.Compressed != (!w.Off && w.ClientCompresses(len(c.Payload))) {
			t.Errorf("%s: the client sent it compressed: %v, want %v", what, c.Compressed, !c.Compressed)
		}
		z, wantZ := w.ServerCompresses(c.Payload)
		switch {
		case s.Compressed != wantZ:
			t.Errorf("%s: the daemon sent it compressed: %v, want %v", what, s.Compressed, wantZ)
		case wantZ && !bytes.Equal(s.Raw, z):
			t.Errorf("%s: the daemon's %d compressed bytes are not codec.Compress's %d at level %d", what, len(s.Raw), len(z), orDefault(w.Level, 1))
		}
		if c.Compressed {
			upZ++
		}
		if s.Compressed {
			downZ++
		}
		upBytes, downBytes, payload = upBytes+c.Bytes, downBytes+s.Bytes, payload+len(c.Payload)
	}
	t.Logf("%d messages, %d payload bytes: the client sent %d compressed (%d bytes on the wire), the daemon %d (%d bytes)",
		len(ups), payload, upZ, upBytes, downZ, downBytes)
	return ups, downs
}
