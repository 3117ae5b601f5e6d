package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
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

// TestHistoryClusterKill: two wsd processes on a NATS server with
// JetStream; a ?format=json client of node A follows news.eu; node A is
// killed (SIGKILL: no goodbye); messages are published through node B's
// API meanwhile; the client reconnects to node B with its last position
// and gets exactly what it missed, in order, then live messages.
func TestHistoryClusterKill(t *testing.T) {
	s := jetStreamServer(t)
	start := func(id string) (*wstest.Daemon, string) {
		admin := wstest.FreeAddr(t)
		d := wstest.StartDaemon(t, "-mode", "push", "-nats-url", s.ClientURL(), "-nats-node", id,
			"-history", "news.*=100/10m", "-admin-addr", admin, "-log-level", "warn")
		wstest.WaitFor(t, 30*time.Second, "node "+id+" to answer", func() bool {
			r, err := http.Get("http://" + admin + "/healthz")
			if err != nil {
				return false
			}
			r.Body.Close()
			return r.StatusCode == http.StatusOK
		})
		return d, admin
	}
	a, _ := start("a")
	b, bAdmin := start("b")
	publish := func(data string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"topic": "news.eu", "data": data})
		r, err := http.Post("http://"+bAdmin+"/api/publish", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Fatalf("publish %s: status %d", data, r.StatusCode)
		}
	}
	dial := func(addr, path string) *websocket.Conn {
		t.Helper()
		d := websocket.Dialer{HandshakeTimeout: adminTimeout}
		c, _, err := d.Dial("ws://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	ca := dial(a.Addr, "/?format=json&topics=news.eu")
	expectSubscribed(t, "node A", ca, "news.eu", nil, 0)
	// Node B's publishes reach node A once A's interest is at the server:
	// publish until one comes (the others are in the stream anyway).
	var last pushMsg
	for i := 1; last.Offset == nil; i++ {
		if i > 100 {
			t.Fatal("node A got none of 100 publishes")
		}
		publish(fmt.Sprintf("probe-%d", i))
		_ = ca.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			_, p, err := ca.ReadMessage()
			if err != nil {
				break // nothing (more) yet: publish again
			}
			var m pushMsg
			if json.Unmarshal(p, &m) != nil || m.Offset == nil {
				t.Fatalf("node A: %q", p)
			}
			last = m
		}
	}
	if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wstest.WaitFor(t, 10*time.Second, "node A to die", a.Exited)
	for i := 1; i <= 3; i++ {
		publish(fmt.Sprintf("missed-%d", i))
	}
	cb := dial(b.Addr, fmt.Sprintf("/?format=json&topics=news.eu&since=news.eu:%d:%s", *last.Offset, last.Epoch))
	ack := readPush(t, "node B", cb)
	if ack.Op != "subscribed" || ack.Recovered == nil || !*ack.Recovered || ack.Epoch != last.Epoch {
		t.Fatalf("node B: %+v, want recovered in epoch %s", ack, last.Epoch)
	}
	var got []string
	for len(got) == 0 || got[len(got)-1] != "missed-3" {
		m := readPush(t, "node B", cb)
		if m.Data == nil || m.Offset == nil || *m.Offset <= *last.Offset || m.Epoch != last.Epoch {
			t.Fatalf("node B after offset %d: %+v", *last.Offset, m)
		}
		last = m
		got = append(got, *m.Data)
	}
	// Probes node A missed (it may have been slow to get them) come first,
	// then the three, once each.
	n := len(got)
	if n < 3 || got[n-3] != "missed-1" || got[n-2] != "missed-2" {
		t.Fatalf("node B replayed %q, want ... missed-1 missed-2 missed-3", got)
	}
	for _, g := range got[:n-3] {
		if !strings.HasPrefix(g, "probe-") {
			t.Fatalf("node B replayed %q", got)
		}
	}
	publish("live")
	if m := readPush(t, "node B", cb); m.Data == nil || *m.Data != "live" || *m.Offset <= *last.Offset {
		t.Fatalf("node B live: %+v", m)
	}
}

// TestHistoryClusterNATSRestart: the NATS server (JetStream on files)
// restarts under two wsd nodes. A client of node B that follows a topic
// goes on after the restart, in order, in the same epoch; a client that
// left before the restart resumes on node A from its last position, across
// the restart.
func TestHistoryClusterNATSRestart(t *testing.T) {
	dir := t.TempDir()
	opts := func(port int) *server.Options {
		return &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true}
	}
	s := natsServerWith(t, opts(-1))
	port := s.Addr().(*net.TCPAddr).Port
	nodes := joinNATS(t, s.ClientURL(), []string{"-mode", "push", "-history", "news.*=100"}, "a", "b")
	a, b := nodes[0], nodes[1]
	follower := b.dialWS(t, "/?format=json&topics=news.eu")
	expectSubscribed(t, "follower", follower, "news.eu", nil, 0)
	leaver := b.dialWS(t, "/?format=json&topics=news.eu")
	expectSubscribed(t, "leaver", leaver, "news.eu", nil, 0)
	waitInterest(t, 2, b)
	var last, left pushMsg
	for i := 1; i <= 2; i++ {
		publishText(t, a, "news.eu", fmt.Sprintf("one-%d", i))
		last = readPush(t, "follower", follower)
		left = readPush(t, "leaver", leaver)
	}
	leaver.Close()

	s.Shutdown()
	s.WaitForShutdown()
	natsServerWith(t, opts(port))
	for _, n := range nodes {
		wstest.WaitFor(t, 30*time.Second, "the node connected again", func() bool { return n.nodes.b.Status().Connected })
	}
	waitInterest(t, 1, b)
	for i := 1; i <= 2; i++ {
		data := fmt.Sprintf("two-%d", i)
		body, _ := json.Marshal(map[string]string{"topic": "news.eu", "data": data})
		wstest.WaitFor(t, 30*time.Second, "a publish accepted", func() bool {
			return call(t, a.admin, "POST", "/api/publish", "", string(body)).status == http.StatusOK
		})
		m := readPush(t, "follower", follower)
		if m.Data == nil || *m.Data != data || m.Epoch != last.Epoch || *m.Offset <= *last.Offset {
			t.Fatalf("follower after the restart: %+v after %+v, want %s in the same epoch", m, last, data)
		}
		last = m
	}
	back := a.dialWS(t, fmt.Sprintf("/?format=json&topics=news.eu&since=news.eu:%d:%s", *left.Offset, left.Epoch))
	ack := readPush(t, "back", back)
	if ack.Recovered == nil || !*ack.Recovered {
		t.Fatalf("resume across the restart: %+v, want recovered", ack)
	}
	for _, want := range []string{"two-1", "two-2"} {
		if m := readPush(t, "back", back); m.Data == nil || *m.Data != want {
			t.Fatalf("replay across the restart: %+v, want %s", m, want)
		}
	}
}
