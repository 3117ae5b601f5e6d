package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// TestBrokerServerRestart: the NATS server stops in the middle of a stream
// and comes back on the same port. While it is down, publishes, flushes,
// queries and direct sends fail fast with ErrBrokerUnavailable and the
// nodes say they are not connected; afterwards the nodes reconnect, their
// subscriptions come back, and the stream resumes, in order, without
// duplicates, every publish confirmed after the return delivered.
func TestBrokerServerRestart(t *testing.T) {
	s := runServer(t, -1)
	port := serverPort(t, s)
	a := startNode(t, newBroker(t, Options{Node: "a", URLs: []string{s.ClientURL()}}))
	b := startNode(t, newBroker(t, Options{Node: "b", URLs: []string{s.ClientURL()}}))
	client, _ := b.connect(t, "/s")
	client.Timeout = time.Minute // the reader waits out the restart
	waitInterest(t, a, b)

	// The stream: one publisher on a, PublishWait after PublishWait, until
	// told to stop; a reader of b's client.
	var (
		issued atomic.Int64 // index of the publish under way
		oks    = make(map[int]bool)
		failed []error
		mu     sync.Mutex
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			issued.Store(int64(i))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := a.hub.PublishWait(ctx, broadcast.Message{Topics: []string{"s"}, Op: codec.OpText, Payload: fmt.Appendf(nil, "%d", i)})
			cancel()
			mu.Lock()
			if err == nil {
				oks[i] = true
			} else {
				failed = append(failed, err)
			}
			mu.Unlock()
		}
	})
	received := make(chan []int, 1)
	go func() { // reads until the end marker; the test checks what it got
		var got []int
		for {
			f, err := client.ReadFrame()
			if err != nil || string(f.Payload) == "end" {
				received <- got
				return
			}
			var i int
			_, _ = fmt.Sscan(string(f.Payload), &i)
			got = append(got, i)
		}
	}()
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(oks), len(failed)
	}
	waitFor(t, 10*time.Second, "100 messages before the restart", func() bool { n, _ := counts(); return n >= 100 })

	s.Shutdown()
	s.WaitForShutdown()
	waitFor(t, 10*time.Second, "both nodes to notice", func() bool {
		return !a.b.Status().Connected && !b.b.Status().Connected
	})
	_, failsBefore := counts()
	lastBefore := int(issued.Load())
	waitFor(t, 10*time.Second, "publishes to fail", func() bool { _, f := counts(); return f >= failsBefore+10 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for what, err := range map[string]error{
		"Publish":      a.b.Publish(&broadcast.BrokerMessage{Topics: []string{"s"}, Op: codec.OpText}),
		"Flush":        a.b.Flush(ctx),
		"WaitInterest": a.b.WaitInterest(ctx),
		"SendTo":       a.b.SendTo(ctx, "b", 1, codec.OpText, nil),
	} {
		if !errors.Is(err, broadcast.ErrBrokerUnavailable) {
			t.Errorf("%s while NATS is down: %v, want ErrBrokerUnavailable", what, err)
		}
	}
	if _, err := a.b.AllTopics(ctx); !errors.Is(err, broadcast.ErrBrokerUnavailable) {
		t.Errorf("AllTopics while NATS is down: %v, want ErrBrokerUnavailable", err)
	}

	s2 := runServer(t, port)
	waitFor(t, 10*time.Second, "both nodes to reconnect", func() bool {
		return a.b.Status().Connected && b.b.Status().Connected
	})
	subject := b.b.Subject("s")
	waitFor(t, 10*time.Second, "node b's subscription on the new server", func() bool {
		return s2.GlobalAccount().Interest(subject) == 1
	})
	cutoff := int(issued.Load()) // publishes after this one find b subscribed
	waitFor(t, 10*time.Second, "100 messages after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for i := range oks {
			if i > cutoff {
				n++
			}
		}
		return n >= 100
	})
	close(stop)
	wg.Wait()
	if _, err := a.hub.PublishWait(ctx, broadcast.Message{Topics: []string{"s"}, Op: codec.OpText, Payload: []byte("end")}); err != nil {
		t.Fatal(err)
	}
	got := <-received

	for _, err := range failed {
		if !errors.Is(err, broadcast.ErrBrokerUnavailable) {
			t.Errorf("a publish failed with %v, want ErrBrokerUnavailable", err)
		}
	}
	for k := 1; k < len(got); k++ {
		if got[k] <= got[k-1] {
			t.Fatalf("message %d after %d: out of order or twice", got[k], got[k-1])
		}
	}
	gotSet := make(map[int]bool, len(got))
	for _, i := range got {
		gotSet[i] = true
	}
	for i := range oks {
		if i > cutoff && !gotSet[i] {
			t.Errorf("message %d, confirmed after the restart, was not delivered", i)
		}
	}
	for _, n := range []*node{a, b} {
		if st := n.b.Status(); st.Reconnects < 1 || !st.Connected {
			t.Errorf("node %s: %+v, want a reconnection", st.Node, st)
		}
	}
	lostBefore, lostBetween := 0, 0
	for i := range oks {
		switch {
		case gotSet[i]:
		case i <= lastBefore:
			lostBefore++
		default:
			lostBetween++
		}
	}
	t.Logf("%d delivered of %d confirmed; %d failed while NATS was down; confirmed but lost: %d before the stop, %d before b resubscribed",
		len(got), len(oks), len(failed), lostBefore, lostBetween)
}

