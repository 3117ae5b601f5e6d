package natsbroker

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// waitBrokerInterest waits until b's interest reached its server.
func waitBrokerInterest(t testing.TB, b *Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitInterest(ctx); err != nil {
		t.Fatalf("node %s: WaitInterest: %v", b.Node(), err)
	}
}

// slowLogs returns the log lines about slow consumers among logs.
func slowLogs(logs *observer.ObservedLogs) []observer.LoggedEntry {
	return logs.FilterMessageSnippet("natsbroker: slow consumer").All()
}

// TestBrokerSlowConsumerServer: node b's embedded server queues at most 8
// KiB for b's connection, and node a publishes faster than that goes out:
// the server closes b's connection as a slow consumer. b counts it
// (Stats.SlowConsumer and SlowConsumerServer, LastSlowConsumer), logs it
// once, reconnects, and receives again.
func TestBrokerSlowConsumerServer(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	na := newBroker(t, Options{Node: "a", Listen: "127.0.0.1:0"})
	nb := newBroker(t, Options{Node: "b", Listen: "127.0.0.1:0", Routes: []string{"nats://" + na.ClusterAddr()},
		MaxPayload: 4 << 10, MaxPending: 8 << 10, Logger: zap.New(core)})
	na.Start(func(*broadcast.BrokerMessage) {})
	var got atomic.Int64
	nb.Start(func(*broadcast.BrokerMessage) { got.Add(1) })
	nb.Interest("hot", true)
	waitBrokerInterest(t, nb)
	m := &broadcast.BrokerMessage{Topics: []string{"hot"}, Op: codec.OpBinary, Payload: make([]byte, 1024), Origin: "a"}
	// reach publishes from a until b has received one more: b's interest
	// has reached a's server, and b receives again.
	reach := func(what string) {
		t.Helper()
		n0 := got.Load()
		waitFor(t, 30*time.Second, what, func() bool {
			_ = na.Publish(m)
			return got.Load() > n0
		})
	}
	reach("a message to reach b")
	if st := nb.Stats(); st.SlowConsumer != 0 || !st.LastSlowConsumer.IsZero() {
		t.Fatalf("slow consumer before the burst: %+v", st)
	}

	start := time.Now()
	waitFor(t, 60*time.Second, "b's server to close b's connection as a slow consumer", func() bool {
		for range 1000 {
			_ = na.Publish(m)
		}
		return nb.Stats().SlowConsumerServer > 0
	})
	st := nb.Stats()
	if st.SlowConsumer < st.SlowConsumerServer || st.LastSlowConsumer.Before(start) || time.Since(st.LastSlowConsumer) > time.Minute {
		t.Errorf("after the burst: %+v", st)
	}
	waitFor(t, 30*time.Second, "b to reconnect", func() bool { return nb.Status().Connected && nb.Status().Reconnects > 0 })
	reach("a message to reach b after the reconnection")

	lines := slowLogs(logs)
	if len(lines) == 0 || len(lines) > 1 && time.Since(start) < slowLogEvery {
		t.Fatalf("%d log lines about slow consumers, want 1 (at most one per %v): %v", len(lines), slowLogEvery, lines)
	}
	if f := lines[0].ContextMap(); f["where"] != "server" || f["events"] != int64(1) {
		t.Errorf("log line %q %v", lines[0].Message, f)
	}
	lost := logs.FilterMessage("natsbroker: connection to NATS lost").All()
	if len(lost) == 0 || !strings.Contains(lost[0].ContextMap()["error"].(string), "slow consumer") {
		t.Errorf("connection lost lines: %v", lost)
	}
}

// TestBrokerSlowConsumerClient: the hub takes nothing (its callback waits
// for a token) and the node's receive buffer holds one message, so nats.go
// drops most of a burst. A later run of drops counts again but, within
// slowLogEvery of the first, is not logged on its own.
func TestBrokerSlowConsumerClient(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	b := newBroker(t, Options{Node: "n", ReceiveBuffer: 1, Logger: zap.New(core)})
	gate := make(chan struct{}, 100) // tokens: one per message the callback takes
	var got atomic.Int64
	b.Start(func(*broadcast.BrokerMessage) {
		<-gate
		got.Add(1)
	})
	t.Cleanup(func() { close(gate) }) // runs before Close, which waits for the callback
	b.Interest("t", true)
	waitBrokerInterest(t, b)
	m := &broadcast.BrokerMessage{Topics: []string{"t"}, Op: codec.OpText, Payload: []byte("x"), Origin: "n"}
	burst := func() {
		t.Helper()
		for range 10 {
			if err := b.Publish(m); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// One message waits in the callback, at most one in the buffer: the
	// others are dropped (in one run of drops or more, depending on when
	// the callback took the first).
	start := time.Now()
	burst()
	waitFor(t, 10*time.Second, "a slow consumer", func() bool { return b.Stats().SlowConsumer > 0 })
	// Let the waiting messages through, until the buffer is empty: the
	// next burst's first message goes into it, which ends the run of
	// drops, and the rest start another.
	gate <- struct{}{}
	gate <- struct{}{}
	waitFor(t, 10*time.Second, "the buffer to empty", func() bool { return len(b.msgs) == 0 })
	first := b.Stats().SlowConsumer
	burst()
	waitFor(t, 10*time.Second, "another slow consumer", func() bool { return b.Stats().SlowConsumer > first })
	st := b.Stats()
	if st.SlowConsumerServer != 0 || st.LastSlowConsumer.IsZero() || st.Reconnects != 0 {
		t.Errorf("stats %+v", st)
	}
	lines := slowLogs(logs)
	if len(lines) == 0 || len(lines) > 1 && time.Since(start) < slowLogEvery {
		t.Fatalf("%d log lines about slow consumers, want 1: %v", len(lines), lines)
	}
	if f := lines[0].ContextMap(); f["where"] != "client" || f["events"] != int64(1) || f["subject"] != b.Subject("t") {
		t.Errorf("log line %q %v", lines[0].Message, f)
	}
}
