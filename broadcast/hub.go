package broadcast

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// Policy is what happens to a frame for a connection over its outbound cap.
type Policy uint8

const (
	// Drop skips the frame for that connection and counts it. The
	// connection stays open and gets later frames once it catches up.
	Drop Policy = iota
	// Close closes the connection with Options.CloseCode.
	Close
)

// Options configures a Hub. The zero value is valid.
type Options struct {
	// MaxBuffered, if positive, is a cap on a connection's unsent bytes
	// (engine.Conn.Buffered plus the frames queued by the hub in this
	// batch) for broadcast frames alone, tighter than the engine's
	// Options.MaxBuffered. A frame is queued for a connection whose backlog
	// is under both caps, however large the frame; otherwise Policy applies.
	// 0 or negative: the engine's cap alone (which always applies: the hub
	// applies Policy before the engine would close the connection).
	MaxBuffered int
	// Policy for frames over the cap: Drop (the default) or Close.
	Policy Policy
	// CloseCode is the close code of the Close policy. 0 means 1008
	// (policy violation); 1013 (try again later) is the other usual choice.
	CloseCode codec.StatusCode
	// MaxQueued caps the bytes of published frames waiting for one event
	// loop to run them: a loop that falls that far behind its publishers
	// skips further publishes (counted in Stats.Overloaded and
	// Result.Overloaded) until it catches up, instead of queueing without
	// bound. 0 means DefaultMaxQueued (64 MiB); negative means no cap.
	MaxQueued int64
	// CompressThreshold and CompressLevel apply permessage-deflate to
	// publishes as the engine's Options.Compression does to writes: a
	// message of at least CompressThreshold bytes to topics with a
	// subscriber that negotiated compression is compressed once, next to
	// the plain frame, and each such subscriber gets the compressed frame
	// (when it is smaller). 0 means engine.DefaultCompressionThreshold
	// (256) and level 1; a negative threshold tries every message, as the
	// engine's does. A hub compresses nothing when no subscriber negotiated
	// compression (engine.Compression.Off declines them all).
	CompressThreshold int
	CompressLevel     int
	// UserOf, if not nil, returns the user a connection belongs to (""
	// for none), from its Context say. The hub calls it once when the
	// connection opens (before the Handler's OnOpen) and once when it
	// closes, on its loop, and indexes connections by user for UserConns,
	// SendToUser and Members. It must return the same user both times.
	UserOf func(c *engine.Conn) string
	// Broker, if not nil, carries every publish to the nodes of a cluster,
	// this one included (see Broker). nil: publishes are delivered in this
	// process at once.
	Broker Broker
	// MaxSubscriptions caps the topics one connection may be subscribed to
	// (Subscribe returns ErrTooManySubscriptions past it). 0 means
	// DefaultMaxSubscriptions (256); negative means no cap.
	MaxSubscriptions int
	// History, if not nil, gives the history policy of a topic (see
	// HistoryPolicy, SubscribeSince): called once for each topic that keeps
	// history, and on every publish to one that does not, so it must be
	// cheap and safe for concurrent use. nil: no topic keeps history, at no
	// cost to publishes.
	History func(topic string) HistoryPolicy
	// Envelope, if not nil, builds the envelope in which connections marked
	// with SetEnvelope get publishes: it appends to dst the payload of a
	// text frame holding the message's topic, position (the zero Position
	// for a topic without history), op and payload. Called once per publish
	// and topic with such subscribers, by the publisher, under the hub's
	// read lock (it must not call the Hub), and once per retained message
	// on its first replay to such a subscriber. nil: SetEnvelope changes
	// nothing.
	Envelope func(dst []byte, topic string, pos Position, op codec.OpCode, payload []byte) []byte
}

// Defaults of Options fields.
const (
	DefaultMaxSubscriptions = 256
	DefaultMaxQueued        = 64 << 20
)

// Hub is a set of topics. Its methods are safe for concurrent use unless
// marked "loop only".
type Hub struct {
	opts Options

	mu     sync.RWMutex
	topics map[string]*topic
	loops  atomic.Pointer[[]*loopHub] // one per event loop, of any number of engines; copied on write

	conns connIndex
	users userIndex

	node         string // the Broker's id for this node, or ""
	brokerErrors atomic.Int64

	published  atomic.Int64
	live       atomic.Int64 // messages not yet released by every loop
	overloaded atomic.Int64 // deliveries skipped: their loop had Options.MaxQueued waiting
	compressed atomic.Int64 // publishes compressed (once each)

	hist histories // per-topic history (history.go)
}

