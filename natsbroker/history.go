package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
)

// History on JetStream. With Options.History, the topics it names keep
// their history in a JetStream stream, so that every node agrees on their
// messages' positions and a client resumes on any node:
//
//	<prefix>.s.t.<token>  a topic with history: stored by the stream
//	                      (<prefix>.s.h.<hash> for a long name)
//	<prefix>.r.t.<token>  what the stream republishes of it, with the
//	                      Nats-Sequence and Nats-Last-Sequence headers
//
// A publish to such a topic goes to its stored subject; the stream (one
// leader orders concurrent publishers) stores it and republishes it, and
// nodes with subscribers of the topic subscribe to its republished subject
// as they do to a live one. The stream sequence is the offset of the
// message, Nats-Last-Sequence (the sequence of the previous message on the
// same subject) its Prev, and the stream's creation time the epoch: a
// stream that is recreated (a memory stream after a server restart) starts
// a new epoch. A node that sees a Prev beyond the last offset it got (a
// republish lost while it was reconnecting) reads the gap from the stream
// before delivering, and FetchHistory (broadcast.HistoryFetcher) reads the
// history of a topic for a client that resumes from a position this node's
// cache does not reach. The stream keeps HistoryLimits.Size messages per
// subject, none older than HistoryLimits.TTL: make them the largest of the
// topics' policies; each node's cache applies each topic's own.

// historyState is the Broker's JetStream state.
type historyState struct {
	js     jetstream.JetStream
	stream jetstream.Stream // set by startHistory; stays valid when the stream is created again (it is found by name)
	name   string
	epoch  atomic.Pointer[string]

	// Owned by the dispatch goroutine.
	last      map[string]uint64 // topic: the last offset delivered
	lastEpoch string

	repaired, gaps atomic.Int64

	acks              ackTable    // stored publishes waiting for their PubAck (history_publish.go)
	recreating        atomic.Bool // recreateStream is running
	stored, notStored atomic.Int64
}

// historyStreamName is the stream of a prefix: "WSD_HISTORY" for "wsd".
func historyStreamName(prefix string) string {
	return strings.ToUpper(strings.ReplaceAll(prefix, ".", "_")) + "_HISTORY"
}

// storedSubject is where a publish to topic goes when it keeps history.
func (b *Broker) storedSubject(dst []byte, topic string) []byte {
	return appendTopicSubject(dst, b.opts.Prefix+".s", topic)
}

// hasHistory reports whether topic keeps history on JetStream.
func (b *Broker) hasHistory(topic string) bool {
	return b.hist != nil && b.opts.History(topic).Size > 0
}

// appendPublishSubject appends the subject a publish to topic goes to;
// stored reports a topic with history (b.hasHistory).
func (b *Broker) appendPublishSubject(dst []byte, topic string, stored bool) []byte {
	if stored {
		return b.storedSubject(dst, topic)
	}
	return appendTopicSubject(dst, b.opts.Prefix, topic)
}

// liveSubject is the subject a node subscribes to for topic.
func (b *Broker) liveSubject(topic string) string {
	if b.hasHistory(topic) {
		return string(appendTopicSubject(nil, b.opts.Prefix+".r", topic))
	}
	return b.Subject(topic)
}

// startHistory creates (or updates) the stream. Called by New.
func (b *Broker) startHistory() error {
	if b.opts.History == nil {
		return nil
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("natsbroker: JetStream: %w", err)
	}
	b.hist = &historyState{js: js, name: historyStreamName(b.opts.Prefix), last: map[string]uint64{}}
	if err := b.startAcks(); err != nil {
		return err
	}
	s, err := b.firstStream() // embedded_js_cluster.go
	b.hist.stream = s
	return err
}

// ensureStream creates the stream if it is gone, updates it, and reads
// its epoch. Any goroutine.
func (b *Broker) ensureStream(ctx context.Context) error {
	_, err := b.createStream(ctx)
	return err
}

// createStream creates or updates the stream and reads its epoch.
func (b *Broker) createStream(ctx context.Context) (jetstream.Stream, error) {
	h, lim := b.hist, b.opts.HistoryLimits
	storage := jetstream.FileStorage
	if b.opts.HistoryMemory {
		storage = jetstream.MemoryStorage
	}
	cfg := jetstream.StreamConfig{
		Name:              h.name,
		Description:       "wsd: the history of topics (natsbroker)",
		Subjects:          []string{b.opts.Prefix + ".s.>"},
		MaxMsgsPerSubject: int64(max(lim.Size, 1)),
		MaxAge:            max(lim.TTL, 0),
		Storage:           storage,
		Discard:           jetstream.DiscardOld,
		Replicas:          b.historyReplicas(), // embedded_js_cluster.go
		AllowDirect:       true,
		RePublish:         &jetstream.RePublish{Source: b.opts.Prefix + ".s.>", Destination: b.opts.Prefix + ".r.>"},
	}
	s, err := h.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: JetStream stream %s: %w", h.name, err)
	}
	epoch := strconv.FormatInt(s.CachedInfo().Created.UnixNano(), 36)
	h.epoch.Store(&epoch)
	return s, nil
}

// historyReconnected runs after a reconnection: the server may have lost a
// memory stream, which is created again (a new epoch).
func (b *Broker) historyReconnected() {
	if b.hist == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*b.opts.RequestTimeout)
		defer cancel()
		if err := b.ensureStream(ctx); err != nil && !b.isClosed() {
			b.log.Warn("natsbroker: JetStream stream after reconnecting", zap.Error(err))
		}
	}()
}

// HistoryEpoch returns the epoch of the stream ("" without history).
func (b *Broker) HistoryEpoch() string {
	if b.hist == nil {
		return ""
	}
	return *b.hist.epoch.Load()
}