// TestBrokerFlushAfterReconnect: a publish that no Flush confirmed before
// the connection broke may be lost; the first Flush after the
// reconnection says so, and the next one does not.
func TestBrokerFlushAfterReconnect(t *testing.T) {
	s := runServer(t, -1)
	port := serverPort(t, s)
	b := newBroker(t, Options{URLs: []string{s.ClientURL()}})
	m := &broadcast.BrokerMessage{Topics: []string{"t"}, Op: codec.OpText, Payload: []byte("x")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Publish(m); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(m); err != nil { // never confirmed
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	waitFor(t, 10*time.Second, "the broker to notice", func() bool { return !b.Status().Connected })
	runServer(t, port)
	waitFor(t, 10*time.Second, "the broker to reconnect", func() bool { return b.Status().Connected })
	if err := b.Publish(m); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); !errors.Is(err, broadcast.ErrBrokerUnavailable) {
		t.Fatalf("first Flush after the reconnection: %v, want ErrBrokerUnavailable", err)
	}
	if err := b.Publish(m); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("second Flush after the reconnection: %v", err)
	}
}

// TestBrokerConfirm: the bookkeeping of unconfirmed publishes: confirm
// drops what a Flush confirmed, forget what a failed Flush reported lost.
func TestBrokerConfirm(t *testing.T) {
	p := &publisher{}
	pub := func(gen uint64) {
		p.seq++
		if n := len(p.unconfirmed); n == 0 || p.unconfirmed[n-1].gen != gen {
			p.unconfirmed = append(p.unconfirmed, genMark{seq: p.seq, gen: gen})
		}
	}
	pub(0) // 1
	pub(0) // 2
	pub(1) // 3
	pub(1) // 4
	pub(2) // 5
	p.confirm(1)
	if want := []genMark{{2, 0}, {3, 1}, {5, 2}}; fmt.Sprint(p.unconfirmed) != fmt.Sprint(want) {
		t.Fatalf("after confirm(1): %v, want %v", p.unconfirmed, want)
	}
	p.confirm(3)
	if want := []genMark{{4, 1}, {5, 2}}; fmt.Sprint(p.unconfirmed) != fmt.Sprint(want) {
		t.Fatalf("after confirm(3): %v, want %v", p.unconfirmed, want)
	}
	p.confirm(5)
	if len(p.unconfirmed) != 0 {
		t.Fatalf("after confirm(5): %v", p.unconfirmed)
	}
	pub(2) // 6
	pub(3) // 7
	pub(4) // 8
	p.forget(4)
	if want := []genMark{{8, 4}}; fmt.Sprint(p.unconfirmed) != fmt.Sprint(want) {
		t.Fatalf("after forget(4): %v, want %v", p.unconfirmed, want)
	}
}
