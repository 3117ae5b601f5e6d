package broadcast

import (
	"context"
	"errors"

	"github.com/wsdproject/wsd/codec"
)

// A Broker carries publishes between the nodes of a cluster, each node a
// process with its own Hub. A Hub with a Broker (Options.Broker) does not
// deliver a publish itself: it hands it to the Broker, and delivers what
// the Broker hands back, its own publishes included. So every node, the
// publisher's too, receives one message per publish and fans it out to its
// own subscribers encoded once, in the order the Broker delivers it.
//
// Without a Broker (the default) a Hub delivers in-process at once, as if
// it were the only node.
type Broker interface {
	// Start connects the Broker to the hub: deliver is how messages from
	// the other nodes (and this one) come in. deliver is safe for
	// concurrent use and returns quickly (it encodes the frame and queues
	// it for the event loops); the Broker must call it in order for each
	// topic. New calls Start once; the Broker has connected (or is
	// connecting) before it is given to New.
	Start(deliver func(*BrokerMessage))

	// Publish sends m to every node that has subscribers of its topics,
	// without waiting for an acknowledgement: the hub calls it from event
	// loops (PublishMessage), so it must not block for long. It returns an
	// error (wrapping ErrBrokerUnavailable when the broker cannot be
	// reached) when the message cannot be sent: a message is never dropped
	// silently. m is not retained.
	Publish(m *BrokerMessage) error

	// Flush waits until the broker has accepted every message published so
	// far, or ctx ends (PublishWait uses it).
	Flush(ctx context.Context) error

	// Interest tells the Broker that this node now has (on) or no longer
	// has (!on) subscribers of topic, so that it receives only the topics
	// it needs. Calls come in order for each topic, from the event loops
	// and under the hub's lock: Interest must not block (queue the work).
	Interest(topic string, on bool)

	// Status reports the Broker's state, for health checks and metrics.
	Status() BrokerStatus

	// Close disconnects. The Hub does not call it.
	Close() error
}

// A StoredPublisher is a Broker that can publish and wait for its own
// message only: PublishStored sends m as Publish does and returns once the
// broker has it, with the position m took on each of its topics that keeps
// history in the broker (a stream's sequence and epoch), in the order of
// m.Topics (none for the others). Its error is that publish's own, never
// another's (wrapping ErrBrokerUnavailable when the broker cannot be
// reached or did not store m). When a hub's Broker implements it,
// PublishWait and PublishWaitPositions use it instead of Publish and
// Flush, and PublishWaitPositions returns its positions.
type StoredPublisher interface {
	PublishStored(ctx context.Context, m *BrokerMessage) ([]TopicPosition, error)
}

// BrokerMessage is one publish as it travels between nodes.
type BrokerMessage struct {
	Topics  []string
	Op      codec.OpCode
	Payload []byte
	// Origin is the id of the node that published it, and Exclude a
	// connection id on that node that must not get it (0: none).
	Origin  string
	Exclude uint64
	// Epoch, Offset and Prev are the message's position in its topic's
	// history, from a Broker that keeps history (see HistoryFetcher):
	// Offset of Epoch, after Prev, the offset of the topic's message
	// before it. The message then has one topic. Epoch "": no position.
	Epoch        string
	Offset, Prev uint64
}

// BrokerStatus is a Broker's state.
type BrokerStatus struct {
	Node       string // this node's id
	Connected  bool   // messages flow; false while the broker is unreachable
	Reconnects int64  // times the connection was re-established
	In, Out    int64  // messages received and published
	Errors     int64  // publishes that failed
}

// ErrBrokerUnavailable is wrapped by Broker.Publish errors when the broker
// cannot be reached.
var ErrBrokerUnavailable = errors.New("broadcast: broker unavailable")

// deliverFromBroker fans a message that came through the Broker out to this
// node's subscribers. Any goroutine.
func (h *Hub) deliverFromBroker(bm *BrokerMessage) {
	var exclude uint64
	if bm.Origin == h.node {
		exclude = bm.Exclude
	}
	if bm.Epoch != "" && len(bm.Topics) > 0 {
		h.publishPositioned(bm, exclude)
		return
	}
	h.publish(bm.Topics, bm.Op, bm.Payload, exclude, nil)
}

// toBroker hands m to the Broker, and with wait waits until the broker
// accepted it (PublishStored when the Broker is a StoredPublisher, with
// the positions it gives; Publish and Flush otherwise). It returns the
// subscriptions of m's topics on this node.
func (h *Hub) toBroker(ctx context.Context, m Message, wait bool) (int, []TopicPosition, error) {
	bm := BrokerMessage{Topics: m.Topics, Op: m.Op, Payload: m.Payload, Origin: h.node, Exclude: m.Exclude}
	n := h.localCount(m.Topics)
	h.published.Add(1)
	var (
		pos []TopicPosition
		err error
		sp  StoredPublisher
	)
	if wait {
		sp, _ = h.opts.Broker.(StoredPublisher)
	}
	if sp != nil {
		pos, err = sp.PublishStored(ctx, &bm)
	} else {
		err = h.opts.Broker.Publish(&bm)
		if err == nil && wait {
			err = h.opts.Broker.Flush(ctx)
		}
	}
	if err != nil {
		h.brokerErrors.Add(1)
	}
	return n, pos, err
}

// localCount returns the subscriptions to topics on this node.
func (h *Hub) localCount(topics []string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, name := range topics {
		if t := h.topics[name]; t != nil {
			n += int(t.count.Load())
		}
	}
	return n
}
