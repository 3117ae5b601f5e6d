package natsbroker

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
)

// Heartbeats. Every node publishes on <prefix>.presence, every
// HeartbeatInterval and presenceDelay after PresenceChanged, its id and its
// presence counts (Local.Presence), whole. Every node keeps the last
// counts of each peer and forgets a peer after expireBeats of its
// intervals without a heartbeat, or at once when the peer says it is
// leaving (Close). The cluster-wide count of a room is the sum of the
// counts it knows, its own included: a peer's part is at most one interval
// old (plus presenceDelay after a change), and a peer that vanished
// without a goodbye still counts for up to expireBeats+1 intervals.
//
// The same heartbeats tell a node which peers are alive (Nodes), which is
// how TopicCounts and AllTopics know when every node has answered.

// presenceDelay batches the changes that follow a PresenceChanged.
const presenceDelay = 50 * time.Millisecond

// expireBeats is how many heartbeats of a peer may be missed before the
// peer is forgotten.
const expireBeats = 3

// presence is the cluster's presence as this node knows it.
type presence struct {
	msgs chan *nats.Msg // heartbeats received
	kick chan struct{}  // PresenceChanged, capacity 1

	mu     sync.Mutex
	totals map[string]int   // cluster-wide count of each room
	local  map[string]int   // this node's last counts
	peers  map[string]*peer // by node id
}

type peer struct {
	instance uint64
	counts   map[string]int
	expires  time.Time
}

func (pr *presence) init() {
	pr.msgs = make(chan *nats.Msg, 1024)
	pr.kick = make(chan struct{}, 1)
	pr.totals = make(map[string]int)
	pr.local = make(map[string]int)
	pr.peers = make(map[string]*peer)
}

// Presence returns the cluster-wide count of room: this node's count from
// Local.Presence plus every live peer's (see the package doc for how
// old it may be). Any goroutine.
func (b *Broker) Presence(room string) int {
	b.pr.mu.Lock()
	defer b.pr.mu.Unlock()
	return b.pr.totals[room]
}

// PresenceChanged tells the Broker that this node's presence counts
// changed: it calls Local.Presence and sends them to the peers within
// presenceDelay (50 ms), batching the changes in between. It does not
// block. Any goroutine.
func (b *Broker) PresenceChanged() {
	select {
	case b.pr.kick <- struct{}{}:
	default:
	}
}

// Nodes returns the ids of the nodes this one has heard from within
// three of their heartbeat intervals, itself included, sorted. Any
// goroutine.
func (b *Broker) Nodes() []string {
	now := time.Now()
	b.pr.mu.Lock()
	out := make([]string, 0, len(b.pr.peers)+1)
	out = append(out, b.node)
	for id, p := range b.pr.peers {
		if p.expires.After(now) {
			out = append(out, id)
		}
	}
	b.pr.mu.Unlock()
	slices.Sort(out)
	return out
}

// runPresence sends the heartbeats and applies the peers'. It owns the
// calls to Local.Presence and Local.OnPresence.
func (b *Broker) runPresence() {
	defer b.wg.Done()
	tick := time.NewTicker(b.opts.HeartbeatInterval)
	defer tick.Stop()
	var soon <-chan time.Time
	b.heartbeat()
	for {
		select {
		case <-tick.C:
			b.expirePeers(time.Now())
			b.heartbeat()
		case <-b.pr.kick:
			if soon == nil {
				soon = time.After(presenceDelay)
			}
		case <-soon:
			soon = nil
			b.heartbeat()
		case m := <-b.pr.msgs:
			b.receiveHeartbeat(m)
		case <-b.done:
			b.goodbye()
			return
		}
	}
}

// heartbeat reads this node's counts and publishes them.
func (b *Broker) heartbeat() {
	var rooms []broadcast.TopicInfo
	if f := b.loc().Presence; f != nil {
		rooms = f()
	}
	counts := make(map[string]int, len(rooms))
	for _, r := range rooms {
		if r.Subscribers > 0 {
			counts[r.Name] += r.Subscribers
		}
	}
	b.pr.mu.Lock()
	old := b.pr.local
	b.pr.local = counts
	changed := b.pr.update(old, counts, nil)
	b.pr.mu.Unlock()
	b.notifyPresence(changed)

	sent := make([]broadcast.TopicInfo, 0, len(counts))
	for name, n := range counts {
		sent = append(sent, broadcast.TopicInfo{Name: name, Subscribers: n})
	}
	msg := appendHeartbeat(nil, 0, b.instance, uint64(b.opts.HeartbeatInterval/time.Millisecond), b.node, sent)
	if err := b.nc.Publish(b.presenceSubject, msg); err != nil && b.nc.IsConnected() {
		b.log.Warn("natsbroker: sending heartbeat", zap.Error(err))
	}
}

