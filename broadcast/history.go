package broadcast

import (
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/bufpool"
)

// History: a topic whose name Options.History gives a HistoryPolicy keeps
// its last messages, each at a stream position, so that a subscriber that
// lost its connection can resume where it left off (SubscribeSince) with no
// gap and no duplicate. Topics without history pay nothing for it: with
// Options.History nil the publish path is unchanged, and with it set a
// publish to a topic without history costs one policy call and one map
// lookup under a read lock, and no allocation.

// HistoryPolicy is how much history one topic keeps.
type HistoryPolicy struct {
	// Size is how many of the topic's last messages are kept. 0 or
	// negative: the topic keeps no history.
	Size int
	// TTL is how long a message is kept. 0 or negative: no age limit.
	// A topic none of whose messages is younger than TTL and that has no
	// subscriber is forgotten (HistoryStats.Forgotten): it starts again
	// in a new epoch, and positions from before do not recover.
	TTL time.Duration
}

// Position is a place in a topic's stream: the offset of a message (each
// message of a topic gets the previous offset plus one, the first 1; 0 is
// the position before any message) in an epoch. A new epoch means that the
// stream was reset (a process restart, ResetHistory): offsets of another
// epoch mean nothing in it.
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// Recovery is what SubscribeSince did.
type Recovery struct {
	// History reports that the topic keeps history; when false the rest is
	// zero and the subscription is a plain one.
	History bool
	// Position is the topic's position when the subscription started: the
	// connection gets every later message (offset above Position.Offset)
	// live, in order, once.
	Position Position
	// Recovered: since was given, and every message after it was replayed
	// (or none was missed). False with since nil, or when history no longer
	// reaches back to since (expired by size or age) or since is of another
	// epoch: then nothing is replayed, and the subscriber should reload its
	// state and continue from Position.
	Recovered bool
	// Replayed is the number of messages queued for the connection ahead
	// of the live ones.
	Replayed int
}

// TopicPosition is the position a publish took on one of its topics
// (PublishPositions, PublishWaitPositions).
type TopicPosition struct {
	Topic string `json:"topic"`
	Position
}

// PublishPositions is PublishMessage that also returns the position the
// message took on each of its topics that keeps history, in the order of
// m.Topics (none for the others), so that a publisher can resume from its
// own message. With a Broker the positions are given when the message
// comes back from it, not known here: it returns none. Any goroutine.
func (h *Hub) PublishPositions(m Message) (int, []TopicPosition) {
	if h.opts.Broker != nil || h.opts.History == nil {
		return h.PublishMessage(m), nil
	}
	if m.Op != codec.OpText && m.Op != codec.OpBinary {
		return 0, nil
	}
	var out []TopicPosition
	n, _ := h.publishHistory(m.Topics, m.Op, m.Payload, m.Exclude, nil, &out)
	return n, out
}

// HistoryMessage is one message of a topic's history (Hub.History).
type HistoryMessage struct {
	Offset  uint64
	Op      codec.OpCode
	Payload []byte // shared with the history: do not modify
	Time    time.Time
}

// HistoryStats are the hub's history figures (Hub.HistoryStats).
type HistoryStats struct {
	Topics     int   `json:"topics"`     // topics that keep history
	Messages   int64 `json:"messages"`   // messages held
	Bytes      int64 `json:"bytes"`      // bytes of the frames held
	Attempted  int64 `json:"attempted"`  // SubscribeSince calls with a position to resume from
	Recovered  int64 `json:"recovered"`  // of those, the ones that recovered
	Failed     int64 `json:"failed"`     // of those, the ones that could not (recovered false)
	Replayed   int64 `json:"replayed"`   // messages replayed by SubscribeSince
	Duplicates int64 `json:"duplicates"` // messages from the Broker at or below a topic's last offset, not delivered again
	Forgotten  int64 `json:"forgotten"`  // topics whose history was forgotten: no unexpired message and no subscriber (see Options.History)
}

