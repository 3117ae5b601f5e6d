package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// publishResult posts body and decodes the 200 answer.
func (td *testDaemon) publishResult(t *testing.T, body string) publishReply {
	t.Helper()
	r := td.publish(t, body)
	if r.status != 200 {
		t.Fatalf("publish: status %d: %s", r.status, truncate(r.body, 200))
	}
	var res publishReply
	decodeStrict(t, r, &res)
	return res
}

// TestPublishLargerThanCap publishes a message half again as large as
// -max-buffered: a subscriber with room takes it whole, so every reading
// subscriber gets it, and the answer says so.
func TestPublishLargerThanCap(t *testing.T) {
	td := startWSD(t, "-mode", "push", "-max-buffered", "1MiB")
	var clients []*websocket.Conn
	for range 3 {
		c := td.dialWS(t, "/?topics=big")
		c.SetReadLimit(4 << 20)
		clients = append(clients, c)
	}
	// The subscriptions are made at open, which the topic count shows.
	wstest.WaitFor(t, adminTimeout, "3 subscribers", func() bool { return td.hub.Count("big") == 3 })
	big := strings.Repeat("x", 3<<19) // 1.5 MiB
	res := td.publishResult(t, `{"topic":"big","data":"`+big+`"}`)
	want := publishReply{Recipients: 3, Queued: 3, Topics: []string{"big"}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("answer %+v, want %+v", res, want)
	}
	for i, c := range clients {
		_, p, err := c.ReadMessage()
		if err != nil || len(p) != len(big) {
			t.Fatalf("client %d: %d bytes, %v; want the %d bytes published", i, len(p), err, len(big))
		}
	}
}

// TestPublishSlowConsumer publishes to a subscriber that does not read
// until its backlog reaches -max-buffered, with each -slow-policy, and
// checks the answers (queued, then dropped or closed), what the client
// gets, and the counters in /metrics.
func TestPublishSlowConsumer(t *testing.T) {
	cases := []struct {
		policy string
		code   string // -slow-close-code
	}{
		{"drop", "1008"},
		{"close", "1013"},
		{"close", "4000"},
	}
	for _, tc := range cases {
		t.Run(tc.policy+"/"+tc.code, func(t *testing.T) {
			td := startWSD(t, "-mode", "push", "-max-buffered", "256KiB", "-slow-policy", tc.policy, "-slow-close-code", tc.code)
			slow := wstest.Dial(t, td.addr)
			slow.Handshake("/?topics=t")
			wstest.WaitFor(t, adminTimeout, "the subscription", func() bool { return td.hub.Count("t") == 1 })

			// Publish 64 KiB messages until the hub stops queueing them:
			// the kernel's socket buffers fill first, then the engine's
			// backlog up to the cap.
			payload := bytes.Repeat([]byte{'m'}, 64<<10)
			var queued int
			var last publishReply
			for i := 0; ; i++ {
				if i == 4096 { // 256 MiB: the cap does not work
					t.Fatalf("%d publishes all queued", i)
				}
				last = td.publishResult(t, fmt.Sprintf(`{"topic":"t","data":"%d %s"}`, i, payload))
				if last.Recipients != 1 || last.Queued+last.Dropped+last.Closed != 1 || last.Overloaded != 0 {
					t.Fatalf("publish %d: %+v, want one subscription either queued, dropped or closed", i, last)
				}
				if last.Queued == 0 {
					break
				}
				queued++
			}
			samples, _ := promSamples(t, call(t, td.admin, "GET", "/metrics", "", "").body)

			if tc.policy == "close" {
				if last.Closed != 1 {
					t.Fatalf("last publish %+v, want closed", last)
				}
				// The close frame comes after every frame queued before it.
				for i := range queued {
					f := slow.ExpectFrame()
					if f.Opcode != wstest.OpText || !bytes.HasPrefix(f.Payload, fmt.Appendf(nil, "%d ", i)) {
						t.Fatalf("frame %d: %v, want the text published %d-th", i, f, i)
					}
				}
				slow.ExpectClose(atoi(t, tc.code))
				if got := samples[`wsd_closed_total{reason="slow_consumer"}`]; got != "1" {
					t.Errorf(`wsd_closed_total{reason="slow_consumer"} = %q, want 1`, got)
				}
				return
			}

			if last.Dropped != 1 {
				t.Fatalf("last publish %+v, want dropped", last)
			}
			if got := samples["wsd_dropped_total"]; got != "1" {
				t.Errorf("wsd_dropped_total = %q, want 1", got)
			}
			// The connection stays: it gets what was queued, nothing of the
			// dropped message, and later messages once it has room.
			for i := range queued {
				f := slow.ExpectFrame()
				if f.Opcode != wstest.OpText || !bytes.HasPrefix(f.Payload, fmt.Appendf(nil, "%d ", i)) {
					t.Fatalf("frame %d: %v, want the text published %d-th", i, f, i)
				}
			}
			if res := td.publishResult(t, `{"topic":"t","data":"after"}`); res.Queued != 1 {
				t.Fatalf("publish after catching up: %+v, want queued", res)
			}
			slow.ExpectText("after")
		})
	}
}

