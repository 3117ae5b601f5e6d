package broadcast_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// testEnvelope is the tests' envelope: "offset epoch topic payload".
func testEnvelope(dst []byte, topic string, pos broadcast.Position, _ codec.OpCode, payload []byte) []byte {
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, ' ')
	dst = append(dst, pos.Epoch...)
	dst = append(dst, ' ')
	dst = append(dst, topic...)
	dst = append(dst, ' ')
	return append(dst, payload...)
}

// envMsg is a parsed testEnvelope.
type envMsg struct {
	offset       uint64
	epoch, topic string
	payload      string
}

func parseEnv(p []byte) (envMsg, error) {
	f := strings.SplitN(string(p), " ", 4)
	if len(f) != 4 {
		return envMsg{}, fmt.Errorf("not an envelope: %q", p)
	}
	off, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return envMsg{}, fmt.Errorf("envelope %q: %w", p, err)
	}
	return envMsg{offset: off, epoch: f[1], topic: f[2], payload: f[3]}, nil
}

// resumeServer is a hub whose connections subscribe by sending
// "sub TOPIC [OFFSET EPOCH] [env]" (SubscribeSince, and SetEnvelope with
// env) and get "ack RECOVERED OFFSET EPOCH REPLAYED" back, as a push
// daemon's clients would, and unsubscribe with "unsub TOPIC" (answered
// "unsubscribed").
func resumeServer(t testing.TB, pol broadcast.HistoryPolicy, loops int) (*broadcast.Hub, string, *clock) {
	t.Helper()
	clk := &clock{}
	clk.t.Store(time.Now().UnixNano())
	hub, _, addr := startHubWith(t, hubConfig{
		hub: broadcast.Options{
			History: func(topic string) broadcast.HistoryPolicy {
				if strings.HasPrefix(topic, "h.") {
					return pol
				}
				return broadcast.HistoryPolicy{}
			},
			Envelope:    testEnvelope,
			MaxBuffered: 64 << 20,
		},
		loops: loops,
		onMessage: func(hub *broadcast.Hub, c *engine.Conn, _ codec.OpCode, p []byte) {
			f := strings.Fields(string(p))
			if len(f) == 2 && f[0] == "unsub" {
				hub.Unsubscribe(c, f[1])
				_ = c.Write(codec.OpText, []byte("unsubscribed"))
				return
			}
			if len(f) < 2 || f[0] != "sub" {
				return
			}
			var since *broadcast.Position
			if len(f) >= 4 {
				off, _ := strconv.ParseUint(f[2], 10, 64)
				since = &broadcast.Position{Offset: off, Epoch: f[3]}
			}
			if f[len(f)-1] == "env" {
				hub.SetEnvelope(c, true)
			}
			rec, err := hub.SubscribeSince(c, f[1], since)
			if err != nil {
				_ = c.Write(codec.OpText, []byte("error "+err.Error()))
				return
			}
			epoch := rec.Position.Epoch
			if epoch == "" {
				epoch = "-"
			}
			_ = c.Write(codec.OpText, fmt.Appendf(nil, "ack %t %d %s %d", rec.Recovered, rec.Position.Offset, epoch, rec.Replayed))
		},
	})
	broadcast.SetHistoryClock(hub, clk.now)
	return hub, addr, clk
}

// clock is a time the test moves.
type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }
func (c *clock) set(t time.Time)         { c.t.Store(t.UnixNano()) }

// publishN publishes "m<i>" to topic for i from from to from+n-1: with
// history from offset 1, message i is at offset i.
func publishN(hub *broadcast.Hub, topic string, from, n int) {
	for i := from; i < from+n; i++ {
		hub.Publish(topic, codec.OpText, fmt.Appendf(nil, "m%d", i))
	}
}

