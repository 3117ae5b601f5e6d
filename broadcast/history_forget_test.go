package broadcast_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// TestHistoryForget: a server that sees many short-lived topics with
// history (each published once, then never again) keeps about as many
// histories as topics with an unexpired message, not one per topic ever
// seen. A forgotten topic starts again in a new epoch: resuming from its
// old position gives recovered false, never true. A topic with a
// subscriber keeps its history (and its epoch) after its messages expire.
func TestHistoryForget(t *testing.T) {
	const (
		ttl    = time.Minute
		step   = ttl / 10 // so about ten topics have an unexpired message
		topics = 2000
	)
	hub, addr, clk := resumeServer(t, broadcast.HistoryPolicy{Size: 10, TTL: ttl}, 1)

	kept := mustDial(t, addr, "/", dialOptions{})
	rec, err := subscribeSince(kept, "h.kept", nil, true)
	if err != nil || rec.Position.Epoch == "" {
		t.Fatalf("subscribe h.kept: %+v, %v", rec, err)
	}
	publishN(hub, "h.kept", 1, 1)
	if _, p, err := kept.next(); err != nil || string(p) != "1 "+rec.Position.Epoch+" h.kept m1" {
		t.Fatalf("h.kept: %q, %v", p, err)
	}
	keptPos := broadcast.Position{Offset: 1, Epoch: rec.Position.Epoch}

	var first broadcast.Position
	most := 0
	for i := range topics {
		topic := fmt.Sprintf("h.t%d", i)
		publishN(hub, topic, 1, 1)
		if i == 0 {
			_, first, _ = hub.History(topic, 0, 0)
		}
		clk.advance(step)
		most = max(most, hub.HistoryStats().Topics)
	}
	st := hub.HistoryStats()
	t.Logf("%d topics published once, %v apart, TTL %v: at most %d histories at once; now %+v", topics, step, ttl, most, st)
	// Ten topics have an unexpired message at any time, plus h.kept; a
	// creation looks at four others, so about 11*4/3 histories.
	if most > 30 {
		t.Errorf("%d histories at once for about 11 live topics: forgotten topics are kept", most)
	}
	if st.Forgotten < topics-30 || st.Messages > 11 || int64(st.Topics)+st.Forgotten != topics+1 {
		t.Errorf("stats %+v: want about %d forgotten, at most 11 messages, topics+forgotten = %d", st, topics, topics+1)
	}

	// h.t0 is long forgotten: its last position does not recover, even
	// though nothing was published to it since (a new epoch says so).
	c := mustDial(t, addr, "/", dialOptions{})
	rec, err = subscribeSince(c, "h.t0", &first, true)
	if err != nil {
		t.Fatal(err)
	}
	if first.Offset != 1 || rec.Recovered || rec.Position.Epoch == first.Epoch || rec.Position.Offset != 0 || rec.Replayed != 0 {
		t.Fatalf("resume of the forgotten h.t0 from %+v: %+v; want recovered false at offset 0 of a new epoch", first, rec)
	}
	publishN(hub, "h.t0", 2, 1)
	if _, p, err := c.next(); err != nil || string(p) != "1 "+rec.Position.Epoch+" h.t0 m2" {
		t.Fatalf("h.t0 after the resume: %q, %v; want offset 1 of epoch %s", p, err, rec.Position.Epoch)
	}

	// h.kept has a subscriber: its message expired, but not its history.
	c2 := mustDial(t, addr, "/", dialOptions{})
	rec, err = subscribeSince(c2, "h.kept", &keptPos, true)
	if err != nil || !rec.Recovered || rec.Position != keptPos || rec.Replayed != 0 {
		t.Fatalf("resume of h.kept from %+v: %+v, %v; want recovered at the same position", keptPos, rec, err)
	}
	publishN(hub, "h.kept", 2, 1)
	want := "2 " + keptPos.Epoch + " h.kept m2"
	for _, cl := range []*client{kept, c2} {
		if _, p, err := cl.next(); err != nil || string(p) != want {
			t.Fatalf("h.kept: %q, %v; want %q", p, err, want)
		}
	}
}

