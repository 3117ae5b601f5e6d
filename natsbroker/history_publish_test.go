package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// storedBroker is a broker with history on a fresh JetStream server.
func storedBroker(t *testing.T, requestTimeout time.Duration) *Broker {
	t.Helper()
	s := runJetStream(t, -1, t.TempDir())
	return newBroker(t, Options{URLs: []string{s.ClientURL()}, History: historyPolicy,
		HistoryLimits: broadcast.HistoryPolicy{Size: 50}, RequestTimeout: requestTimeout})
}

func textMsg(b *Broker, payload string, topics ...string) *broadcast.BrokerMessage {
	return &broadcast.BrokerMessage{Topics: topics, Op: codec.OpText, Payload: []byte(payload), Origin: b.Node()}
}

// storedPayload reads the message at offset seq from the stream and
// returns its subject and payload.
func storedPayload(t *testing.T, b *Broker, seq uint64) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sm, err := b.hist.stream.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("stream message %d: %v", seq, err)
	}
	var w wireMsg
	if !decodePublication(sm.Data, &w) {
		t.Fatalf("stream message %d is not a publication", seq)
	}
	return sm.Subject, string(w.payload)
}

// TestHistoryPublishStoredPosition: a publish that the stream stores
// returns, for each of its topics with history and in their order, the
// stream sequence it took and the stream's epoch; the stream holds the
// message there. A plain topic of the same publish has no position.
func TestHistoryPublishStoredPosition(t *testing.T) {
	b := storedBroker(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 1; i <= 3; i++ {
		payload := fmt.Sprintf("m-%d", i)
		pos, err := b.PublishStored(ctx, textMsg(b, payload, "h.a", "plain", "h.b"))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if len(pos) != 2 || pos[0].Topic != "h.a" || pos[1].Topic != "h.b" {
			t.Fatalf("publish %d: positions %+v, want h.a then h.b", i, pos)
		}
		for k, p := range pos {
			if want := uint64(2*(i-1) + k + 1); p.Offset != want || p.Epoch != b.HistoryEpoch() || p.Epoch == "" {
				t.Errorf("publish %d: %s at %+v, want offset %d of epoch %s", i, p.Topic, p.Position, want, b.HistoryEpoch())
			}
			subj, got := storedPayload(t, b, p.Offset)
			if subj != string(b.storedSubject(nil, p.Topic)) || got != payload {
				t.Errorf("stream message %d: %s %q, want %s's subject and %q", p.Offset, subj, got, p.Topic, payload)
			}
		}
	}
	if err := b.Publish(textMsg(b, "waited", "h.a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush after a stored publish: %v", err)
	}
	if _, got := storedPayload(t, b, 7); got != "waited" {
		t.Errorf("Flush returned before the stream had the message: offset 7 holds %q", got)
	}
	if st := b.HistoryStats(); st.Stored != 7 || st.NotStored != 0 {
		t.Errorf("stats %+v, want 7 stored, none refused", st)
	}
}

// TestHistoryPublishStreamDeleted: with the stream deleted, a publish to
// a topic with history fails, through PublishStored and through Publish
// and Flush (what the hub's PublishWait does), wrapping ErrNotStored and
// broadcast.ErrBrokerUnavailable, instead of succeeding silently; a
// publish to a plain topic still succeeds. The broker creates the stream
// again (a new epoch), and publishes are stored once more.
func TestHistoryPublishStreamDeleted(t *testing.T) {
	b := storedBroker(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := b.PublishStored(ctx, textMsg(b, "first", "h.a")); err != nil {
		t.Fatal(err)
	}
	epoch := b.HistoryEpoch()
	notFailed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrNotStored) || !errors.Is(err, broadcast.ErrBrokerUnavailable) {
			t.Fatalf("%s with the stream deleted: %v, want ErrNotStored", what, err)
		}
	}

	if err := b.hist.js.DeleteStream(ctx, b.hist.name); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(textMsg(b, "lost", "h.a")); err != nil {
		t.Fatalf("Publish: %v (it hands the message over without waiting)", err)
	}
	notFailed("Flush", b.Flush(ctx))

	// The stream is created again in the background.
	var pos []broadcast.TopicPosition
	waitFor(t, 10*time.Second, "a stored publish after the stream is created again", func() bool {
		var err error
		pos, err = b.PublishStored(ctx, textMsg(b, "again", "h.a"))
		return err == nil
	})
	if len(pos) != 1 || pos[0].Epoch == epoch || pos[0].Epoch != b.HistoryEpoch() {
		t.Errorf("after the stream came back: %+v, want a new epoch (was %s, now %s)", pos, epoch, b.HistoryEpoch())
	}

	if err := b.hist.js.DeleteStream(ctx, b.hist.name); err != nil {
		t.Fatal(err)
	}
	pos, err := b.PublishStored(ctx, textMsg(b, "lost", "h.a", "plain"))
	notFailed("PublishStored", err)
	if len(pos) != 0 {
		t.Errorf("positions %+v for a message not stored", pos)
	}
	if _, err := b.PublishStored(ctx, textMsg(b, "plain", "plain")); err != nil {
		t.Errorf("a plain topic with the stream deleted: %v", err)
	}
	if st := b.HistoryStats(); st.NotStored < 2 {
		t.Errorf("stats %+v, want at least 2 not stored", st)
	}
}

