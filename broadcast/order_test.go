package broadcast_test

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// seqPayload is message seq of publisher pub: 8 bytes of header, then
// fillerLen(seq) bytes of filler, so lengths cross the 7-bit/16-bit
// boundary now and then.
func seqPayload(buf []byte, pub, seq int) []byte {
	p := binary.BigEndian.AppendUint32(buf[:0], uint32(pub))
	p = binary.BigEndian.AppendUint32(p, uint32(seq))
	for i := range fillerLen(seq) {
		p = append(p, byte(seq+i))
	}
	return p
}

func fillerLen(seq int) int {
	if seq%16 == 0 {
		return 120 + seq%32 // 128..159-byte payloads
	}
	return seq % 8
}

// checkSeq checks a seqPayload frame against next, the sequence number
// expected from each publisher, and advances it.
func checkSeq(op byte, p []byte, next []int) error {
	if op != wstest.OpBinary || len(p) < 8 {
		return fmt.Errorf("unexpected frame op %d, %d bytes", op, len(p))
	}
	pub, seq := int(binary.BigEndian.Uint32(p)), int(binary.BigEndian.Uint32(p[4:]))
	if pub >= len(next) {
		return fmt.Errorf("unknown publisher %d", pub)
	}
	if seq != next[pub] {
		return fmt.Errorf("publisher %d: got message %d, want %d", pub, seq, next[pub])
	}
	n := fillerLen(seq)
	if len(p) != 8+n {
		return fmt.Errorf("publisher %d message %d: %d bytes, want %d", pub, seq, len(p), 8+n)
	}
	if n > 0 && (p[8] != byte(seq) || p[7+n] != byte(seq+n-1)) {
		return fmt.Errorf("publisher %d message %d: corrupt filler", pub, seq)
	}
	next[pub]++
	return nil
}

// TestHubOrderConcurrentPublishers has 4 goroutines publish 2,000
// sequence-numbered messages each (500 under the race detector, which needs
// the concurrency, not the volume), concurrently, to 200 subscribers spread
// over 4 event loops. Every subscriber must get all the messages exactly
// once, and each publisher's in the order it published them: through
// Publish to one topic, and through PublishMessage to two topics where a
// third of the subscribers are subscribed to both.
func TestHubOrderConcurrentPublishers(t *testing.T) {
	const (
		subs       = 200
		publishers = 4
	)
	perPub := 2000
	if raceEnabled {
		perPub = 500
	}
	two := []string{"a", "b"}
	cases := []struct {
		name    string
		path    func(i int) string
		publish func(hub *broadcast.Hub, p []byte) int
		reach   int // what each publish returns: subscriptions to its topics
	}{
		{
			name:    "Publish",
			path:    func(int) string { return "/feed" },
			publish: func(hub *broadcast.Hub, p []byte) int { return hub.Publish("feed", codec.OpBinary, p) },
			reach:   subs,
		},
		{
			name: "PublishMessage two topics",
			path: func(i int) string { return [...]string{"/a", "/b", "/a,b"}[i%3] },
			publish: func(hub *broadcast.Hub, p []byte) int {
				return hub.PublishMessage(broadcast.Message{Topics: two, Op: codec.OpBinary, Payload: p})
			},
			reach: subs + subs/3, // 67 a, 67 b and 66 both: 133 + 133
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A large cap: this test is about order and loss, not about
			// slow consumers (the race detector slows the readers down).
			hub, _, addr := startHub(t, broadcast.Options{MaxBuffered: 64 << 20}, 4)
			cs := dialMany(t, addr, subs, tc.path, dialOptions{})
			for _, c := range cs {
				// 200 readers share the test's CPU with 4 publishers and 4
				// loops: on a loaded machine one may wait its turn for long.
				c.timeout = time.Minute
			}
			waitFor(t, 10*time.Second, "every subscription", func() bool {
				return hub.Stats().Subscriptions == int64(tc.reach)
			})
			before := hub.Stats()

			errs := make([]error, subs)
			var readers sync.WaitGroup
			for i, c := range cs {
				readers.Go(func() {
					next := make([]int, publishers)
					for range publishers * perPub {
						op, p, err := c.next()
						if err == nil {
							err = checkSeq(op, p, next)
						}
						if err != nil {
							errs[i] = fmt.Errorf("subscriber %d (%s): %w (progress %v)", i, tc.path(i), err, next)
							return
						}
					}
				})
			}

			var badReach atomic.Int64
			start := make(chan struct{})
			var pubs sync.WaitGroup
			for pub := range publishers {
				pubs.Go(func() {
					<-start
					buf := make([]byte, 0, 160)
					for seq := range perPub {
						if n := tc.publish(hub, seqPayload(buf, pub, seq)); n != tc.reach {
							badReach.Store(int64(n))
						}
					}
				})
			}
			close(start)
			pubs.Wait()
			readers.Wait()
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if n := badReach.Load(); n != 0 {
				t.Errorf("a publish reached %d subscriptions, want %d", n, tc.reach)
			}
			s := settle(t, hub)
			total := int64(publishers * perPub)
			if got, want := s.Delivered-before.Delivered, subs*total; got != want || s.Dropped != 0 {
				t.Errorf("Delivered grew by %d (want %d), Dropped %d (want 0)", got, want, s.Dropped)
			}
			if got := s.Published - before.Published; got != total {
				t.Errorf("Published grew by %d, want %d", got, total)
			}
		})
	}
}
