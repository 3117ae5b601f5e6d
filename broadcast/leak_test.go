package broadcast_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// drainCounting reads and discards everything c receives into a fixed
// buffer, adding the byte count to n, until the connection fails or closes.
func drainCounting(c *client, n *atomic.Int64) {
	var buf [16 << 10]byte
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		m, err := c.conn.Read(buf[:])
		n.Add(int64(m))
		if err != nil {
			return
		}
	}
}

// TestHubNoLeak publishes 100,000 messages and checks that every message
// buffer is released once delivery settles (Stats().LiveMessages back to 0),
// that Delivered counts exactly one frame per subscriber and message (a
// connection subscribed to two of a message's topics gets it once), and that
// the subscribers read exactly those bytes.
func TestHubNoLeak(t *testing.T) {
	const (
		publishes = 100_000
		size      = 16
		frameLen  = size + 2
	)
	cases := []struct {
		name      string
		paths     []string
		topics    []string
		wantPerPb int // frames per publish
	}{
		{"three subscribers", []string{"/few", "/few", "/few"}, []string{"few"}, 3},
		{"no subscribers", []string{"/other"}, []string{"none"}, 0},
		{"two topics overlapping", []string{"/x,y", "/x,y", "/y,x", "/x", "/z"}, []string{"x", "y"}, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A large cap, the engine's too: the readers may fall behind
			// the publisher by megabytes (the kernel keeps no more than
			// 128 KiB of them unsent: the engine holds the rest).
			hub, _, addr := startHubWith(t, hubConfig{hub: broadcast.Options{MaxBuffered: 64 << 20}, loops: 2, maxBuffered: 64 << 20})
			cs := dialMany(t, addr, len(tc.paths), func(i int) string { return tc.paths[i] }, dialOptions{})
			subs := 0
			for _, p := range tc.paths {
				subs += len(pathTopics(p))
			}
			waitFor(t, 10*time.Second, "every subscription", func() bool { return hub.Stats().Subscriptions == int64(subs) })
			var got atomic.Int64
			var readers sync.WaitGroup
			for _, c := range cs {
				readers.Go(func() { drainCounting(c, &got) })
			}
			t.Cleanup(func() {
				for _, c := range cs {
					c.conn.Close()
				}
				readers.Wait()
			})

			before := hub.Stats()
			payload := make([]byte, size)
			m := broadcast.Message{Topics: tc.topics, Op: codec.OpBinary, Payload: payload}
			for i := range publishes {
				payload[0] = byte(i)
				hub.PublishMessage(m)
			}
			s := settle(t, hub)
			wantFrames := int64(publishes * tc.wantPerPb)
			if got := s.Delivered - before.Delivered; got != wantFrames || s.Dropped != 0 {
				t.Errorf("Delivered grew by %d (want %d), Dropped %d (want 0)", got, wantFrames, s.Dropped)
			}
			if got := s.Published - before.Published; got != publishes {
				t.Errorf("Published grew by %d, want %d", got, publishes)
			}
			// Every subscriber closes: the server's answer (a 4-byte close
			// frame echoing the code) is the last thing it sends before it
			// ends the stream, so the readers stop having read all it sent.
			for _, c := range cs {
				if err := c.write(wstest.Close(1000, "").Bytes()); err != nil {
					t.Fatal(err)
				}
			}
			readers.Wait()
			const closeLen = 4
			if n, want := got.Load(), wantFrames*frameLen+int64(len(cs))*closeLen; n != want {
				t.Errorf("subscribers read %d bytes, want %d (%d frames, then %d close frames)", n, want, wantFrames, len(cs))
			}
			if s := hub.Stats(); s.LiveMessages != 0 {
				t.Errorf("stats %+v: want no live messages", s)
			}
		})
	}
}
