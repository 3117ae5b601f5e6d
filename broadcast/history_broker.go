package broadcast

import (
	"context"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// History in a cluster: a Broker that keeps history itself (NATS
// JetStream, say) gives each message of a topic with history its position
// (BrokerMessage.Offset, Prev and Epoch), the same on every node, and the
// hub's history of the topic becomes a cache of the Broker's: it keeps the
// positions it is given, drops a message at or below the last offset it
// has (a repeat), and starts over when the epoch changes. A Broker that
// also implements HistoryFetcher lets SubscribeSinceAsync resume a client
// from a position this node's cache does not reach (a client that was on
// another node), by reading the missing messages from the Broker first.

// HistoryFetcher is implemented by a Broker that keeps history.
type HistoryFetcher interface {
	// FetchHistory returns the messages of topic after offset after, in
	// order, each with its position, at most limit of them. Complete
	// reports that the first returned message (or, with none, the top of
	// the topic) directly follows after: nothing after it was removed, and
	// no more than limit messages followed it. It may block on I/O: it is
	// never called from an event loop.
	FetchHistory(ctx context.Context, topic string, after uint64, limit int) (HistoryPage, error)
	// HistoryEpoch returns the epoch of the Broker's history now: a topic
	// the hub starts following starts in it. It must not block.
	HistoryEpoch() string
}

// HistoryPage is what FetchHistory returns.
type HistoryPage struct {
	Epoch    string
	Messages []BrokerMessage // Topics[0] is the topic; Offset, Prev and Epoch set
	Complete bool
}

// fetchTimeout bounds one FetchHistory of SubscribeSinceAsync.
const fetchTimeout = 5 * time.Second

// publishPositioned delivers a message that came through the Broker with
// its position (bm.Epoch set): it goes to bm.Topics[0] at bm.Offset.
func (h *Hub) publishPositioned(bm *BrokerMessage, exclude uint64) {
	if bm.Op != codec.OpText && bm.Op != codec.OpBinary {
		return
	}
	topic := bm.Topics[:1]
	hs := h.lockHistory(topic[0])
	if hs == nil {
		h.fanout(topic, bm.Op, bm.Payload, exclude, nil, nil)
		return
	}
	defer hs.mu.Unlock()
	if hs.epoch != bm.Epoch {
		hs.restart(bm.Epoch)
	}
	hs.brokered = true
	if bm.Offset <= hs.top {
		h.hist.duplicates.Add(1) // a repeat (a repaired gap overlapping a late message)
		return
	}
	now := h.hist.now()
	hs.expire(now)
	hs.add(bm.Offset, bm.Prev, bm.Op, bm.Payload, now)
	h.fanout(topic, bm.Op, bm.Payload, exclude, nil, []stamp{{hs: hs, offset: bm.Offset}})
}

// restart empties hs for a new epoch. Under hs.mu.
func (hs *history) restart(epoch string) {
	for hs.n > 0 {
		hs.dropOldest()
	}
	hs.ring = make([]histEntry, min(hs.pol.Size, minRing))
	hs.head, hs.top, hs.epoch = 0, 0, epoch
}

// canResume reports whether since can be resumed from the cache. Under
// hs.mu.
func (hs *history) canResume(since Position, now int64) bool {
	hs.expire(now)
	if since.Epoch != hs.epoch {
		return false
	}
	_, ok := hs.since(since.Offset)
	return ok
}

// seed adds the messages of page, a complete page of the messages after
// offset after, older than what the cache holds, to the cache, when they
// join up with it. Under hs.mu.
func (hs *history) seed(page HistoryPage, after uint64, now int64) {
	if page.Epoch != hs.epoch {
		if hs.brokered && hs.n > 0 {
			return // the cache follows live messages of another epoch
		}
		hs.restart(page.Epoch)
		hs.unknown = true
	}
	hs.brokered = true
	msgs := page.Messages
	if len(msgs) == 0 {
		// Nothing follows after: that is the topic's position, unless the
		// cache has seen further.
		if hs.n == 0 && (hs.unknown || after > hs.top) {
			hs.top, hs.unknown = after, false
		}
		return
	}
	if hs.n > 0 {
		oldest := hs.entry(0)
		k := 0
		for k < len(msgs) && msgs[k].Offset < oldest.offset {
			k++
		}
		if k == 0 || msgs[k-1].Offset != oldest.prev {
			return // they do not join up: leave the cache as it is
		}
		msgs = msgs[:k]
	}
	if room := hs.pol.Size - hs.n; len(msgs) > room {
		return // more than the topic keeps: a resume from there fails anyway
	}
	ring := make([]histEntry, max(len(hs.ring), hs.n+len(msgs)))
	for i := range msgs {
		m := &msgs[i]
		ring[i] = newEntry(m.Offset, m.Prev, m.Op, m.Payload, now)
		hs.x.messages.Add(1)
		hs.x.bytes.Add(int64(len(ring[i].frame)))
	}
	for i := range hs.n {
		ring[len(msgs)+i] = *hs.entry(i)
	}
	hs.ring, hs.head, hs.n = ring, 0, hs.n+len(msgs)
	if last := ring[hs.n-1].offset; last > hs.top || hs.unknown {
		hs.top = last
	}
	hs.unknown = false
}

// SubscribeSinceAsync is SubscribeSince that, when the Broker keeps
// history (HistoryFetcher) and this node's cache cannot resume from since,
// first reads what is missing from the Broker on another goroutine, then
// subscribes on c's loop. done is called on c's loop with SubscribeSince's
// results, at once when no read is needed. Loop only.
func (h *Hub) SubscribeSinceAsync(c *engine.Conn, topic string, since *Position, done func(Recovery, error)) {
	f, _ := h.opts.Broker.(HistoryFetcher)
	hs := h.historyFor(topic)
	if f == nil || since == nil || hs == nil {
		done(h.SubscribeSince(c, topic, since))
		return
	}
	hs.mu.Lock()
	ok := hs.canResume(*since, h.hist.now())
	hs.mu.Unlock()
	if ok {
		done(h.SubscribeSince(c, topic, since))
		return
	}
	pos := *since
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		page, err := f.FetchHistory(ctx, topic, pos.Offset, hs.pol.Size)
		if err == nil && page.Complete && page.Epoch == pos.Epoch {
			hs.mu.Lock()
			if !hs.dead { // else SubscribeSince finds a new history: nothing recovers
				hs.seed(page, pos.Offset, h.hist.now())
			}
			hs.mu.Unlock()
		}
		c.Loop().Post(loopTask(func() { done(h.SubscribeSince(c, topic, &pos)) }))
	}()
}

// loopTask is a function posted to a loop.
type loopTask func()

func (f loopTask) Run(*engine.Loop) { f() }
