package broadcast_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// fanout is a benchmark fixture: a hub on a 2-loop engine, and a child
// process holding n upgraded connections subscribed to "fanout" that read
// and discard everything.
type fanout struct {
	srv     *hubServer
	n       int
	clients *wstest.ClientProcess
}

func startFanout(n int) (*fanout, error) {
	// A cap that does not drop: the benchmark publishes in a burst.
	srv, err := newHubServer(hubConfig{hub: broadcast.Options{MaxBuffered: 64 << 20}, loops: 2})
	if err != nil {
		return nil, err
	}
	f := &fanout{srv: srv, n: n}
	if f.clients, err = wstest.StartClientProcess(srv.addr, "/fanout", n, true); err != nil {
		_ = srv.stop()
		return nil, err
	}
	for deadline := time.Now().Add(time.Minute); srv.hub.Count("fanout") != n; {
		if time.Now().After(deadline) {
			f.close()
			return nil, fmt.Errorf("%d subscribers, want %d", srv.hub.Count("fanout"), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return f, nil
}

// close stops the child (it exits when its stdin closes) and the engine.
func (f *fanout) close() {
	if f.clients != nil {
		f.clients.Close()
	}
	_ = f.srv.stop()
}

// run publishes b.N 64-byte messages and waits until the hub has handed
// b.N×n frames to the sockets.
func (f *fanout) run(b *testing.B) {
	hub := f.srv.hub
	payload := make([]byte, 64)
	want := int64(b.N) * int64(f.n)
	s0 := hub.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		hub.Publish("fanout", codec.OpBinary, payload)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		s := hub.Stats()
		if s.Delivered+s.Dropped-s0.Delivered-s0.Dropped >= want {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("stalled: stats %+v, want %d more frames", s, want)
		}
		time.Sleep(20 * time.Microsecond)
	}
	elapsed := b.Elapsed()
	b.StopTimer()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(want), "ns/delivered")
	if s := hub.Stats(); s.Dropped != s0.Dropped {
		b.Errorf("%d frames dropped", s.Dropped-s0.Dropped)
	}
}

// BenchmarkHubFanout publishes 64-byte messages to 1, 100 and 10,000
// subscribers on a 2-loop engine; the subscribers are a child process (a
// process may not open 20,000 files), reading and discarding. ns/delivered
// is the time per frame handed to a socket; allocs/op are the server's and
// publisher's per Publish. Run it with a fixed count, e.g.
//
//	go test -run '^$' -bench HubFanout -benchtime 2000x ./broadcast/
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		var (
			f   *fanout
			err error
		)
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			if f == nil && err == nil { // once for every run of this function
				f, err = startFanout(n)
			}
			if err != nil {
				b.Fatal(err)
			}
			f.run(b)
		})
		if f != nil {
			f.close()
		}
	}
}

// BenchmarkHubPublishNoSubscribers is the cost of a Publish to a topic
// nobody is subscribed to.
func BenchmarkHubPublishNoSubscribers(b *testing.B) {
	hub := broadcast.New(broadcast.Options{})
	payload := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		hub.Publish("nobody", codec.OpText, payload)
	}
}

// TestClientProcess is the child side of wstest.StartClientProcess.
func TestClientProcess(t *testing.T) { wstest.ClientProcessMain(t) }
