package broadcast_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestHubChurn races subscriptions, unsubscriptions and disconnects against
// publishers on 4 loops (run it with -race). Keepers stay connected and
// subscribed to "keep" (in OnOpen) and "keep2" (SubscribeAsync), and toggle
// "flip" with SubscribeAsync/UnsubscribeAsync; churners connect to assorted
// topics, get more (SubscribeAsync) and fewer (UnsubscribeAsync) from
// another goroutine, and leave in assorted ways, most of them abrupt. While
// this goes on, publishers use Publish, PublishMessage (with Exclude) and
// SendTo. Keepers check that each publisher's messages arrive in order and
// at most once. Once everything settles, the counts must be those of the
// keepers alone.
func TestHubChurn(t *testing.T) {
	const (
		keepers   = 8
		churners  = 4
		perChurn  = 60
		churnTime = 20 * time.Second // bound, should the machine be very slow
	)
	hub, h, addr := startHub(t, broadcast.Options{MaxBuffered: 256 << 10}, 4)

	keep := make([]member, keepers)
	for i := range keep {
		keep[i].c = mustDial(t, addr, "/keep", dialOptions{})
		keep[i].conn = nextOpened(t, h)
		hub.SubscribeAsync(keep[i].conn, "keep2")
	}
	waitFor(t, 10*time.Second, "the keepers' subscriptions", func() bool { return hub.Stats().Subscriptions == 2*keepers })

	// Keepers read everything; "final" (from the test) ends their reading.
	keepErrs := make([]error, keepers)
	var keepWG sync.WaitGroup
	for i, k := range keep {
		keepWG.Go(func() { keepErrs[i] = readKeeper(k.c) })
	}

	stop := make(chan struct{})
	var bg sync.WaitGroup // publishers and async (un)subscribers

	// Publishers. Payload: publisher (1 byte), sequence (4 bytes).
	var published [3]atomic.Int64
	recent := make(chan *engine.Conn, 64) // churners' conns, for Exclude and SendTo
	for pub := range 3 {
		bg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(pub), 1))
			var buf [5]byte
			var last *engine.Conn
			for seq := uint32(0); ; seq++ {
				select {
				case <-stop:
					return
				case c := <-recent:
					last = c
				default:
				}
				buf[0] = byte(pub)
				binary.BigEndian.PutUint32(buf[1:], seq)
				switch pub {
				case 0:
					hub.Publish([...]string{"t0", "t1", "t2", "keep", "none"}[seq%5], codec.OpBinary, buf[:])
				case 1:
					var ex uint64
					if last != nil {
						ex = last.ID()
					}
					hub.PublishMessage(broadcast.Message{Topics: []string{"t1", "keep", "t2", "keep2", "flip"}, Op: codec.OpBinary, Payload: buf[:], Exclude: ex})
				case 2:
					if last != nil {
						_ = hub.SendTo(last.ID(), codec.OpBinary, buf[:]) // the churner may be gone
					}
					hub.PublishMessage(broadcast.Message{Topics: []string{"t3", "t0"}, Op: codec.OpBinary, Payload: buf[:]})
				}
				published[pub].Add(1)
				if rng.IntN(4) == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		})
	}

	// Keepers toggle "flip", ending unsubscribed.
	bg.Go(func() {
		for i := 0; ; i++ {
			k := keep[i%keepers].conn
			hub.SubscribeAsync(k, "flip")
			hub.UnsubscribeAsync(k, "flip")
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	})

	// Churners' connections get more and fewer topics from here, racing
	// their own disconnects.
	bg.Go(func() {
		rng := rand.New(rand.NewPCG(7, 7))
		for {
			select {
			case <-stop:
				return
			case c := <-h.opened:
				switch rng.IntN(4) {
				case 0:
					hub.SubscribeAsync(c, "t2", "t3")
				case 1:
					hub.SubscribeAsync(c, "t0", "tmp")
					hub.UnsubscribeAsync(c, "tmp")
				case 2:
					hub.UnsubscribeAsync(c, "t0", "t1", "never")
				case 3:
					hub.SubscribeAsync(c, "t1")
					hub.UnsubscribeAsync(c, "t1")
					hub.SubscribeAsync(c, "t1")
				}
				select {
				case recent <- c:
				default:
				}
			}
		}
	})

	// Churners.
	paths := []string{"/t0", "/t1,t2", "/", "/t3,t0,t1", "/keep", "/keep2,flip"}
	deadline := time.Now().Add(churnTime)
	churnErrs := make(chan error, churners)
	var churnWG sync.WaitGroup
	for w := range churners {
		churnWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for range perChurn {
				if time.Now().After(deadline) {
					return
				}
				c, err := dialClient(addr, paths[rng.IntN(len(paths))], dialOptions{})
				if err != nil {
					churnErrs <- err
					return
				}
				c.timeout = 50 * time.Millisecond
				for range rng.IntN(8) { // read a little, or time out
					if _, _, err := c.next(); err != nil {
						break
					}
				}
				switch rng.IntN(5) {
				case 0, 1: // TCP reset
					c.reset()
				case 2: // TCP close, no close frame
					c.conn.Close()
				case 3: // half a frame, then gone
					_ = c.write(wstest.Text("cut short").Bytes()[:5])
					c.reset()
				case 4: // closing handshake, without waiting for the answer
					_ = c.write(wstest.Close(1000, "bye").Bytes())
					c.conn.Close()
				}
			}
		})
	}
	churnWG.Wait()
	close(stop)
	bg.Wait()
	close(churnErrs)
	for err := range churnErrs {
		t.Error(err)
	}
	t.Logf("published %d, %d, %d messages", published[0].Load(), published[1].Load(), published[2].Load())

	// Settle: only the keepers remain, with their two topics.
	want := []broadcast.TopicInfo{{Name: "keep", Subscribers: keepers}, {Name: "keep2", Subscribers: keepers}}
	var topics []broadcast.TopicInfo
	var s broadcast.Stats
	waitFor(t, 20*time.Second, "the churners to be gone", func() bool {
		topics, s = hub.Topics(), hub.Stats()
		return reflect.DeepEqual(topics, want) && s.Connections == keepers && s.LiveMessages == 0
	})
	if s.Topics != 2 || s.Subscriptions != 2*keepers {
		t.Errorf("stats %+v, want 2 topics and %d subscriptions", s, 2*keepers)
	}
	for _, name := range []string{"t0", "t1", "t2", "t3", "tmp", "flip", "never", "none"} {
		if n := hub.Count(name); n != 0 {
			t.Errorf("Count(%q) = %d, want 0", name, n)
		}
	}
	if n := hub.Count("keep"); n != keepers {
		t.Errorf("Count(keep) = %d, want %d", n, keepers)
	}

	// Every keeper is intact: it gets "final" (retried, in case a keeper
	// was over its cap and is still catching up) and nothing else broke.
	done := make(chan struct{})
	go func() { keepWG.Wait(); close(done) }()
	for end := time.Now().Add(20 * time.Second); ; {
		if n := hub.PublishMessage(broadcast.Message{Topics: []string{"keep", "keep2"}, Op: codec.OpText, Payload: []byte("final")}); n != 2*keepers {
			t.Errorf("final publish reached %d subscriptions, want %d", n, 2*keepers)
		}
		select {
		case <-done:
		case <-time.After(100 * time.Millisecond):
			if time.Now().Before(end) {
				continue
			}
			t.Fatal("keepers did not all get the final message")
		}
		break
	}
	for i, err := range keepErrs {
		if err != nil {
			t.Errorf("keeper %d: %v", i, err)
		}
	}
	if s := settle(t, hub); s.Connections != keepers {
		t.Errorf("stats %+v", s)
	}
}

// readKeeper reads a keeper's frames until the text "final": binary frames
// from the churn publishers must come in order per publisher, each at most
// once (gaps are allowed: the Drop policy may skip frames for a keeper that
// falls behind).
func readKeeper(c *client) error {
	last := [3]int64{-1, -1, -1}
	for {
		op, p, err := c.next()
		if err != nil {
			return err
		}
		switch {
		case op == wstest.OpText && string(p) == "final":
			return nil
		case op == wstest.OpBinary && len(p) == 5 && p[0] < 3:
			seq := int64(binary.BigEndian.Uint32(p[1:]))
			if seq <= last[p[0]] {
				return fmt.Errorf("publisher %d: message %d after %d", p[0], seq, last[p[0]])
			}
			last[p[0]] = seq
		default:
			return fmt.Errorf("unexpected frame op %d %q", op, p)
		}
	}
}
