package natsbroker

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// interestQueue carries Interest calls to the goroutine that applies them.
// The hub calls Interest under its own lock, from event loops: push only
// appends under a short lock and rings a bell.
type interestQueue struct {
	mu      sync.Mutex
	ops     []interestOp
	spare   []interestOp
	queued  uint64        // calls so far
	applied uint64        // calls applied so far
	batch   chan struct{} // closed (and replaced) after each applied batch
	bell    chan struct{} // capacity 1
	nsubs   int           // topic subjects subscribed to
}

type interestOp struct {
	topic string
	on    bool
}

func (q *interestQueue) init() {
	q.batch = make(chan struct{})
	q.bell = make(chan struct{}, 1)
}

func (q *interestQueue) push(topic string, on bool) {
	q.mu.Lock()
	q.ops = append(q.ops, interestOp{topic, on})
	q.queued++
	q.mu.Unlock()
	select {
	case q.bell <- struct{}{}:
	default:
	}
}

func (q *interestQueue) counts() (subs, pending int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.nsubs, int(q.queued - q.applied)
}

// applyInterest is the goroutine that owns the topic subscriptions. It
// takes every queued call at once and applies the net change of each
// topic: only the last call for a topic matters, and a topic that went on
// and off again in the meantime costs nothing. Subscriptions made while
// the connection is down are sent by nats.go when it reconnects, with all
// the others.
func (b *Broker) applyInterest() {
	defer b.wg.Done()
	q := &b.iq
	subs := make(map[string]*nats.Subscription)
	want := make(map[string]bool)
	for {
		select {
		case <-q.bell:
		case <-b.done:
			return
		}
		q.mu.Lock()
		ops, n := q.ops, q.queued
		q.ops, q.spare = q.spare[:0], nil
		q.mu.Unlock()

		for _, op := range ops {
			want[op.topic] = op.on
		}
		for topic, on := range want {
			sub := subs[topic]
			switch {
			case on && sub == nil:
				s, err := b.nc.ChanSubscribe(b.liveSubject(topic), b.msgs)
				if err != nil {
					b.log.Warn("natsbroker: subscribing", zap.String("topic", topic), zap.Error(err))
					continue
				}
				subs[topic] = s
			case !on && sub != nil:
				if err := sub.Unsubscribe(); err != nil && !b.isClosed() {
					b.log.Warn("natsbroker: unsubscribing", zap.String("topic", topic), zap.Error(err))
				}
				delete(subs, topic)
			}
		}
		clear(want)
		clear(ops)

		q.mu.Lock()
		q.applied = n
		q.nsubs = len(subs)
		if q.spare == nil && cap(ops) <= 4096 {
			q.spare = ops[:0]
		}
		close(q.batch)
		q.batch = make(chan struct{})
		q.mu.Unlock()
	}
}

// WaitInterest returns once every Interest call made before it has been
// applied and the NATS server has the resulting subscriptions: from then
// on, publications to those topics reach this node (in a cluster of
// embedded servers, or of several NATS servers, the other servers learn of
// it a moment later). It wraps broadcast.ErrBrokerUnavailable while the
// connection is down. Mostly for tests and orderly startups.
func (b *Broker) WaitInterest(ctx context.Context) error {
	q := &b.iq
	q.mu.Lock()
	target := q.queued
	for q.applied < target {
		ch := q.batch
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.done:
			return ErrClosed
		}
		q.mu.Lock()
	}
	q.mu.Unlock()
	if !b.nc.IsConnected() {
		return errNotConnected
	}
	return b.flushNATS(ctx)
}