// positioned reports whether m is a republished message, and its
// sequence and the previous one on its subject.
func positioned(m *nats.Msg) (seq, prev uint64, ok bool) {
	if m.Header == nil {
		return 0, 0, false
	}
	s := m.Header.Get("Nats-Sequence")
	if s == "" {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(s, 10, 64)
	prev, err2 := strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
	return seq, prev, err1 == nil && err2 == nil
}

// dispatchPositioned delivers a republished message (dispatch goroutine):
// repeats are dropped, and a gap since the last message of the topic is
// read from the stream and delivered first.
func (b *Broker) dispatchPositioned(m *nats.Msg, w *wireMsg, seq, prev uint64) {
	h := b.hist
	stored := m.Header.Get("Nats-Subject")
	topic := ""
	for _, t := range w.topics {
		if string(b.storedSubject(nil, t)) == stored {
			topic = t
			break
		}
	}
	if topic == "" {
		b.malformed.Add(1)
		return
	}
	epoch := b.HistoryEpoch()
	last := h.last[topic]
	if epoch == h.lastEpoch && seq <= last {
		// A repeat, or a stream created again whose news has not come:
		// ask the server.
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.RequestTimeout)
		err := b.ensureStream(ctx)
		cancel()
		if epoch = b.HistoryEpoch(); err != nil || epoch == h.lastEpoch {
			b.dups.Add(1)
			return
		}
	}
	if epoch != h.lastEpoch {
		clear(h.last)
		h.lastEpoch, last = epoch, 0
	}
	if last != 0 && prev > last {
		h.gaps.Add(1)
		b.repair(topic, stored, epoch, last, prev) // what it cannot read stays a hole, which a resume across it sees
	}
	bm := broadcast.BrokerMessage{Topics: []string{topic}, Op: w.op, Payload: w.payload, Origin: w.origin, Exclude: w.exclude,
		Epoch: epoch, Offset: seq, Prev: prev}
	b.deliver(&bm)
	b.delivered.Add(1)
	h.last[topic] = seq
}

// maxRepair bounds the messages one gap repair reads.
const maxRepair = 10000

// repair reads the messages of a gap, after last up to prev, from the
// stream and delivers them.
func (b *Broker) repair(topic, subject, epoch string, last, prev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*b.opts.RequestTimeout)
	defer cancel()
	for n := 0; last < prev && n < maxRepair; n++ {
		sm, err := b.hist.stream.GetMsg(ctx, last+1, jetstream.WithGetMsgSubject(subject))
		if err != nil || sm.Sequence > prev {
			if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				b.log.Warn("natsbroker: reading a gap from JetStream", zap.String("topic", topic), zap.Error(err))
			}
			return
		}
		var w wireMsg
		if !decodePublication(sm.Data, &w) {
			b.malformed.Add(1)
			return
		}
		bm := broadcast.BrokerMessage{Topics: []string{topic}, Op: w.op, Payload: w.payload, Origin: w.origin, Exclude: w.exclude,
			Epoch: epoch, Offset: sm.Sequence, Prev: last}
		b.deliver(&bm)
		b.hist.repaired.Add(1)
		last = sm.Sequence
	}
}

// FetchHistory implements broadcast.HistoryFetcher: the messages of topic
// after offset after, read from the stream (at most limit). Complete
// when after is a message of the topic still in the stream (so nothing
// after it was removed: the stream drops a subject's oldest first), or 0
// with nothing stored yet, and no more than limit follow it.
func (b *Broker) FetchHistory(ctx context.Context, topic string, after uint64, limit int) (broadcast.HistoryPage, error) {
	if b.hist == nil || !b.hasHistory(topic) {
		return broadcast.HistoryPage{}, nil
	}
	subject := string(b.storedSubject(nil, topic))
	page := broadcast.HistoryPage{Epoch: b.HistoryEpoch()}
	s := b.hist.stream
	complete := true
	if after > 0 {
		sm, err := s.GetMsg(ctx, after)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			complete = false
		case err != nil:
			return page, fmt.Errorf("natsbroker: JetStream: %w", err)
		case sm.Subject != subject:
			complete = false
		}
	}
	prev := after
	for next := after + 1; ; {
		sm, err := s.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return page, fmt.Errorf("natsbroker: JetStream: %w", err)
		}
		if len(page.Messages) == limit {
			complete = false // more than the topic keeps
			break
		}
		var w wireMsg
		if !decodePublication(sm.Data, &w) {
			return page, errors.New("natsbroker: JetStream: a stored message is not a publication")
		}
		page.Messages = append(page.Messages, broadcast.BrokerMessage{Topics: []string{topic}, Op: w.op, Payload: w.payload,
			Origin: w.origin, Exclude: w.exclude, Epoch: page.Epoch, Offset: sm.Sequence, Prev: prev})
		prev, next = sm.Sequence, sm.Sequence+1
	}
	page.Complete = complete && (after > 0 || len(page.Messages) == 0)
	return page, nil
}

// HistoryStats are the JetStream history counters.
type HistoryStats struct {
	Gaps     int64 // republished messages that came after a gap
	Repaired int64 // messages read from the stream to fill gaps
	// Stored counts the publishes to topics with history that the stream
	// confirmed (a PubAck with a sequence), one per topic; NotStored the
	// ones it refused, did not confirm within RequestTimeout, or whose
	// connection was lost before the PubAck (history_publish.go).
	Stored, NotStored int64
}

// HistoryStats returns the JetStream history counters.
func (b *Broker) HistoryStats() HistoryStats {
	if b.hist == nil {
		return HistoryStats{}
	}
	h := b.hist
	return HistoryStats{Gaps: h.gaps.Load(), Repaired: h.repaired.Load(), Stored: h.stored.Load(), NotStored: h.notStored.Load()}
}
