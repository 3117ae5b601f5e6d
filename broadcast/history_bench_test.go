package broadcast_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// BenchmarkHistoryPublish is the cost of a Publish to a topic with one
// subscriber on one loop, with history off (no Options.History), on but
// not for this topic, and on for it (each message kept, a ring of 1,000):
// CPU and allocations per publish, until every frame is handed to the
// socket (the publisher waits whenever more than 2×inFlight frames are on
// their way; dropped/op says how many a slow reader missed even so).
func BenchmarkHistoryPublish(b *testing.B) {
	const inFlight = 64
	keep := func(topic string) broadcast.HistoryPolicy {
		if strings.HasPrefix(topic, "h.") {
			return broadcast.HistoryPolicy{Size: 1000}
		}
		return broadcast.HistoryPolicy{}
	}
	for _, size := range []int{64, 1024} {
		for _, tc := range []struct {
			name  string
			opts  broadcast.Options
			topic string
		}{
			{"history=off", broadcast.Options{MaxBuffered: 1 << 30, MaxQueued: -1}, "feed"},
			{"history=other-topics", broadcast.Options{MaxBuffered: 1 << 30, MaxQueued: -1, History: keep}, "feed"},
			{"history=on", broadcast.Options{MaxBuffered: 1 << 30, MaxQueued: -1, History: keep}, "h.feed"},
		} {
			b.Run(fmt.Sprintf("%s/bytes=%d", tc.name, size), func(b *testing.B) {
				hub, _, addr := startHub(b, tc.opts, 1)
				c := mustDial(b, addr, "/"+tc.topic, dialOptions{})
				waitFor(b, 10*time.Second, "the subscription", func() bool { return hub.Count(tc.topic) == 1 })
				done := make(chan error, 1)
				go func() { // read and discard everything
					buf := make([]byte, 64<<10)
					_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
					for {
						if _, err := c.conn.Read(buf); err != nil {
							done <- err
							return
						}
					}
				}()
				payload := make([]byte, size)
				d0, drop0 := handed(hub), hub.Stats().Dropped
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					hub.Publish(tc.topic, codec.OpBinary, payload)
					if i%inFlight == inFlight-1 { // at most 2×inFlight waiting: nothing is dropped
						for deadline := time.Now().Add(time.Minute); handed(hub)-d0 < int64(i+1-inFlight); {
							if time.Now().After(deadline) {
								b.Fatalf("after %d publishes: stats %+v (delivered from %d)", i+1, hub.Stats(), d0)
							}
							runtime.Gosched()
						}
					}
				}
				waitFor(b, 2*time.Minute, "every frame handed over", func() bool { return handed(hub)-d0 == int64(b.N) })
				b.StopTimer()
				b.ReportMetric(float64(hub.Stats().Dropped-drop0)/float64(b.N), "dropped/op")
				c.conn.Close()
				<-done
			})
		}
	}
}

// handed is the frames the hub handed to sockets or dropped (a slow
// reader on a loaded machine): each publish is one or the other.
func handed(hub *broadcast.Hub) int64 {
	s := hub.Stats()
	return s.Delivered + s.Dropped
}

// BenchmarkHistoryRetainedMemory fills a topic's history of 10,000
// messages and reports the heap it holds per retained message (B/retained),
// besides the payload itself (B/retained-overhead).
func BenchmarkHistoryRetainedMemory(b *testing.B) {
	const kept = 10000
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			var perMsg float64
			payload := make([]byte, size)
			for range b.N {
				hub := broadcast.New(broadcast.Options{History: func(string) broadcast.HistoryPolicy { return broadcast.HistoryPolicy{Size: kept} }})
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				for range kept {
					hub.Publish("t", codec.OpBinary, payload)
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				perMsg = float64(m1.HeapAlloc-m0.HeapAlloc) / kept
				if st := hub.HistoryStats(); st.Messages != kept {
					b.Fatalf("stats %+v", st)
				}
				runtime.KeepAlive(hub)
			}
			b.ReportMetric(perMsg, "B/retained")
			b.ReportMetric(perMsg-float64(size), "B/retained-overhead")
		})
	}
}

// BenchmarkHistoryResume1000 is the time for 1,000 connected clients,
// each of which missed the same 100 messages of a topic, to resume from
// their last position at once: each sends its subscribe request, gets its
// ack and the 100 replayed messages. One op is one such round of 1,000
// resumes (ns/resume: per client). The clients then unsubscribe, and the
// next round publishes 100 more.
func BenchmarkHistoryResume1000(b *testing.B) {
	const (
		clients = 1000
		missed  = 100
	)
	hub, addr, _ := resumeServer(b, broadcast.HistoryPolicy{Size: 4 * missed}, 2)
	cs := dialMany(b, addr, clients, func(int) string { return "/" }, dialOptions{})
	payload := make([]byte, 64)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		_, since, _ := hub.History("h.r", 0, 0)
		for range missed {
			hub.Publish("h.r", codec.OpBinary, payload)
		}
		req := wstest.Text(fmt.Sprintf("sub h.r %d %s", since.Offset, since.Epoch)).Bytes()
		errs := make([]error, clients)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, c := range cs {
			wg.Go(func() {
				<-start
				errs[i] = resumeOnce(c, req, missed)
			})
		}
		b.StartTimer()
		close(start)
		wg.Wait()
		b.StopTimer()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		unsub := wstest.Text("unsub h.r").Bytes()
		for _, c := range cs {
			if err := c.write(unsub); err != nil {
				b.Fatal(err)
			}
			if _, p, err := c.next(); err != nil || string(p) != "unsubscribed" {
				b.Fatalf("unsubscribe: %q %v", p, err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*clients), "ns/resume")
}

// resumeOnce sends req and reads the ack (which must say recovered) and n
// replayed messages.
func resumeOnce(c *client, req []byte, n int) error {
	if err := c.write(req); err != nil {
		return err
	}
	_, p, err := c.next()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(p), "ack true ") {
		return fmt.Errorf("ack %q, want recovered", p)
	}
	for i := range n {
		if _, _, err := c.next(); err != nil {
			return fmt.Errorf("replayed message %d: %w", i, err)
		}
	}
	return nil
}

// BenchmarkHistoryPublishNoSubscribers is the publisher's own cost, with
// no connection to hand the frame to: looking the topic up, and with
// history taking an offset and keeping a copy (a ring of 1,000, full:
// each publish also drops the oldest).
func BenchmarkHistoryPublishNoSubscribers(b *testing.B) {
	for _, size := range []int{64, 1024} {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("history=%t/bytes=%d", on, size), func(b *testing.B) {
				var o broadcast.Options
				if on {
					o.History = func(string) broadcast.HistoryPolicy { return broadcast.HistoryPolicy{Size: 1000} }
				}
				hub := broadcast.New(o)
				payload := make([]byte, size)
				for range 1000 {
					hub.Publish("t", codec.OpBinary, payload)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					hub.Publish("t", codec.OpBinary, payload)
				}
			})
		}
	}
}