// goodbye tells the peers this node is leaving, so that they forget its
// counts at once.
func (b *Broker) goodbye() {
	if !b.nc.IsConnected() {
		return
	}
	msg := appendHeartbeat(nil, flagLeaving, b.instance, uint64(b.opts.HeartbeatInterval/time.Millisecond), b.node, nil)
	if b.nc.Publish(b.presenceSubject, msg) == nil {
		ctx, cancel := context.WithTimeout(context.Background(), min(b.opts.RequestTimeout, time.Second))
		defer cancel()
		_ = b.nc.FlushWithContext(ctx)
	}
}

// receiveHeartbeat applies a peer's heartbeat.
func (b *Broker) receiveHeartbeat(m *nats.Msg) {
	hb, ok := decodeHeartbeat(m.Data)
	if !ok {
		b.malformed.Add(1)
		return
	}
	if hb.node == b.node {
		if hb.instance != b.instance {
			b.log.Warn("natsbroker: another process uses this node id", zap.String("node", b.node))
		}
		return
	}
	now := time.Now()
	counts := make(map[string]int, len(hb.counts))
	for _, r := range hb.counts {
		counts[r.Name] += r.Subscribers
	}
	b.pr.mu.Lock()
	p := b.pr.peers[hb.node]
	isNew := p == nil || !p.expires.After(now)
	var old map[string]int
	if p != nil {
		old = p.counts
	}
	var changed []string
	if hb.flags&flagLeaving != 0 {
		if p != nil && p.instance == hb.instance {
			changed = b.pr.update(old, nil, nil)
			delete(b.pr.peers, hb.node)
		}
		isNew = false
	} else {
		if p == nil {
			p = &peer{}
			b.pr.peers[hb.node] = p
		}
		interval := time.Duration(max(hb.interval, 1)) * time.Millisecond
		p.instance, p.counts, p.expires = hb.instance, counts, now.Add(expireBeats*interval)
		changed = b.pr.update(old, counts, nil)
	}
	b.pr.mu.Unlock()
	b.notifyPresence(changed)
	if isNew {
		// A node just joined (or came back): answer soon rather than at
		// the next tick, so that it knows the cluster at once.
		b.PresenceChanged()
	}
}

// expirePeers forgets the peers whose heartbeats stopped.
func (b *Broker) expirePeers(now time.Time) {
	var changed []string
	b.pr.mu.Lock()
	for id, p := range b.pr.peers {
		if !p.expires.After(now) {
			changed = b.pr.update(p.counts, nil, changed)
			delete(b.pr.peers, id)
			b.log.Info("natsbroker: node stopped sending heartbeats", zap.String("node", id))
		}
	}
	b.pr.mu.Unlock()
	b.notifyPresence(changed)
}

// update replaces the counts old of one node by next in the totals, and
// appends the rooms whose total changed to changed. pr.mu is held.
func (pr *presence) update(old, next map[string]int, changed []string) []string {
	for room, n := range old {
		if d := next[room] - n; d != 0 {
			pr.add(room, d)
			changed = append(changed, room)
		}
	}
	for room, n := range next {
		if _, ok := old[room]; !ok {
			pr.add(room, n)
			changed = append(changed, room)
		}
	}
	return changed
}

func (pr *presence) add(room string, d int) {
	if n := pr.totals[room] + d; n != 0 {
		pr.totals[room] = n
	} else {
		delete(pr.totals, room)
	}
}

// notifyPresence calls Local.OnPresence for each changed room.
func (b *Broker) notifyPresence(rooms []string) {
	f := b.loc().OnPresence
	if f == nil || len(rooms) == 0 {
		return
	}
	slices.Sort(rooms)
	rooms = slices.Compact(rooms)
	for _, room := range rooms {
		f(room, b.Presence(room))
	}
}
