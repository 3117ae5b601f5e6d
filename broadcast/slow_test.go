package broadcast_test

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// Kinds of message in the slow-consumer test.
const (
	kindFeed  = 'F' // to "feed": everyone
	kindFill  = 'B' // to "fill": only the slow client, to fill its buffers
	kindEnd   = 'E' // to "feed": the last one
	kindProbe = 'P' // to "fill": is the slow client still getting messages?
)

// slowMsg is a message of the slow-consumer test: kind, global publish
// index, feed sequence number, then filler bytes equal to byte(gidx).
func slowMsg(kind byte, gidx, feed, size int) []byte {
	p := make([]byte, max(size, 9))
	p[0] = kind
	binary.BigEndian.PutUint32(p[1:], uint32(gidx))
	binary.BigEndian.PutUint32(p[5:], uint32(feed))
	for i := 9; i < len(p); i++ {
		p[i] = byte(gidx)
	}
	return p
}

// parseSlowMsg checks a frame of slowMsg and returns its fields.
func parseSlowMsg(op byte, p []byte) (kind byte, gidx, feed int, err error) {
	if op != wstest.OpBinary || len(p) < 9 {
		return 0, 0, 0, fmt.Errorf("unexpected frame op %d, %d bytes", op, len(p))
	}
	kind, gidx, feed = p[0], int(binary.BigEndian.Uint32(p[1:])), int(binary.BigEndian.Uint32(p[5:]))
	if len(p) > 9 && (p[9] != byte(gidx) || p[len(p)-1] != byte(gidx)) {
		return 0, 0, 0, fmt.Errorf("message %d: corrupt filler", gidx)
	}
	return kind, gidx, feed, nil
}

// readFeed reads a fast subscriber's frames: feed messages 0, 1, 2, ...
// without a gap, then the end message. progress counts feed messages.
func readFeed(c *client, progress *atomic.Int64) error {
	next := 0
	for {
		op, p, err := c.next()
		if err != nil {
			return fmt.Errorf("after feed message %d: %w", next-1, err)
		}
		kind, _, feed, err := parseSlowMsg(op, p)
		switch {
		case err != nil:
			return err
		case kind == kindEnd:
			return nil
		case kind != kindFeed || feed != next:
			return fmt.Errorf("got kind %c feed message %d, want feed message %d", kind, feed, next)
		}
		next++
		progress.Add(1)
	}
}

