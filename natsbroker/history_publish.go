package natsbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
)

// Stored publishes. A publish to a topic with history goes to its stored
// subject with a reply subject of the Broker's own, so the stream answers
// with a PubAck (the stream sequence: the message's offset) or an error,
// and a publish the stream does not store is no longer a silent success:
//
//   - Flush (a caller of Publish that is not the hub: the hub's PublishWait
//     and the publish API use PublishStored, below) waits, besides
//     the NATS ping, for the PubAcks of the stored publishes made before
//     it, and fails, wrapping ErrNotStored (and so
//     broadcast.ErrBrokerUnavailable), when one of them was refused (no
//     stream stores the subject: it was deleted; JetStream unavailable),
//     got no PubAck within Options.RequestTimeout, or lost its connection
//     before the PubAck. Flush cannot tell whose publish failed: with
//     concurrent publishers, a failure is reported to every Flush that
//     covers the failed publish (made before the Flush) and starts within
//     RequestTimeout of the failure, so a waiter may be told of another's
//     failure (a 503 for a message that was stored) but is not told
//     "stored" for its own message when it was not, provided it calls
//     Flush right after its Publish.
//   - PublishStored publishes and waits for its own PubAcks only, and
//     returns each stored topic's position: the hub's waited publishes
//     use it (broadcast.StoredPublisher), so each is told of its own
//     message only.
//
// Topics without history are published as before, with no reply subject
// and nothing to track. A publish no one waits for (an event loop's) still
// gets its PubAck, counted in HistoryStats.Stored or NotStored.

// ErrNotStored is wrapped by the errors of Flush and PublishStored when
// the JetStream stream did not store (or did not confirm storing) a
// publish to a topic with history. It wraps broadcast.ErrBrokerUnavailable.
var ErrNotStored = fmt.Errorf("natsbroker: not stored in the JetStream history: %w", broadcast.ErrBrokerUnavailable)

// pubAck is one stored publish waiting for its PubAck.
type pubAck struct {
	pub      uint64 // the publish's seq (publisher.seq)
	topic    string
	deadline time.Time
	done     chan struct{} // closed once seq or err is set
	seq      uint64
	stale    bool // seq is not above the last one seen in the epoch known: the stream was created again?
	err      error
}

// ackFailure is a stored publish that failed, kept RequestTimeout for
// the Flushes that cover it.
type ackFailure struct {
	pub uint64
	at  time.Time
	err error
}

// ackTable tracks the stored publishes in flight.
type ackTable struct {
	prefix string // reply subjects are prefix.<id>
	reply  []byte // scratch reply subject, under publisher.mu

	mu       sync.Mutex
	next     uint64
	pending  map[uint64]*pubAck
	failures []ackFailure
	top      uint64 // the highest sequence acknowledged in epoch topEpoch
	topEpoch string
}

// maxFailures bounds the failures kept for Flush.
const maxFailures = 1024

// sweepEvery is how many stored publishes pass between two sweeps of the
// PubAcks that are overdue.
const sweepEvery = 256

// startAcks subscribes to the reply subjects of stored publishes.
func (b *Broker) startAcks() error {
	a := &b.hist.acks
	a.prefix = b.nc.NewInbox() // _INBOX.<unique>, apart from nats.go's request inboxes
	a.pending = map[uint64]*pubAck{}
	if _, err := b.nc.Subscribe(a.prefix+".*", b.onPubAck); err != nil {
		return fmt.Errorf("natsbroker: subscribing to PubAcks: %w", err)
	}
	return nil
}

// publishStored sends body to the stored subject subj of topic, with a
// reply subject for the stream's PubAck. b.pub.mu is held. If acks is not
// nil, the pubAck is appended to it.
func (b *Broker) publishStored(subj, topic string, body []byte, pub uint64, acks *[]*pubAck) error {
	a := &b.hist.acks
	pa := &pubAck{pub: pub, topic: topic, deadline: time.Now().Add(b.opts.RequestTimeout), done: make(chan struct{})}
	a.mu.Lock()
	a.next++
	id := a.next
	a.pending[id] = pa
	a.mu.Unlock()
	if id%sweepEvery == 0 {
		b.expireAcks(time.Now())
	}
	a.reply = strconv.AppendUint(append(append(a.reply[:0], a.prefix...), '.'), id, 10)
	// nats.go copies the reply subject into its write buffer, as it does
	// the subject.
	reply := unsafe.String(unsafe.SliceData(a.reply), len(a.reply))
	if err := b.nc.PublishRequest(subj, reply, body); err != nil {
		a.mu.Lock()
		delete(a.pending, id)
		a.mu.Unlock()
		return publishError(err)
	}
	if acks != nil {
		*acks = append(*acks, pa)
	}
	return nil
}