// TestHistoryForgetInUse: a history forgotten between the moment a
// publish (or a subscription) looked it up and the moment it locks it is
// not used: the message goes to the topic's new history, the one History
// reads afterwards, and a subscription starts in that one.
func TestHistoryForgetInUse(t *testing.T) {
	for _, use := range []string{"publish", "subscribe"} {
		t.Run(use, func(t *testing.T) {
			hub, addr, clk := resumeServer(t, broadcast.HistoryPolicy{Size: 10, TTL: time.Minute}, 1)
			publishN(hub, "h.a", 1, 1)
			_, old, _ := hub.History("h.a", 0, 0)
			clk.advance(2 * time.Minute) // h.a's message expires
			var hooked atomic.Bool
			broadcast.SetHistoryLookupHook(hub, func() {
				if hooked.CompareAndSwap(false, true) {
					hub.History("h.b", 0, 0) // creating h.b's history forgets h.a's
				}
			})
			var rec broadcast.Recovery
			switch use {
			case "publish":
				publishN(hub, "h.a", 2, 1)
			case "subscribe":
				c := mustDial(t, addr, "/", dialOptions{})
				var err error
				if rec, err = subscribeSince(c, "h.a", &old, false); err != nil {
					t.Fatal(err)
				}
				publishN(hub, "h.a", 2, 1)
				if _, p, err := c.next(); err != nil || string(p) != "m2" {
					t.Fatalf("after subscribing: %q, %v", p, err)
				}
			}
			broadcast.SetHistoryLookupHook(hub, nil)
			// h.a's history is forgotten by h.b's creation, then h.b's (empty,
			// no subscriber) by h.a's new one.
			if st := hub.HistoryStats(); !hooked.Load() || st.Forgotten != 2 || st.Topics != 1 {
				t.Fatalf("hook ran %t, stats %+v: want h.a's then h.b's history forgotten", hooked.Load(), st)
			}
			msgs, pos, _ := hub.History("h.a", 0, 0)
			if len(msgs) != 1 || string(msgs[0].Payload) != "m2" || pos.Offset != 1 || pos.Epoch == old.Epoch {
				t.Fatalf("h.a's history after the %s: %+v at %+v; want m2 at offset 1 of a new epoch (the old one was %s)", use, msgs, pos, old.Epoch)
			}
			if use == "subscribe" && (rec.Recovered || rec.Position.Epoch != pos.Epoch || rec.Position.Offset != 0) {
				t.Fatalf("subscription %+v: want recovered false at offset 0 of epoch %s", rec, pos.Epoch)
			}
		})
	}
}

// epochBroker is a Broker that keeps history in epoch "E" (its pages are
// the test's).
type epochBroker struct{ *busBroker }

func (epochBroker) HistoryEpoch() string { return "E" }
func (epochBroker) FetchHistory(context.Context, string, uint64, int) (broadcast.HistoryPage, error) {
	return broadcast.HistoryPage{}, nil
}

// TestHistorySeedEmptyPage: a node whose cache of a topic is new (the
// topic forgotten, or never seen) reads from the Broker that nothing
// follows the client's position: that becomes the topic's position, and
// the cache stays empty.
func TestHistorySeedEmptyPage(t *testing.T) {
	hub := broadcast.New(broadcast.Options{
		Broker:  epochBroker{(&bus{}).node("a")},
		History: func(string) broadcast.HistoryPolicy { return broadcast.HistoryPolicy{Size: 10} },
	})
	if _, pos, _ := hub.History("h.x", 0, 0); pos != (broadcast.Position{Epoch: "E"}) {
		t.Fatalf("new topic at %+v, want offset 0 of E", pos)
	}
	broadcast.SeedHistory(hub, "h.x", broadcast.HistoryPage{Epoch: "E", Complete: true}, 42)
	if msgs, pos, _ := hub.History("h.x", 0, 0); len(msgs) != 0 || pos != (broadcast.Position{Offset: 42, Epoch: "E"}) {
		t.Fatalf("after an empty page after 42: %+v at %+v, want nothing at offset 42 of E", msgs, pos)
	}
}

// TestHistoryForgetIdleMemory: 100,000 topics published once each, one a
// second, with a TTL of a minute, leave about sixty histories and almost
// no memory (each history kept would be about 1.7 KB: 169 MB in all).
func TestHistoryForgetIdleMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's memory")
	}
	hub := broadcast.New(broadcast.Options{History: func(string) broadcast.HistoryPolicy {
		return broadcast.HistoryPolicy{Size: 100, TTL: time.Minute}
	}})
	clk := &clock{}
	clk.t.Store(time.Now().UnixNano())
	broadcast.SetHistoryClock(hub, clk.now)
	payload := []byte(strings.Repeat("x", 64))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const topics = 100000
	for i := range topics {
		hub.Publish("user."+strconv.Itoa(i), codec.OpText, payload)
		clk.advance(time.Second)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := hub.HistoryStats()
	t.Logf("%d topics, one a second, TTL 1m: heap %+d B; %+v", topics, grown, st)
	if st.Topics > 100 || grown > 16<<20 {
		t.Errorf("%d histories and %d bytes of heap left by %d topics published once", st.Topics, grown, topics)
	}
	runtime.KeepAlive(hub)
}