// New returns a Hub.
func New(o Options) *Hub {
	switch {
	case o.CompressThreshold == 0:
		o.CompressThreshold = engine.DefaultCompressionThreshold
	case o.CompressThreshold < 0:
		o.CompressThreshold = 0 // try every message
	}
	switch {
	case o.MaxQueued == 0:
		o.MaxQueued = DefaultMaxQueued
	case o.MaxQueued < 0:
		o.MaxQueued = 0 // no cap
	}
	switch {
	case o.MaxSubscriptions == 0:
		o.MaxSubscriptions = DefaultMaxSubscriptions
	case o.MaxSubscriptions < 0:
		o.MaxSubscriptions = 0 // no cap
	}
	if o.CloseCode == 0 {
		o.CloseCode = codec.StatusPolicyViolation
	}
	h := &Hub{opts: o, topics: make(map[string]*topic)}
	h.loops.Store(new([]*loopHub))
	h.conns.init()
	h.hist.init()
	if b := o.Broker; b != nil {
		h.node = b.Status().Node
		b.Start(h.deliverFromBroker)
	}
	return h
}

// topic is a published name. Its subscribers live in one loopTopic per
// event loop; sets is copied on write under Hub.mu.
type topic struct {
	name      string
	count     atomic.Int64
	deflated  atomic.Int64 // subscribers that negotiated permessage-deflate
	enveloped atomic.Int64 // subscribers marked with SetEnvelope
	sets      atomic.Pointer[[]*loopTopic]
}

// Message is what PublishMessage sends.
type Message struct {
	// Topics to publish to; each subscriber gets the message once even if
	// it is subscribed to several of them.
	Topics []string
	// Op is codec.OpText or codec.OpBinary.
	Op codec.OpCode
	// Payload is copied before PublishMessage returns.
	Payload []byte
	// Exclude is the id of a connection that must not get the message
	// (the sender, in a chat room); 0 excludes nobody.
	Exclude uint64
}

var (
	// ErrNoConn is returned by SendTo for an id the hub does not know.
	ErrNoConn = errors.New("broadcast: no such connection")
	// ErrNotManaged is returned by Subscribe for a connection that was not
	// opened through the hub's Handler: the hub would never learn that it
	// closed, and would keep it (and its topics) forever.
	ErrNotManaged = errors.New("broadcast: connection not opened through Hub.Handler")
)

// Publish sends payload to every subscriber of topic and returns the number
// of subscribers at the time of the call. Any goroutine; payload is copied.
func (h *Hub) Publish(topic string, op codec.OpCode, payload []byte) int {
	if h.opts.Broker != nil {
		return h.PublishMessage(Message{Topics: []string{topic}, Op: op, Payload: payload})
	}
	// Without a broker the topic stays on the stack: publish keeps no
	// reference to its topics (the payload is what escapes, to the
	// compressor).
	var one [1]string
	one[0] = topic
	n, _ := h.publish(one[:], op, payload, 0, nil)
	return n
}

// PublishMessage sends m (see Message) and returns the number of
// subscriptions to its topics at the time of the call (a connection
// subscribed to two of the topics counts twice, but gets the message once).
// Any goroutine. The frame is encoded once; each event loop with
// subscribers gets one task.
//
// With a Broker, the message goes to the Broker and comes back to be
// delivered; the count is this node's, and a Broker error is counted in
// Stats.BrokerErrors (PublishWait returns it).
func (h *Hub) PublishMessage(m Message) int {
	if h.opts.Broker != nil {
		if m.Op != codec.OpText && m.Op != codec.OpBinary {
			return 0
		}
		n, _, _ := h.toBroker(context.Background(), m, false)
		return n
	}
	n, _ := h.publish(m.Topics, m.Op, m.Payload, m.Exclude, nil)
	return n
}

// Result is what one publish did once every event loop has handled it.
type Result struct {
	Subscriptions int `json:"subscriptions"` // subscriptions to the topics at publish time (see PublishMessage)
	Queued        int `json:"queued"`        // connections the frame was handed to
	Dropped       int `json:"dropped"`       // connections over their cap that skipped it (Drop policy)
	Closed        int `json:"closed"`        // connections over their cap closed instead (Close policy)
	Overloaded    int `json:"overloaded"`    // event loops skipped because too much was queued for them (Options.MaxQueued)
}

