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

// storedBroker is a busBroker that is also a StoredPublisher: the topics
// in history get a position (offset per topic, epoch "s1"), and a payload
// "refuse" is not stored. Like a broker that cannot tell whose publish
// failed, its Flush fails once any publish was refused, so a hub that
// waited with Publish and Flush would report another's failure.
type storedBroker struct {
	*busBroker
	history map[string]bool

	mu      sync.Mutex
	offsets map[string]uint64
	refused int
	stored  int
}

var errRefused = fmt.Errorf("stored: refused: %w", broadcast.ErrBrokerUnavailable)

func (s *storedBroker) PublishStored(_ context.Context, m *broadcast.BrokerMessage) ([]broadcast.TopicPosition, error) {
	s.mu.Lock()
	if string(m.Payload) == "refuse" {
		s.refused++
		s.mu.Unlock()
		return nil, errRefused
	}
	if err := s.busBroker.Publish(m); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.stored++
	var pos []broadcast.TopicPosition
	for _, t := range m.Topics {
		if s.history[t] {
			s.offsets[t]++
			pos = append(pos, broadcast.TopicPosition{Topic: t, Position: broadcast.Position{Offset: s.offsets[t], Epoch: "s1"}})
		}
	}
	s.mu.Unlock()
	return pos, nil
}

func (s *storedBroker) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused > 0 {
		return errRefused
	}
	return nil
}

func newStoredHub(history ...string) (*broadcast.Hub, *storedBroker) {
	b := &bus{}
	sb := &storedBroker{busBroker: b.node("a"), history: map[string]bool{}, offsets: map[string]uint64{}}
	for _, t := range history {
		sb.history[t] = true
	}
	return broadcast.New(broadcast.Options{Broker: sb}), sb
}

// TestBrokerPublishStored: with a StoredPublisher, PublishWaitPositions
// returns the positions it gives (topics with history, in order), and a
// refused publish fails for its own caller only.
func TestBrokerPublishStored(t *testing.T) {
	hub, _ := newStoredHub("news", "sport")
	ctx := context.Background()
	_, pos, err := hub.PublishWaitPositions(ctx, broadcast.Message{Topics: []string{"sport", "plain", "news"}, Op: codec.OpText, Payload: []byte("one")})
	want := []broadcast.TopicPosition{{Topic: "sport", Position: broadcast.Position{Offset: 1, Epoch: "s1"}}, {Topic: "news", Position: broadcast.Position{Offset: 1, Epoch: "s1"}}}
	if err != nil || !slices.Equal(pos, want) {
		t.Fatalf("PublishWaitPositions: %+v, %v; want %+v", pos, err, want)
	}
	if _, _, err := hub.PublishWaitPositions(ctx, broadcast.Message{Topics: []string{"news"}, Op: codec.OpText, Payload: []byte("refuse")}); !errors.Is(err, errRefused) {
		t.Fatalf("refused publish: %v, want its refusal", err)
	}
	// The broker's Flush now fails for everyone; the next publish is
	// still told it was stored, with its position.
	_, pos, err = hub.PublishWaitPositions(ctx, broadcast.Message{Topics: []string{"news"}, Op: codec.OpText, Payload: []byte("two")})
	if err != nil || !slices.Equal(pos, []broadcast.TopicPosition{{Topic: "news", Position: broadcast.Position{Offset: 2, Epoch: "s1"}}}) {
		t.Fatalf("after a refusal: %+v, %v", pos, err)
	}
	if _, err := hub.PublishWait(ctx, broadcast.Message{Topics: []string{"plain"}, Op: codec.OpText, Payload: []byte("three")}); err != nil {
		t.Fatalf("PublishWait: %v", err)
	}
	if n := hub.Stats().BrokerErrors; n != 1 {
		t.Fatalf("BrokerErrors = %d, want 1", n)
	}
}

// TestBrokerPublishStoredConcurrent: concurrent waited publishes, some
// refused, each get their own result.
func TestBrokerPublishStoredConcurrent(t *testing.T) {
	hub, sb := newStoredHub("news")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	poss := make([][]broadcast.TopicPosition, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := "ok"
			if i%2 == 1 {
				payload = "refuse"
			}
			_, poss[i], errs[i] = hub.PublishWaitPositions(context.Background(), broadcast.Message{Topics: []string{"news"}, Op: codec.OpText, Payload: []byte(payload)})
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i := range n {
		if i%2 == 1 {
			if !errors.Is(errs[i], errRefused) || poss[i] != nil {
				t.Errorf("publish %d (refused): %+v, %v", i, poss[i], errs[i])
			}
			continue
		}
		if errs[i] != nil || len(poss[i]) != 1 || poss[i][0].Topic != "news" || seen[poss[i][0].Offset] {
			t.Errorf("publish %d: %+v, %v", i, poss[i], errs[i])
			continue
		}
		seen[poss[i][0].Offset] = true
	}
	if sb.stored != n/2 || len(seen) != n/2 {
		t.Errorf("stored %d, %d distinct positions; want %d", sb.stored, len(seen), n/2)
	}
}
