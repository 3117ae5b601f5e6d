package broadcast_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// subscriber subscribes every connection to the comma-separated topics
// named by its path ("/a,b" subscribes to a and b; "/" to nothing) and
// hands the connection to the test through opened.
type subscriber struct {
	engine.NopHandler
	hub    *broadcast.Hub
	opened chan *engine.Conn
	// onMessage, if set, gets every message. Set it before the engine
	// starts (hubConfig.onMessage).
	onMessage func(c *engine.Conn, op codec.OpCode, p []byte)
}

func (s *subscriber) OnOpen(c *engine.Conn) {
	if topics := pathTopics(c.Path()); len(topics) > 0 {
		s.hub.Subscribe(c, topics...)
	}
	select { // never block the event loop
	case s.opened <- c:
	default:
	}
}

func (s *subscriber) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	if s.onMessage != nil {
		s.onMessage(c, op, p)
	}
}

// pathTopics returns the topics a request path subscribes to.
func pathTopics(path string) []string {
	var out []string
	for _, name := range strings.Split(strings.TrimPrefix(path, "/"), ",") {
		if name != "" {
			out = append(out, name)
		}
	}
	return out
}

// hubConfig describes a hub on a running engine for startHubWith.
type hubConfig struct {
	hub          broadcast.Options
	loops        int
	closeTimeout time.Duration
	maxBuffered  int // the engine's cap; 0: its default
	onMessage    func(hub *broadcast.Hub, c *engine.Conn, op codec.OpCode, p []byte)
}

// startHub is startHubWith for a hub with options hopts on loops loops.
func startHub(t testing.TB, hopts broadcast.Options, loops int) (*broadcast.Hub, *subscriber, string) {
	t.Helper()
	return startHubWith(t, hubConfig{hub: hopts, loops: loops})
}

// startHubWith runs an engine whose handler is cfg's hub wrapping a
// subscriber, on a free loopback port, and shuts it down when the test ends
// (after the test's clients, registered later, are closed).
func startHubWith(t testing.TB, cfg hubConfig) (*broadcast.Hub, *subscriber, string) {
	t.Helper()
	srv, err := newHubServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.stop(); err != nil {
			t.Error(err)
		}
	})
	return srv.hub, srv.h, srv.addr
}

// hubServer is a running engine with a hub, for startHubWith and for
// benchmark fixtures that outlive one run of a benchmark function.
type hubServer struct {
	hub  *broadcast.Hub
	h    *subscriber
	addr string
	e    *engine.Engine
	done chan error
}

func newHubServer(cfg hubConfig) (*hubServer, error) {
	hub := broadcast.New(cfg.hub)
	h := &subscriber{hub: hub, opened: make(chan *engine.Conn, 1<<16)}
	if f := cfg.onMessage; f != nil {
		h.onMessage = func(c *engine.Conn, op codec.OpCode, p []byte) { f(hub, c, op, p) }
	}
	l, err := net.Listen("tcp", "127.0.0.1:0") // a free port
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	e, err := engine.New(hub.Handler(h), engine.Options{
		Addrs:        []string{addr},
		EventLoops:   cfg.loops,
		KeepPath:     true,
		PingInterval: -1,
		IdleTimeout:  -1,
		CloseTimeout: cfg.closeTimeout,
		MaxBuffered:  cfg.maxBuffered,
	})
	if err != nil {
		return nil, err
	}
	srv := &hubServer{hub: hub, h: h, addr: addr, e: e, done: make(chan error, 1)}
	go func() { srv.done <- e.Run() }()
	select {
	case <-e.Ready():
		return srv, nil
	case err := <-srv.done:
		return nil, fmt.Errorf("Run: %w", err)
	case <-time.After(10 * time.Second):
		_ = srv.stop()
		return nil, errors.New("engine did not start")
	}
}

// stop shuts the engine down and waits for Run to return.
func (s *hubServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.e.Shutdown(ctx)
	select {
	case err := <-s.done:
		if !errors.Is(err, engine.ErrEngineClosed) {
			return fmt.Errorf("Run: %w", err)
		}
		return nil
	case <-time.After(15 * time.Second):
		return errors.New("Run did not return after Shutdown")
	}
}

// nextOpened returns the next connection the handler opened.
func nextOpened(t testing.TB, h *subscriber) *engine.Conn {
	t.Helper()
	select {
	case c := <-h.opened:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection opened within 10s")
		return nil
	}
}

// waitFor is wstest.WaitFor, named short for these tests.
var waitFor = wstest.WaitFor

// settle waits until every published message has been released by every
// loop (delivered, dropped or skipped) and returns the hub's stats then.
func settle(t testing.TB, hub *broadcast.Hub) broadcast.Stats {
	t.Helper()
	waitFor(t, 30*time.Second, "Stats().LiveMessages == 0", func() bool { return hub.Stats().LiveMessages == 0 })
	return hub.Stats()
}