// PublishWait is PublishMessage that waits until every event loop with
// subscribers has handed the frame to them (or skipped them), and says
// what happened. It returns ctx's error if ctx ends first; the publish
// still completes. Any goroutine; it allocates, unlike PublishMessage.
//
// With a Broker it waits until the broker has accepted the message (or
// returns the broker's error, wrapping ErrBrokerUnavailable when it cannot
// be reached); the Result then has only this node's Subscriptions, since
// the delivery happens when the message comes back from the broker.
func (h *Hub) PublishWait(ctx context.Context, m Message) (Result, error) {
	res, _, err := h.PublishWaitPositions(ctx, m)
	return res, err
}

// PublishWaitPositions is PublishWait that also returns the positions the
// message took on its topics that keep history, as PublishPositions does.
// With a Broker they are the ones its PublishStored gives (see
// StoredPublisher), and none from a Broker that is not one. Any goroutine.
func (h *Hub) PublishWaitPositions(ctx context.Context, m Message) (Result, []TopicPosition, error) {
	if h.opts.Broker != nil {
		if m.Op != codec.OpText && m.Op != codec.OpBinary {
			return Result{}, nil, nil
		}
		n, pos, err := h.toBroker(ctx, m, true)
		return Result{Subscriptions: n}, pos, err
	}
	res := &pubResult{done: make(chan struct{})}
	var (
		n   int
		ok  bool
		pos []TopicPosition
	)
	if h.opts.History != nil && (m.Op == codec.OpText || m.Op == codec.OpBinary) {
		n, ok = h.publishHistory(m.Topics, m.Op, m.Payload, m.Exclude, res, &pos)
	} else {
		n, ok = h.publish(m.Topics, m.Op, m.Payload, m.Exclude, res)
	}
	if !ok {
		return Result{Subscriptions: n, Overloaded: int(res.overloaded.Load())}, pos, nil
	}
	select {
	case <-res.done:
	case <-ctx.Done():
		return Result{Subscriptions: n}, pos, ctx.Err()
	}
	return Result{
		Subscriptions: n,
		Queued:        int(res.queued.Load()),
		Dropped:       int(res.dropped.Load()),
		Closed:        int(res.closed.Load()),
		Overloaded:    int(res.overloaded.Load()),
	}, pos, nil
}

// pubResult gathers a PublishWait's counts from the loops.
type pubResult struct {
	queued, dropped, closed, overloaded atomic.Int64
	done                                chan struct{} // closed when the last loop released the message
}

// publish sends a message (see Message) in this process; res, if not nil,
// gathers what the loops did. It returns the subscription count and whether
// any loop was given the message (when not, res.done is never closed).
func (h *Hub) publish(topics []string, op codec.OpCode, payload []byte, exclude uint64, res *pubResult) (int, bool) {
	if op != codec.OpText && op != codec.OpBinary {
		return 0, false
	}
	if h.opts.History != nil {
		return h.publishHistory(topics, op, payload, exclude, res, nil)
	}
	return h.fanout(topics, op, payload, exclude, res, nil)
}

// fanout is publish once the topics with history (st) have given the
// message its positions.
func (h *Hub) fanout(topics []string, op codec.OpCode, payload []byte, exclude uint64, res *pubResult, st []stamp) (int, bool) {
	var (
		stack [8]*delivery
		ds    = stack[:0]
		msg   *message
		total int
		zip   bool // some subscriber takes compressed frames
	)
	h.mu.RLock()
	for _, name := range topics {
		t := h.topics[name]
		if t == nil {
			continue
		}
		total += int(t.count.Load())
		sets := *t.sets.Load()
		if len(sets) == 0 {
			continue
		}
		if msg == nil {
			msg = h.newMessage(op, payload)
		}
		if t.deflated.Load() > 0 && len(payload) >= h.opts.CompressThreshold {
			zip = true
		}
		if h.opts.Envelope != nil && t.enveloped.Load() > 0 {
			msg.addEnvelope(h.opts.Envelope, name, position(st, name), op, payload)
		}
		for _, lt := range sets {
			ds = addDelivery(ds, lt, msg, exclude)
		}
	}
	h.mu.RUnlock()
	h.published.Add(1)
	if msg == nil {
		return total, false
	}
	if zip && msg.compress(op, payload, h.opts.CompressLevel) { // once, for every loop
		h.compressed.Add(1)
	}
	msg.res = res
	posted := 0
	for _, d := range ds {
		if !d.lh.admit(len(msg.frame)) {
			h.overloaded.Add(1)
			if res != nil {
				res.overloaded.Add(1)
			}
			d.recycle()
			continue
		}
		msg.refs.Add(1)
		d.lh.loop.Post(d)
		posted++
	}
	msg.release() // the publisher's own reference
	return total, posted > 0
}

