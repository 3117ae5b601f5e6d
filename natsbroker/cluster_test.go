package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// waitNodes waits until every node knows all of them from heartbeats.
func waitNodes(t *testing.T, nodes ...*node) {
	t.Helper()
	waitFor(t, 10*time.Second, "every node to know the others", func() bool {
		for _, n := range nodes {
			if len(n.b.Nodes()) != len(nodes) {
				return false
			}
		}
		return true
	})
}

// TestClusterTopics: TopicCounts and AllTopics gather every node's counts.
func TestClusterTopics(t *testing.T) {
	s := runServer(t, -1)
	a, b, c := threeNodes(t, s.ClientURL())
	a.connect(t, "/x")
	a.connect(t, "/x,y")
	b.connect(t, "/x")
	waitNodes(t, a, b, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	counts, err := c.b.TopicCounts(ctx, "x")
	if want := map[string]int{"a": 2, "b": 1, "c": 0}; err != nil || !maps.Equal(counts, want) {
		t.Fatalf("TopicCounts(x) = %v, %v; want %v", counts, err, want)
	}
	all, err := c.b.AllTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || len(all["c"]) != 0 || fmt.Sprint(all["a"]) != "[{x 2} {y 1}]" || fmt.Sprint(all["b"]) != "[{x 1}]" {
		t.Fatalf("AllTopics = %v", all)
	}
	if sum := SumTopics(all); fmt.Sprint(sum) != "[{x 3} {y 1}]" {
		t.Fatalf("SumTopics = %v", sum)
	}
}

// TestClusterTopicsManyAndSlow: a node with more topics than fit in one
// answer sends several; a node that does not answer within GatherTimeout
// is left out, and the others still count.
func TestClusterTopicsManyAndSlow(t *testing.T) {
	s := runServer(t, -1)
	url := []string{s.ClientURL()}
	asker := newBroker(t, Options{Node: "asker", URLs: url, GatherTimeout: time.Second}) // room for the race detector
	many := newBroker(t, Options{Node: "many", URLs: url})
	slow := newBroker(t, Options{Node: "slow", URLs: url})
	const n = 20000 // about 600 KB of names
	var topics []broadcast.TopicInfo
	for i := range n {
		topics = append(topics, broadcast.TopicInfo{Name: fmt.Sprintf("topic-%022d", i), Subscribers: i%7 + 1})
	}
	many.SetLocal(Local{Topics: func() []broadcast.TopicInfo { return topics }})
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	slow.SetLocal(Local{Topics: func() []broadcast.TopicInfo { <-release; return nil }})
	waitFor(t, 10*time.Second, "the asker to know the others", func() bool { return len(asker.Nodes()) == 3 })

	start := time.Now()
	all, err := asker.AllTopics(context.Background())
	took := time.Since(start)
	releaseOnce.Do(func() { close(release) })
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all["slow"]; ok {
		t.Errorf("the slow node answered: %v", all["slow"])
	}
	if !slices.Equal(all["many"], topics) {
		t.Errorf("node many: got %d topics, want %d", len(all["many"]), n)
	}
	if _, ok := all["asker"]; !ok {
		t.Error("the asker did not count itself")
	}
	if took < time.Second {
		t.Errorf("AllTopics returned after %v, before GatherTimeout, without the slow node", took)
	}
}

// TestClusterPresence: every node sums the presence counts of all, follows
// their changes, forgets a node that leaves at once and one that vanishes
// after a few heartbeats.
func TestClusterPresence(t *testing.T) {
	s := runServer(t, -1)
	url := []string{s.ClientURL()}
	type local struct {
		mu     sync.Mutex
		rooms  map[string]int
		events map[string]int // last OnPresence per room
	}
	var brokers []*Broker
	var locals []*local
	for _, id := range []string{"a", "b", "c"} {
		br := newBroker(t, Options{Node: id, URLs: url, HeartbeatInterval: 50 * time.Millisecond})
		l := &local{rooms: map[string]int{}, events: map[string]int{}}
		br.SetLocal(Local{
			Presence: func() []broadcast.TopicInfo {
				l.mu.Lock()
				defer l.mu.Unlock()
				var out []broadcast.TopicInfo
				for r, n := range l.rooms {
					out = append(out, broadcast.TopicInfo{Name: r, Subscribers: n})
				}
				return out
			},
			OnPresence: func(room string, online int) {
				l.mu.Lock()
				l.events[room] = online
				l.mu.Unlock()
			},
		})
		brokers, locals = append(brokers, br), append(locals, l)
	}
	a, b, c := brokers[0], brokers[1], brokers[2]
	set := func(i int, room string, n int) {
		locals[i].mu.Lock()
		locals[i].rooms[room] = n
		locals[i].mu.Unlock()
		brokers[i].PresenceChanged()
	}
	expect := func(what string, want map[string]int, among ...*Broker) {
		t.Helper()
		waitFor(t, 5*time.Second, what, func() bool {
			for i, br := range among {
				for room, n := range want {
					if br.Presence(room) != n {
						return false
					}
					l := locals[slices.Index(brokers, among[i])]
					l.mu.Lock()
					ev, ok := l.events[room]
					l.mu.Unlock()
					if ev != n || (!ok && n != 0) {
						return false
					}
				}
			}
			return true
		})
	}

	set(0, "lobby", 2)
	set(1, "lobby", 1)
	set(1, "kitchen", 1)
	set(2, "attic", 4)
	expect("the first counts", map[string]int{"lobby": 3, "kitchen": 1, "attic": 4}, a, b, c)
	set(0, "lobby", 5)
	expect("a change on a", map[string]int{"lobby": 6}, a, b, c)

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	expect("b to leave", map[string]int{"lobby": 5, "kitchen": 0}, a, c)
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Logf("b's goodbye took %v to be seen", took) // a heartbeat interval would be 50 ms
	}

	// c vanishes without a goodbye: a forgets it after three heartbeats.
	c.nc.Close()
	expect("c to expire", map[string]int{"attic": 0, "lobby": 5}, a)
	if nodes := a.Nodes(); !slices.Equal(nodes, []string{"a"}) {
		t.Fatalf("a knows %v after the others left", nodes)
	}
}

