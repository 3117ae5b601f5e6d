package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestHistoryClusterPublishAck: in a cluster with JetStream history, the
// ack of a push client's publish to a topic with history carries the
// position the stream stored the message at, the one a ?format=json
// subscriber of another node gets it with; a topic without history is
// acked without one; with the stream deleted the ack is an "unavailable"
// error that says the message was not stored. Publishes sent in a row are
// stored and acknowledged in order. A node where no more
// publishes may wait for the stream refuses one with an "unavailable"
// error and sends nothing.
func TestHistoryClusterPublishAck(t *testing.T) {
	s := jetStreamServer(t)
	nodes := joinNATS(t, s.ClientURL(), []string{"-mode", "push", "-history", "news.*=100/10m", "-client-publish", "*"}, "a", "b")
	a, b := nodes[0], nodes[1]

	sub := b.dialWS(t, "/?format=json&topics=news.eu")
	expectSubscribed(t, "node B", sub, "news.eu", nil, 0)
	waitInterest(t, 1, b)

	send := func(c *websocket.Conn, req string) pushMsg {
		t.Helper()
		if err := c.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
		return readPush(t, "publisher", c)
	}

	// A node where no publish may wait for the stream refuses one at once,
	// and sends nothing (node B's next message is node A's first).
	saved := maxStoredAcks
	maxStoredAcks = 0
	full := startNode(t, "-nats-url", s.ClientURL(), "-nats-node", "c", "-mode", "push", "-history", "news.*=100/10m", "-client-publish", "*")
	maxStoredAcks = saved
	fc := full.dialWS(t, "/")
	if ack := send(fc, `{"op":"publish","topic":"news.eu","data":"refused"}`); ack.Op != "error" || ack.Code != "unavailable" || ack.Topic != "news.eu" || !strings.Contains(ack.Message, "nothing was sent") {
		t.Fatalf("ack %+v with no room, want an unavailable error", ack)
	}
	if ack := send(fc, `{"op":"publish","topic":"plain","data":"p"}`); ack.Op != "published" || ack.Offset != nil {
		t.Fatalf("ack %+v of a topic without history with no room, want published", ack)
	}

	pub := a.dialWS(t, "/")
	var last uint64
	for _, data := range []string{"one", "two"} {
		ack := send(pub, `{"op":"publish","topic":"news.eu","data":"`+data+`"}`)
		if ack.Op != "published" || ack.Topic != "news.eu" || ack.Offset == nil || *ack.Offset <= last || ack.Epoch == "" {
			t.Fatalf("ack %+v, want published with a position after %d", ack, last)
		}
		last = *ack.Offset
		m := readPush(t, "node B", sub)
		if m.Data == nil || *m.Data != data || m.Offset == nil || *m.Offset != *ack.Offset || m.Epoch != ack.Epoch {
			t.Fatalf("node B got %+v, the publisher's ack was %+v", m, ack)
		}
	}
	// Publishes sent in a row, without waiting for their acks, are stored
	// and acknowledged in the order they were sent.
	const burst = 20
	for i := range burst {
		if err := pub.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"op":"publish","topic":"news.eu","data":"m%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range burst {
		ack := readPush(t, "publisher", pub)
		if ack.Op != "published" || ack.Offset == nil || *ack.Offset <= last {
			t.Fatalf("ack %d: %+v, want published after offset %d", i, ack, last)
		}
		last = *ack.Offset
		m := readPush(t, "node B", sub)
		if want := fmt.Sprintf("m%d", i); m.Data == nil || *m.Data != want || m.Offset == nil || *m.Offset != last || m.Epoch != ack.Epoch {
			t.Fatalf("node B got %+v, want %s at the position of ack %+v", m, want, ack)
		}
	}
	if ack := send(pub, `{"op":"publish","topic":"plain","data":"p"}`); ack.Op != "published" || ack.Topic != "plain" || ack.Offset != nil || ack.Epoch != "" {
		t.Fatalf("ack %+v, want published with no position", ack)
	}

	deleteHistoryStream(t, s.ClientURL())
	if ack := send(pub, `{"op":"publish","topic":"news.eu","data":"lost"}`); ack.Op != "error" || ack.Code != "unavailable" || ack.Topic != "news.eu" || !strings.Contains(ack.Message, "not stored") {
		t.Fatalf("ack %+v with the stream deleted, want an unavailable error that says not stored", ack)
	}
}

// deleteHistoryStream deletes the history stream, the only stream of the
// NATS server at url.
func deleteHistoryStream(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	names := js.StreamNames(ctx)
	var streams []string
	for name := range names.Name() {
		streams = append(streams, name)
	}
	if names.Err() != nil || len(streams) != 1 {
		t.Fatalf("streams %v, %v; want the history stream", streams, names.Err())
	}
	if err := js.DeleteStream(ctx, streams[0]); err != nil {
		t.Fatal(err)
	}
}