// addDelivery adds lt to the delivery for its loop, making one if needed.
func addDelivery(ds []*delivery, lt *loopTopic, msg *message, exclude uint64) []*delivery {
	for _, d := range ds {
		if d.lh == lt.lh {
			d.sets = append(d.sets, lt)
			return ds
		}
	}
	d := deliveries.Get().(*delivery)
	d.lh, d.msg, d.exclude = lt.lh, msg, exclude
	d.sets = append(d.sets[:0], lt)
	return append(ds, d)
}

// SendTo sends one message to the connection with the given id, through
// engine.Conn.Send. Any goroutine.
func (h *Hub) SendTo(id uint64, op codec.OpCode, payload []byte) error {
	s := h.conns.get(id)
	if s == nil {
		return ErrNoConn
	}
	return s.c.Send(op, payload)
}

// Count returns the number of subscribers of topic. Any goroutine.
func (h *Hub) Count(topic string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if t := h.topics[topic]; t != nil {
		return int(t.count.Load())
	}
	return 0
}

// TopicInfo is one entry of Topics.
type TopicInfo struct {
	Name        string `json:"name"`
	Subscribers int    `json:"subscribers"`
}

// Topics lists the topics that have subscribers, sorted by name.
// Any goroutine.
func (h *Hub) Topics() []TopicInfo {
	h.mu.RLock()
	out := make([]TopicInfo, 0, len(h.topics))
	for name, t := range h.topics {
		if n := t.count.Load(); n > 0 {
			out = append(out, TopicInfo{Name: name, Subscribers: int(n)})
		}
	}
	h.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stats are the hub's counters since it started.
type Stats struct {
	Topics        int   `json:"topics"`        // topics with subscribers
	Subscriptions int64 `json:"subscriptions"` // connection-topic pairs
	Published     int64 `json:"published"`     // Publish and PublishMessage calls
	Delivered     int64 `json:"delivered"`     // frames handed to sockets
	Dropped       int64 `json:"dropped"`       // frames skipped by the Drop policy
	Overloaded    int64 `json:"overloaded"`    // deliveries to a loop skipped because it had MaxQueued waiting
	BrokerErrors  int64 `json:"broker_errors"` // publishes the Broker refused
	Compressed    int64 `json:"compressed"`    // publishes sent compressed (compressed once each, for every subscriber that negotiated permessage-deflate, when that made them smaller)
	SlowClosed    int64 `json:"slow_closed"`   // connections closed by the Close policy
	LiveMessages  int64 `json:"live_messages"` // messages some loop still holds
	Connections   int   `json:"connections"`   // connections the hub knows (open)
}

// Stats returns the current counters. Any goroutine.
func (h *Hub) Stats() Stats {
	s := Stats{Published: h.published.Load(), LiveMessages: h.live.Load(), Connections: h.conns.len(), Overloaded: h.overloaded.Load(), BrokerErrors: h.brokerErrors.Load(), Compressed: h.compressed.Load()}
	h.mu.RLock()
	for _, t := range h.topics {
		if n := t.count.Load(); n > 0 {
			s.Topics++
			s.Subscriptions += n
		}
	}
	h.mu.RUnlock()
	for _, lh := range *h.loops.Load() {
		s.Delivered += lh.delivered.Load()
		s.Dropped += lh.dropped.Load()
		s.SlowClosed += lh.slowClosed.Load()
	}
	return s
}

// loopHubFor returns the hub's state for loop l, creating it on first use.
// Loops are told apart by identity, not by Loop.Index: one Hub may serve
// the loops of several Engines, whose indexes repeat.
func (h *Hub) loopHubFor(l *engine.Loop) *loopHub {
	if lh := findLoopHub(*h.loops.Load(), l); lh != nil {
		return lh
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ls := *h.loops.Load()
	if lh := findLoopHub(ls, l); lh != nil {
		return lh
	}
	lh := newLoopHub(h, l)
	n := append(append(make([]*loopHub, 0, len(ls)+1), ls...), lh)
	h.loops.Store(&n)
	return lh
}

// findLoopHub returns the entry of ls for l, or nil. There is one entry per
// event loop (a few per CPU), so a scan beats a map.
func findLoopHub(ls []*loopHub, l *engine.Loop) *loopHub {
	for _, lh := range ls {
		if lh.loop == l {
			return lh
		}
	}
	return nil
}