// TestHubSlowConsumer has one subscriber that does not read while 1,000
// others do, with a 64 KiB MaxBuffered. The slow one has a small receive
// buffer and is also subscribed to "fill", which gets 48 KiB messages, so
// that its socket buffers (several MiB on loopback even so: the server's
// send buffer grows on its own) fill without the 1,000 others having to
// read megabytes each. Messages are published in rounds that stay under the
// cap for a reader that keeps up (each fill message is published once the
// previous batch is out), until the policy applies, and then a few
// more rounds.
//
// Drop: the slow one stays open; Dropped > 0; what it gets is in order, and
// it gets exactly the messages that were not dropped; a ping it sent while
// over the cap is answered, and later messages reach it once it reads.
// Close (1013): SlowClosed == 1, nothing is dropped, the slow one gets an
// unbroken prefix of the messages and then the close frame with 1013, and
// the hub forgets it. Either way every fast subscriber gets every feed
// message in order.
func TestHubSlowConsumer(t *testing.T) {
	const (
		fast         = 1000
		maxBuffered  = 64 << 10
		feedSize     = 1 << 10
		feedPerRound = 8
		fillSize     = 48 << 10 // with a round's feed, under maxBuffered
		fillPerRound = 4        // each in its own batch
		maxRounds    = 100      // 19 MiB to the slow one
		extraRounds  = 3
	)
	cases := []struct {
		name   string
		policy broadcast.Policy
	}{
		{"Drop", broadcast.Drop},
		{"Close", broadcast.Close},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub, _, addr := startHubWith(t, hubConfig{
				hub:          broadcast.Options{MaxBuffered: maxBuffered, Policy: tc.policy, CloseCode: codec.StatusTryAgainLater},
				loops:        2,
				closeTimeout: time.Minute, // the slow one reads its close frame late
			})
			slow := mustDial(t, addr, "/feed,fill", dialOptions{rcvBuf: 4 << 10, bufSize: 64 << 10})
			cs := dialMany(t, addr, fast, func(int) string { return "/feed" }, dialOptions{})
			waitFor(t, 20*time.Second, "every subscription", func() bool { return hub.Stats().Subscriptions == fast+2 })

			var progress atomic.Int64
			errs := make([]error, fast)
			var readers sync.WaitGroup
			for i, c := range cs {
				readers.Go(func() { errs[i] = readFeed(c, &progress) })
			}

			gidx, feeds := 0, 0 // messages published to the slow one; feed messages
			publish := func(topic string, kind byte, size int) {
				hub.Publish(topic, codec.OpBinary, slowMsg(kind, gidx, feeds, size))
				gidx++
			}
			applied := func(s broadcast.Stats) bool { return s.Dropped > 0 || s.SlowClosed > 0 }
			rounds, after := 0, 0
			for ; rounds < maxRounds && after < extraRounds; rounds++ {
				for range feedPerRound {
					publish("feed", kindFeed, feedSize)
					feeds++
				}
				var s broadcast.Stats
				for range fillPerRound {
					publish("fill", kindFill, fillSize)
					s = settle(t, hub)
				}
				waitFor(t, 30*time.Second, "the fast subscribers to catch up", func() bool { return progress.Load() == int64(fast*feeds) })
				if applied(s) {
					after++
				}
			}
			s := hub.Stats()
			t.Logf("%d rounds, %d messages, %.1f MiB to the slow subscriber; stats %+v", rounds, gidx, float64(feeds*feedSize+rounds*fillPerRound*fillSize)/(1<<20), s)
			if !applied(s) {
				t.Fatalf("the policy never applied")
			}
			publish("feed", kindEnd, 0)
			feeds++
			readers.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("fast subscriber %d: %v", i, err)
				}
			}
			fastDelivered := int64(fast * feeds)

			switch tc.policy {
			case broadcast.Drop:
				if s.SlowClosed != 0 || s.Dropped == 0 {
					t.Fatalf("stats %+v: want Dropped > 0 and SlowClosed 0", s)
				}
				// A ping while over the cap: the pong is a control frame
				// and must not be dropped.
				if err := slow.write(wstest.Ping([]byte("still here")).Bytes()); err != nil {
					t.Fatal(err)
				}
				probed := make(chan struct{}) // closed at the first probe
				type result struct {
					frames int
					pong   bool
					code   int
					err    error
				}
				res := make(chan result, 1)
				go func() {
					var r result
					last, sawProbe := -1, false
					r.code, r.err = slow.expectClose(func(op byte, p []byte) error {
						if op == wstest.OpPong {
							if string(p) != "still here" || r.pong {
								return fmt.Errorf("unexpected pong %q", p)
							}
							r.pong = true
							return nil
						}
						kind, g, _, err := parseSlowMsg(op, p)
						if err != nil {
							return err
						}
						if g <= last {
							return fmt.Errorf("message %d after %d", g, last)
						}
						last = g
						r.frames++
						if kind == kindProbe && !sawProbe {
							sawProbe = true
							close(probed)
						}
						return nil
					})
					res <- r
				}()
				// Probe until one arrives: the slow one is still subscribed
				// and gets messages again once it has caught up.
				for end := time.Now().Add(30 * time.Second); ; {
					publish("fill", kindProbe, 0)
					select {
					case <-probed:
					case <-time.After(20 * time.Millisecond):
						if time.Now().Before(end) {
							continue
						}
						t.Fatal("no probe reached the slow subscriber")
					}
					break
				}
				s = settle(t, hub)
				slowDelivered := s.Delivered - fastDelivered
				if slowDelivered+s.Dropped != int64(gidx) {
					t.Errorf("slow subscriber: %d delivered + %d dropped, want %d messages", slowDelivered, s.Dropped, gidx)
				}
				if err := slow.write(wstest.Close(1000, "").Bytes()); err != nil {
					t.Fatal(err)
				}
				r := <-res
				if r.err != nil || r.code != 1000 {
					t.Fatalf("slow subscriber: close code %d, err %v", r.code, r.err)
				}
				if int64(r.frames) != slowDelivered || !r.pong {
					t.Errorf("slow subscriber read %d messages (pong: %v), want %d and the pong", r.frames, r.pong, slowDelivered)
				}
				t.Logf("slow subscriber: %d of %d messages, %d dropped", r.frames, gidx, s.Dropped)

			case broadcast.Close:
				if s.SlowClosed != 1 || s.Dropped != 0 {
					t.Fatalf("stats %+v: want SlowClosed 1 and Dropped 0", s)
				}
				frames := 0
				code, err := slow.expectClose(func(op byte, p []byte) error {
					_, g, _, err := parseSlowMsg(op, p)
					if err == nil && g != frames {
						err = fmt.Errorf("message %d, want %d", g, frames)
					}
					frames++
					return err
				})
				if err != nil || code != int(codec.StatusTryAgainLater) {
					t.Fatalf("slow subscriber: close code %d, err %v; want 1013", code, err)
				}
				if err := slow.write(wstest.Close(uint16(codec.StatusTryAgainLater), "").Bytes()); err != nil {
					t.Fatal(err)
				}
				if err := slow.expectEOF(); err != nil {
					t.Fatal(err)
				}
				if frames == 0 || frames >= gidx {
					t.Errorf("slow subscriber got %d of %d messages before its close", frames, gidx)
				}
				s = settle(t, hub)
				if got := s.Delivered - fastDelivered; got != int64(frames) {
					t.Errorf("Delivered to the slow subscriber: %d, it read %d", got, frames)
				}
				want := []broadcast.TopicInfo{{Name: "feed", Subscribers: fast}}
				waitFor(t, 10*time.Second, "the slow subscriber to be forgotten", func() bool {
					return hub.Stats().Connections == fast && reflect.DeepEqual(hub.Topics(), want)
				})
				if s := hub.Stats(); s.SlowClosed != 1 {
					t.Errorf("stats %+v: want SlowClosed 1", s)
				}
				t.Logf("slow subscriber: %d of %d messages, then 1013", frames, gidx)
			}
		})
	}
}
