package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wsdproject/wsd/internal/wstest"
)

// gorillaDialer returns a dialer that never uses a proxy and dials through
// dial (a plain net.Dialer when nil).
func gorillaDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *websocket.Dialer {
	if dial == nil {
		dial = (&net.Dialer{Timeout: ioTimeout}).DialContext
	}
	return &websocket.Dialer{
		NetDialContext:   dial,
		HandshakeTimeout: ioTimeout,
	}
}

// dialGorilla connects or fails the test; the connection is closed at cleanup.
func dialGorilla(t *testing.T, d *websocket.Dialer, url string, h http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("gorilla dial %s: %v (HTTP status %d)", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c, resp
}

func gorillaWrite(t *testing.T, c *websocket.Conn, typ int, p []byte) {
	t.Helper()
	if err := c.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(typ, p); err != nil {
		t.Fatalf("write %d-byte message: %v", len(p), err)
	}
}

func gorillaRead(t *testing.T, c *websocket.Conn) (int, []byte) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	typ, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, p
}

func gorillaEcho(t *testing.T, c *websocket.Conn, typ int, p []byte) {
	t.Helper()
	gorillaWrite(t, c, typ, p)
	gotTyp, got := gorillaRead(t, c)
	if gotTyp != typ {
		t.Fatalf("echo has message type %d, want %d", gotTyp, typ)
	}
	if !bytes.Equal(got, p) {
		t.Fatalf("echo differs: got %d bytes %q..., want %d bytes %q...", len(got), truncate(got, 32), len(p), truncate(p, 32))
	}
}

// gorillaExpectClose reads until the peer's close frame and returns its code.
// It fails the test if anything other than a close frame ends the read.
func gorillaExpectClose(t *testing.T, c *websocket.Conn, timeout time.Duration) *websocket.CloseError {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	for {
		typ, p, err := c.ReadMessage()
		if err == nil {
			t.Fatalf("expected a close frame, got a message (type %d, %d bytes)", typ, len(p))
		}
		// gorilla reports an EOF without a close frame as a CloseError
		// with the reserved code 1006.
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
			return ce
		}
		t.Fatalf("expected a close frame, read failed with: %v", err)
	}
}

// gorillaExpectTCPClose asserts that the server closes the TCP connection
// (RFC 6455 7.1.1: after the close handshake the server closes it first).
func gorillaExpectTCPClose(t *testing.T, c *websocket.Conn) {
	t.Helper()
	nc := c.NetConn()
	if err := nc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var buf [64]byte
	n, err := nc.Read(buf[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server did not close the TCP connection within 5 s after the close handshake")
	}
	if n > 0 {
		t.Fatalf("server sent %d bytes after its close frame: %q", n, buf[:n])
	}
}

func TestGorillaEcho(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	cases := []struct {
		name    string
		typ     int
		payload []byte
	}{
		{"text", websocket.TextMessage, []byte("hello, wsd")},
		{"text-utf8", websocket.TextMessage, []byte("héllo wörld ✓ 𝄞 日本語")},
		{"binary", websocket.BinaryMessage, randomBytes(1, 4096)},
		{"binary-all-byte-values", websocket.BinaryMessage, allBytes},
		{"empty-text", websocket.TextMessage, []byte{}},
		{"empty-binary", websocket.BinaryMessage, []byte{}},
		// Payload lengths at the edges of the 7-bit, 16-bit and 64-bit
		// length encodings (RFC 6455 5.2).
		{"binary-125", websocket.BinaryMessage, randomBytes(2, 125)},
		{"binary-126", websocket.BinaryMessage, randomBytes(3, 126)},
		{"binary-65535", websocket.BinaryMessage, randomBytes(4, 65535)},
		{"binary-65536", websocket.BinaryMessage, randomBytes(5, 65536)},
		{"binary-1MiB", websocket.BinaryMessage, randomBytes(6, 1<<20)},
		{"text-1MiB", websocket.TextMessage, utf8Text(1 << 20)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), nil)
			gorillaEcho(t, c, tc.typ, tc.payload)
			// The connection still works after the message.
			gorillaEcho(t, c, websocket.TextMessage, []byte("after "+tc.name))
		})
	}
}

