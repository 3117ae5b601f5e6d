package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/wsdproject/wsd/engine"
)

// jetStreamServer runs a NATS server with JetStream, storing in a
// temporary directory, until the test ends.
func jetStreamServer(t *testing.T) *server.Server {
	t.Helper()
	return natsServerWith(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
}

// TestHistoryClusterResume: two wsd nodes on a NATS deployment with
// JetStream keep -history topics in a stream. A ?format=json client of
// node A follows news.eu; node A stops; messages are published through
// node B's API meanwhile; the client comes back to node B with its last
// position on the URL and gets exactly what it missed, then live messages,
// with the stream's positions.
func TestHistoryClusterResume(t *testing.T) {
	s := jetStreamServer(t)
	nodes := joinNATS(t, s.ClientURL(), []string{"-mode", "push", "-history", "news.*=100/10m"}, "a", "b")
	a, b := nodes[0], nodes[1]

	ca := a.dialWS(t, "/?format=json&topics=news.eu")
	first := expectSubscribed(t, "node A", ca, "news.eu", nil, 0)
	waitInterest(t, 1, a)
	var last pushMsg
	for i := 1; i <= 3; i++ {
		publishText(t, b, "news.eu", fmt.Sprintf("before-%d", i))
		m := readPush(t, "node A", ca)
		if m.Data == nil || *m.Data != fmt.Sprintf("before-%d", i) || m.Offset == nil || m.Epoch != first.Epoch || (last.Offset != nil && *m.Offset <= *last.Offset) {
			t.Fatalf("node A: %+v", m)
		}
		last = m
	}
	ca.Close()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	if err := a.engine.Shutdown(ctx); err != nil && err != engine.ErrEngineClosed {
		t.Fatal(err)
	}
	cancel()
	a.nodes.close()

	for i := 1; i <= 3; i++ {
		publishText(t, b, "news.eu", fmt.Sprintf("missed-%d", i))
	}
	cb := b.dialWS(t, fmt.Sprintf("/?format=json&topics=news.eu&since=news.eu:%d:%s", *last.Offset, last.Epoch))
	ack := readPush(t, "node B", cb)
	if ack.Op != "subscribed" || ack.Recovered == nil || !*ack.Recovered || ack.Epoch != last.Epoch {
		t.Fatalf("node B: %+v, want recovered", ack)
	}
	for i := 1; i <= 3; i++ {
		m := readPush(t, "node B", cb)
		if m.Data == nil || *m.Data != fmt.Sprintf("missed-%d", i) || *m.Offset <= *last.Offset {
			t.Fatalf("node B replay: %+v after offset %d, want missed-%d", m, *last.Offset, i)
		}
		last = m
	}
	if *ack.Offset != *last.Offset {
		t.Errorf("ack at offset %d, last replayed %d", *ack.Offset, *last.Offset)
	}
	waitInterest(t, 1, b)
	publishText(t, b, "news.eu", "live")
	if m := readPush(t, "node B", cb); m.Data == nil || *m.Data != "live" || *m.Offset <= *last.Offset {
		t.Fatalf("node B live: %+v", m)
	}
	var h struct {
		Topic    string           `json:"topic"`
		Offset   uint64           `json:"offset"`
		Epoch    string           `json:"epoch"`
		Messages []historyMessage `json:"messages"`
	}
	getJSON(t, b, "/api/history/news.eu", 200, &h)
	if len(h.Messages) != 4 || h.Epoch != last.Epoch { // the cache: what node B read and got
		b, _ := json.Marshal(h)
		t.Fatalf("GET /api/history on node B: %s", b)
	}
}
