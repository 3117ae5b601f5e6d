package natsbroker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// historyPolicy keeps the last 50 messages of the topics under "h.".
func historyPolicy(topic string) broadcast.HistoryPolicy {
	if strings.HasPrefix(topic, "h.") {
		return broadcast.HistoryPolicy{Size: 50}
	}
	return broadcast.HistoryPolicy{}
}

// runJetStream starts a NATS server with JetStream on a loopback port
// (port -1: a free one), storing in dir; shut down when the test ends
// (and by the test when it restarts it).
func runJetStream(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	return runServerWith(t, &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
}

// historyNode is a node whose hub keeps history through its broker, and
// whose connections get envelopes "offset epoch payload" and subscribe
// with "sub TOPIC [OFFSET EPOCH]", answered "ack RECOVERED OFFSET EPOCH".
func historyNode(t testing.TB, url string, memory bool) *node {
	t.Helper()
	b := newBroker(t, Options{URLs: []string{url}, History: historyPolicy, HistoryLimits: broadcast.HistoryPolicy{Size: 50}, HistoryMemory: memory})
	n := &node{b: b, opened: make(chan *engine.Conn, 64)}
	n.hub = broadcast.New(broadcast.Options{Broker: b, History: historyPolicy, Envelope: func(dst []byte, _ string, pos broadcast.Position, _ codec.OpCode, p []byte) []byte {
		return append(fmt.Appendf(dst, "%d %s ", pos.Offset, pos.Epoch), p...)
	}})
	b.SetLocal(Local{Topics: n.hub.Topics, Count: n.hub.Count, SendTo: n.hub.SendTo})
	n.eng, n.addr = wstest.StartEngine(t, n.hub.Handler(resumer{n: n}), engine.Options{CloseTimeout: -1})
	return n
}

type resumer struct {
	engine.NopHandler
	n *node
}

func (r resumer) OnOpen(c *engine.Conn) {
	r.n.hub.SetEnvelope(c, true)
	select { // never block the event loop
	case r.n.opened <- c:
	default:
	}
}

func (r resumer) OnMessage(c *engine.Conn, _ codec.OpCode, p []byte) {
	f := strings.Fields(string(p))
	var since *broadcast.Position
	if len(f) == 4 {
		off, _ := strconv.ParseUint(f[2], 10, 64)
		since = &broadcast.Position{Offset: off, Epoch: f[3]}
	}
	r.n.hub.SubscribeSinceAsync(c, f[1], since, func(rec broadcast.Recovery, err error) {
		if err != nil {
			_ = c.Write(codec.OpText, []byte("error "+err.Error()))
			return
		}
		_ = c.Write(codec.OpText, fmt.Appendf(nil, "ack %t %d %s", rec.Recovered, rec.Position.Offset, rec.Position.Epoch))
	})
}

// envelope is one received publication.
type envelope struct {
	offset  uint64
	epoch   string
	payload string
}

func readEnvelope(t testing.TB, c *wstest.Client) envelope {
	t.Helper()
	f := c.ExpectFrame()
	var e envelope
	if _, err := fmt.Sscanf(string(f.Payload), "%d %s %s", &e.offset, &e.epoch, &e.payload); err != nil {
		t.Fatalf("%q: not an envelope: %v", f.Payload, err)
	}
	return e
}

// subscribe sends a subscription request and returns the ack's fields.
func subscribe(t testing.TB, c *wstest.Client, topic string, since *envelope) (recovered bool, pos broadcast.Position) {
	t.Helper()
	req := "sub " + topic
	if since != nil {
		req += fmt.Sprintf(" %d %s", since.offset, since.epoch)
	}
	c.WriteFrames(wstest.Text(req))
	f := c.ExpectFrame()
	var r string
	if _, err := fmt.Sscanf(string(f.Payload), "ack %s %d %s", &r, &pos.Offset, &pos.Epoch); err != nil {
		t.Fatalf("%q: not an ack: %v", f.Payload, err)
	}
	return r == "true", pos
}

// publishN publishes "<prefix>-<i>" for i from 1 to n through hub and
// waits until the broker has them.
func publishN(t testing.TB, hub *broadcast.Hub, topic, prefix string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := hub.PublishWait(ctx, broadcast.Message{Topics: []string{topic}, Op: codec.OpText, Payload: fmt.Appendf(nil, "%s-%d", prefix, i)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestHistoryJetStreamResumeOnAnotherNode: a client of node A follows a
// topic with history; A is stopped, messages are published through node
// B meanwhile, and the client resumes on B (which had no subscriber of
// the topic, so nothing of it in memory) from its last position: B reads
// the missed messages from JetStream, replays them and goes on live, in
// order, each once, with the stream's positions.
func TestHistoryJetStreamResumeOnAnotherNode(t *testing.T) {
	s := runJetStream(t, -1, t.TempDir())
	a, b := historyNode(t, s.ClientURL(), false), historyNode(t, s.ClientURL(), false)

	ca, _ := a.connect(t, "/")
	if rec, pos := subscribe(t, ca, "h.news", nil); rec || pos.Epoch != a.b.HistoryEpoch() {
		t.Fatalf("first subscription: recovered %t at %+v, want the stream's epoch %s", rec, pos, a.b.HistoryEpoch())
	}
	waitInterest(t, a)
	publishN(t, b.hub, "h.news", "before", 3)
	var last envelope
	for i := 1; i <= 3; i++ {
		e := readEnvelope(t, ca)
		if e.payload != fmt.Sprintf("before-%d", i) || e.epoch != a.b.HistoryEpoch() || e.offset <= last.offset {
			t.Fatalf("node A got %+v after %+v", e, last)
		}
		last = e
	}
	a.stop(t)
	publishN(t, b.hub, "h.news", "missed", 4)
	publishN(t, b.hub, "h.other", "noise", 2) // other subjects in the stream, between

	cb, _ := b.connect(t, "/")
	rec, pos := subscribe(t, cb, "h.news", &last)
	if !rec || pos.Epoch != last.epoch {
		t.Fatalf("resume on node B from %+v: recovered %t at %+v, want recovered", last, rec, pos)
	}
	for i := 1; i <= 4; i++ {
		e := readEnvelope(t, cb)
		if e.payload != fmt.Sprintf("missed-%d", i) || e.epoch != last.epoch || e.offset <= last.offset {
			t.Fatalf("replay on node B: %+v after %+v, want missed-%d", e, last, i)
		}
		last = e
	}
	if pos.Offset != last.offset {
		t.Errorf("the ack's position %+v is not the last replayed %+v", pos, last)
	}
	waitInterest(t, b)
	publishN(t, b.hub, "h.news", "live", 2)
	for i := 1; i <= 2; i++ {
		if e := readEnvelope(t, cb); e.payload != fmt.Sprintf("live-%d", i) || e.offset <= last.offset {
			t.Fatalf("live on node B: %+v after %+v, want live-%d", e, last, i)
		} else {
			last = e
		}
	}
	// A position the stream no longer knows (another epoch) does not
	// recover.
	cb2, _ := b.connect(t, "/")
	if rec, _ := subscribe(t, cb2, "h.news", &envelope{offset: 2, epoch: "other"}); rec {
		t.Fatal("a position of another epoch recovered")
	}
}

// TestHistoryJetStreamServerRestart: the NATS server restarts under two
// nodes. With a file stream the epoch survives: a client that follows
// the topic on node B goes on in order after the restart, and one that
// was away resumes on node A across the restart. With a memory stream
// the stream is created again: a new epoch, and an old position gives
// recovered false.
func TestHistoryJetStreamServerRestart(t *testing.T) {
	for _, memory := range []bool{false, true} {
		t.Run(fmt.Sprintf("memory=%t", memory), func(t *testing.T) {
			dir := t.TempDir()
			s := runJetStream(t, -1, dir)
			port := serverPort(t, s)
			url := s.ClientURL()
			a, b := historyNode(t, url, memory), historyNode(t, url, memory)
			follower, _ := b.connect(t, "/")
			subscribe(t, follower, "h.t", nil)
			away, _ := a.connect(t, "/")
			subscribe(t, away, "h.t", nil)
			waitInterest(t, a, b)
			publishN(t, a.hub, "h.t", "one", 2)
			var seen envelope
			for range 2 {
				seen = readEnvelope(t, follower)
				readEnvelope(t, away)
			}
			before, oldEpoch := seen, a.b.HistoryEpoch() // away's last position: one-2

			s.Shutdown()
			s.WaitForShutdown()
			runJetStream(t, port, dir)
			waitFor(t, 20*time.Second, "both brokers connected again", func() bool {
				return a.b.Status().Connected && b.b.Status().Connected
			})
			waitFor(t, 20*time.Second, "the stream back", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				return a.b.ensureStream(ctx) == nil && b.b.ensureStream(ctx) == nil
			})
			if memory == (a.b.HistoryEpoch() == oldEpoch) {
				t.Fatalf("epoch %s before the restart, %s after: want it changed only for a memory stream", oldEpoch, a.b.HistoryEpoch())
			}
			waitInterest(t, a, b)
			publishN(t, a.hub, "h.t", "two", 3)
			for i := 1; i <= 3; i++ {
				e := readEnvelope(t, follower)
				if e.payload != fmt.Sprintf("two-%d", i) || e.epoch != a.b.HistoryEpoch() || (!memory && e.offset <= seen.offset) {
					t.Fatalf("follower after the restart: %+v after %+v, want two-%d", e, seen, i)
				}
				seen = e
			}
			back, _ := a.connect(t, "/")
			rec, _ := subscribe(t, back, "h.t", &before)
			if rec == memory {
				t.Fatalf("resume across the restart: recovered %t, want %t", rec, !memory)
			}
			if !memory {
				for i := 1; i <= 3; i++ {
					if e := readEnvelope(t, back); e.payload != fmt.Sprintf("two-%d", i) {
						t.Fatalf("replay across the restart: %+v, want two-%d", e, i)
					}
				}
			}
		})
	}
}

// TestHistoryJetStreamGapRepair: a node that missed a republished message
// of a topic (here: it had no subscriber of the topic when the message was
// published, and its last offset of the topic is older) reads the gap
// from the stream when the next message shows it (Nats-Last-Sequence
// beyond its last offset), and delivers the missed message first: its
// cache stays whole, so a client resumes from before the gap.
func TestHistoryJetStreamGapRepair(t *testing.T) {
	s := runJetStream(t, -1, t.TempDir())
	a, b := historyNode(t, s.ClientURL(), false), historyNode(t, s.ClientURL(), false)

	c1, _ := a.connect(t, "/")
	subscribe(t, c1, "h.g", nil)
	waitInterest(t, a)
	publishN(t, b.hub, "h.g", "one", 1)
	first := readEnvelope(t, c1)
	c1.CloseHandshake()
	waitFor(t, 10*time.Second, "node A without subscribers", func() bool { return a.hub.Count("h.g") == 0 })
	waitInterest(t, a)
	publishN(t, b.hub, "h.g", "gap", 1) // node A does not get it

	c2, _ := a.connect(t, "/")
	subscribe(t, c2, "h.g", nil)
	waitInterest(t, a)
	publishN(t, b.hub, "h.g", "three", 1)
	for _, want := range []string{"gap-1", "three-1"} {
		if e := readEnvelope(t, c2); e.payload != want {
			t.Fatalf("after the gap: %+v, want %s", e, want)
		}
	}
	if st := a.b.HistoryStats(); st.Gaps != 1 || st.Repaired != 1 {
		t.Fatalf("history stats %+v, want one gap repaired with one message", st)
	}
	c3, _ := a.connect(t, "/")
	if rec, _ := subscribe(t, c3, "h.g", &first); !rec {
		t.Fatal("a resume from before the repaired gap did not recover")
	}
	for _, want := range []string{"gap-1", "three-1"} {
		if e := readEnvelope(t, c3); e.payload != want {
			t.Fatalf("replay across the repaired gap: %+v, want %s", e, want)
		}
	}
}

// TestHistoryJetStreamSameOrder: publishers on two nodes publish to one
// topic with history at once; a subscriber on each node gets every
// message once, at increasing offsets, in the same order as the other.
func TestHistoryJetStreamSameOrder(t *testing.T) {
	s := runJetStream(t, -1, t.TempDir())
	a, b := historyNode(t, s.ClientURL(), false), historyNode(t, s.ClientURL(), false)
	ca, _ := a.connect(t, "/")
	subscribe(t, ca, "h.o", nil)
	cb, _ := b.connect(t, "/")
	subscribe(t, cb, "h.o", nil)
	waitInterest(t, a, b)
	const each = 300
	done := make(chan error, 2)
	for _, n := range []*node{a, b} {
		go func() {
			for i := range each {
				n.hub.PublishMessage(broadcast.Message{Topics: []string{"h.o"}, Op: codec.OpText, Payload: fmt.Appendf(nil, "%s-%d", n.b.Node(), i)})
			}
			if e := n.hub.Stats().BrokerErrors; e != 0 {
				done <- fmt.Errorf("node %s: %d publishes refused", n.b.Node(), e)
				return
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	read := func(c *wstest.Client) []envelope {
		var got []envelope
		for range 2 * each {
			e := readEnvelope(t, c)
			if len(got) > 0 && e.offset <= got[len(got)-1].offset {
				t.Fatalf("offset %d after %d", e.offset, got[len(got)-1].offset)
			}
			got = append(got, e)
		}
		return got
	}
	ga, gb := read(ca), read(cb)
	for i := range ga {
		if ga[i] != gb[i] {
			t.Fatalf("message %d: node A got %+v, node B %+v", i, ga[i], gb[i])
		}
	}
}