func TestGorillaManyMessagesInOrder(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), nil)

	const n = 100
	type msg struct {
		typ int
		p   []byte
	}
	msgs := make([]msg, n)
	for i := range msgs {
		if i%2 == 0 {
			msgs[i] = msg{websocket.TextMessage, []byte(fmt.Sprintf("message %03d %s", i, strings.Repeat("x", i*7)))}
		} else {
			msgs[i] = msg{websocket.BinaryMessage, append([]byte{byte(i)}, randomBytes(uint64(i), i*13)...)}
		}
	}
	// Write everything first, then read: the echoes must come back in order.
	for _, m := range msgs {
		gorillaWrite(t, c, m.typ, m.p)
	}
	for i, m := range msgs {
		typ, p := gorillaRead(t, c)
		if typ != m.typ || !bytes.Equal(p, m.p) {
			t.Fatalf("echo %d: got type %d %d bytes %q..., want type %d %d bytes %q...", i, typ, len(p), truncate(p, 20), m.typ, len(m.p), truncate(m.p, 20))
		}
	}
}

func TestGorillaFragmentedSend(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	cases := []struct {
		name    string
		typ     int
		op      byte
		payload []byte
	}{
		// 10 KiB of multi-byte UTF-8: 512-byte frames split code points
		// across frames, which is valid (RFC 6455 8.1 applies to the message).
		{"text", websocket.TextMessage, opText, utf8Text(10 << 10)},
		{"binary", websocket.BinaryMessage, opBinary, randomBytes(7, 10<<10)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			dialer := gorillaDialer(rec.DialContext)
			// gorilla sends a frame each time its write buffer fills.
			dialer.WriteBufferSize = 512
			c, _ := dialGorilla(t, dialer, echoURL(d), nil)
			if err := c.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
				t.Fatal(err)
			}
			w, err := c.NextWriter(tc.typ)
			if err != nil {
				t.Fatal(err)
			}
			// Several writes of uneven sizes.
			rest := tc.payload
			for i := 0; len(rest) > 0; i++ {
				k := min(len(rest), 300+i*211)
				if _, err := w.Write(rest[:k]); err != nil {
					t.Fatalf("write piece %d: %v", i, err)
				}
				rest = rest[k:]
			}
			if err := w.Close(); err != nil {
				t.Fatalf("close message writer: %v", err)
			}

			typ, got := gorillaRead(t, c)
			if typ != tc.typ || !bytes.Equal(got, tc.payload) {
				t.Fatalf("echo: type %d, %d bytes; want type %d, %d bytes (equal: %v)", typ, len(got), tc.typ, len(tc.payload), bytes.Equal(got, tc.payload))
			}

			rc := rec.only(t)
			sent := dataFrames(parseFrames(afterHTTPHead(t, rc.Written())))
			checkFragmented(t, sent, tc.op, tc.payload, 10)
			recv := dataFrames(parseFrames(afterHTTPHead(t, rc.Received())))
			checkSingleEchoFrame(t, recv, tc.op, tc.payload)
		})
	}
}

func TestGorillaPingPong(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	cases := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"app-data", "interop ping 42"},
		{"max-control-payload-125", strings.Repeat("p", 125)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), nil)
			pongs := make(chan string, 4)
			c.SetPongHandler(func(data string) error {
				pongs <- data
				return nil
			})
			msgs, readDone := gorillaReadLoop(c)
			if err := c.WriteControl(websocket.PingMessage, []byte(tc.data), time.Now().Add(ioTimeout)); err != nil {
				t.Fatalf("write ping: %v", err)
			}
			select {
			case got := <-pongs:
				if got != tc.data {
					t.Errorf("pong carries %q, want the ping's %q", got, tc.data)
				}
			case err := <-readDone:
				t.Fatalf("read failed before the pong arrived: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatalf("no pong within 5 s")
			}
			// Messages still flow, and there was exactly one pong for the ping
			// (it precedes the echo of a message sent after it).
			if err := c.WriteMessage(websocket.TextMessage, []byte("after ping")); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-msgs:
				if string(p) != "after ping" {
					t.Fatalf("echo %q, want %q", p, "after ping")
				}
			case err := <-readDone:
				t.Fatalf("read failed after the pong: %v", err)
			case <-time.After(ioTimeout):
				t.Fatalf("no echo after the ping")
			}
			select {
			case extra := <-pongs:
				t.Errorf("got a second pong %q for one ping", extra)
			default:
			}
			c.Close() // ends the reader goroutine
			<-readDone
		})
	}
}

