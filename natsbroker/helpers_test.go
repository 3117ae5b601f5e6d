package natsbroker

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/natstest"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestMain fails the package when its tests leave goroutines running: a
// broker, an embedded server or an engine that was not closed.
func TestMain(m *testing.M) { wstest.VerifyNoLeaks(m) }

// waitFor is wstest.WaitFor, named short for these tests.
var waitFor = wstest.WaitFor

// runServer and runServerWith run a NATS server for a test.
var runServer, runServerWith = natstest.Server, natstest.ServerWith

// serverPort returns the client port of s.
func serverPort(t testing.TB, s *server.Server) int {
	t.Helper()
	a, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatal("server has no TCP address")
	}
	return a.Port
}

// newBroker returns a Broker for o, closed when the test ends.
func newBroker(t testing.TB, o Options) *Broker {
	t.Helper()
	if o.ReconnectWait == 0 {
		o.ReconnectWait = 20 * time.Millisecond
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// node is one wsd node of a test cluster: a hub over a broker, on its own
// engine. Connections subscribe to the comma-separated topics of their
// request path.
type node struct {
	b      *Broker
	hub    *broadcast.Hub
	eng    *engine.Engine
	addr   string
	opened chan *engine.Conn
}

// startNode starts a node over b; the engine shuts down (before b closes)
// when the test ends.
func startNode(t testing.TB, b *Broker) *node {
	t.Helper()
	n := &node{b: b, opened: make(chan *engine.Conn, 64)}
	n.hub = broadcast.New(broadcast.Options{Broker: b})
	b.SetLocal(Local{Topics: n.hub.Topics, Count: n.hub.Count, SendTo: n.hub.SendTo})
	n.eng, n.addr = wstest.StartEngine(t, n.hub.Handler(pathSubscriber{n: n}), engine.Options{KeepPath: true, CloseTimeout: -1})
	return n
}

// connect opens a client subscribed to the topics of path ("/a,b") and
// returns it with its server-side connection, once subscribed.
func (n *node) connect(t testing.TB, path string) (*wstest.Client, *engine.Conn) {
	t.Helper()
	c := wstest.Dial(t, n.addr)
	c.Handshake(path)
	select {
	case conn := <-n.opened:
		return c, conn
	case <-time.After(10 * time.Second):
		t.Fatal("no connection opened within 10s")
		return nil, nil
	}
}

// stop shuts the node's engine down and closes its broker.
func (n *node) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.eng.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.b.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitInterest waits until every node's interest reached the server.
func waitInterest(t testing.TB, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.b.WaitInterest(ctx)
		cancel()
		if err != nil {
			t.Fatalf("node %s: WaitInterest: %v", n.b.Node(), err)
		}
	}
}

type pathSubscriber struct {
	engine.NopHandler
	n *node
}

func (p pathSubscriber) OnOpen(c *engine.Conn) {
	var topics []string
	for _, name := range strings.Split(strings.TrimPrefix(c.Path(), "/"), ",") {
		if name != "" {
			topics = append(topics, name)
		}
	}
	if len(topics) > 0 {
		p.n.hub.Subscribe(c, topics...)
	}
	select { // never block the event loop
	case p.n.opened <- c:
	default:
	}
}

// streams checks what one client receives: payloads "<stream> <i>", each
// stream numbered from 0 without gaps, in order, once.
type streams struct {
	t    testing.TB
	name string
	next map[string]int
}

func newStreams(t testing.TB, name string) *streams {
	return &streams{t: t, name: name, next: map[string]int{}}
}

// read reads n frames from c and checks each.
func (s *streams) read(c *wstest.Client, n int) {
	s.t.Helper()
	for range n {
		f := c.ExpectFrame()
		s.check(string(f.Payload))
	}
}

func (s *streams) check(p string) {
	s.t.Helper()
	var stream string
	var i int
	if _, err := fmt.Sscanf(p, "%s %d", &stream, &i); err != nil {
		s.t.Fatalf("%s: unexpected message %q", s.name, p)
	}
	if want := s.next[stream]; i != want {
		s.t.Fatalf("%s: stream %s: got message %d, want %d", s.name, stream, i, want)
	}
	s.next[stream] = i + 1
}

// expect fails unless exactly the given streams were received, each up to
// n messages.
func (s *streams) expect(n int, names ...string) {
	s.t.Helper()
	if len(s.next) != len(names) {
		s.t.Fatalf("%s: got streams %v, want %v", s.name, s.next, names)
	}
	for _, name := range names {
		if s.next[name] != n {
			s.t.Fatalf("%s: stream %s: %d messages, want %d", s.name, name, s.next[name], n)
		}
	}
}