// atoi is strconv.Atoi for a test's own numbers.
func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// adminServerFor serves a on a loopback httptest server closed at cleanup.
func adminServerFor(t *testing.T, a *admin) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv
}

// blockLoop is a loop task that holds its loop until release is closed.
type blockLoop struct {
	running chan struct{}
	release chan struct{}
}

func (b *blockLoop) Run(*engine.Loop) {
	close(b.running)
	<-b.release
}

// TestPublishPending has the only event loop with a subscriber busy while
// publishes come. The first waits past the API's wait and is answered 202
// "pending"; the second finds -max-queued waiting for that loop and is
// skipped ("overloaded", counted in /metrics). Once the loop is free the
// first goes out, and later ones again.
func TestPublishPending(t *testing.T) {
	hub := broadcast.New(broadcast.Options{MaxQueued: 1})
	addr, rec := startPushEngine(t, hub)
	a := newAdmin(hub, fakeStats(engine.Stats{}), "", 0, false)
	a.wait = 1 // expires before a loop can run the publish
	srv := adminServerFor(t, a)

	c := wstest.Dial(t, addr)
	c.Handshake("/?topics=p")
	conn := <-rec.opened
	b := &blockLoop{running: make(chan struct{}), release: make(chan struct{})}
	conn.Loop().Post(b)
	<-b.running

	r := call(t, srv, "POST", "/api/publish", "", `{"topic":"p","data":"late"}`)
	if r.status != 202 {
		close(b.release)
		t.Fatalf("status %d: %s, want 202", r.status, r.body)
	}
	var pending struct {
		Recipients int      `json:"recipients"`
		Topics     []string `json:"topics"`
		Pending    bool     `json:"pending"`
	}
	decodeStrict(t, r, &pending)
	if pending.Recipients != 1 || !pending.Pending || !reflect.DeepEqual(pending.Topics, []string{"p"}) {
		t.Errorf("answer %+v, want 1 recipient, pending", pending)
	}

	r = call(t, srv, "POST", "/api/publish", "", `{"topic":"p","data":"skipped"}`)
	close(b.release)
	var res publishReply
	decodeStrict(t, r, &res)
	if want := (publishReply{Recipients: 1, Overloaded: 1, Topics: []string{"p"}}); r.status != 200 || !reflect.DeepEqual(res, want) {
		t.Errorf("status %d, answer %+v; want 200, %+v", r.status, res, want)
	}
	samples, _ := promSamples(t, call(t, srv, "GET", "/metrics", "", "").body)
	if got := samples["wsd_publish_overloaded_total"]; got != "1" {
		t.Errorf("wsd_publish_overloaded_total = %q, want 1", got)
	}

	c.ExpectText("late")
	patient := adminServer(t, hub, fakeStats(engine.Stats{}), "", 0, false) // the default wait
	r = call(t, patient, "POST", "/api/publish", "", `{"topic":"p","data":"after"}`)
	if decodeStrict(t, r, &res); res.Queued != 1 {
		t.Errorf("publish once the loop is free: %+v, want queued", res)
	}
	c.ExpectText("after")
}

// downBroker is a broadcast.Broker that cannot reach its broker.
type downBroker struct{}

func (downBroker) Start(func(*broadcast.BrokerMessage)) {}
func (downBroker) Publish(*broadcast.BrokerMessage) error {
	return fmt.Errorf("dial: connection refused: %w", broadcast.ErrBrokerUnavailable)
}
func (downBroker) Flush(context.Context) error    { return nil }
func (downBroker) Interest(string, bool)          {}
func (downBroker) Status() broadcast.BrokerStatus { return broadcast.BrokerStatus{} }
func (downBroker) Close() error                   { return nil }

// TestPublishBrokerDown checks that a publish the hub's broker refuses is
// answered 503 with the reason, not 202 as if it were on its way.
func TestPublishBrokerDown(t *testing.T) {
	srv := adminServer(t, broadcast.New(broadcast.Options{Broker: downBroker{}}), fakeStats(engine.Stats{}), "", 0, false)
	r := call(t, srv, "POST", "/api/publish", "", `{"topic":"a","data":"x"}`)
	if r.status != 503 {
		t.Fatalf("status %d: %s, want 503", r.status, r.body)
	}
	if msg := r.errorText(t); !strings.Contains(msg, "broker unavailable") {
		t.Errorf("error %q does not give the reason", msg)
	}
}