// subscribeSince sends the subscribe request and reads its ack.
func subscribeSince(c *client, topic string, since *broadcast.Position, env bool) (rec broadcast.Recovery, err error) {
	req := "sub " + topic
	if since != nil {
		req += fmt.Sprintf(" %d %s", since.Offset, since.Epoch)
	}
	if env {
		req += " env"
	}
	if err := c.write(wstest.Text(req).Bytes()); err != nil {
		return rec, err
	}
	_, p, err := c.next()
	if err != nil {
		return rec, err
	}
	var recovered string
	if _, err := fmt.Sscanf(string(p), "ack %s %d %s %d", &recovered, &rec.Position.Offset, &rec.Position.Epoch, &rec.Replayed); err != nil {
		return rec, fmt.Errorf("ack %q: %w", p, err)
	}
	rec.Recovered = recovered == "true"
	if rec.Position.Epoch == "-" {
		rec.Position.Epoch = ""
	}
	return rec, nil
}

// TestHistoryResume: a subscriber that saw the topic up to some offset
// resumes from it: it gets exactly the messages after it (0, 1 or many),
// then the live ones, with recovered true; when history no longer reaches
// back (expired by size or by age), the epoch is another, or the position
// is ahead of the topic, it gets recovered false and only live messages.
func TestHistoryResume(t *testing.T) {
	const size = 20
	cases := []struct {
		name      string
		seen      int // messages published before the subscriber "left", and seen by it
		missed    int // published while it was away
		epoch     string
		ahead     bool          // claim a position past the top
		age       time.Duration // how much time passes while it is away
		nilSince  bool          // subscribe without a position
		recovered bool
	}{
		{name: "missed 0", seen: 5, missed: 0, recovered: true},
		{name: "missed 1", seen: 5, missed: 1, recovered: true},
		{name: "missed N", seen: 5, missed: 15, recovered: true},
		{name: "missed all of history", seen: 0, missed: size, recovered: true},
		{name: "from an empty topic", seen: 0, missed: 0, recovered: true},
		{name: "expired by size", seen: 5, missed: size + 1},
		{name: "expired by age", seen: 5, missed: 3, age: 2 * time.Minute},
		{name: "other epoch", seen: 5, missed: 3, epoch: "other"},
		{name: "ahead of the topic", seen: 5, missed: 0, ahead: true},
		{name: "no position", seen: 5, missed: 3, nilSince: true},
	}
	for _, env := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/envelope=%t", tc.name, env), func(t *testing.T) {
				hub, addr, clk := resumeServer(t, broadcast.HistoryPolicy{Size: size, TTL: time.Minute}, 2)
				const topic = "h.news"
				publishN(hub, topic, 1, tc.seen)
				_, pos, ok := hub.History(topic, 0, 0)
				if !ok || pos.Offset != uint64(tc.seen) {
					t.Fatalf("History: position %+v ok %t, want offset %d", pos, ok, tc.seen)
				}
				clk.advance(tc.age / 2)
				publishN(hub, topic, tc.seen+1, tc.missed)
				clk.advance(tc.age - tc.age/2 + time.Second)
				since := &broadcast.Position{Offset: pos.Offset, Epoch: pos.Epoch}
				switch {
				case tc.nilSince:
					since = nil
				case tc.epoch != "":
					since.Epoch = tc.epoch
				case tc.ahead:
					since.Offset += 10
				}
				c := mustDial(t, addr, "/", dialOptions{})
				rec, err := subscribeSince(c, topic, since, env)
				if err != nil {
					t.Fatal(err)
				}
				top := uint64(tc.seen + tc.missed)
				if rec.Recovered != tc.recovered || rec.Position.Offset != top || rec.Position.Epoch != pos.Epoch {
					t.Fatalf("recovery %+v, want recovered %t at offset %d epoch %s", rec, tc.recovered, top, pos.Epoch)
				}
				want := []int{}
				if tc.recovered {
					for i := tc.seen + 1; i <= int(top); i++ {
						want = append(want, i)
					}
				}
				if rec.Replayed != len(want) {
					t.Errorf("replayed %d, want %d", rec.Replayed, len(want))
				}
				publishN(hub, topic, int(top)+1, 2) // live, after the subscription
				want = append(want, int(top)+1, int(top)+2)
				for _, i := range want {
					_, p, err := c.next()
					if err != nil {
						t.Fatalf("reading m%d: %v", i, err)
					}
					if !env {
						if got := string(p); got != fmt.Sprintf("m%d", i) {
							t.Fatalf("got %q, want m%d", got, i)
						}
						continue
					}
					m, err := parseEnv(p)
					if err != nil {
						t.Fatal(err)
					}
					if m.offset != uint64(i) || m.epoch != pos.Epoch || m.topic != topic || m.payload != fmt.Sprintf("m%d", i) {
						t.Fatalf("got %+v, want offset %d epoch %s m%d", m, i, pos.Epoch, i)
					}
				}
				st := hub.HistoryStats()
				if tc.nilSince {
					if st.Attempted != 0 {
						t.Errorf("stats %+v: a subscription without a position counts as a recovery", st)
					}
				} else if st.Attempted != 1 || (st.Recovered == 1) != tc.recovered || st.Recovered+st.Failed != 1 {
					t.Errorf("stats %+v, want 1 attempt, recovered %t", st, tc.recovered)
				}
			})
		}
	}
}

