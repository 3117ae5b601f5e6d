package broadcast_test

import (
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// blocker is a loop task that holds its loop until released, so that a test
// can line up work for one batch.
type blocker struct{ started, release chan struct{} }

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}), release: make(chan struct{})}
}

func (b *blocker) Run(*engine.Loop) {
	close(b.started)
	select {
	case <-b.release:
	case <-time.After(20 * time.Second): // never hold the loop forever
	}
}

func (b *blocker) wait(t *testing.T) {
	t.Helper()
	select {
	case <-b.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not run the blocking task")
	}
}

// TestHubSlowPolicyResetPeers applies the slow-consumer policy to
// subscribers whose peers have already reset their TCP connections, in the
// batch that fans a message out (the loop has not seen the resets yet). With
// Close, the close frame's write fails and the engine closes the connection
// (running OnClose, which unsubscribes it) while the hub is still walking the
// topic's subscribers. The hub must survive it, count every subscriber once,
// and still close the subscriber that is alive with the close code.
func TestHubSlowPolicyResetPeers(t *testing.T) {
	cases := []struct {
		name           string
		policy         broadcast.Policy
		wantDropped    int64
		wantSlowClosed int64
		wantDelivered  int64
	}{
		{"Drop", broadcast.Drop, 4, 0, 1},
		{"Close", broadcast.Close, 0, 4, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub, h, addr := startHubWith(t, hubConfig{
				hub:   broadcast.Options{MaxBuffered: 1024, Policy: tc.policy, CloseCode: codec.StatusTryAgainLater},
				loops: 1,
			})
			var cs []*client
			var loop *engine.Loop
			for range 4 {
				cs = append(cs, mustDial(t, addr, "/t", dialOptions{}))
				loop = nextOpened(t, h).Loop()
			}
			// Batch 1 holds the loop while batch 2 (a second blocker, then
			// the fan-out) is queued.
			b1, b2 := newBlocker(), newBlocker()
			loop.Post(b1)
			b1.wait(t)
			loop.Post(b2)
			// The first frame fits (a connection under the cap takes a
			// frame whole); it puts everyone over MaxBuffered for the second.
			big := make([]byte, 2048)
			for range 2 {
				if n := hub.Publish("t", codec.OpBinary, big); n != 4 {
					t.Fatalf("Publish reached %d, want 4", n)
				}
			}
			close(b1.release)
			b2.wait(t)
			for _, c := range cs[:3] {
				server := wstest.ServerSocketOf(t, c.conn)
				c.reset()
				server.WaitClosed(t) // the reset has landed; the held loop has not seen it
			}
			close(b2.release)

			s := settle(t, hub)
			if s.Dropped != tc.wantDropped || s.SlowClosed != tc.wantSlowClosed || s.Delivered != tc.wantDelivered {
				t.Fatalf("stats %+v, want Dropped %d, SlowClosed %d, Delivered %d (the first frame, to the live subscriber)", s, tc.wantDropped, tc.wantSlowClosed, tc.wantDelivered)
			}
			waitFor(t, 10*time.Second, "the reset connections to be forgotten", func() bool {
				// The live one is closing with Close, but it stays
				// subscribed until its connection is gone.
				return hub.Stats().Connections == 1 && hub.Count("t") == 1
			})
			live := cs[3]
			switch tc.policy {
			case broadcast.Close:
				code, err := live.expectClose(func(op byte, p []byte) error { return nil })
				if err != nil || code != int(codec.StatusTryAgainLater) {
					t.Fatalf("live subscriber: close code %d, err %v; want 1013", code, err)
				}
				if err := live.write(wstest.Close(1000, "").Bytes()); err != nil {
					t.Fatal(err)
				}
				if err := live.expectEOF(); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 10*time.Second, "no connections and no topics", func() bool {
					return hub.Stats().Connections == 0 && len(hub.Topics()) == 0
				})
			case broadcast.Drop:
				if op, p, err := live.next(); err != nil || op != wstest.OpBinary || len(p) != len(big) {
					t.Fatalf("live subscriber got op %d, %d bytes, err %v; want the first frame", op, len(p), err)
				}
				if n := hub.Publish("t", codec.OpText, []byte("small")); n != 1 {
					t.Fatalf("Publish reached %d, want 1", n)
				}
				op, p, err := live.next()
				if err != nil || op != wstest.OpText || string(p) != "small" {
					t.Fatalf("live subscriber got op %d %q, err %v; want text \"small\"", op, p, err)
				}
			}
		})
	}
}
