// Package servers_test builds every peer server, runs it on a free loopback
// port and checks the contract the benchmark relies on, with
// github.com/gorilla/websocket as the client.
package servers_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// names are the peer servers, each a package main in the directory of that
// name.
var names = []string{"gorilla", "gobwas", "gws", "nbio"}

// binDir holds the built servers.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "peer-servers-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Under -race the servers are built with -race too, but for nbio: it
	// hands each accepted connection from its accept goroutine to an epoll
	// goroutine through the kernel (epoll_ctl, epoll_wait), an ordering the
	// race detector cannot see. nbio marks its own functions //go:norace for
	// that reason, but the standard library's net code it calls is
	// instrumented, and a race build of nbio reports races such as
	// net.(*TCPAddr).String in nbhttp.(*ServerProcessor).OnComplete against
	// net.(*netFD).accept.
	var builds [][]string
	if raceEnabled {
		builds = [][]string{{"-race", "./gorilla", "./gobwas", "./gws"}, {"./nbio"}}
	} else {
		builds = [][]string{{"./gorilla", "./gobwas", "./gws", "./nbio"}}
	}
	for _, b := range builds {
		args := append([]string{"build", "-o", dir + string(filepath.Separator)}, b...)
		// go test puts its own GOROOT/bin first on PATH.
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(args, " "), err, out)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

const (
	startTimeout = 20 * time.Second
	ioTimeout    = 20 * time.Second
)

// server is one running peer server.
type server struct {
	name      string
	addr      string // the WebSocket listener, from the readiness line
	debugAddr string
	cmd       *exec.Cmd
	out       *stderrBuffer
	waited    chan error
}

// stderrBuffer collects a server's stderr and tells when the first line is
// in.
type stderrBuffer struct {
	mu        sync.Mutex
	b         bytes.Buffer
	firstLine chan string
	sent      bool
}

func (s *stderrBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	if !s.sent {
		if i := bytes.IndexByte(s.b.Bytes(), '\n'); i >= 0 {
			s.sent = true
			s.firstLine <- string(s.b.Bytes()[:i])
		}
	}
	return len(p), nil
}

func (s *stderrBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs server name in mode on 127.0.0.1:0, with args added, and
// waits for its readiness line.
func start(t *testing.T, name, mode string, args ...string) *server {
	t.Helper()
	s := &server{
		name:      name,
		debugAddr: freeAddr(t),
		out:       &stderrBuffer{firstLine: make(chan string, 1)},
		waited:    make(chan error, 1),
	}
	s.cmd = exec.Command(filepath.Join(binDir, name),
		append([]string{"-addr", "127.0.0.1:0", "-mode", mode, "-debug-addr", s.debugAddr}, args...)...)
	s.cmd.Stderr = s.out
	s.cmd.Stdout = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.waited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.waited
		}
	})
	select {
	case line := <-s.out.firstLine:
		addr, ok := strings.CutPrefix(line, "listening on ")
		if !ok {
			t.Fatalf("%s: first stderr line %q, want \"listening on ADDR\"", name, line)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			t.Fatalf("%s: readiness line %q: %v", name, line, err)
		}
		s.addr = addr
	case err := <-s.waited:
		s.waited <- err
		t.Fatalf("%s exited before it was ready (%v):\n%s", name, err, s.out)
	case <-time.After(startTimeout):
		t.Fatalf("%s: no readiness line in %v:\n%s", name, startTimeout, s.out)
	}
	return s
}

// stop sends SIGTERM and checks that the server exits with status 0 and
// printed nothing after its readiness line.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.waited:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", s.name, err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s still running 10s after SIGTERM", s.name)
		_ = s.cmd.Process.Kill()
		<-s.waited
	}
	if out := s.out.String(); strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("%s printed more than its readiness line:\n%s", s.name, out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *server) dial(t *testing.T) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+s.addr+"/ws", nil)
	if err != nil {
		t.Fatalf("%s: dial /ws: %v", s.name, err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// checkRejectsOtherPaths checks that an upgrade on another path gets a 404.
func (s *server) checkRejectsOtherPaths(t *testing.T) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+s.addr+"/other", nil)
	if err == nil {
		_ = c.Close()
		t.Fatalf("%s: upgrade on /other succeeded", s.name)
	}
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("%s: upgrade on /other: %v, want a bad handshake", s.name, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("%s: upgrade on /other answered %d, want 404", s.name, resp.StatusCode)
	}
}