// TestHistoryEpochReset: ResetHistory starts a new epoch at offset 0; a
// position of the old epoch does not recover, one of the new does.
func TestHistoryEpochReset(t *testing.T) {
	hub, addr, _ := resumeServer(t, broadcast.HistoryPolicy{Size: 10}, 1)
	publishN(hub, "h.a", 1, 3)
	_, old, _ := hub.History("h.a", 0, 0)
	if !hub.ResetHistory("h.a") {
		t.Fatal("ResetHistory: the topic keeps no history")
	}
	publishN(hub, "h.a", 1, 2)
	msgs, pos, _ := hub.History("h.a", 0, 0)
	if pos.Epoch == old.Epoch || pos.Offset != 2 || len(msgs) != 2 || msgs[0].Offset != 1 {
		t.Fatalf("after the reset: position %+v (old %+v), %d messages", pos, old, len(msgs))
	}
	c := mustDial(t, addr, "/", dialOptions{})
	if rec, err := subscribeSince(c, "h.a", &old, true); err != nil || rec.Recovered {
		t.Fatalf("resume from the old epoch: %+v, %v; want recovered false", rec, err)
	}
	c2 := mustDial(t, addr, "/", dialOptions{})
	since := broadcast.Position{Offset: 1, Epoch: pos.Epoch}
	if rec, err := subscribeSince(c2, "h.a", &since, false); err != nil || !rec.Recovered || rec.Replayed != 1 {
		t.Fatalf("resume in the new epoch: %+v, %v; want recovered with 1 replayed", rec, err)
	}
	if _, p, err := c2.next(); err != nil || string(p) != "m2" {
		t.Fatalf("replay: %q, %v; want m2", p, err)
	}
}

// TestHistoryOnlyMatchingTopics: a topic the policy does not name keeps
// nothing, and SubscribeSince on it is a plain subscription.
func TestHistoryOnlyMatchingTopics(t *testing.T) {
	hub, addr, _ := resumeServer(t, broadcast.HistoryPolicy{Size: 10}, 1)
	publishN(hub, "plain", 1, 3)
	if _, _, ok := hub.History("plain", 0, 0); ok {
		t.Fatal("History reports a topic the policy does not name")
	}
	c := mustDial(t, addr, "/", dialOptions{})
	rec, err := subscribeSince(c, "plain", &broadcast.Position{Offset: 1, Epoch: "x"}, false)
	if err != nil || rec.Recovered || rec.Position.Offset != 0 {
		t.Fatalf("%+v, %v", rec, err)
	}
	publishN(hub, "plain", 4, 1)
	if _, p, err := c.next(); err != nil || string(p) != "m4" {
		t.Fatalf("live: %q, %v; want m4", p, err)
	}
	if st := hub.HistoryStats(); st.Topics != 0 || st.Messages != 0 || st.Attempted != 0 {
		t.Fatalf("stats %+v: want no history at all", st)
	}
}