// pubAckReply is the stream's answer to a publish.
type pubAckReply struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Error  *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// onPubAck takes a PubAck (nats.go's goroutine of the subscription).
func (b *Broker) onPubAck(m *nats.Msg) {
	i := strings.LastIndexByte(m.Subject, '.')
	id, err := strconv.ParseUint(m.Subject[i+1:], 10, 64)
	if err != nil {
		return
	}
	var fail error
	var r pubAckReply
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		fail = fmt.Errorf("natsbroker: no JetStream stream stores the topic (stream %s deleted, or JetStream unavailable): %w", b.hist.name, ErrNotStored)
		b.recreateStream()
	case json.Unmarshal(m.Data, &r) != nil:
		fail = fmt.Errorf("natsbroker: JetStream answered the publish with %q: %w", m.Data, ErrNotStored)
	case r.Error != nil:
		fail = fmt.Errorf("natsbroker: JetStream stream %s refused the message: %s (%d/%d): %w", b.hist.name, r.Error.Description, r.Error.Code, r.Error.ErrCode, ErrNotStored)
	case r.Seq == 0:
		fail = fmt.Errorf("natsbroker: JetStream answered the publish without a sequence: %w", ErrNotStored)
	}
	b.resolveAck(id, r.Seq, fail)
}

// resolveAck settles the stored publish id, if it is still waiting.
func (b *Broker) resolveAck(id, seq uint64, fail error) {
	a := &b.hist.acks
	a.mu.Lock()
	pa := a.pending[id]
	if pa == nil {
		a.mu.Unlock()
		return // settled already (overdue, or its connection lost)
	}
	delete(a.pending, id)
	b.settleLocked(pa, seq, fail, time.Now())
	a.mu.Unlock()
}

// settleLocked gives pa its outcome. acks.mu is held.
func (b *Broker) settleLocked(pa *pubAck, seq uint64, fail error, now time.Time) {
	h := b.hist
	if fail != nil {
		pa.err = fail
		h.notStored.Add(1)
		a := &h.acks
		if len(a.failures) == maxFailures {
			a.failures = append(a.failures[:0], a.failures[1:]...)
		}
		a.failures = append(a.failures, ackFailure{pub: pa.pub, at: now, err: fail})
	} else {
		a := &h.acks
		pa.seq = seq
		if ep := b.HistoryEpoch(); ep != a.topEpoch {
			a.top, a.topEpoch = seq, ep
		} else if seq <= a.top {
			pa.stale = true
		} else {
			a.top = seq
		}
		h.stored.Add(1)
	}
	close(pa.done)
}

// expireAcks fails the stored publishes whose PubAck is overdue.
func (b *Broker) expireAcks(now time.Time) {
	a := &b.hist.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, pa := range a.pending {
		if now.After(pa.deadline) {
			delete(a.pending, id)
			b.settleLocked(pa, 0, fmt.Errorf("natsbroker: no PubAck from JetStream within %v: the message may or may not be stored: %w", b.opts.RequestTimeout, ErrNotStored), now)
		}
	}
}

// historyDisconnected fails the stored publishes waiting for a PubAck:
// it would come on the connection just lost.
func (b *Broker) historyDisconnected() {
	if b.hist == nil {
		return
	}
	a := &b.hist.acks
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, pa := range a.pending {
		delete(a.pending, id)
		b.settleLocked(pa, 0, fmt.Errorf("natsbroker: connection to NATS lost before JetStream's PubAck: the message may or may not be stored: %w", ErrNotStored), now)
	}
}

// recreateStream creates the stream again, in the background, after a
// publish found none (one at a time).
func (b *Broker) recreateStream() {
	h := b.hist
	if b.isClosed() || !h.recreating.CompareAndSwap(false, true) {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer h.recreating.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*b.opts.RequestTimeout)
		defer cancel()
		if err := b.ensureStream(ctx); err != nil && !b.isClosed() {
			b.log.Warn("natsbroker: creating the JetStream stream again", zap.Error(err))
		}
	}()
}