// TestClusterDirect: SendTo reaches a connection on another node (and on
// this one), and tells apart a gone connection and an unknown node.
func TestClusterDirect(t *testing.T) {
	s := runServer(t, -1)
	a, b, _ := threeNodes(t, s.ClientURL())
	cb, connB := b.connect(t, "/")
	ca, connA := a.connect(t, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	node, id, err := ParseConnID(b.b.ConnID(connB.ID()))
	if err != nil || node != "b" || id != connB.ID() {
		t.Fatalf("ParseConnID(%q) = %q, %d, %v", b.b.ConnID(connB.ID()), node, id, err)
	}
	if err := a.b.SendTo(ctx, node, id, codec.OpText, []byte("to b")); err != nil {
		t.Fatal(err)
	}
	cb.ExpectText("to b")
	if err := a.b.SendTo(ctx, "a", connA.ID(), codec.OpBinary, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	ca.ExpectBinary([]byte{1, 2})

	if err := a.b.SendTo(ctx, "b", 1<<40, codec.OpText, nil); !errors.Is(err, broadcast.ErrNoConn) {
		t.Errorf("SendTo an unknown connection: %v, want ErrNoConn", err)
	}
	if err := a.b.SendTo(ctx, "nobody", 1, codec.OpText, nil); !errors.Is(err, ErrNoNode) {
		t.Errorf("SendTo an unknown node: %v, want ErrNoNode", err)
	}
	if err := a.b.SendTo(ctx, "b", 1, codec.OpPing, nil); err == nil {
		t.Error("SendTo with a ping opcode succeeded")
	}
	b.b.SetLocal(Local{})
	if err := a.b.SendTo(ctx, "b", connB.ID(), codec.OpText, nil); !errors.Is(err, ErrNoDirect) {
		t.Errorf("SendTo a node without Local.SendTo: %v, want ErrNoDirect", err)
	}
}

func TestClusterConnID(t *testing.T) {
	for _, tc := range []struct {
		node string
		id   uint64
	}{{"a", 1}, {"ws-1.eu.example", 18446744073709551615}, {"x.y", 42}} {
		s := FormatConnID(tc.node, tc.id)
		node, id, err := ParseConnID(s)
		if err != nil || node != tc.node || id != tc.id {
			t.Errorf("ParseConnID(%q) = %q, %d, %v", s, node, id, err)
		}
	}
	for _, s := range []string{"", "a", ".1", "a.", "a.0", "a.01", "a.+1", "a.-1", "a.x", "a.18446744073709551616"} {
		if node, id, err := ParseConnID(s); err == nil {
			t.Errorf("ParseConnID(%q) = %q, %d; want an error", s, node, id)
		}
	}
}