// TestHistoryResumeUnderLoad: publishers publish to a topic with history
// as fast as they can while subscribers keep dropping their connection and
// resuming on a new one from the last offset they saw. Every subscriber
// must see every offset from 1 to the last exactly once, in order, across
// all its connections, each publisher's messages in its own order; every
// resume must recover, and every replay must join the live stream with no
// gap and no duplicate.
func TestHistoryResumeUnderLoad(t *testing.T) {
	const (
		publishers = 3
		subs       = 6
	)
	perPub := 3000
	if raceEnabled {
		perPub = 800
	}
	total := publishers * perPub
	hub, addr, _ := resumeServer(t, broadcast.HistoryPolicy{Size: total}, 4)
	const topic = "h.load"

	var published atomic.Int64
	start := make(chan struct{})
	var pubs sync.WaitGroup
	for pub := range publishers {
		pubs.Go(func() {
			<-start
			for seq := range perPub {
				hub.Publish(topic, codec.OpText, fmt.Appendf(nil, "%d:%d", pub, seq))
				published.Add(1)
				if seq%32 == 31 {
					// Bursts at full speed, spread over a second or so,
					// so that resumes happen while publishing goes on.
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}

	errs := make([]error, subs)
	resumes := make([]int, subs)
	var during atomic.Int64 // resumes made while publishers were publishing
	var readers, subscribed sync.WaitGroup
	subscribed.Add(subs)
	deadline := time.Now().Add(2 * time.Minute)
	for i := range subs {
		readers.Go(func() {
			errs[i] = func() error {
				var (
					last  uint64
					epoch string
					next  = make([]int, publishers)
				)
				for round := 0; ; round++ {
					if time.Now().After(deadline) {
						return fmt.Errorf("at offset %d of %d after %d rounds: out of time", last, total, round)
					}
					c, err := dialClient(addr, "/", dialOptions{})
					if err != nil {
						if round == 0 {
							subscribed.Done()
						}
						return err
					}
					c.timeout = time.Minute
					var since *broadcast.Position
					if round > 0 {
						since = &broadcast.Position{Offset: last, Epoch: epoch}
					}
					rec, err := subscribeSince(c, topic, since, true)
					if err != nil {
						if round == 0 {
							subscribed.Done()
						}
						c.conn.Close()
						return err
					}
					if round == 0 {
						subscribed.Done()
						last, epoch = rec.Position.Offset, rec.Position.Epoch
						// What came before the first subscription counts as seen.
						for k := range next {
							next[k] = -1
						}
					} else if !rec.Recovered || rec.Position.Epoch != epoch {
						c.conn.Close()
						return fmt.Errorf("round %d from offset %d: %+v, want recovered", round, last, rec)
					}
					resumes[i] = round
					if round > 0 && published.Load() < int64(total) {
						during.Add(1)
					}
					// Read a stretch (shorter than what is published
					// meanwhile, so that replays are long), then drop.
					stretch := 50 + (i*37+round*101)%400
					for k := 0; k < stretch && last < uint64(total); k++ {
						_, p, err := c.next()
						if err != nil {
							c.conn.Close()
							return fmt.Errorf("round %d after offset %d: %w", round, last, err)
						}
						m, err := parseEnv(p)
						if err != nil {
							c.conn.Close()
							return err
						}
						if m.offset != last+1 || m.epoch != epoch {
							c.conn.Close()
							return fmt.Errorf("round %d: offset %d epoch %s after %d (epoch %s): a gap or a duplicate", round, m.offset, m.epoch, last, epoch)
						}
						last = m.offset
						var pub, seq int
						if _, err := fmt.Sscanf(m.payload, "%d:%d", &pub, &seq); err != nil || pub >= publishers {
							c.conn.Close()
							return fmt.Errorf("payload %q", m.payload)
						}
						if next[pub] >= 0 && seq != next[pub] {
							c.conn.Close()
							return fmt.Errorf("publisher %d: message %d after %d", pub, seq, next[pub]-1)
						}
						next[pub] = seq + 1
					}
					c.conn.Close()
					if last == uint64(total) {
						return nil
					}
				}
			}()
		})
	}
	subscribed.Wait() // every subscriber is in before the first publish
	close(start)
	pubs.Wait()
	readers.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("subscriber %d: %v", i, err)
		}
	}
	st := hub.HistoryStats()
	t.Logf("%d messages, resumes per subscriber %v (%d while publishing); stats %+v", total, resumes, during.Load(), st)
	if st.Failed != 0 {
		t.Errorf("%d resumes failed", st.Failed)
	}
	if sum := func() (n int) {
		for _, r := range resumes {
			n += r
		}
		return
	}(); sum < subs || during.Load() < subs {
		t.Errorf("only %d resumes in all, %d while publishing: the test did not exercise resuming", sum, during.Load())
	}
}

// TestHistoryExpiry: the history holds at most Size messages and none older
// than TTL; the position stays when every message has expired.
func TestHistoryExpiry(t *testing.T) {
	hub, _, clk := resumeServer(t, broadcast.HistoryPolicy{Size: 3, TTL: time.Minute}, 1)
	publishN(hub, "h.x", 1, 5)
	msgs, pos, _ := hub.History("h.x", 0, 0)
	if len(msgs) != 3 || msgs[0].Offset != 3 || pos.Offset != 5 {
		t.Fatalf("%d messages from %d, position %+v; want 3 from offset 3 at 5", len(msgs), msgs[0].Offset, pos)
	}
	if msgs, _, _ := hub.History("h.x", 3, 1); len(msgs) != 1 || msgs[0].Offset != 4 || string(msgs[0].Payload) != "m4" {
		t.Fatalf("History since 3 limit 1: %+v", msgs)
	}
	clk.advance(30 * time.Second)
	publishN(hub, "h.x", 6, 1)
	clk.advance(31 * time.Second) // the first five are now older than a minute
	msgs, pos, _ = hub.History("h.x", 0, 0)
	if len(msgs) != 1 || msgs[0].Offset != 6 || pos.Offset != 6 {
		t.Fatalf("after a minute: %+v at %+v; want only offset 6", msgs, pos)
	}
	clk.set(clk.now().Add(time.Hour))
	msgs, pos2, _ := hub.History("h.x", 0, 0)
	if len(msgs) != 0 || pos2 != pos {
		t.Fatalf("after an hour: %d messages at %+v; want none at %+v", len(msgs), pos2, pos)
	}
	if st := hub.HistoryStats(); st.Messages != 0 || st.Bytes != 0 || st.Topics != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestHistoryLeaveWhileJoining: a connection that unsubscribes, or
// closes, before its SubscribeSince has joined on its loop leaves nothing
// behind: no subscription, no topic, and a later subscriber gets exactly
// the live messages.
func TestHistoryLeaveWhileJoining(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{History: func(string) broadcast.HistoryPolicy {
		return broadcast.HistoryPolicy{Size: 10}
	}}, 1)
	publishN(hub, "h.a", 1, 3)
	since := broadcast.Position{Offset: 1}
	_, pos, _ := hub.History("h.a", 0, 0)
	since.Epoch = pos.Epoch

	cl := wstest.Connect(t, addr)
	c := nextOpened(t, h)
	var err error
	onLoop(c, func() {
		if _, err = hub.SubscribeSince(c, "h.a", &since); err == nil {
			hub.Unsubscribe(c, "h.a")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "no topic left", func() bool { return hub.Stats().Topics == 0 && hub.Count("h.a") == 0 })
	publishN(hub, "h.a", 4, 1)
	// Nothing replayed, nothing live: once subscribed again (plainly), the
	// first message c gets is the next one.
	onLoop(c, func() { err = hub.Subscribe(c, "h.a") })
	if err != nil {
		t.Fatal(err)
	}
	publishN(hub, "h.a", 5, 1)
	cl.ExpectText("m5")
	onLoop(c, func() { hub.Unsubscribe(c, "h.a") })

	cl2 := wstest.Connect(t, addr)
	c2 := nextOpened(t, h)
	onLoop(c2, func() {
		if _, err = hub.SubscribeSince(c2, "h.a", &since); err == nil {
			c2.CloseNow(1000, "")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	cl2.ExpectClose(1000)
	cl2.WriteFrames(wstest.Close(1000, ""))
	cl2.ExpectTCPClosed()
	waitFor(t, 10*time.Second, "no topic left", func() bool { return hub.Stats().Topics == 0 && hub.Count("h.a") == 0 })

	cl3 := wstest.Connect(t, addr)
	c3 := nextOpened(t, h)
	var rec broadcast.Recovery
	onLoop(c3, func() { rec, err = hub.SubscribeSince(c3, "h.a", nil) })
	if err != nil || rec.Position.Offset != 5 || hub.Count("h.a") != 1 {
		t.Fatalf("%+v, %v, count %d", rec, err, hub.Count("h.a"))
	}
	publishN(hub, "h.a", 6, 1)
	cl3.ExpectText("m6")
}