// checkDebugVars checks the GET /debug/vars JSON, and that ?gc=1 collects
// garbage first.
func (s *server) checkDebugVars(t *testing.T) {
	t.Helper()
	before := s.debugVars(t, "")
	after := s.debugVars(t, "?gc=1")
	if after["num_gc"] <= before["num_gc"] {
		t.Errorf("%s: num_gc %d then %d after ?gc=1, want more", s.name, before["num_gc"], after["num_gc"])
	}
}

func (s *server) debugVars(t *testing.T, query string) map[string]int64 {
	t.Helper()
	resp, err := http.Get("http://" + s.debugAddr + "/debug/vars" + query)
	if err != nil {
		t.Fatalf("%s: debug vars: %v", s.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: debug vars: status %d", s.name, resp.StatusCode)
	}
	var raw map[string]json.Number
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("%s: debug vars: %v", s.name, err)
	}
	vars := make(map[string]int64)
	for _, k := range []string{"heap_alloc", "heap_inuse", "stack_inuse", "goroutines", "num_gc"} {
		v, ok := raw[k]
		if !ok {
			t.Fatalf("%s: debug vars %v have no %q", s.name, raw, k)
		}
		n, err := v.Int64()
		if err != nil {
			t.Fatalf("%s: debug vars %q = %q: %v", s.name, k, v, err)
		}
		if n <= 0 && k != "num_gc" {
			t.Errorf("%s: debug vars %q = %d, want > 0", s.name, k, n)
		}
		vars[k] = n
	}
	return vars
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// message is one message as a client received it.
type message struct {
	typ  int
	data []byte
}

func (m message) String() string {
	d := m.data
	if len(d) > 32 {
		return fmt.Sprintf("{type %d, %d bytes %q...}", m.typ, len(d), d[:32])
	}
	return fmt.Sprintf("{type %d, %q}", m.typ, d)
}

func read(t *testing.T, name string, c *websocket.Conn) message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	typ, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("%s: read: %v", name, err)
	}
	return message{typ, data}
}

func write(t *testing.T, name string, c *websocket.Conn, typ int, data []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if err := c.WriteMessage(typ, data); err != nil {
		t.Fatalf("%s: write: %v", name, err)
	}
}

func same(got message, typ int, data []byte) bool {
	return got.typ == typ && bytes.Equal(got.data, data)
}

func TestEcho(t *testing.T) {
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, name, "echo")
			s.checkRejectsOtherPaths(t)
			s.checkDebugVars(t)

			c := s.dial(t)
			pongs := make(chan string, 4)
			c.SetPongHandler(func(data string) error { pongs <- data; return nil })
			if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(ioTimeout)); err != nil {
				t.Fatal(err)
			}

			cases := []struct {
				what string
				typ  int
				data []byte
			}{
				{"text", websocket.TextMessage, []byte("hello, echo")},
				{"empty text", websocket.TextMessage, []byte{}},
				{"binary", websocket.BinaryMessage, randomBytes(t, 1000)},
				{"1 MiB text", websocket.TextMessage, bytes.Repeat([]byte("0123456789abcdef"), 1<<16)},
				{"1 MiB binary", websocket.BinaryMessage, randomBytes(t, 1<<20)},
				{"16 MiB binary", websocket.BinaryMessage, randomBytes(t, 16<<20)},
			}
			for _, tc := range cases {
				if name == "nbio" && len(tc.data) == 0 {
					// nbio v1.6.7 never hands an empty message to OnMessage
					// (its Parse passes on a message only if it has payload),
					// so there is nothing to echo.
					continue
				}
				write(t, name, c, tc.typ, tc.data)
				if got := read(t, name, c); !same(got, tc.typ, tc.data) {
					t.Errorf("%s: %s echoed as %v", name, tc.what, got)
				}
			}
			// The pong came before the first echo, and the handler ran when
			// that echo was read.
			select {
			case p := <-pongs:
				if p != "are you there" {
					t.Errorf("%s: pong %q, want the ping's payload", name, p)
				}
			default:
				t.Errorf("%s: no pong", name)
			}

			// Many messages in flight come back in order.
			const n = 200
			for i := range n {
				write(t, name, c, websocket.BinaryMessage, fmt.Appendf(nil, "message %d", i))
			}
			for i := range n {
				if got, want := read(t, name, c), fmt.Appendf(nil, "message %d", i); !same(got, websocket.BinaryMessage, want) {
					t.Fatalf("%s: in-flight message %d came back as %v", name, i, got)
				}
			}

			// Echo is not broadcast: a second client hears only itself.
			c2 := s.dial(t)
			write(t, name, c2, websocket.TextMessage, []byte("second"))
			if got := read(t, name, c2); !same(got, websocket.TextMessage, []byte("second")) {
				t.Errorf("%s: second client got %v", name, got)
			}
			write(t, name, c, websocket.TextMessage, []byte("first"))
			if got := read(t, name, c); !same(got, websocket.TextMessage, []byte("first")) {
				t.Errorf("%s: first client got %v (the second client's message?)", name, got)
			}

			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			s.stop(t)
		})
	}
}

