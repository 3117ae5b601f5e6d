package natsbroker

import (
	"context"
	"flag"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// benchTopics are distinct topic names, made once.
var benchTopics = func() []string {
	out := make([]string, 1<<16)
	for i := range out {
		out[i] = fmt.Sprintf("room-%d", i)
	}
	return out
}()

func waitInterestB(b *testing.B, br *Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := br.WaitInterest(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkInterestChurn measures interest tracking under churn: a topic's
// first subscriber arrives and its last leaves, one cycle per op, on a
// node with its embedded server.
//
//   - call: the cost of one Interest call to the hub (an event loop,
//     under the hub's lock), while the goroutine applies the changes
//     behind it; a cycle is two calls.
//   - batched: cycles of distinct topics, 1000 first subscribers then
//     1000 last departures, each a SUB or UNSUB the server receives.
//   - each: one cycle at a time, waiting each time for the server to
//     confirm (a ping round trip): the slowest case, two round trips per
//     cycle.
func BenchmarkInterestChurn(b *testing.B) {
	br := newBroker(b, Options{})
	br.Start(func(*broadcast.BrokerMessage) {})

	b.Run("call", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() { // each topic on, then off
			br.Interest(benchTopics[(i/2)&(len(benchTopics)-1)], i&1 == 0)
			i++
		}
		if i&1 == 1 {
			br.Interest(benchTopics[(i/2)&(len(benchTopics)-1)], false)
		}
		waitInterestB(b, br)
		b.ReportMetric(float64(b.N/2)/b.Elapsed().Seconds(), "cycles/s")
	})

	b.Run("batched", func(b *testing.B) {
		b.ReportAllocs()
		const batch = 1000
		done := 0
		for done < b.N {
			n := min(batch, b.N-done)
			for i := range n {
				br.Interest(benchTopics[i], true)
			}
			waitInterestB(b, br)
			for i := range n {
				br.Interest(benchTopics[i], false)
			}
			waitInterestB(b, br)
			done += n
		}
		if st := br.Stats(); st.Subscriptions != 0 {
			b.Fatalf("%d subscriptions left", st.Subscriptions)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	})

	b.Run("each", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			br.Interest("t", true)
			waitInterestB(b, br)
			br.Interest("t", false)
			waitInterestB(b, br)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	})
}

// BenchmarkPublish measures Publish alone (no node subscribes, so the
// server drops the messages), per payload size and topic count.
func BenchmarkPublish(b *testing.B) {
	br := newBroker(b, Options{})
	for _, topics := range [][]string{{"news"}, {"a", "b", "c"}} {
		for _, size := range []int{16, 1024, 64 << 10} {
			b.Run(fmt.Sprintf("topics=%d/bytes=%d", len(topics), size), func(b *testing.B) {
				m := &broadcast.BrokerMessage{Topics: topics, Op: codec.OpBinary, Payload: make([]byte, size), Origin: br.Node()}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if err := br.Publish(m); err != nil {
						b.Fatal(err)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := br.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkDeliver measures the path from one node's Publish to another
// node's hub callback, through a NATS server on loopback TCP: messages
// per second, for each payload size.
func BenchmarkDeliver(b *testing.B) {
	s := runServer(b, -1)
	pub := newBroker(b, Options{Node: "pub", URLs: []string{s.ClientURL()}})
	sub := newBroker(b, Options{Node: "sub", URLs: []string{s.ClientURL()}})
	var got atomic.Int64
	sub.Start(func(*broadcast.BrokerMessage) { got.Add(1) })
	sub.Interest("news", true)
	waitInterestB(b, sub)
	for _, size := range []int{16, 1024, 16 << 10} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			m := &broadcast.BrokerMessage{Topics: []string{"news"}, Op: codec.OpBinary, Payload: make([]byte, size), Origin: "pub"}
			start := got.Load()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				for pub.Publish(m) != nil {
					b.Fatal("publish failed")
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			for got.Load()-start < int64(b.N) {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d delivered", got.Load()-start, b.N)
				}
				time.Sleep(100 * time.Microsecond)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if st := sub.Stats(); st.SlowConsumer != 0 {
				b.Fatalf("subscriber dropped messages: %+v", st)
			}
		})
	}
}

var routedMaxPending = flag.Int64("routed-max-pending", 0, "BenchmarkPublishRouted: node b's MaxPending in bytes (0: the default)")

// hotWindow is the most messages the hot benchmark lets be on their way
// to node b. Without a bound, a publisher on loopback outruns b's client:
// its server closes the connection as a slow consumer, the client
// reconnects, and the messages on their way are lost (at most once).
const hotWindow = 4096

// BenchmarkPublishRouted measures what interest tracking saves across
// nodes: two nodes, each with its embedded server, joined by a route; node
// b follows "hot" only.
//
//   - cold: node a publishes to a topic no node follows. Its server knows
//     that no route wants it and drops it: the route carries nothing
//     (checked: b receives none of them before a message published after
//     them all).
//   - hot: the same publish to b's topic, which crosses the route, until b
//     has received every one, at most hotWindow of them on their way.
//   - burst: the same as hot with no bound on the messages on their way:
//     a publishes as fast as Publish takes them, and the benchmark reports
//     the share of them b never received (lost-%), b's slow-consumer
//     events (slow-consumers) and the rate b received them at. With
//     -benchtime=960000x it is a burst of about 1 GiB; b loses nothing
//     while its backlog fits in its server's Options.MaxPending.
//
// -routed-max-pending sets node b's Options.MaxPending.
func BenchmarkPublishRouted(b *testing.B) {
	na := newBroker(b, Options{Node: "a", Listen: "127.0.0.1:0"})
	nb := newBroker(b, Options{Node: "b", Listen: "127.0.0.1:0", Routes: []string{"nats://" + na.ClusterAddr()}, MaxPending: *routedMaxPending})
	na.Start(func(*broadcast.BrokerMessage) {})
	var got, cold, marks atomic.Int64
	nb.Start(func(m *broadcast.BrokerMessage) {
		switch {
		case m.Topics[0] == "cold":
			cold.Add(1)
		case string(m.Payload) == "marker":
			marks.Add(1)
			return
		}
		got.Add(1)
	})
	nb.Interest("hot", true)
	waitInterestB(b, nb)
	marker := &broadcast.BrokerMessage{Topics: []string{"hot"}, Op: codec.OpBinary, Payload: []byte("marker"), Origin: "a"}
	// reach publishes markers to hot from a until b has one more than
	// before: then a's server knows b's interest, and every message a
	// published before has crossed the route, if it was going to.
	reach := func(b *testing.B) {
		b.Helper()
		n0 := marks.Load()
		deadline := time.Now().Add(30 * time.Second)
		for marks.Load() == n0 {
			if time.Now().After(deadline) {
				b.Fatalf("no message reached node b within 30 s (routes: a %d, b %d)", na.Stats().Routes, nb.Stats().Routes)
			}
			_ = na.Publish(marker) // b may be reconnecting after a burst
			time.Sleep(10 * time.Millisecond)
		}
	}
	reach(b)

	for _, size := range []int{16, 1024} {
		b.Run(fmt.Sprintf("cold/bytes=%d", size), func(b *testing.B) {
			m := &broadcast.BrokerMessage{Topics: []string{"cold"}, Op: codec.OpBinary, Payload: make([]byte, size), Origin: "a"}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := na.Publish(m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reach(b) // a marker published after them all arrived
			if n := cold.Load(); n > 0 {
				b.Fatalf("node b received %d messages of a topic it does not follow", n)
			}
		})
		b.Run(fmt.Sprintf("hot/bytes=%d", size), func(b *testing.B) {
			m := &broadcast.BrokerMessage{Topics: []string{"hot"}, Op: codec.OpBinary, Payload: make([]byte, size), Origin: "a"}
			start := got.Load()
			// await waits until all but ahead of the sent messages have
			// reached b.
			await := func(sent, ahead int64) {
				deadline := time.Now().Add(60 * time.Second)
				for sent-(got.Load()-start) > ahead {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d reached node b (node b: %+v)", got.Load()-start, sent, nb.Stats())
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var sent int64
			for b.Loop() {
				if err := na.Publish(m); err != nil {
					b.Fatal(err)
				}
				if sent++; sent%hotWindow == 0 {
					await(sent, hotWindow)
				}
			}
			await(sent, 0)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if st := nb.Stats(); st.SlowConsumer != 0 {
				b.Fatalf("node b dropped messages: %+v", st)
			}
		})
		b.Run(fmt.Sprintf("burst/bytes=%d", size), func(b *testing.B) {
			m := &broadcast.BrokerMessage{Topics: []string{"hot"}, Op: codec.OpBinary, Payload: make([]byte, size), Origin: "a"}
			start, slow := got.Load(), nb.Stats()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var sent int64
			t0 := time.Now()
			for b.Loop() {
				if na.Publish(m) == nil {
					sent++
				}
			}
			reach(b)
			took := time.Since(t0)
			received, st := got.Load()-start, nb.Stats()
			b.ReportMetric(100*float64(sent-received)/float64(max(sent, 1)), "lost-%")
			b.ReportMetric(float64(st.SlowConsumer-slow.SlowConsumer), "slow-consumers")
			b.ReportMetric(float64(received)/took.Seconds(), "msgs/s")
			b.Logf("sent %d of %d, received %d; node b: %+v", sent, b.N, received, st)
		})
	}
}