func TestGorillaCloseCodes(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	cases := []struct {
		name   string
		code   int
		reason string
	}{
		{"1000-normal", websocket.CloseNormalClosure, ""},
		{"1000-with-reason", websocket.CloseNormalClosure, "bye"},
		{"4000-private", 4000, "private use"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), nil)
			gorillaEcho(t, c, websocket.TextMessage, []byte("before close"))
			// We start the handshake, so we must not answer the server's
			// close with another one.
			c.SetCloseHandler(func(int, string) error { return nil })
			msg := websocket.FormatCloseMessage(tc.code, tc.reason)
			if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(ioTimeout)); err != nil {
				t.Fatalf("write close: %v", err)
			}
			ce := gorillaExpectClose(t, c, ioTimeout)
			if ce.Code != tc.code {
				t.Fatalf("server's close frame has code %d (%q), want %d", ce.Code, ce.Text, tc.code)
			}
			gorillaExpectTCPClose(t, c)
		})
	}
}

func TestGorillaMessageTooBig(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo", "-max-message-size", "1024")
	cases := []struct {
		name     string
		size     int
		fragment bool // send with 512-byte frames
		tooBig   bool
	}{
		{"exactly-max-echoed", 1024, false, false},
		{"exactly-max-fragmented-echoed", 1024, true, false},
		{"max-plus-one", 1025, false, true},
		{"4KiB", 4096, false, true},
		{"fragmented-2KiB", 2048, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dialer := gorillaDialer(nil)
			if tc.fragment {
				dialer.WriteBufferSize = 512
			}
			c, _ := dialGorilla(t, dialer, echoURL(d), nil)
			p := randomBytes(uint64(tc.size), tc.size)
			if !tc.tooBig {
				gorillaEcho(t, c, websocket.BinaryMessage, p)
				return
			}
			gorillaWrite(t, c, websocket.BinaryMessage, p)
			ce := gorillaExpectClose(t, c, ioTimeout)
			if ce.Code != websocket.CloseMessageTooBig {
				t.Fatalf("server closed with %d (%q), want 1009", ce.Code, ce.Text)
			}
		})
	}
}

func TestGorillaSubprotocol(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo", "-subprotocols", "a,b")
	cases := []struct {
		name  string
		offer []string
		want  string
	}{
		{"server-preference-wins", []string{"b", "a"}, "a"},
		{"only-second-choice", []string{"b"}, "b"},
		{"only-first-choice", []string{"a"}, "a"},
		{"unknown-only", []string{"c"}, ""}, // RFC 6455 4.2.2: no header when none agreed
		{"none-offered", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dialer := gorillaDialer(nil)
			dialer.Subprotocols = tc.offer
			c, resp := dialGorilla(t, dialer, echoURL(d), nil)
			if got := c.Subprotocol(); got != tc.want {
				t.Fatalf("negotiated subprotocol %q, want %q (offered %q)", got, tc.want, tc.offer)
			}
			if vals := resp.Header.Values("Sec-WebSocket-Protocol"); tc.want == "" && len(vals) != 0 {
				t.Fatalf("server sent Sec-WebSocket-Protocol %q although none was agreed", vals)
			}
			gorillaEcho(t, c, websocket.TextMessage, []byte("with subprotocol "+tc.want))
		})
	}
}

func TestGorillaOrigin(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo", "-origins", "https://good.example")
	cases := []struct {
		origin  string
		allowed bool
	}{
		{"https://good.example", true},
		{"https://evil.example", false},
		{"http://good.example", false},               // other scheme, other origin
		{"https://good.example.evil.example", false}, // not a prefix match
		{"https://good.example:8443", false},         // other port, other origin
	}
	for _, tc := range cases {
		t.Run(tc.origin, func(t *testing.T) {
			h := http.Header{"Origin": {tc.origin}}
			if tc.allowed {
				c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), h)
				gorillaEcho(t, c, websocket.TextMessage, []byte("from "+tc.origin))
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			c, resp, err := gorillaDialer(nil).DialContext(ctx, echoURL(d), h)
			if err == nil {
				c.Close()
				t.Fatalf("handshake with Origin %s succeeded, want HTTP 403", tc.origin)
			}
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
				t.Fatalf("handshake with Origin %s failed with %v, want a bad handshake with HTTP 403", tc.origin, err)
			}
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("handshake with Origin %s got HTTP %d, want 403", tc.origin, resp.StatusCode)
			}
		})
	}
}