// receiver reads one client's messages in the background.
type receiver struct {
	c     *websocket.Conn
	msgs  chan message
	pongs chan string
}

func receive(c *websocket.Conn) *receiver {
	r := &receiver{c: c, msgs: make(chan message, 4096), pongs: make(chan string, 4)}
	c.SetPongHandler(func(data string) error { r.pongs <- data; return nil })
	go func() {
		defer close(r.msgs)
		for {
			typ, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			r.msgs <- message{typ, data}
		}
	}()
	return r
}

// next returns the next message that is not a probe.
func (r *receiver) next(t *testing.T, who string) message {
	t.Helper()
	timeout := time.After(ioTimeout)
	for {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				t.Fatalf("%s: connection closed", who)
			}
			if m.typ == websocket.TextMessage && string(m.data) == "probe" {
				continue
			}
			return m
		case <-timeout:
			t.Fatalf("%s: nothing in %v", who, ioTimeout)
		}
	}
}

func TestBroadcast(t *testing.T) {
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, name, "broadcast")
			s.checkRejectsOtherPaths(t)

			clients := []*websocket.Conn{s.dial(t), s.dial(t), s.dial(t)}
			who := []string{name + " A", name + " B", name + " C"}
			rs := make([]*receiver, len(clients))
			for i, c := range clients {
				rs[i] = receive(c)
			}
			a := clients[0]

			// A server may add a client to the room only after the
			// handshake, so A sends probes until all three hear them.
			heard := make([]bool, len(rs))
			deadline := time.Now().Add(10 * time.Second)
			for all := false; !all; {
				if time.Now().After(deadline) {
					t.Fatalf("%s: probes from A not heard by all within 10s: %v", name, heard)
				}
				write(t, name, a, websocket.TextMessage, []byte("probe"))
				time.Sleep(20 * time.Millisecond)
				all = true
				for i, r := range rs {
					for len(r.msgs) > 0 && !heard[i] {
						m := <-r.msgs
						heard[i] = m.typ == websocket.TextMessage && string(m.data) == "probe"
					}
					all = all && heard[i]
				}
			}

			// A ping is answered while the server writes broadcasts too.
			if err := a.WriteControl(websocket.PingMessage, []byte("ping A"), time.Now().Add(ioTimeout)); err != nil {
				t.Fatal(err)
			}
			text := []byte("hello, room")
			bin := randomBytes(t, 100<<10)
			write(t, name, a, websocket.TextMessage, text)
			write(t, name, a, websocket.BinaryMessage, bin)
			for i, r := range rs {
				if got := r.next(t, who[i]); !same(got, websocket.TextMessage, text) {
					t.Errorf("%s got %v, want A's text", who[i], got)
				}
				if got := r.next(t, who[i]); !same(got, websocket.BinaryMessage, bin) {
					t.Errorf("%s got %v, want A's binary", who[i], got)
				}
			}
			select {
			case p := <-rs[0].pongs:
				if p != "ping A" {
					t.Errorf("%s: pong %q, want the ping's payload", name, p)
				}
			case <-time.After(ioTimeout):
				t.Errorf("%s: A got no pong", name)
			}

			// Any client's message reaches everyone (C's and B's in either
			// order).
			write(t, name, clients[2], websocket.TextMessage, []byte("from C"))
			write(t, name, clients[1], websocket.BinaryMessage, []byte("from B"))
			for i, r := range rs {
				got := []message{r.next(t, who[i]), r.next(t, who[i])}
				if got[0].typ == websocket.BinaryMessage {
					got[0], got[1] = got[1], got[0]
				}
				if !same(got[0], websocket.TextMessage, []byte("from C")) || !same(got[1], websocket.BinaryMessage, []byte("from B")) {
					t.Errorf("%s got %v, want C's text and B's binary", who[i], got)
				}
			}

			// A client that leaves is no longer written to; the others go on.
			_ = clients[1].Close()
			time.Sleep(50 * time.Millisecond)
			write(t, name, a, websocket.TextMessage, []byte("after B left"))
			for _, i := range []int{0, 2} {
				if got := rs[i].next(t, who[i]); !same(got, websocket.TextMessage, []byte("after B left")) {
					t.Errorf("%s got %v, want A's last text", who[i], got)
				}
			}
			s.checkDebugVars(t)
			s.stop(t)
		})
	}
}