// waitStored waits for the PubAcks of the stored publishes up to seq, and
// returns the failure of one of them, or of one that failed within
// RequestTimeout before start (see the comment at the top).
func (b *Broker) waitStored(ctx context.Context, seq uint64, start time.Time) error {
	a := &b.hist.acks
	var wait []*pubAck
	a.mu.Lock()
	for _, pa := range a.pending {
		if pa.pub <= seq {
			wait = append(wait, pa)
		}
	}
	a.mu.Unlock()
	for _, pa := range wait {
		if err := b.waitAck(ctx, pa); err != nil && ctx.Err() != nil {
			return err
		}
	}
	since := start.Add(-b.opts.RequestTimeout)
	a.mu.Lock()
	defer a.mu.Unlock()
	k := 0
	for k < len(a.failures) && a.failures[k].at.Before(since) {
		k++
	}
	a.failures = append(a.failures[:0], a.failures[k:]...)
	for _, f := range a.failures {
		if f.pub <= seq {
			return f.err
		}
	}
	return nil
}

// waitAck waits for pa's outcome, failing it once it is overdue.
func (b *Broker) waitAck(ctx context.Context, pa *pubAck) error {
	t := time.NewTimer(time.Until(pa.deadline))
	defer t.Stop()
	for {
		select {
		case <-pa.done:
			return pa.err
		case <-ctx.Done():
			return fmt.Errorf("natsbroker: waiting for JetStream's PubAck: %w", ctx.Err())
		case <-t.C:
			b.expireAcks(time.Now())
			t.Reset(time.Millisecond) // settled now, unless a PubAck was being settled
		}
	}
}

// PublishStored is Publish that waits until the stream has stored m on
// each of its topics with history (their PubAcks; for its other topics
// until the NATS server has it, as Flush), and returns the position m
// took on each of them, in the order of m.Topics. The error is this
// publish's own: it wraps ErrNotStored (and broadcast.ErrBrokerUnavailable)
// when the stream refused it or did not confirm within
// Options.RequestTimeout, broadcast.ErrBrokerUnavailable when NATS is
// unreachable, ctx's error when ctx ends first; positions of the topics
// that were stored are returned even then. Without History it is Publish
// and Flush.
func (b *Broker) PublishStored(ctx context.Context, m *broadcast.BrokerMessage) ([]broadcast.TopicPosition, error) {
	if b.hist == nil {
		if err := b.Publish(m); err != nil {
			return nil, err
		}
		return nil, b.Flush(ctx)
	}
	if len(m.Topics) == 0 {
		return nil, nil
	}
	if !b.nc.IsConnected() {
		b.errs.Add(1)
		if b.isClosed() {
			return nil, ErrClosed
		}
		return nil, errNotConnected
	}
	gen := b.nc.Stats().Reconnects
	var acks []*pubAck
	p := &b.pub
	p.mu.Lock()
	err := b.publishLocked(m, gen, &acks)
	p.mu.Unlock()
	if err != nil {
		b.errs.Add(1)
		return nil, err
	}
	if len(acks) < len(m.Topics) {
		if err := b.flushNATS(ctx); err != nil {
			return nil, err
		}
	}
	pos := make([]broadcast.TopicPosition, 0, len(acks))
	var first error
	stale := b.hist.recreating.Load()
	for _, pa := range acks {
		if err := b.waitAck(ctx, pa); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		stale = stale || pa.stale
		pos = append(pos, broadcast.TopicPosition{Topic: pa.topic, Position: broadcast.Position{Offset: pa.seq}})
	}
	if stale || b.hist.recreating.Load() {
		// The stream may have been created again (here or by another
		// node) and its epoch not read yet: read it before giving it.
		if err := b.ensureStream(ctx); err != nil && first == nil {
			first = fmt.Errorf("natsbroker: reading the epoch of a stream created again: %w", err)
		}
	}
	epoch := b.HistoryEpoch()
	for i := range pos {
		pos[i].Epoch = epoch
	}
	if first != nil {
		b.errs.Add(1)
	}
	return pos, first
}