// gorillaReadLoop reads c in a goroutine (each read with a deadline), so that
// control-frame handlers run, and passes on data messages. The goroutine ends
// at the first read error, reported on done; closing c ends it.
func gorillaReadLoop(c *websocket.Conn) (msgs <-chan []byte, done <-chan error) {
	m := make(chan []byte, 16)
	e := make(chan error, 1)
	go func() {
		for {
			if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
				e <- err
				return
			}
			_, p, err := c.ReadMessage()
			if err != nil {
				e <- err
				return
			}
			select {
			case m <- p:
			default: // nobody listens for this many; drop
			}
		}
	}()
	return m, e
}

// gorillaCountPings installs a ping handler that answers with a pong (like
// gorilla's default) and reports each ping's payload on the returned channel.
func gorillaCountPings(c *websocket.Conn) <-chan string {
	pings := make(chan string, 64)
	c.SetPingHandler(func(data string) error {
		select {
		case pings <- data:
		default:
		}
		err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	})
	return pings
}

func TestGorillaServerPings(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo", "-ping-interval", "200ms")
	c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), nil)
	start := time.Now()
	pings := gorillaCountPings(c)
	msgs, readDone := gorillaReadLoop(c)
	select {
	case <-pings:
		t.Logf("first server ping after %v", time.Since(start).Round(time.Millisecond))
	case err := <-readDone:
		t.Fatalf("read failed before any server ping: %v", err)
	case <-time.After(time.Second):
		t.Fatalf("no server ping within 1 s with -ping-interval 200ms")
	}
	// The pongs we sent are accepted: the connection keeps working.
	time.Sleep(500 * time.Millisecond)
	if err := c.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-msgs:
		if string(p) != "still here" {
			t.Fatalf("echo %q, want %q", p, "still here")
		}
	case err := <-readDone:
		t.Fatalf("connection failed after answering server pings: %v", err)
	case <-time.After(ioTimeout):
		t.Fatalf("no echo")
	}
	t.Logf("%d server pings in %v", len(pings)+1, time.Since(start).Round(time.Millisecond))
	c.Close()
	<-readDone
}

func TestGorillaIdleTimeout(t *testing.T) {
	t.Parallel()

	t.Run("silent-client-closed", func(t *testing.T) {
		t.Parallel()
		d := wstest.StartDaemon(t, "-mode", "echo", "-ping-interval", "0", "-idle-timeout", "500ms")
		c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), nil)
		start := time.Now()
		if err := c.SetReadDeadline(start.Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.ReadMessage()
		elapsed := time.Since(start)
		if err == nil {
			t.Fatalf("silent client received a message")
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("server kept a silent client open for 5 s with -idle-timeout 500ms")
		}
		// The server says why: a close frame with 1001 (going away), not
		// just the end of the TCP stream (which gorilla reports as 1006).
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("silent client closed after %v with %v, want a close frame with 1001", elapsed.Round(time.Millisecond), err)
		}
		t.Logf("closed after %v with close code %d %q", elapsed.Round(time.Millisecond), ce.Code, ce.Text)
		// The idle clock starts at accept, slightly before our dial returns.
		if elapsed < 400*time.Millisecond || elapsed > 3*time.Second {
			t.Fatalf("silent client closed after %v, want about 500ms", elapsed)
		}
	})

	t.Run("active-client-kept", func(t *testing.T) {
		t.Parallel()
		d := wstest.StartDaemon(t, "-mode", "echo", "-ping-interval", "0", "-idle-timeout", "1s")
		c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), nil)
		// 3 s, three idle timeouts, sending every 100 ms: a loaded machine
		// may stretch a gap several times over and still stay under 1 s.
		for i := range 30 {
			gorillaEcho(t, c, websocket.TextMessage, []byte(fmt.Sprintf("tick %d", i)))
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("pongs-count-as-activity", func(t *testing.T) {
		t.Parallel()
		d := wstest.StartDaemon(t, "-mode", "echo", "-ping-interval", "200ms", "-idle-timeout", "1s")
		c, _ := dialGorilla(t, gorillaDialer(nil), echoURL(d), nil)
		pings := gorillaCountPings(c)
		// Read only (answering pings) for 2.5 s: the read must time out on our
		// deadline, not end because the server closed the connection.
		if err := c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.ReadMessage()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("client answering pings was disconnected: %v (after %d pings)", err, len(pings))
		}
		if len(pings) < 2 {
			t.Fatalf("only %d server pings in 2.5 s with -ping-interval 200ms", len(pings))
		}
		t.Logf("%d pings answered in 2.5 s", len(pings))
	})
}
