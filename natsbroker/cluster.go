package natsbroker

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
)

// Cluster-wide topic views: a request on <prefix>.ctl.topics that every
// node answers, from Local.Count or Local.Topics, on the
// request's reply subject. The asking node gathers the answers for up to
// Options.GatherTimeout, or until every node it knows from heartbeats has
// answered. Each count is the answering node's at the moment it answered,
// so a view is at most a GatherTimeout old (usually a few milliseconds);
// a node that does not answer in time, whole, (overloaded, or partitioned)
// is missing from the result, which can be compared with Nodes.

// Kinds of topic query.
const (
	queryOne = 1
	queryAll = 2
)

// chunkSize bounds one answer message, far below NATS's default 1 MiB
// max_payload, so that a node with many topics answers in several.
const chunkSize = 128 << 10

// TopicCounts returns the subscribers of topic on every node that answered
// in time, by node id. It wraps broadcast.ErrBrokerUnavailable while the
// connection is down, and returns ctx's error (with what it gathered) if
// ctx ends first.
func (b *Broker) TopicCounts(ctx context.Context, topic string) (map[string]int, error) {
	req := append([]byte{wireVersion, queryOne}, topic...)
	got, err := b.gather(ctx, req)
	out := make(map[string]int, len(got))
	for node, ts := range got {
		n := 0
		for _, t := range ts {
			if t.Name == topic {
				n += t.Subscribers
			}
		}
		out[node] = n
	}
	return out, err
}

// AllTopics returns the topics with subscribers of every node that
// answered in time, by node id (SumTopics adds them up). Errors as for
// TopicCounts.
func (b *Broker) AllTopics(ctx context.Context) (map[string][]broadcast.TopicInfo, error) {
	return b.gather(ctx, []byte{wireVersion, queryAll})
}

// SumTopics adds up the per-node lists of AllTopics into one list sorted
// by name.
func SumTopics(byNode map[string][]broadcast.TopicInfo) []broadcast.TopicInfo {
	sum := make(map[string]int)
	for _, ts := range byNode {
		for _, t := range ts {
			sum[t.Name] += t.Subscribers
		}
	}
	out := make([]broadcast.TopicInfo, 0, len(sum))
	for name, n := range sum {
		out = append(out, broadcast.TopicInfo{Name: name, Subscribers: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// gather sends a topic query and collects the answers.
func (b *Broker) gather(ctx context.Context, req []byte) (map[string][]broadcast.TopicInfo, error) {
	out := make(map[string][]broadcast.TopicInfo)
	if !b.nc.IsConnected() {
		if b.isClosed() {
			return out, ErrClosed
		}
		return out, errNotConnected
	}
	inbox := b.nc.NewInbox()
	answers := make(chan *nats.Msg, 1024)
	sub, err := b.nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return out, fmt.Errorf("natsbroker: %w: %w", broadcast.ErrBrokerUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest(b.topicsSubject, inbox, req); err != nil {
		return out, publishError(err)
	}
	expect := b.Nodes()
	partial := make(map[string][]broadcast.TopicInfo) // nodes whose last chunk has not come yet
	timer := time.NewTimer(b.opts.GatherTimeout)
	defer timer.Stop()
	for {
		select {
		case m := <-answers:
			a, ok := decodeTopicAnswer(m.Data)
			if !ok {
				b.malformed.Add(1)
				continue
			}
			partial[a.node] = append(partial[a.node], a.counts...)
			if a.flags&flagLast != 0 {
				out[a.node] = partial[a.node]
				delete(partial, a.node)
				if allDone(expect, out) {
					return out, nil
				}
			}
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		case <-b.done:
			return out, ErrClosed
		}
	}
}

func allDone(expect []string, done map[string][]broadcast.TopicInfo) bool {
	for _, n := range expect {
		if _, ok := done[n]; !ok {
			return false
		}
	}
	return true
}

// answerTopics answers a topic query, on nats.go's goroutine for the
// subscription.
func (b *Broker) answerTopics(m *nats.Msg) {
	if m.Reply == "" || len(m.Data) < 2 || m.Data[0] != wireVersion {
		b.malformed.Add(1)
		return
	}
	var list []broadcast.TopicInfo
	switch m.Data[1] {
	case queryOne:
		topic := string(m.Data[2:])
		list = []broadcast.TopicInfo{{Name: topic, Subscribers: b.localCount(topic)}}
	case queryAll:
		if f := b.loc().Topics; f != nil {
			list = f()
		}
	default:
		b.malformed.Add(1)
		return
	}
	// One answer per chunkSize bytes of entries, the last one flagged
	// (possibly empty).
	for {
		n, size := 0, 0
		for n < len(list) && (n == 0 || size+countEntrySize(list[n]) <= chunkSize) {
			size += countEntrySize(list[n])
			n++
		}
		last := n == len(list)
		if err := b.nc.Publish(m.Reply, appendTopicAnswer(nil, last, b.node, list[:n])); err != nil {
			b.log.Warn("natsbroker: answering a topic query", zap.Error(err))
			return
		}
		if last {
			return
		}
		list = list[n:]
	}
}

// localCount returns this node's subscribers of topic.
func (b *Broker) localCount(topic string) int {
	l := b.loc()
	if l.Count != nil {
		return l.Count(topic)
	}
	if l.Topics != nil {
		for _, t := range l.Topics() {
			if t.Name == topic {
				return t.Subscribers
			}
		}
	}
	return 0
}
