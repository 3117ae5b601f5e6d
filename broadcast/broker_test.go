package broadcast_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// bus is an in-memory cluster: every node's busBroker publishes into one
// ordered stream, and each message goes to the nodes interested in one of
// its topics, in publish order.
type bus struct {
	mu    sync.Mutex
	nodes []*busBroker
	down  bool
}

type busBroker struct {
	bus     *bus
	id      string
	deliver func(*broadcast.BrokerMessage)

	mu        sync.Mutex
	interest  map[string]bool
	log       []string // Interest calls, "+topic" or "-topic"
	delivered int      // messages handed to deliver
}

func (b *bus) node(id string) *busBroker {
	n := &busBroker{bus: b, id: id, interest: map[string]bool{}}
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	return n
}

func (n *busBroker) Start(deliver func(*broadcast.BrokerMessage)) { n.deliver = deliver }

func (n *busBroker) Publish(m *broadcast.BrokerMessage) error {
	b := n.bus
	b.mu.Lock() // one order for everyone, as one broker subject gives
	defer b.mu.Unlock()
	if b.down {
		return fmt.Errorf("bus: %w", broadcast.ErrBrokerUnavailable)
	}
	cp := *m
	cp.Topics = slices.Clone(m.Topics)
	cp.Payload = slices.Clone(m.Payload)
	for _, to := range b.nodes {
		to.mu.Lock()
		want := slices.ContainsFunc(cp.Topics, func(t string) bool { return to.interest[t] })
		if want {
			to.delivered++
		}
		to.mu.Unlock()
		if want {
			to.deliver(&cp)
		}
	}
	return nil
}

func (n *busBroker) Flush(context.Context) error { return nil }

func (n *busBroker) Interest(topic string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.interest[topic] = on
	sign := "-"
	if on {
		sign = "+"
	}
	n.log = append(n.log, sign+topic)
}

func (n *busBroker) Status() broadcast.BrokerStatus {
	return broadcast.BrokerStatus{Node: n.id, Connected: true}
}

func (n *busBroker) Close() error { return nil }

func (n *busBroker) counts() (int, []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.delivered, slices.Clone(n.log)
}

// clusterNode is one hub with its engine and broker.
type clusterNode struct {
	hub    *broadcast.Hub
	broker *busBroker
	sub    *subscriber
	addr   string
}

func startClusterNode(t *testing.T, b *bus, id string) clusterNode {
	br := b.node(id)
	hub := broadcast.New(broadcast.Options{Broker: br})
	h := &subscriber{hub: hub, opened: make(chan *engine.Conn, 64)}
	_, addr := wstest.StartEngine(t, hub.Handler(h), engine.Options{KeepPath: true})
	return clusterNode{hub: hub, broker: br, sub: h, addr: addr}
}

// TestBrokerDeliversEverywhereOnce: a publish on one node reaches the
// subscribers of every node once and in order, through the broker, and a
// node without subscribers of a topic is not sent it.
func TestBrokerDeliversEverywhereOnce(t *testing.T) {
	b := &bus{}
	a, bb, c := startClusterNode(t, b, "a"), startClusterNode(t, b, "b"), startClusterNode(t, b, "c")
	var clients []*wstest.Client
	for _, n := range []clusterNode{a, bb} {
		for range 2 {
			cl := wstest.Dial(t, n.addr)
			cl.Handshake("/news")
			nextOpened(t, n.sub)
			clients = append(clients, cl)
		}
	}
	cc := wstest.Dial(t, c.addr)
	cc.Handshake("/other")
	nextOpened(t, c.sub)

	const msgs = 100
	for i := range msgs {
		if n := a.hub.Publish("news", codec.OpText, fmt.Appendf(nil, "%d", i)); n != 2 {
			t.Fatalf("publish %d counted %d local subscribers, want 2", i, n)
		}
	}
	for ci, cl := range clients {
		for i := range msgs {
			f := cl.ExpectFrame()
			if string(f.Payload) != fmt.Sprint(i) {
				t.Fatalf("client %d, message %d: got %q", ci, i, f.Payload)
			}
		}
	}
	if got, log := c.broker.counts(); got != 0 || !slices.Equal(log, []string{"+other"}) {
		t.Fatalf("node c: %d deliveries, interest %v; want none for news, +other", got, log)
	}
	if got, _ := bb.broker.counts(); got != msgs {
		t.Fatalf("node b: %d deliveries, want %d", got, msgs)
	}
	cc.CloseHandshake()
	wstest.WaitFor(t, 5*time.Second, "node c to lose interest", func() bool {
		_, log := c.broker.counts()
		return slices.Equal(log, []string{"+other", "-other"})
	})
}

// TestBrokerExcludeOnOrigin: Exclude names a connection of the publishing
// node only; the same id on another node still gets the message.
func TestBrokerExcludeOnOrigin(t *testing.T) {
	b := &bus{}
	a, bb := startClusterNode(t, b, "a"), startClusterNode(t, b, "b")
	ca := wstest.Dial(t, a.addr)
	ca.Handshake("/room")
	connA := nextOpened(t, a.sub)
	cb := wstest.Dial(t, bb.addr)
	cb.Handshake("/room")
	connB := nextOpened(t, bb.sub)
	if connA.ID() != connB.ID() {
		t.Fatalf("ids %d and %d: the test needs the same id on both nodes", connA.ID(), connB.ID())
	}
	a.hub.PublishMessage(broadcast.Message{Topics: []string{"room"}, Op: codec.OpText, Payload: []byte("one"), Exclude: connA.ID()})
	a.hub.Publish("room", codec.OpText, []byte("two"))
	ca.ExpectText("two")
	cb.ExpectText("one")
	cb.ExpectText("two")
}

// TestBrokerUnavailable: when the broker refuses, PublishWait says so and
// the refusal is counted; nothing is delivered locally behind its back.
func TestBrokerUnavailable(t *testing.T) {
	b := &bus{}
	a := startClusterNode(t, b, "a")
	cl := wstest.Dial(t, a.addr)
	cl.Handshake("/t")
	nextOpened(t, a.sub)
	b.mu.Lock()
	b.down = true
	b.mu.Unlock()
	res, err := a.hub.PublishWait(context.Background(), broadcast.Message{Topics: []string{"t"}, Op: codec.OpText, Payload: []byte("lost?")})
	if !errors.Is(err, broadcast.ErrBrokerUnavailable) || res.Subscriptions != 1 {
		t.Fatalf("PublishWait: %+v, %v; want ErrBrokerUnavailable with 1 local subscription", res, err)
	}
	if n := a.hub.Stats().BrokerErrors; n != 1 {
		t.Fatalf("BrokerErrors = %d, want 1", n)
	}
	b.mu.Lock()
	b.down = false
	b.mu.Unlock()
	a.hub.Publish("t", codec.OpText, []byte("after"))
	cl.ExpectText("after") // and not "lost?" first
}
