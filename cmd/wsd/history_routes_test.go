package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/internal/wstest"
)

// TestHistoryClusterRoutes: three wsd processes whose embedded NATS nodes
// are joined by routes, with -history: the history stream lives in their
// JetStream, three copies. A ?format=json client of node A follows
// news.eu; messages are published; node A is killed (SIGKILL: no
// goodbye); more are published through node B; the client resumes on node
// B from its last position with recovered:true and gets exactly what it
// missed, in order.
func TestHistoryClusterRoutes(t *testing.T) {
	names := []string{"a", "b", "c"}
	listens, routes := routeAddrs(t, len(names))
	var nodes []*routedNode
	for i, name := range names {
		nodes = append(nodes, launchRouted(t, name, listens[i], routes,
			"-history", "news.*=100/10m", "-nats-store-dir", filepath.Join(t.TempDir(), name)))
	}
	for _, n := range nodes {
		n.waitAnswer(t)
		wstest.WaitFor(t, 30*time.Second, "node "+n.name+" to route to the two others", func() bool {
			status, h, routes := n.health()
			return status == 200 && h.Status == "ok" && routes == 2 && h.Cluster.Nodes == 3
		})
	}
	a, b := nodes[0], nodes[1]
	// publish stores data through n, trying again while the stream has no
	// leader (after a node's death, until the others elect one).
	publish := func(n *routedNode, data string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"topic": "news.eu", "data": data})
		var err error
		wstest.WaitFor(t, 30*time.Second, "node "+n.name+" to store "+data, func() bool {
			err = n.publish(string(body))
			return err == nil
		})
	}
	dial := func(n *routedNode, path string) *websocket.Conn {
		t.Helper()
		c, _, err := (&websocket.Dialer{HandshakeTimeout: adminTimeout}).Dial("ws://"+n.addr+path, nil)
		if err != nil {
			t.Fatalf("dial %s: %v", n.name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	ca := dial(a, "/?format=json&topics=news.eu")
	expectSubscribed(t, "node A", ca, "news.eu", nil, 0)
	msgs := readMessages(ca)
	parse := func(p string) pushMsg {
		t.Helper()
		var m pushMsg
		if json.Unmarshal([]byte(p), &m) != nil || m.Offset == nil || m.Data == nil {
			t.Fatalf("node A: %q", p)
		}
		return m
	}
	// Node B's publishes reach node A once A's interest is known to B's
	// server: publish until one comes (the others are in the stream).
	var last pushMsg
	for i := 1; last.Offset == nil; i++ {
		if i > 100 {
			t.Fatal("node A got none of 100 publishes")
		}
		publish(b, fmt.Sprintf("probe-%d", i))
		select {
		case p := <-msgs:
			last = parse(p)
		case <-time.After(200 * time.Millisecond): // none yet: publish again
		}
	}
	for i := 1; i <= 3; i++ {
		publish(b, fmt.Sprintf("seen-%d", i))
	}
	for *last.Data != "seen-3" {
		m := parse(next(t, "node A", msgs, adminTimeout))
		if *m.Offset <= *last.Offset || m.Epoch != last.Epoch {
			t.Fatalf("node A after offset %d: %+v", *last.Offset, m)
		}
		last = m
	}

	a.kill()
	want := []string{"missed-1", "missed-2", "missed-3", "missed-4", "missed-5"}
	for _, d := range want {
		publish(b, d)
	}
	cb := dial(b, fmt.Sprintf("/?format=json&topics=news.eu&since=news.eu:%d:%s", *last.Offset, last.Epoch))
	ack := readPush(t, "node B", cb)
	if ack.Op != "subscribed" || ack.Recovered == nil || !*ack.Recovered || ack.Epoch != last.Epoch {
		t.Fatalf("node B: %+v, want recovered in epoch %s", ack, last.Epoch)
	}
	var got []string
	for len(got) < len(want) {
		m := readPush(t, "node B", cb)
		if m.Data == nil || m.Offset == nil || *m.Offset <= *last.Offset || m.Epoch != last.Epoch {
			t.Fatalf("node B after offset %d: %+v", *last.Offset, m)
		}
		last = m
		got = append(got, *m.Data)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("node B resumed with %q, want %q", got, want)
	}
	// Nothing more: the next message is a live one.
	publish(b, "live")
	if m := readPush(t, "node B", cb); m.Data == nil || *m.Data != "live" || *m.Offset <= *last.Offset {
		t.Fatalf("node B after the missed messages: %+v, want live", m)
	}
}