// TestHistoryPublishNoPubAck: when something else takes the stored
// subjects and never answers (no stream, no "no responders"), a waited
// publish fails once RequestTimeout has passed without a PubAck.
func TestHistoryPublishNoPubAck(t *testing.T) {
	const timeout = 300 * time.Millisecond
	b := storedBroker(t, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.hist.js.DeleteStream(ctx, b.hist.name); err != nil {
		t.Fatal(err)
	}
	sink, err := nats.Connect(b.nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	got := make(chan struct{}, 16)
	if _, err := sink.Subscribe(b.opts.Prefix+".s.>", func(*nats.Msg) {
		select {
		case got <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = b.PublishStored(ctx, textMsg(b, "unanswered", "h.a"))
	if !errors.Is(err, ErrNotStored) || time.Since(start) < timeout {
		t.Fatalf("PublishStored without a PubAck: %v after %v, want ErrNotStored after %v", err, time.Since(start), timeout)
	}
	<-got // the subject was taken: the failure is the missing PubAck
	if err := b.Publish(textMsg(b, "unanswered", "h.a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); !errors.Is(err, ErrNotStored) {
		t.Fatalf("Flush without a PubAck: %v, want ErrNotStored", err)
	}
}

// TestHistoryPublishServerStopped: once the NATS server is gone, a
// publish to a topic with history fails at once, and the connection lost
// while a PubAck was awaited fails that publish's wait.
func TestHistoryPublishServerStopped(t *testing.T) {
	s := runJetStream(t, -1, t.TempDir())
	b := newBroker(t, Options{URLs: []string{s.ClientURL()}, History: historyPolicy, HistoryLimits: broadcast.HistoryPolicy{Size: 50}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.PublishStored(ctx, textMsg(b, "first", "h.a")); err != nil {
		t.Fatal(err)
	}
	// A publish whose PubAck is outstanding when the connection goes.
	var acks []*pubAck
	b.pub.mu.Lock()
	err := b.publishLocked(textMsg(b, "in flight", "h.a"), b.nc.Stats().Reconnects, &acks)
	b.pub.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	waitFor(t, 5*time.Second, "the broker to see the server gone", func() bool { return !b.Status().Connected })
	if err := b.waitAck(ctx, acks[0]); err != nil && !errors.Is(err, ErrNotStored) {
		t.Errorf("the publish in flight: %v, want stored or ErrNotStored", err) // the server may have answered before it stopped
	}
	if _, err := b.PublishStored(ctx, textMsg(b, "after", "h.a")); !errors.Is(err, broadcast.ErrBrokerUnavailable) {
		t.Errorf("PublishStored with the server stopped: %v, want ErrBrokerUnavailable", err)
	}
	if err := b.Publish(textMsg(b, "after", "h.a")); !errors.Is(err, broadcast.ErrBrokerUnavailable) {
		t.Errorf("Publish with the server stopped: %v, want ErrBrokerUnavailable", err)
	}
	if err := b.Flush(ctx); !errors.Is(err, broadcast.ErrBrokerUnavailable) {
		t.Errorf("Flush with the server stopped: %v, want ErrBrokerUnavailable", err)
	}
}

// TestHistoryPublishStoredConcurrent: publishers on several goroutines,
// some waiting with PublishStored, some with Publish and Flush: each
// PublishStored gets its own message's offset (checked against the
// stream), and no two share one.
func TestHistoryPublishStoredConcurrent(t *testing.T) {
	b := storedBroker(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const goroutines, each = 4, 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[uint64]string{}
	)
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				payload, topic := fmt.Sprintf("g%d-%d", g, i), fmt.Sprintf("h.c%d", g%2) // 50 a topic: what the stream keeps
				if g%2 == 1 {
					if err := b.Publish(textMsg(b, payload, topic)); err != nil {
						errs <- err
					} else if err := b.Flush(ctx); err != nil {
						errs <- err
					}
					continue
				}
				pos, err := b.PublishStored(ctx, textMsg(b, payload, topic))
				if err != nil || len(pos) != 1 {
					errs <- fmt.Errorf("%s: %+v %w", payload, pos, err)
					continue
				}
				mu.Lock()
				if other, dup := seen[pos[0].Offset]; dup {
					errs <- fmt.Errorf("%s and %s both at offset %d", payload, other, pos[0].Offset)
				}
				seen[pos[0].Offset] = payload
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for off, payload := range seen {
		if _, got := storedPayload(t, b, off); got != payload {
			t.Errorf("offset %d holds %q, PublishStored said %q", off, got, payload)
		}
	}
	if st := b.HistoryStats(); st.Stored != goroutines*each || st.NotStored != 0 {
		t.Errorf("stats %+v, want %d stored", st, goroutines*each)
	}
}

// TestHistoryPublishWaitNotStored: the hub's PublishWait (the publish
// API's path) in a cluster fails, wrapping broadcast.ErrBrokerUnavailable,
// when the stream does not store the message, and succeeds once it does.
func TestHistoryPublishWaitNotStored(t *testing.T) {
	s := runJetStream(t, -1, t.TempDir())
	n := historyNode(t, s.ClientURL(), false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := broadcast.Message{Topics: []string{"h.api"}, Op: codec.OpText, Payload: []byte("x")}
	if _, err := n.hub.PublishWait(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := n.b.hist.js.DeleteStream(ctx, n.b.hist.name); err != nil {
		t.Fatal(err)
	}
	if _, err := n.hub.PublishWait(ctx, m); !errors.Is(err, ErrNotStored) || !errors.Is(err, broadcast.ErrBrokerUnavailable) {
		t.Fatalf("PublishWait with the stream deleted: %v, want ErrNotStored", err)
	}
	waitFor(t, 10*time.Second, "PublishWait to succeed once the stream is back", func() bool {
		_, err := n.hub.PublishWait(ctx, m)
		return err == nil
	})
}

// BenchmarkPublishStored measures a publish on a broker with history
// (a memory stream on a loopback JetStream server): Publish alone to a
// plain topic and to a topic with history (which asks for a PubAck it
// does not wait for), and PublishStored, one publish at a time waiting
// for its PubAck.
func BenchmarkPublishStored(b *testing.B) {
	s := runJetStream(b, -1, b.TempDir())
	br := newBroker(b, Options{URLs: []string{s.ClientURL()}, History: historyPolicy,
		HistoryLimits: broadcast.HistoryPolicy{Size: 50}, HistoryMemory: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		name, topic string
		wait        bool
	}{{"Publish/plain", "plain", false}, {"Publish/history", "h.bench", false}, {"PublishStored/history", "h.bench", true}} {
		b.Run(c.name, func(b *testing.B) {
			m := textMsg(br, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", c.topic)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if c.wait {
					_, err = br.PublishStored(ctx, m)
				} else {
					err = br.Publish(m)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := br.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
