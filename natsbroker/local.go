package natsbroker

import (
	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// Local is how a node's Broker reaches the node's own state, to answer the
// other nodes. The Hub fits most fields with its methods:
//
//	b, _ := natsbroker.New(opts)
//	hub := broadcast.New(broadcast.Options{Broker: b})
//	b.SetLocal(natsbroker.Local{Topics: hub.Topics, Count: hub.Count, SendTo: hub.SendTo})
//
// (The Hub needs the Broker first, hence a setter rather than Options.)
// Until SetLocal the node answers with no topics, no presence and
// ErrNoDirect. Every field may be nil; the functions are called from the
// Broker's goroutines and must not block for long.
type Local struct {
	// Topics returns this node's topics with subscribers, for AllTopics.
	Topics func() []broadcast.TopicInfo
	// Count returns this node's subscribers of a topic, for TopicCounts.
	// nil: it is looked up in Topics.
	Count func(topic string) int
	// Presence returns this node's counts of the rooms whose presence is
	// shared (rooms missing, or with 0, count as 0). It is called every
	// Options.HeartbeatInterval and after PresenceChanged, on one
	// goroutine.
	Presence func() []broadcast.TopicInfo
	// OnPresence is called when a room's cluster-wide count (Presence)
	// changes, with the new count, on the same goroutine as Presence, in
	// order.
	OnPresence func(room string, online int)
	// SendTo delivers a SendTo aimed at this node to its connection;
	// broadcast.ErrNoConn tells the sender the connection is gone.
	// payload is valid until it returns. It is called on one goroutine.
	SendTo func(conn uint64, op codec.OpCode, payload []byte) error
}

// SetLocal sets how the Broker reaches this node's state (see Local) and
// sends the node's presence counts to the peers soon. Any goroutine.
func (b *Broker) SetLocal(l Local) {
	b.local.Store(&l)
	b.PresenceChanged()
}

// loc returns the current Local; never nil.
func (b *Broker) loc() *Local {
	if l := b.local.Load(); l != nil {
		return l
	}
	return &noLocal
}

var noLocal Local
