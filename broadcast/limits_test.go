package broadcast_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// onLoop runs f on c's loop and waits for it.
func onLoop(c *engine.Conn, f func()) {
	done := make(chan struct{})
	c.Loop().Post(loopFunc(func() { f(); close(done) }))
	<-done
}

type loopFunc func()

func (f loopFunc) Run(*engine.Loop) { f() }

// TestSubscribeManyTopics: one connection subscribes to thousands of topics
// and leaves them in random order; every count stays exact and publishes
// reach it once per message, however many of its topics they name.
func TestSubscribeManyTopics(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{MaxSubscriptions: -1}, 1)
	cl := wstest.Connect(t, addr)
	c := nextOpened(t, h)
	const n = 5000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("t%d", i)
	}
	var err error
	onLoop(c, func() { err = hub.Subscribe(c, names...) })
	if err != nil {
		t.Fatal(err)
	}
	onLoop(c, func() { err = hub.Subscribe(c, names[:100]...) }) // again: no change
	if got := hub.Stats().Subscriptions; err != nil || got != n {
		t.Fatalf("subscriptions %d (err %v), want %d", got, err, n)
	}
	order := rand.Perm(n)
	onLoop(c, func() {
		for _, i := range order[:n/2] {
			hub.Unsubscribe(c, names[i])
		}
	})
	kept := order[n/2:]
	if got := hub.Stats().Subscriptions; got != n/2 {
		t.Fatalf("subscriptions %d after leaving half, want %d", got, n/2)
	}
	for _, i := range order[:10] {
		if hub.Count(names[i]) != 0 {
			t.Fatalf("topic %s still counted", names[i])
		}
	}
	topics := []string{names[kept[0]], names[kept[1]], names[order[0]]}
	if got := hub.PublishMessage(broadcast.Message{Topics: topics, Op: codec.OpText, Payload: []byte("once")}); got != 2 {
		t.Fatalf("publish counted %d subscriptions, want 2", got)
	}
	cl.ExpectText("once")
	var subs []string
	onLoop(c, func() { subs = hub.Subscriptions(c) })
	if len(subs) != n/2 {
		t.Fatalf("Subscriptions lists %d topics, want %d", len(subs), n/2)
	}
}

// TestSubscribeCap: past Options.MaxSubscriptions Subscribe refuses the
// whole request; topics it already has do not count again.
func TestSubscribeCap(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{MaxSubscriptions: 3}, 1)
	wstest.Connect(t, addr)
	c := nextOpened(t, h)
	var errs []error
	onLoop(c, func() {
		errs = append(errs,
			hub.Subscribe(c, "a", "b"),
			hub.Subscribe(c, "b", "c", "d"), // two new: over the cap
			hub.Subscribe(c, "a", "b", "c"), // one new: fits
			hub.Subscribe(c, "d"),
		)
	})
	want := []error{nil, broadcast.ErrTooManySubscriptions, nil, broadcast.ErrTooManySubscriptions}
	for i := range want {
		if !errors.Is(errs[i], want[i]) {
			t.Fatalf("Subscribe %d: %v, want %v", i, errs[i], want[i])
		}
	}
	if hub.Count("d") != 0 || hub.Count("c") != 1 || hub.Stats().Subscriptions != 3 {
		t.Fatalf("counts a %d b %d c %d d %d", hub.Count("a"), hub.Count("b"), hub.Count("c"), hub.Count("d"))
	}
}

// TestPublishLargerThanCap: a message larger than the hub's cap reaches
// every subscriber with room (the cap bounds the backlog, not one
// message), and PublishWait says so.
func TestPublishLargerThanCap(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{MaxBuffered: 64 << 10}, 2)
	var clients []*wstest.Client
	for range 3 {
		cl := wstest.Dial(t, addr)
		cl.Handshake("/big")
		nextOpened(t, h)
		clients = append(clients, cl)
	}
	big := make([]byte, 1<<20)
	res, err := hub.PublishWait(context.Background(), broadcast.Message{Topics: []string{"big"}, Op: codec.OpBinary, Payload: big})
	if err != nil || res != (broadcast.Result{Subscriptions: 3, Queued: 3}) {
		t.Fatalf("PublishWait: %+v, %v; want 3 subscriptions, 3 queued", res, err)
	}
	for _, cl := range clients {
		cl.ExpectBinary(big)
	}
}

// TestPublishWaitCountsDrops: PublishWait reports the subscribers that
// skipped a message because they were over the cap.
func TestPublishWaitCountsDrops(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{MaxBuffered: 16 << 10}, 1)
	reader := wstest.Dial(t, addr)
	reader.Handshake("/x")
	nextOpened(t, h)
	stalled := wstest.Dial(t, addr) // never reads
	stalled.Handshake("/x")
	c := nextOpened(t, h)
	chunk := make([]byte, 32<<10)
	// Fill the stalled connection's backlog past the hub's cap.
	wstest.WaitFor(t, 10*time.Second, "a backlog over the cap", func() bool {
		var full bool
		onLoop(c, func() {
			_ = c.Write(codec.OpBinary, chunk)
			full = c.Buffered() >= 16<<10
		})
		return full
	})
	res, err := hub.PublishWait(context.Background(), broadcast.Message{Topics: []string{"x"}, Op: codec.OpText, Payload: []byte("hi")})
	if err != nil || res != (broadcast.Result{Subscriptions: 2, Queued: 1, Dropped: 1}) {
		t.Fatalf("PublishWait: %+v, %v; want 2 subscriptions, 1 queued, 1 dropped", res, err)
	}
	reader.ExpectText("hi")
}

// TestPublishOverloadedLoop: a loop that has MaxQueued bytes of publishes
// waiting skips more, counted, instead of queueing without bound.
func TestPublishOverloadedLoop(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{MaxQueued: 10 << 10}, 1)
	cl := wstest.Dial(t, addr)
	cl.Handshake("/q")
	c := nextOpened(t, h)
	release := make(chan struct{})
	running := make(chan struct{})
	c.Loop().Post(loopFunc(func() { close(running); <-release }))
	<-running
	payload := make([]byte, 1024)
	for range 20 {
		hub.Publish("q", codec.OpBinary, payload)
	}
	close(release)
	wstest.WaitFor(t, 5*time.Second, "the queue to drain", func() bool { return hub.Stats().LiveMessages == 0 })
	s := hub.Stats()
	if s.Overloaded == 0 || s.Overloaded > 11 || s.Delivered+s.Overloaded != 20 {
		t.Fatalf("stats %+v: want some of 20 publishes skipped as overloaded, the rest delivered", s)
	}
	for range s.Delivered {
		cl.ExpectBinary(payload)
	}
}