// histories is the hub's history state: one history per topic that has
// one (created on its first publish or subscription), in m and in order.
// A topic's history is forgotten once it holds no unexpired message and
// the topic has no subscriber on this node: each time a history is
// created, sweepBatch of the others are looked at in turn (order, from
// cursor), so that a server that sees many short-lived topics keeps about
// as many histories as topics with live messages or subscribers, at no
// cost per message. A forgotten topic starts again in a new epoch, at
// offset 0: a client that resumes from a position of the old one gets
// recovered false.
type histories struct {
	mu     sync.RWMutex
	m      map[string]*history
	order  []*history                       // the values of m, in no particular order
	cursor int                              // the next of order to look at
	clock  atomic.Pointer[func() time.Time] // nil: time.Now (tests move it)

	messages, bytes              atomic.Int64
	attempted, recovered, failed atomic.Int64
	replayed, duplicates         atomic.Int64
	forgotten                    atomic.Int64

	lookedUp atomic.Pointer[func()] // tests: called between looking a history up and locking it
}

// sweepBatch is how many histories one creation of a history looks at to
// forget: with k, a server that creates topics steadily keeps at most about
// k/(k-1) times as many histories as it has live ones.
const sweepBatch = 4

func (x *histories) init() {
	x.m = make(map[string]*history)
}

// now returns the history's time, in Unix nanoseconds.
func (x *histories) now() int64 {
	if f := x.clock.Load(); f != nil {
		return (*f)().UnixNano()
	}
	return time.Now().UnixNano()
}

// history is one topic's stream: its position and its last messages in a
// ring. mu orders the topic's publishes: a publish takes an offset, stores
// the message and posts it to every event loop under mu, so every
// subscriber and the history see the same order, and a SubscribeSince
// (under mu as well) falls exactly between two publishes.
type history struct {
	mu    sync.Mutex
	x     *histories
	name  string
	pol   HistoryPolicy
	epoch string
	top   uint64 // offset of the last message; 0 before the first
	ring  []histEntry
	head  int // index of the oldest entry
	n     int // entries held
	// brokered: positions come from the Broker (history_broker.go).
	brokered bool
	// unknown: brokered, and the Broker's position of the topic is not
	// known yet (no message seen, no page fetched): top means nothing, and
	// no position can be resumed from the cache.
	unknown bool
	// dead: forgotten (no longer in histories.m). Whoever finds it dead
	// under mu looks the topic up again.
	dead bool
}

// histEntry is one retained message. frame is the whole encoded frame,
// allocated for the history (not pooled): a replay queued for a connection
// may outlive the entry's place in the ring. env is the frame of its
// envelope (Options.Envelope), made on the first replay that wants it.
type histEntry struct {
	offset uint64
	prev   uint64 // offset of the message before it on the topic
	at     int64  // UnixNano when it was stored
	op     codec.OpCode
	hdr    uint8 // header length of frame
	frame  []byte
	env    []byte
}

func newEpoch() string { return strconv.FormatUint(rand.Uint64(), 36) }

