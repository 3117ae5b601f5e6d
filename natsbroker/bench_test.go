package natsbroker

import (
	"context"
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
