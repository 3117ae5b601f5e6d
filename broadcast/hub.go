package broadcast

import (
	"errors"
	"math"
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

// DefaultMaxBuffered is the default outbound cap per connection.
const DefaultMaxBuffered = 1 << 20

// Options configures a Hub. The zero value is valid.
type Options struct {
	// MaxBuffered caps the bytes a connection may have waiting to be sent
	// (gnet's outbound buffer plus frames queued by the hub) before
	// Policy applies. 0 means DefaultMaxBuffered (1 MiB); negative means no
	// cap.
	MaxBuffered int
	// Policy for frames over the cap: Drop (the default) or Close.
	Policy Policy
	// CloseCode is the close code of the Close policy. 0 means 1008
	// (policy violation); 1013 (try again later) is the other usual choice.
	CloseCode codec.StatusCode
}

// Hub is a set of topics. Its methods are safe for concurrent use unless
// marked "loop only".
type Hub struct {
	opts Options

	mu     sync.RWMutex
	topics map[string]*topic
	loops  atomic.Pointer[[]*loopHub] // one per event loop, of any number of engines; copied on write

	conns connIndex

	published atomic.Int64
	live      atomic.Int64 // messages not yet released by every loop
}

// New returns a Hub.
func New(o Options) *Hub {
	switch {
	case o.MaxBuffered == 0:
		o.MaxBuffered = DefaultMaxBuffered
	case o.MaxBuffered < 0:
		o.MaxBuffered = math.MaxInt
	}
	if o.CloseCode == 0 {
		o.CloseCode = codec.StatusPolicyViolation
	}
	h := &Hub{opts: o, topics: make(map[string]*topic)}
	h.loops.Store(new([]*loopHub))
	h.conns.init()
	return h
}

// topic is a published name. Its subscribers live in one loopTopic per
// event loop; sets is copied on write under Hub.mu.
type topic struct {
	name  string
	count atomic.Int64
	sets  atomic.Pointer[[]*loopTopic]
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
	var one [1]string
	one[0] = topic
	return h.PublishMessage(Message{Topics: one[:], Op: op, Payload: payload})
}

// PublishMessage sends m (see Message) and returns the number of
// subscriptions to its topics at the time of the call (a connection
// subscribed to two of the topics counts twice, but gets the message once).
// Any goroutine. The frame is encoded once; each event loop with
// subscribers gets one task.
func (h *Hub) PublishMessage(m Message) int {
	if m.Op != codec.OpText && m.Op != codec.OpBinary {
		return 0
	}
	var (
		stack [8]*delivery
		ds    = stack[:0]
		msg   *message
		total int
	)
	h.mu.RLock()
	for _, name := range m.Topics {
		t := h.topics[name]
		if t == nil {
			continue
		}
		total += int(t.count.Load())
		for _, lt := range *t.sets.Load() {
			if msg == nil {
				msg = h.newMessage(m.Op, m.Payload)
			}
			ds = addDelivery(ds, lt, msg, m.Exclude)
		}
	}
	h.mu.RUnlock()
	h.published.Add(1)
	if msg == nil {
		return total
	}
	msg.refs.Add(int32(len(ds)))
	for _, d := range ds {
		d.lh.loop.Post(d)
	}
	msg.release() // the publisher's own reference
	return total
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
	c := h.conns.get(id)
	if c == nil {
		return ErrNoConn
	}
	return c.Send(op, payload)
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
	SlowClosed    int64 `json:"slow_closed"`   // connections closed by the Close policy
	LiveMessages  int64 `json:"live_messages"` // messages some loop still holds
	Connections   int   `json:"connections"`   // connections the hub knows (open)
}

// Stats returns the current counters. Any goroutine.
func (h *Hub) Stats() Stats {
	s := Stats{Published: h.published.Load(), LiveMessages: h.live.Load(), Connections: h.conns.len()}
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
