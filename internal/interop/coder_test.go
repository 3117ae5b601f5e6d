package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsdproject/wsd/internal/wstest"
)

// coderOptions returns dial options whose HTTP client dials through dial (a
// plain net.Dialer when nil) and never uses a proxy.
func coderOptions(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *websocket.DialOptions {
	if dial == nil {
		dial = (&net.Dialer{Timeout: ioTimeout}).DialContext
	}
	return &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{
			Proxy:       nil,
			DialContext: dial,
		}},
		CompressionMode: websocket.CompressionDisabled,
	}
}

func dialCoder(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("coder dial %s: %v (HTTP status %d)", url, err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func coderEcho(t *testing.T, c *websocket.Conn, typ websocket.MessageType, p []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := c.Write(ctx, typ, p); err != nil {
		t.Fatalf("write %d bytes: %v", len(p), err)
	}
	gotTyp, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if gotTyp != typ || !bytes.Equal(got, p) {
		t.Fatalf("echo: %v %d bytes %q..., want %v %d bytes %q...", gotTyp, len(got), truncate(got, 32), typ, len(p), truncate(p, 32))
	}
}

func TestCoderEcho(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	cases := []struct {
		name    string
		typ     websocket.MessageType
		payload []byte
	}{
		{"text", websocket.MessageText, []byte("hello from coder/websocket ✓")},
		{"binary", websocket.MessageBinary, randomBytes(11, 3000)},
		{"empty-text", websocket.MessageText, []byte{}},
		{"binary-1MiB", websocket.MessageBinary, randomBytes(12, 1<<20)},
		{"text-1MiB", websocket.MessageText, utf8Text(1 << 20)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialCoder(t, echoURL(d), coderOptions(nil))
			c.SetReadLimit(2 << 20)
			coderEcho(t, c, tc.typ, tc.payload)
			coderEcho(t, c, websocket.MessageText, []byte("after "+tc.name))
		})
	}
}

func TestCoderFragmentedWriter(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	cases := []struct {
		name    string
		typ     websocket.MessageType
		op      byte
		payload []byte
		pieces  []int // sizes of the Write calls; each becomes one frame
	}{
		{"text-3-pieces", websocket.MessageText, opText, []byte("one|two|three"), []int{4, 4, 5}},
		// Pieces that split 2-, 3- and 4-byte UTF-8 sequences.
		{"text-split-code-points", websocket.MessageText, opText, []byte("é✓𝄞日"), []int{1, 2, 2, 3, 1, 3}},
		{"binary-64KiB-in-7-pieces", websocket.MessageBinary, opBinary, randomBytes(13, 64<<10), []int{1, 125, 126, 65535 - 4096, 1000, 2000, 65536 - 1 - 125 - 126 - (65535 - 4096) - 3000}},
		{"binary-with-empty-piece", websocket.MessageBinary, opBinary, []byte{1, 2, 3, 4}, []int{2, 0, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			total := 0
			for _, n := range tc.pieces {
				total += n
			}
			if total != len(tc.payload) {
				t.Fatalf("bad test case: pieces add up to %d, payload has %d bytes", total, len(tc.payload))
			}
			rec := &recorder{}
			c := dialCoder(t, echoURL(d), coderOptions(rec.DialContext))
			c.SetReadLimit(1 << 20)
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			w, err := c.Writer(ctx, tc.typ)
			if err != nil {
				t.Fatal(err)
			}
			rest := tc.payload
			for i, n := range tc.pieces {
				if _, err := w.Write(rest[:n]); err != nil {
					t.Fatalf("write piece %d: %v", i, err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatalf("close writer: %v", err)
			}
			typ, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if typ != tc.typ || !bytes.Equal(got, tc.payload) {
				t.Fatalf("echo: %v %d bytes, want %v %d bytes (equal: %v)", typ, len(got), tc.typ, len(tc.payload), bytes.Equal(got, tc.payload))
			}
			rc := rec.only(t)
			sent := dataFrames(parseFrames(afterHTTPHead(t, rc.Written())))
			// coder sends one frame per Write, plus an empty final frame.
			checkFragmented(t, sent, tc.op, tc.payload, 2)
			recv := dataFrames(parseFrames(afterHTTPHead(t, rc.Received())))
			checkSingleEchoFrame(t, recv, tc.op, tc.payload)
		})
	}
}

func TestCoderPing(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	c := dialCoder(t, echoURL(d), coderOptions(nil))
	// Ping needs a concurrent reader to receive the pong.
	readCtx, stopRead := context.WithTimeout(context.Background(), 3*ioTimeout)
	defer stopRead()
	msgs := make(chan []byte, 4)
	readDone := make(chan error, 1)
	go func() {
		for {
			_, p, err := c.Read(readCtx)
			if err != nil {
				readDone <- err
				return
			}
			msgs <- p
		}
	}()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		err := c.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		t.Logf("ping %d: round trip %v", i, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("after pings")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-msgs:
		if string(p) != "after pings" {
			t.Fatalf("echo %q", p)
		}
	case err := <-readDone:
		t.Fatalf("read failed: %v", err)
	case <-ctx.Done():
		t.Fatal("no echo after pings")
	}
	c.CloseNow()
	<-readDone
}

func TestCoderCloseStatus(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	cases := []struct {
		name   string
		code   websocket.StatusCode
		reason string
	}{
		{"1000-normal", websocket.StatusNormalClosure, "done"},
		{"4001-private", 4001, "private use"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialCoder(t, echoURL(d), coderOptions(nil))
			coderEcho(t, c, websocket.MessageText, []byte("before close"))

			readCtx, stopRead := context.WithTimeout(context.Background(), ioTimeout)
			defer stopRead()
			readErr := make(chan error, 1)
			go func() {
				for {
					if _, _, err := c.Read(readCtx); err != nil {
						readErr <- err
						return
					}
				}
			}()
			// A successful Ping proves the reader goroutine is inside Read
			// (it read the pong), so it is the one that reads the server's
			// close frame below.
			pingCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.Ping(pingCtx)
			cancel()
			if err != nil {
				t.Fatalf("ping: %v", err)
			}

			// Close returns nil only if the peer's close frame carried the
			// same code (coder's closeHandshake).
			if err := c.Close(tc.code, tc.reason); err != nil {
				t.Errorf("Close(%d): %v (status %d)", tc.code, err, websocket.CloseStatus(err))
			}
			select {
			case err := <-readErr:
				if got := websocket.CloseStatus(err); got != tc.code {
					t.Fatalf("read after close: %v; CloseStatus = %d, want %d", err, got, tc.code)
				}
			case <-time.After(ioTimeout):
				t.Fatal("reader did not return after the close handshake")
			}
		})
	}
}

func TestCoderConcurrentConnections(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	const (
		conns   = 50
		perConn = 200
	)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	message := func(conn, i int) (websocket.MessageType, []byte) {
		head := fmt.Sprintf("conn %02d message %03d|", conn, i)
		size := (conn*131 + i*37) % 2048
		if i%3 == 0 {
			return websocket.MessageBinary, append([]byte(head), randomBytes(uint64(conn*perConn+i), size)...)
		}
		return websocket.MessageText, append([]byte(head), utf8Text(size)...)
	}

	errs := make(chan error, 2*conns)
	var wg sync.WaitGroup
	for k := range conns {
		wg.Go(func() {
			c, _, err := websocket.Dial(ctx, echoURL(d), coderOptions(nil))
			if err != nil {
				errs <- fmt.Errorf("conn %d: dial: %w", k, err)
				return
			}
			defer c.CloseNow()
			writeErr := make(chan error, 1)
			go func() {
				for i := range perConn {
					typ, p := message(k, i)
					if err := c.Write(ctx, typ, p); err != nil {
						writeErr <- fmt.Errorf("conn %d: write %d: %w", k, i, err)
						return
					}
				}
				writeErr <- nil
			}()
			for i := range perConn {
				typ, got, err := c.Read(ctx)
				if err != nil {
					errs <- fmt.Errorf("conn %d: read %d: %w", k, i, err)
					return
				}
				wantTyp, want := message(k, i)
				if typ != wantTyp || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("conn %d: echo %d is %v %q..., want %v %q...", k, i, typ, truncate(got, 40), wantTyp, truncate(want, 40))
					return
				}
			}
			if err := <-writeErr; err != nil {
				errs <- err
				return
			}
			if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
				errs <- fmt.Errorf("conn %d: close handshake: %w", k, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		n++
		if n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... and %d more errors", n-10)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("gave up after 40 s")
	}
}