// historyFor returns topic's history, creating it if its policy keeps
// one; nil when the topic keeps no history. Any goroutine.
func (h *Hub) historyFor(topic string) *history {
	x := &h.hist
	x.mu.RLock()
	hs := x.m[topic]
	x.mu.RUnlock()
	if hs != nil || h.opts.History == nil {
		return hs
	}
	pol := h.opts.History(topic)
	if pol.Size <= 0 {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if hs = x.m[topic]; hs == nil {
		h.sweepHistories(x.now())
		hs = &history{x: x, name: topic, pol: pol, epoch: newEpoch(), ring: make([]histEntry, min(pol.Size, minRing))}
		if f, ok := h.opts.Broker.(HistoryFetcher); ok {
			if e := f.HistoryEpoch(); e != "" {
				hs.epoch, hs.brokered, hs.unknown = e, true, true // positions come from the Broker
			}
		}
		x.m[topic] = hs
		x.order = append(x.order, hs)
	}
	return hs
}

// sweepHistories forgets, of the next sweepBatch histories in order, those
// that hold no unexpired message and whose topic has no subscriber. Under
// x.mu (written).
func (h *Hub) sweepHistories(now int64) {
	x := &h.hist
	for range sweepBatch {
		if len(x.order) == 0 {
			return
		}
		if x.cursor >= len(x.order) {
			x.cursor = 0
		}
		hs := x.order[x.cursor]
		if !h.forgettable(hs, now) {
			x.cursor++
			continue
		}
		last := len(x.order) - 1
		x.order[x.cursor] = x.order[last] // looked at next
		x.order[last] = nil
		x.order = x.order[:last]
		delete(x.m, hs.name)
		x.forgotten.Add(1)
	}
	if cap(x.order) > 64 && len(x.order) < cap(x.order)/4 {
		x.order = append([]*history(nil), x.order...) // let a peak's array go
	}
}

// forgettable marks hs dead and reports true when it holds no unexpired
// message and its topic has no subscriber. A history in use (its lock
// taken) is kept. Under x.mu (written).
func (h *Hub) forgettable(hs *history, now int64) bool {
	if !hs.mu.TryLock() {
		return false
	}
	defer hs.mu.Unlock()
	hs.expire(now)
	if hs.n > 0 || h.Count(hs.name) > 0 {
		return false
	}
	hs.dead = true
	return true
}

// lockHistory returns topic's history locked, or nil when the topic keeps
// no history; it never returns a forgotten one. Any goroutine.
func (h *Hub) lockHistory(topic string) *history {
	for {
		hs := h.historyFor(topic)
		if hs == nil {
			return nil
		}
		if f := h.hist.lookedUp.Load(); f != nil {
			(*f)()
		}
		hs.mu.Lock()
		if !hs.dead {
			return hs
		}
		hs.mu.Unlock()
	}
}

// expire drops the entries older than the TTL. Under hs.mu.
func (hs *history) expire(now int64) {
	if hs.pol.TTL <= 0 {
		return
	}
	limit := now - int64(hs.pol.TTL)
	for hs.n > 0 && hs.ring[hs.head].at <= limit {
		hs.dropOldest()
	}
}

// dropOldest removes the oldest entry. Under hs.mu.
func (hs *history) dropOldest() {
	e := &hs.ring[hs.head]
	hs.x.messages.Add(-1)
	hs.x.bytes.Add(-int64(len(e.frame) + len(e.env)))
	*e = histEntry{}
	hs.head = (hs.head + 1) % len(hs.ring)
	hs.n--
}

// entry returns the i-th entry from the oldest. Under hs.mu.
func (hs *history) entry(i int) *histEntry {
	return &hs.ring[(hs.head+i)%len(hs.ring)]
}

// minRing is the ring a history starts with; it doubles up to the
// policy's Size as messages come, so that a topic that keeps 100,000
// messages but has seen ten costs ten entries' worth, not 8 MB.
const minRing = 16

// add stores a message at offset (after prev). Under hs.mu.
func (hs *history) add(offset, prev uint64, op codec.OpCode, payload []byte, now int64) {
	if hs.n == len(hs.ring) {
		if len(hs.ring) < hs.pol.Size {
			ring := make([]histEntry, min(2*len(hs.ring), hs.pol.Size))
			for i := range hs.n {
				ring[i] = *hs.entry(i)
			}
			hs.ring, hs.head = ring, 0
		} else {
			hs.dropOldest()
		}
	}
	e := hs.entry(hs.n)
	*e = newEntry(offset, prev, op, payload, now)
	hs.n++
	hs.top, hs.unknown = offset, false
	hs.x.messages.Add(1)
	hs.x.bytes.Add(int64(len(e.frame)))
}

// newEntry makes the entry of a message, with its own copy of the frame.
func newEntry(offset, prev uint64, op codec.OpCode, payload []byte, now int64) histEntry {
	frame := codec.AppendFrame(make([]byte, 0, codec.FrameSize(len(payload))), op, payload)
	return histEntry{offset: offset, prev: prev, at: now, op: op, hdr: uint8(len(frame) - len(payload)), frame: frame}
}

// since returns the index of the first entry after offset, and whether the
// entries from there to the top follow each other with none missing, so
// that a subscriber at offset misses nothing by replaying them. Under
// hs.mu, after expire.
func (hs *history) since(offset uint64) (int, bool) {
	if hs.unknown {
		return 0, false // the Broker's position is not known here
	}
	if offset == hs.top {
		return hs.n, true
	}
	if offset > hs.top || hs.n == 0 {
		return 0, false
	}
	// Entries are in offset order: find the first after offset.
	lo, hi := 0, hs.n
	for lo < hi {
		mid := (lo + hi) / 2
		if hs.entry(mid).offset <= offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i := lo
	if i == hs.n || hs.entry(i).prev != offset {
		return 0, false // the message right after offset is gone
	}
	for j := i + 1; j < hs.n; j++ {
		if hs.entry(j).prev != hs.entry(j-1).offset {
			return 0, false // a hole (a Broker's gap that was never filled)
		}
	}
	return i, true
}

// stamp is the position one publish took on one topic with history.
type stamp struct {
	hs     *history
	offset uint64
}

// position returns the position st gives topic, or the zero Position.
func position(st []stamp, topic string) Position {
	for _, s := range st {
		if s.hs.name == topic {
			return Position{Offset: s.offset, Epoch: s.hs.epoch}
		}
	}
	return Position{}
}

// publishHistory is publish with Options.History set: the topics that keep
// history are locked (in name order, so that publishes to several topics
// cannot deadlock), each gives the message its next offset and stores it,
// and the message is posted to the event loops before they are unlocked.
// With out not nil, the positions the message took are appended to *out,
// in the order of topics.
func (h *Hub) publishHistory(topics []string, op codec.OpCode, payload []byte, exclude uint64, res *pubResult, out *[]TopicPosition) (int, bool) {
	var arr [8]stamp
	st := arr[:0]
	for locked := false; !locked; {
		st = st[:0]
		for _, name := range topics {
			if hs := h.historyFor(name); hs != nil && !slices.ContainsFunc(st, func(s stamp) bool { return s.hs == hs }) {
				st = append(st, stamp{hs: hs})
			}
		}
		if len(st) == 0 {
			return h.fanout(topics, op, payload, exclude, res, nil)
		}
		for i := 1; i < len(st); i++ { // insertion sort: few topics, no allocation
			for j := i; j > 0 && st[j].hs.name < st[j-1].hs.name; j-- {
				st[j], st[j-1] = st[j-1], st[j]
			}
		}
		if f := h.hist.lookedUp.Load(); f != nil {
			(*f)()
		}
		locked = true
		for _, s := range st {
			s.hs.mu.Lock()
			locked = locked && !s.hs.dead
		}
		if !locked { // one was forgotten meanwhile: look them up again
			for _, s := range st {
				s.hs.mu.Unlock()
			}
		}
	}
	now := h.hist.now()
	for i := range st {
		hs := st[i].hs
		hs.expire(now)
		st[i].offset = hs.top + 1
		hs.add(hs.top+1, hs.top, op, payload, now)
	}
	if out != nil {
		for _, name := range topics {
			if p := position(st, name); p.Epoch != "" && !slices.ContainsFunc(*out, func(tp TopicPosition) bool { return tp.Topic == name }) {
				*out = append(*out, TopicPosition{Topic: name, Position: p})
			}
		}
	}
	n, ok := h.fanout(topics, op, payload, exclude, res, st)
	for _, s := range st {
		s.hs.mu.Unlock()
	}
	return n, ok
}

// SubscribeSince subscribes c to topic, as Subscribe does, and when the
// topic keeps history (Options.History) tells where the subscription
// starts and, with since not nil, resumes from since: every message after
// since that history still holds is queued for c ahead of the live ones,
// with none missing and none twice even while publishers keep publishing
// (the subscription falls between two publishes of the topic, and its
// replay and its first live message are in order on c's event loop). Loop
// only. The replay is written after the handler returns, so an ack the
// handler writes goes ahead of it.
//
// Recovery.Recovered is true only when every message after since was
// replayed (or there was none); otherwise nothing is replayed and c
// starts at Recovery.Position. A connection already subscribed to topic
// stays as it is (Recovered false, nothing replayed). Errors are
// Subscribe's. It costs one task and, with a replay, a slice of its frames;
// a replay shares the history's frames (for a connection with SetEnvelope,
// the envelope of each is made once and kept with it).
func (h *Hub) SubscribeSince(c *engine.Conn, topic string, since *Position) (Recovery, error) {
	if !c.IsOpen() {
		return Recovery{}, engine.ErrClosed
	}
	s := h.conns.get(c.ID())
	if s == nil || s.c != c {
		return Recovery{}, ErrNotManaged
	}
	hs := h.lockHistory(topic)
	if hs == nil {
		return Recovery{}, h.Subscribe(c, topic)
	}
	defer hs.mu.Unlock()
	lh := h.loopHubFor(c.Loop())
	lt := lh.topics[topic]
	hs.expire(h.hist.now())
	rec := Recovery{History: true, Position: Position{Offset: hs.top, Epoch: hs.epoch}}
	if lt != nil && s.member(lt) >= 0 {
		return rec, nil
	}
	if max := h.opts.MaxSubscriptions; max > 0 && len(s.in) >= max {
		return Recovery{}, ErrTooManySubscriptions
	}
	var frames [][]byte
	if since != nil {
		h.hist.attempted.Add(1)
		i, ok := 0, false
		if since.Epoch == hs.epoch {
			i, ok = hs.since(since.Offset)
		}
		if ok {
			rec.Recovered, rec.Replayed = true, hs.n-i
			h.hist.recovered.Add(1)
			h.hist.replayed.Add(int64(rec.Replayed))
			if rec.Replayed > 0 {
				frames = make([][]byte, 0, rec.Replayed)
				for ; i < hs.n; i++ {
					frames = append(frames, h.replayFrame(hs, hs.entry(i), s.envelope))
				}
			}
		} else {
			h.hist.failed.Add(1)
		}
	}
	if lt == nil {
		lt = h.addLoopTopic(lh, topic)
	}
	lt.pending++
	s.add(membership{lt: lt, idx: -1})
	s.count(lt.t, 1)
	c.Loop().Post(&joinTask{h: h, s: s, lt: lt, frames: frames})
	return rec, nil
}

// replayFrame returns the frame of e for a connection, its envelope if
// envelope. Under hs.mu.
func (h *Hub) replayFrame(hs *history, e *histEntry, envelope bool) []byte {
	if !envelope || h.opts.Envelope == nil {
		return e.frame
	}
	if e.env == nil {
		p := h.opts.Envelope(nil, hs.name, Position{Offset: e.offset, Epoch: hs.epoch}, e.op, e.frame[e.hdr:])
		e.env = codec.AppendFrame(make([]byte, 0, codec.FrameSize(len(p))), codec.OpText, p)
		hs.x.bytes.Add(int64(len(e.env)))
	}
	return e.env
}

// joinTask ends a SubscribeSince on the connection's loop: it runs after
// every delivery of the topic posted before the subscription (which the
// connection does not get: they are in the replay, or before since) and
// before every one posted after it (which it gets).
type joinTask struct {
	h      *Hub
	s      *sub
	lt     *loopTopic
	frames [][]byte
}

func (j *joinTask) Run(*engine.Loop) {
	s, lt := j.s, j.lt
	lt.pending--
	i := s.member(lt)
	if i < 0 || s.in[i].idx >= 0 { // unsubscribed or closed meanwhile
		if len(lt.members) == 0 && lt.pending == 0 && lt.lh.topics[lt.t.name] == lt {
			j.h.removeLoopTopic(lt)
		}
		return
	}
	s.in[i].idx = int32(len(lt.members))
	lt.members = append(lt.members, s)
	if len(j.frames) == 0 || !s.c.IsOpen() {
		return
	}
	lh := lt.lh
	for _, f := range j.frames {
		s.pend = append(s.pend, f)
		s.pendBytes += int32(min(len(f), maxPendBytes-int(s.pendBytes)))
	}
	if !s.dirty {
		s.dirty = true
		lh.dirty = append(lh.dirty, s)
	}
	if !lh.flushing {
		lh.flushing = true
		lh.loop.FlushLater(lh)
	}
}

// count adds d to t's counts for s's subscription to it.
func (s *sub) count(t *topic, d int64) {
	t.count.Add(d)
	if s.c.Compression().On {
		t.deflated.Add(d)
	}
	if s.envelope {
		t.enveloped.Add(d)
	}
}

// SetEnvelope makes c get every publish (and every replay) in the envelope
// of Options.Envelope, a text frame made once per publish and topic,
// instead of the publish's own frame (on: true), or its own frame again.
// Loop only. Envelope frames are not compressed. A message published
// before the change may still reach c in the old form, and a publish that
// comes to c through two topics comes once, in the envelope of the first.
func (h *Hub) SetEnvelope(c *engine.Conn, on bool) {
	s := h.conns.get(c.ID())
	if s == nil || s.c != c || s.envelope == on {
		return
	}
	for _, m := range s.in {
		s.count(m.lt.t, -1)
	}
	s.envelope = on
	for _, m := range s.in {
		s.count(m.lt.t, 1)
	}
}

// envFrame is the envelope of a message for one of its topics.
type envFrame struct {
	topic string
	buf   *[]byte
}

// addEnvelope makes the envelope frame of m for topic. Called by the
// publisher before any loop sees m.
func (m *message) addEnvelope(env func([]byte, string, Position, codec.OpCode, []byte) []byte, topic string, pos Position, op codec.OpCode, payload []byte) {
	scratch := bufpool.Get(len(payload) + len(topic) + 128)
	*scratch = env((*scratch)[:0], topic, pos, op, payload)
	b := bufpool.Get(codec.FrameSize(len(*scratch)))
	*b = codec.AppendFrame(*b, codec.OpText, *scratch)
	bufpool.Put(scratch)
	m.envs = append(m.envs, envFrame{topic: topic, buf: b})
}

// envFor returns m's envelope frame for topic, or nil when m was published
// before the topic had envelope subscribers.
func (m *message) envFor(topic string) []byte {
	for _, e := range m.envs {
		if e.topic == topic {
			return *e.buf
		}
	}
	return nil
}

// releaseEnvelopes returns m's envelope frames to the pool.
func (m *message) releaseEnvelopes() {
	for i, e := range m.envs {
		bufpool.Put(e.buf)
		m.envs[i] = envFrame{}
	}
	m.envs = m.envs[:0]
}

// History returns the messages topic's history holds after offset since,
// oldest first, at most limit of them (0 or negative: all), and the topic's
// position; ok is false when the topic keeps no history. Any goroutine.
func (h *Hub) History(topic string, since uint64, limit int) (msgs []HistoryMessage, pos Position, ok bool) {
	hs := h.lockHistory(topic)
	if hs == nil {
		return nil, Position{}, false
	}
	defer hs.mu.Unlock()
	hs.expire(h.hist.now())
	i := sort.Search(hs.n, func(i int) bool { return hs.entry(i).offset > since })
	n := hs.n - i
	if limit > 0 {
		n = min(n, limit)
	}
	msgs = make([]HistoryMessage, n)
	for k := range msgs {
		e := hs.entry(i + k)
		msgs[k] = HistoryMessage{Offset: e.offset, Op: e.op, Payload: e.frame[e.hdr:], Time: time.Unix(0, e.at)}
	}
	return msgs, Position{Offset: hs.top, Epoch: hs.epoch}, true
}

// ResetHistory forgets topic's history and starts a new epoch at offset
// 0: positions of the old epoch no longer recover. It reports whether the
// topic keeps history. Any goroutine.
func (h *Hub) ResetHistory(topic string) bool {
	hs := h.lockHistory(topic)
	if hs == nil {
		return false
	}
	defer hs.mu.Unlock()
	hs.restart(newEpoch())
	return true
}

// HistoryStats returns the history figures. Any goroutine.
func (h *Hub) HistoryStats() HistoryStats {
	x := &h.hist
	x.mu.RLock()
	n := len(x.m)
	x.mu.RUnlock()
	return HistoryStats{
		Topics: n, Messages: x.messages.Load(), Bytes: x.bytes.Load(),
		Attempted: x.attempted.Load(), Recovered: x.recovered.Load(), Failed: x.failed.Load(),
		Replayed: x.replayed.Load(), Duplicates: x.duplicates.Load(), Forgotten: x.forgotten.Load(),
	}
}
