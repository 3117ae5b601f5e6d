package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// threeNodes starts nodes a, b and c on the NATS server at url.
func threeNodes(t *testing.T, url string) (a, b, c *node) {
	t.Helper()
	nodes := make([]*node, 3)
	for i, id := range []string{"a", "b", "c"} {
		nodes[i] = startNode(t, newBroker(t, Options{Node: id, URLs: []string{url}}))
	}
	return nodes[0], nodes[1], nodes[2]
}

// publishStreams publishes n messages "<name> <i>" to topics through hub,
// in order, and reports the first failure.
func publishStreams(hub *broadcast.Hub, name string, topics []string, n int) error {
	for i := range n {
		_, err := hub.PublishWait(context.Background(), broadcast.Message{Topics: topics, Op: codec.OpText, Payload: fmt.Appendf(nil, "%s %d", name, i)})
		if err != nil {
			return fmt.Errorf("%s %d: %w", name, i, err)
		}
	}
	return nil
}

// TestBrokerEverywhereOnceInOrder: publishers on three nodes, to single
// topics and to several topics at once, reach every subscriber on every
// node once, in each publisher's order; a node receives a multi-topic
// message once per topic it wants and delivers it once.
func TestBrokerEverywhereOnceInOrder(t *testing.T) {
	s := runServer(t, -1)
	a, b, c := threeNodes(t, s.ClientURL())

	type sub struct {
		name string
		path string
		n    *node
	}
	subs := []sub{
		{"a1", "/x", a}, {"a2", "/x", a}, {"a3", "/x,y", a},
		{"b1", "/x", b}, {"b2", "/y", b}, {"b3", "/y,x", b},
		{"c1", "/y", c}, {"c2", "/z", c},
	}
	clients := make(map[string]*streams)
	conns := make(map[string]func(int))
	for _, s := range subs {
		cl, _ := s.n.connect(t, s.path)
		st := newStreams(t, s.name)
		clients[s.name] = st
		conns[s.name] = func(n int) { st.read(cl, n) }
	}
	waitInterest(t, a, b, c)

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, p := range []struct {
		hub    *broadcast.Hub
		name   string
		topics []string
	}{
		{a.hub, "A-x", []string{"x"}},
		{b.hub, "B-y", []string{"y"}},
		{c.hub, "C-xy", []string{"x", "y"}},
		{a.hub, "A-yxy", []string{"y", "x", "y"}}, // a topic twice: still once per subscriber
	} {
		wg.Go(func() { errs <- publishStreams(p.hub, p.name, p.topics, n) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	x := []string{"A-x", "C-xy", "A-yxy"}
	y := []string{"B-y", "C-xy", "A-yxy"}
	xy := []string{"A-x", "B-y", "C-xy", "A-yxy"}
	for name, want := range map[string][]string{"a1": x, "a2": x, "a3": xy, "b1": x, "b2": y, "b3": xy, "c1": y, "c2": nil} {
		conns[name](n * len(want))
		clients[name].expect(n, want...)
	}

	// Messages on the wire: one per topic, a topic listed twice included.
	for _, tc := range []struct {
		n   *node
		out int64
	}{{a, 4 * n}, {b, n}, {c, 2 * n}} {
		if st := tc.n.b.Status(); st.Out != tc.out || st.Errors != 0 {
			t.Errorf("node %s: %+v; want Out %d, no errors", st.Node, st, tc.out)
		}
	}
	// a and b want x and y: A-x, B-y once, C-xy twice, A-yxy three times;
	// c wants y only: B-y, C-xy once, A-yxy twice.
	for _, tc := range []struct {
		n                 *node
		in, delivered, dd int64
	}{{a, 7 * n, 4 * n, 3 * n}, {b, 7 * n, 4 * n, 3 * n}, {c, 4 * n, 3 * n, 1 * n}} {
		st := tc.n.b.Stats()
		if st.In != tc.in || st.Delivered != tc.delivered || st.Duplicates != tc.dd || st.Malformed != 0 || st.SlowConsumer != 0 {
			t.Errorf("node %s: %+v; want In %d, Delivered %d, Duplicates %d", st.Node, st, tc.in, tc.delivered, tc.dd)
		}
	}
}

// TestBrokerInterest: a node receives a topic's messages only while it
// has subscribers of the topic.
func TestBrokerInterest(t *testing.T) {
	s := runServer(t, -1)
	a, b, c := threeNodes(t, s.ClientURL())
	cb, _ := b.connect(t, "/t")
	c.connect(t, "/other")
	waitInterest(t, a, b, c)
	subject := a.b.Subject("t")
	if got := s.GlobalAccount().Interest(subject); got != 1 {
		t.Fatalf("server has %d subscriptions of %s, want 1 (node b)", got, subject)
	}

	const n = 100
	if err := publishStreams(a.hub, "A", []string{"t"}, n); err != nil {
		t.Fatal(err)
	}
	st := newStreams(t, "b")
	st.read(cb, n)
	st.expect(n, "A")
	if in := a.b.Status().In; in != 0 {
		t.Errorf("node a (no subscriber) received %d messages", in)
	}
	if in := c.b.Status().In; in != 0 {
		t.Errorf("node c (subscribed to another topic) received %d messages", in)
	}
	if in := b.b.Status().In; in != n {
		t.Errorf("node b received %d messages, want %d", in, n)
	}

	// The last subscriber leaves: node b unsubscribes.
	cb.CloseHandshake()
	waitFor(t, 5*time.Second, "node b to drop its subscription", func() bool {
		return b.b.Stats().Subscriptions == 0
	})
	waitInterest(t, b)
	if got := s.GlobalAccount().Interest(subject); got != 0 {
		t.Fatalf("server still has %d subscriptions of %s", got, subject)
	}
	if err := publishStreams(a.hub, "A", []string{"t"}, n); err != nil {
		t.Fatal(err)
	}
	if in := b.b.Status().In; in != n {
		t.Errorf("node b received %d messages after its subscribers left, want none", in-n)
	}
}

// TestBrokerInterestCoalesces: a topic switched on and off many times
// before the broker catches up costs only its final state.
func TestBrokerInterestCoalesces(t *testing.T) {
	s := runServer(t, -1)
	b := newBroker(t, Options{URLs: []string{s.ClientURL()}})
	for _, final := range []bool{true, false, true} {
		for i := range 1001 {
			b.Interest("t", i%2 == 0) // ends on
		}
		if !final {
			b.Interest("t", false)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := b.WaitInterest(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		want := 0
		if final {
			want = 1
		}
		if st := b.Stats(); st.Subscriptions != want || st.Pending != 0 {
			t.Fatalf("final interest %v: %+v", final, st)
		}
		if got := s.GlobalAccount().Interest(b.Subject("t")); got != want {
			t.Fatalf("final interest %v: server has %d subscriptions", final, got)
		}
	}
}

// TestBrokerNodeClosed: when one node closes, the others keep serving, and
// learn at once that it left.
func TestBrokerNodeClosed(t *testing.T) {
	s := runServer(t, -1)
	a, b, c := threeNodes(t, s.ClientURL())
	ca, _ := a.connect(t, "/n")
	b.connect(t, "/n")
	cc, _ := c.connect(t, "/n")
	waitInterest(t, a, b, c)
	waitFor(t, 5*time.Second, "every node to know the three", func() bool {
		return len(a.b.Nodes()) == 3 && len(c.b.Nodes()) == 3
	})

	b.stop(t)
	waitFor(t, 5*time.Second, "a and c to see b leave", func() bool {
		return len(a.b.Nodes()) == 2 && len(c.b.Nodes()) == 2
	})
	const n = 100
	if err := publishStreams(c.hub, "C", []string{"n"}, n); err != nil {
		t.Fatal(err)
	}
	for name, cl := range map[string]*node{"a": a, "c": c} {
		client := ca
		if name == "c" {
			client = cc
		}
		st := newStreams(t, name)
		st.read(client, n)
		st.expect(n, "C")
		if s := cl.b.Status(); !s.Connected || s.Errors != 0 {
			t.Errorf("node %s: %+v", name, s)
		}
	}
	if err := b.b.Publish(&broadcast.BrokerMessage{Topics: []string{"n"}, Op: codec.OpText}); !errors.Is(err, ErrClosed) || !errors.Is(err, broadcast.ErrBrokerUnavailable) {
		t.Errorf("Publish on a closed broker: %v", err)
	}
}

// TestBrokerEmbeddedRoutes: three brokers, each running its own embedded
// NATS server, joined by routes, deliver across nodes.
func TestBrokerEmbeddedRoutes(t *testing.T) {
	first := newBroker(t, Options{Node: "a", Listen: "127.0.0.1:0"})
	route := "nats://" + first.ClusterAddr()
	brokers := []*Broker{first}
	for _, id := range []string{"b", "c"} {
		brokers = append(brokers, newBroker(t, Options{Node: id, Listen: "127.0.0.1:0", Routes: []string{route}}))
	}
	waitFor(t, 10*time.Second, "a full mesh of routes", func() bool {
		for _, b := range brokers {
			if b.Stats().Routes != 2 {
				return false
			}
		}
		return true
	})
	var nodes []*node
	for _, b := range brokers {
		nodes = append(nodes, startNode(t, b))
	}
	var clients []*streams
	var reads []func(int)
	for _, n := range nodes {
		cl, _ := n.connect(t, "/r")
		st := newStreams(t, n.b.Node())
		clients = append(clients, st)
		reads = append(reads, func(k int) { st.read(cl, k) })
	}
	waitInterest(t, nodes...)
	subject := first.Subject("r")
	waitFor(t, 10*time.Second, "every server to know every node's subscription", func() bool {
		for _, b := range brokers {
			if b.srv.GlobalAccount().Interest(subject) != 3 {
				return false
			}
		}
		return true
	})

	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for _, nd := range nodes {
		wg.Go(func() { errs <- publishStreams(nd.hub, "P"+nd.b.Node(), []string{"r"}, n) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range nodes {
		reads[i](3 * n)
		clients[i].expect(n, "Pa", "Pb", "Pc")
	}
	waitFor(t, 5*time.Second, "heartbeats across the routes", func() bool {
		for _, b := range brokers {
			if len(b.Nodes()) != 3 {
				return false
			}
		}
		return true
	})
}

// TestBrokerOptions: settings that cannot work are refused by New.
func TestBrokerOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"urls and listen", Options{URLs: []string{"nats://127.0.0.1:4222"}, Listen: "127.0.0.1:6248"}},
		{"urls and routes", Options{URLs: []string{"nats://127.0.0.1:4222"}, Routes: []string{"nats://127.0.0.1:6248"}}},
		{"urls and cluster name", Options{URLs: []string{"nats://127.0.0.1:4222"}, ClusterName: "x"}},
		{"comma in a url", Options{URLs: []string{"nats://h1:4222,nats://h2:4222"}}},
		{"creds without urls", Options{CredsFile: "x.creds"}},
		{"routes without listen", Options{Routes: []string{"nats://127.0.0.1:6248"}}},
		{"bad route", Options{Listen: "127.0.0.1:0", Routes: []string{"127.0.0.1:6248"}}},
		{"bad listen", Options{Listen: "6248"}},
		{"bad client listen", Options{ClientListen: "127.0.0.1:99999"}},
		{"node with space", Options{Node: "my node"}},
		{"long node", Options{Node: string(make([]byte, 129))}},
		{"prefix with wildcard", Options{Prefix: "wsd.*"}},
		{"prefix with empty token", Options{Prefix: "wsd..x"}},
		{"system prefix", Options{Prefix: "$SYS"}},
		{"negative timeout", Options{RequestTimeout: -time.Second}},
		{"huge payload", Options{MaxPayload: 65<<20 + 1}},
	} {
		if b, err := New(tc.o); err == nil {
			_ = b.Close()
			t.Errorf("%s: New accepted %+v", tc.name, tc.o)
		}
	}
	// The zero Options: a standalone embedded node with a random id.
	b := newBroker(t, Options{})
	if st := b.Status(); len(st.Node) != 12 || !st.Connected {
		t.Fatalf("zero Options: %+v", st)
	}
	if b.ClusterAddr() != "" || b.ClientURL() != "" {
		t.Fatalf("zero Options listen: cluster %q, clients %q", b.ClusterAddr(), b.ClientURL())
	}
}