// client is a raw WebSocket client that reports errors instead of failing
// the test, so that it can run on any goroutine. It reads frames without
// allocating once its payload buffer is large enough, and every read has a
// deadline: the connection's read deadline is kept at least timeout/2 in the
// future while frames arrive, so a silent server fails the read.
type client struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
	until   time.Time
	hdr     [8]byte
	buf     []byte
}

// dialOptions tunes dialClient.
type dialOptions struct {
	rcvBuf  int // SO_RCVBUF set before connect, so that the TCP window starts small; 0 keeps the default
	bufSize int // bufio size; 0 means 4 KiB
}

// dialClient connects to addr and completes the opening handshake for path.
func dialClient(addr, path string, o dialOptions) (*client, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if o.rcvBuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvBuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if o.bufSize == 0 {
		o.bufSize = 4 << 10
	}
	c := &client{conn: conn, r: bufio.NewReaderSize(conn, o.bufSize), timeout: 20 * time.Second}
	key := wstest.NewKey()
	if err := c.write(wstest.BuildRequest("GET", path, wstest.UpgradeHeaders(addr, key))); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err == nil {
		err = wstest.CheckUpgradeResponse(resp, key)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake %s: %w", path, err)
	}
	return c, nil
}

// mustDial is dialClient for the test goroutine; the connection is closed
// when the test ends.
func mustDial(t testing.TB, addr, path string, o dialOptions) *client {
	t.Helper()
	c, err := dialClient(addr, path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

// dialMany opens n clients (client i on paths(i)) with a few dialing
// goroutines; they are closed when the test ends.
func dialMany(t testing.TB, addr string, n int, paths func(i int) string, o dialOptions) []*client {
	t.Helper()
	cs := make([]*client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				cs[i], errs[i] = dialClient(addr, paths(i), o)
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range cs {
			if c != nil {
				c.conn.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return cs
}

func (c *client) write(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(b)
	return err
}

// next reads one frame. p is valid until the next call.
func (c *client) next() (op byte, p []byte, err error) {
	if now := time.Now(); c.until.Sub(now) < c.timeout/2 {
		c.until = now.Add(c.timeout)
		_ = c.conn.SetReadDeadline(c.until)
	}
	h := c.hdr[:2]
	if _, err := io.ReadFull(c.r, h); err != nil {
		return 0, nil, err
	}
	if h[0]&0x70 != 0 || h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("unexpected frame header %x (want FIN, no RSV, unmasked)", h)
	}
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.r, c.hdr[:2]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(c.hdr[:2]))
	case 127:
		if _, err := io.ReadFull(c.r, c.hdr[:8]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(c.hdr[:8])
	}
	if n > wstest.MaxFramePayload {
		return 0, nil, fmt.Errorf("frame announces %d bytes", n)
	}
	if uint64(cap(c.buf)) < n {
		c.buf = make([]byte, n)
	}
	p = c.buf[:n]
	if _, err := io.ReadFull(c.r, p); err != nil {
		return 0, nil, err
	}
	return op, p, nil
}

// expectClose reads until a close frame and returns its code; other frames
// are passed to skip, which may reject them.
func (c *client) expectClose(skip func(op byte, p []byte) error) (int, error) {
	for {
		op, p, err := c.next()
		if err != nil {
			return 0, err
		}
		if op == wstest.OpClose {
			if len(p) < 2 {
				return wstest.CloseNoStatus, nil
			}
			return int(binary.BigEndian.Uint16(p)), nil
		}
		if skip != nil {
			if err := skip(op, p); err != nil {
				return 0, err
			}
		}
	}
}

// expectEOF reads until the server closes TCP; any byte is an error.
func (c *client) expectEOF() error {
	c.until = time.Time{}
	_ = c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	var b [64]byte
	n, err := c.r.Read(b[:])
	if n > 0 {
		return fmt.Errorf("%d more bytes after the close frame: %x", n, b[:n])
	}
	if !wstest.IsClosedErr(err) {
		return fmt.Errorf("want the TCP close, got %v", err)
	}
	return nil
}

// reset closes the connection abruptly with a TCP RST.
func (c *client) reset() {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.conn.Close()
}

func TestHubPublishSmoke(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{}, 2)
	var clients []*wstest.Client
	for range 4 {
		c := wstest.Dial(t, addr)
		c.Handshake("/news")
		nextOpened(t, h)
		clients = append(clients, c)
	}
	if n := hub.Publish("news", codec.OpText, []byte("hello")); n != 4 {
		t.Fatalf("Publish reached %d, want 4", n)
	}
	for _, c := range clients {
		c.ExpectText("hello")
	}
	// A loop counts its deliveries after it has written them, so the frames
	// can reach the clients before the count reaches the stats: settle
	// waits until the loops have released the message, after counting.
	if s := settle(t, hub); s.Delivered != 4 || s.Topics != 1 || s.Subscriptions != 4 {
		t.Fatalf("stats %+v", s)
	}
}
