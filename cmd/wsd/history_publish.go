package main

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/natsbroker"
)

// In a cluster with JetStream history (natsHistory), a push
// client's publish to a topic with history is acknowledged with the
// position the stream stored it at. Waiting for the stream's PubAck must
// not hold the event loop, so storedAcks publishes from a goroutine
// (PublishWaitPositions, which uses the broker's PublishStored) and sends
// the ack from there with Conn.Send, the write that any goroutine may make
// (a connection that closed meanwhile gets nothing). One connection's
// publishes to topics with history go one after the other, in the order it
// sent them, so the stream stores them, and their acks arrive, in that
// order; the acks may still arrive after the answers to the connection's
// later requests (README "Push protocol"). At most maxStoredAcks such
// publishes wait on a node, queued or at the stream; one more is refused
// with an "unavailable" error and nothing is sent, so that the client,
// which asked for a stored position, can tell and try again.
const storedAckDeadline = 30 * time.Second // beyond the broker's own request timeout

// maxStoredAcks is how many client publishes may wait for the stream at
// once on a node (a variable for tests).
var maxStoredAcks = 256

// storedAcks waits for the stream on behalf of push clients' publishes.
type storedAcks struct {
	hub     *broadcast.Hub
	history func(string) broadcast.HistoryPolicy // the -history rules
	slots   chan struct{}                        // one per publish waiting

	mu     sync.Mutex
	queues map[*engine.Conn][]storedPublish // the connections with a publish under way: those after it
}

// storedPublish is one client publish waiting for its turn.
type storedPublish struct {
	topic string
	m     broadcast.Message
}

// newStoredAcks returns the storedAcks of a node in a cluster (the caller
// checks) with -history topics, and nil without them. Where their history
// lives in JetStream (natsHistory) the acks carry the stream's positions;
// where it does not, they carry none, as the hub's own ack would, once
// NATS has the message. Alone, the hub gives the position at once, on the
// loop.
func newStoredAcks(cfg *config, hub *broadcast.Hub) *storedAcks {
	rules, _ := parseHistoryRules(cfg.History) // checked when read
	if len(rules) == 0 {
		return nil
	}
	return &storedAcks{hub: hub, history: historyPolicy(rules), slots: make(chan struct{}, maxStoredAcks), queues: map[*engine.Conn][]storedPublish{}}
}

// publish publishes m, a client's publish to topic, and acknowledges it
// when the topic keeps history, and returns true; it returns false, and
// does nothing, for a topic without history (or a nil s), which the
// caller publishes as usual. Loop only; it does not block.
func (s *storedAcks) publish(c *engine.Conn, topic string, m broadcast.Message) bool {
	if s == nil || s.history(topic).Size <= 0 {
		return false
	}
	select {
	case s.slots <- struct{}{}:
	default:
		pushError(c, codeUnavailable, topic, "too many publishes are waiting for the history stream: nothing was sent; try again later")
		return true
	}
	p := storedPublish{topic, m}
	s.mu.Lock()
	q, busy := s.queues[c]
	if busy {
		s.queues[c] = append(q, p)
	} else {
		s.queues[c] = nil
	}
	s.mu.Unlock()
	if !busy {
		go s.run(c, p)
	}
	return true
}

// run publishes p, then the publishes of c queued meanwhile, one at a time.
func (s *storedAcks) run(c *engine.Conn, p storedPublish) {
	for {
		s.store(c, p)
		<-s.slots
		s.mu.Lock()
		q := s.queues[c]
		if len(q) == 0 {
			delete(s.queues, c)
			s.mu.Unlock()
			return
		}
		p, s.queues[c] = q[0], q[1:]
		s.mu.Unlock()
	}
}

// store publishes p and sends c its ack: the stream's position, or an
// "unavailable" error.
func (s *storedAcks) store(c *engine.Conn, p storedPublish) {
	ctx, cancel := context.WithTimeout(context.Background(), storedAckDeadline)
	_, pos, err := s.hub.PublishWaitPositions(ctx, p.m)
	cancel()
	if err == nil {
		_ = c.Send(codec.OpText, publishedAck(p.topic, pos))
		return
	}
	msg := "the cluster's NATS is unreachable: nothing was sent; try again later"
	if errors.Is(err, natsbroker.ErrNotStored) || errors.Is(err, context.DeadlineExceeded) {
		msg = "not stored in the history: " + err.Error()
	}
	b, _ := json.Marshal(struct {
		Op      string        `json:"op"`
		Code    pushErrorCode `json:"code"`
		Message string        `json:"message"`
		Topic   string        `json:"topic"`
	}{"error", codeUnavailable, msg, p.topic})
	_ = c.Send(codec.OpText, b)
}
