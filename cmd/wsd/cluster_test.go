package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/internal/natstest"
	"github.com/wsdproject/wsd/internal/wstest"
	"github.com/wsdproject/wsd/natsbroker"
)

// natsServer and natsServerWith run a NATS server for a test.
var natsServer, natsServerWith = natstest.Server, natstest.ServerWith

// startNode is startWSD for a node of a cluster: its broker closes after
// its engine has shut down.
func startNode(t *testing.T, args ...string) *testDaemon {
	t.Helper()
	var td *testDaemon
	// Cleanups run last in, first out: this one after startWSD's, which
	// shuts the engine down.
	t.Cleanup(func() {
		if td != nil {
			td.nodes.close()
		}
	})
	td = startWSD(t, args...)
	return td
}

// joinNATS starts nodes of a cluster with args on the NATS server at url,
// with the given node ids, and waits until each knows all of them.
func joinNATS(t *testing.T, url string, args []string, ids ...string) []*testDaemon {
	t.Helper()
	var nodes []*testDaemon
	for _, id := range ids {
		nodes = append(nodes, startNode(t, append([]string{"-nats-url", url, "-nats-node", id}, args...)...))
	}
	wstest.WaitFor(t, adminTimeout, "every node to know the others", func() bool {
		for _, n := range nodes {
			if len(n.nodes.b.Nodes()) != len(ids) {
				return false
			}
		}
		return true
	})
	return nodes
}

// waitInterest waits until each node has subs subscriptions (counted by
// its hub), and then until the NATS server has the subscriptions of every
// node.
func waitInterest(t *testing.T, subs int, nodes ...*testDaemon) {
	t.Helper()
	for _, n := range nodes {
		wstest.WaitFor(t, adminTimeout, "the subscriptions", func() bool { return n.hub.Stats().Subscriptions == int64(subs) })
	}
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		err := n.nodes.b.WaitInterest(ctx)
		cancel()
		if err != nil {
			t.Fatalf("node %s: %v", n.nodes.b.Node(), err)
		}
	}
}

// readMessages reads c's messages on a goroutine into the returned
// channel, closed when the connection ends.
func readMessages(c *websocket.Conn) <-chan string {
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			ch <- string(p)
		}
	}()
	return ch
}

// next returns the next message of ch, or fails the test after timeout.
func next(t *testing.T, who string, ch <-chan string, timeout time.Duration) string {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: connection closed", who)
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("%s: no message within %v", who, timeout)
	}
	return ""
}

// welcome dials a push connection with ?welcome=1 and returns its
// messages and the id of the welcome message.
func welcome(t *testing.T, td *testDaemon, topics string) (<-chan string, string) {
	t.Helper()
	ch := readMessages(td.dialWS(t, "/?welcome=1&topics="+topics))
	var w struct{ Op, ID string }
	if m := next(t, "welcome", ch, adminTimeout); json.Unmarshal([]byte(m), &w) != nil || w.Op != "welcome" || w.ID == "" {
		t.Fatalf("first message %q, want {\"op\":\"welcome\",\"id\":...}", m)
	}
	return ch, w.ID
}

// getJSON GETs path from td's admin API and decodes the answer, of the
// given status, strictly into v.
func getJSON(t *testing.T, td *testDaemon, path string, status int, v any) {
	t.Helper()
	r := call(t, td.admin, "GET", path, "", "")
	if r.status != status {
		t.Fatalf("GET %s: status %d, want %d: %s", path, r.status, status, r.body)
	}
	decodeStrict(t, r, v)
}

// TestClusterAPI runs three push nodes on one NATS server (-nats-url) and
// goes through the admin API of a cluster: publishes, exclusions of a
// connection of any node, direct sends, cluster-wide topic counts, health
// and metrics.
func TestClusterAPI(t *testing.T) {
	s := natsServer(t, -1)
	nodes := joinNATS(t, s.ClientURL(), []string{"-mode", "push"}, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	aSport, aSportID := welcome(t, a, "sport")
	bNews, bNewsID := welcome(t, b, "news")
	cBoth, cBothID := welcome(t, c, "news,sport")
	if !strings.HasPrefix(bNewsID, "b.") || !strings.HasPrefix(cBothID, "c.") || !strings.HasPrefix(aSportID, "a.") {
		t.Fatalf("welcome ids %s %s %s, want node.number", aSportID, bNewsID, cBothID)
	}
	waitInterest(t, 1, a, b)
	waitInterest(t, 2, c)
	expect := func(who string, ch <-chan string, want string) {
		t.Helper()
		if got := next(t, who, ch, adminTimeout); got != want {
			t.Fatalf("%s got %q, want %q", who, got, want)
		}
	}

	// A publish through a reaches b and c; its answer comes once NATS
	// has it, with a's own subscriptions.
	r := a.publish(t, `{"topic":"news","data":"n1"}`)
	var res clusterPublishResult
	if r.status != 200 {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	decodeStrict(t, r, &res)
	if want := (clusterPublishResult{Topics: []string{"news"}, Node: "a", LocalRecipients: 0}); !reflect.DeepEqual(res, want) {
		t.Errorf("publish answer %+v, want %+v", res, want)
	}
	expect("b", bNews, "n1")
	expect("c", cBoth, "n1")

	// Excluding a connection of another node (by its welcome id), of this
	// node (by id or number), then no one: each message once, in order.
	_, cNumber, _ := natsbroker.ParseConnID(cBothID)
	for _, p := range []struct {
		node *testDaemon
		body string
	}{
		{a, `{"topic":"news","data":"n2","exclude":"` + bNewsID + `"}`},
		{c, `{"topics":["news","sport"],"data":"n3","exclude":"` + cBothID + `"}`},
		{c, fmt.Sprintf(`{"topics":["news","sport"],"data":"n4","exclude":%d}`, cNumber)},
		{b, `{"topics":["news","sport"],"data":"n5"}`},
	} {
		if r := p.node.publish(t, p.body); r.status != 200 {
			t.Fatalf("publish %s: %d %s", p.body, r.status, r.body)
		}
	}
	expect("a", aSport, "n3")
	expect("a", aSport, "n4")
	expect("a", aSport, "n5")
	expect("b", bNews, "n3")
	expect("b", bNews, "n4")
	expect("b", bNews, "n5")
	expect("c", cBoth, "n2")
	expect("c", cBoth, "n5")

	// Direct sends, to a connection of another node and of this one.
	for _, d := range []struct {
		from *testDaemon
		body string
		to   <-chan string
		want string
	}{
		{a, `{"to":"` + bNewsID + `","data":"to b"}`, bNews, "to b"},
		{a, `{"to":"` + aSportID + `","data_base64":"AQI="}`, aSport, "\x01\x02"},
		{c, fmt.Sprintf(`{"to":%d,"data":"to c by number"}`, cNumber), cBoth, "to c by number"},
	} {
		r := d.from.publish(t, d.body)
		var got sendResult
		if r.status != 200 {
			t.Fatalf("%s: %d %s", d.body, r.status, r.body)
		}
		decodeStrict(t, r, &got)
		expect("direct", d.to, d.want)
	}
	for _, bad := range []struct {
		body   string
		status int
		has    string
	}{
		{`{"to":"b.999999","data":"x"}`, 404, "no connection b.999999: it closed, or never was"},
		{`{"to":"nobody.1","data":"x"}`, 404, `no node "nobody" in the cluster`},
		{`{"to":"b.x","data":"x"}`, 400, `"to": connection id "b.x": want node.number`},
		{`{"to":"` + bNewsID + `","topic":"news","data":"x"}`, 400, `"to" sends to one connection`},
		{`{"to":"` + bNewsID + `"}`, 400, `"data" (text) or "data_base64" (binary) is required`},
		{`{"topic":"news","data":"x","exclude":"b.0"}`, 400, `"exclude": connection id "b.0"`},
		{`{"topic":"news","data":"x","exclude":true}`, 400, `a connection id is a string ("node.42") or a positive number, not true`},
	} {
		r := a.publish(t, bad.body)
		if r.status != bad.status || !strings.Contains(r.errorText(t), bad.has) {
			t.Errorf("%s: %d %s; want %d with %q", bad.body, r.status, r.body, bad.status, bad.has)
		}
	}

	// Cluster-wide topics, from any node.
	var all clusterTopicsReply
	getJSON(t, b, "/api/topics?scope=cluster", 200, &all)
	wantAll := clusterTopicsReply{
		Topics: []broadcast.TopicInfo{{Name: "news", Subscribers: 2}, {Name: "sport", Subscribers: 2}},
		Nodes: map[string][]broadcast.TopicInfo{
			"a": {{Name: "sport", Subscribers: 1}},
			"b": {{Name: "news", Subscribers: 1}},
			"c": {{Name: "news", Subscribers: 1}, {Name: "sport", Subscribers: 1}},
		},
		Missing: []string{},
	}
	if !reflect.DeepEqual(all, wantAll) {
		t.Errorf("cluster topics\n got %+v\nwant %+v", all, wantAll)
	}
	var one clusterTopicReply
	getJSON(t, a, "/api/topics/news?scope=cluster", 200, &one)
	if want := (clusterTopicReply{Name: "news", Subscribers: 2, Nodes: map[string]int{"a": 0, "b": 1, "c": 1}, Missing: []string{}}); !reflect.DeepEqual(one, want) {
		t.Errorf("cluster topic\n got %+v\nwant %+v", one, want)
	}
	var local struct{ Topics []broadcast.TopicInfo }
	getJSON(t, a, "/api/topics?scope=local", 200, &local)
	if want := []broadcast.TopicInfo{{Name: "sport", Subscribers: 1}}; !reflect.DeepEqual(local.Topics, want) {
		t.Errorf("local topics %+v, want %+v", local.Topics, want)
	}
	if r := call(t, a.admin, "GET", "/api/topics?scope=world", "", ""); r.status != 400 || r.errorText(t) != "scope: want local (the default) or cluster" {
		t.Errorf("scope=world: %d %s", r.status, r.body)
	}

	var health clusterHealthReply
	getJSON(t, a, "/healthz", 200, &health)
	if want := (clusterHealthReply{Status: "ok", Connections: 1, Cluster: clusterHealth{Node: "a", Connected: true, Nodes: 3}}); !reflect.DeepEqual(health, want) {
		t.Errorf("healthz %+v, want %+v", health, want)
	}

	// a has no subscriber of news: NATS sent it none of the news
	// messages, only sport's n3, n4 and n5.
	samples, types := promSamples(t, call(t, a.admin, "GET", "/metrics", "", "").body)
	for key, want := range map[string]string{
		`wsd_broker_info{node="a"}`: "1", "wsd_broker_connected": "1", "wsd_broker_routes": "0", "wsd_broker_nodes": "3",
		"wsd_broker_topics": "1", "wsd_broker_messages_in_total": "3", "wsd_broker_messages_out_total": "2", "wsd_broker_delivered_total": "3",
		"wsd_broker_reconnects_total": "0", "wsd_broker_publish_errors_total": "0", "wsd_broker_duplicates_total": "0",
		"wsd_broker_slow_consumer_total": "0", "wsd_broker_malformed_total": "0",
	} {
		if samples[key] != want {
			t.Errorf("%s = %q, want %s", key, samples[key], want)
		}
	}
	if types["wsd_broker_connected"] != "gauge" || types["wsd_broker_messages_in_total"] != "counter" {
		t.Errorf("metric types %q %q", types["wsd_broker_connected"], types["wsd_broker_messages_in_total"])
	}
	// c received n3, n4 and n5 twice (news and sport) and delivered them
	// once each.
	samples, _ = promSamples(t, call(t, c.admin, "GET", "/metrics", "", "").body)
	if samples["wsd_broker_duplicates_total"] != "3" || samples["wsd_broker_delivered_total"] != "5" {
		t.Errorf("c: duplicates %s, delivered %s; want 3 and 5", samples["wsd_broker_duplicates_total"], samples["wsd_broker_delivered_total"])
	}
}

// TestPushWelcomeAlone: a node alone gives plain numbers as connection ids,
// which "to" and "exclude" take, and refuses what needs a cluster.
func TestPushWelcomeAlone(t *testing.T) {
	td := startWSD(t, "-mode", "push")
	ch, id := welcome(t, td, "news")
	if id == "" || strings.Contains(id, ".") {
		t.Fatalf("id %q, want a number", id)
	}
	plain := readMessages(td.dialWS(t, "/?topics=news"))
	wstest.WaitFor(t, adminTimeout, "2 subscribers", func() bool { return td.hub.Count("news") == 2 })
	if r := td.publish(t, `{"to":"`+id+`","data":"direct"}`); r.status != 200 {
		t.Fatalf("to: %d %s", r.status, r.body)
	}
	if r := td.publish(t, `{"topic":"news","data":"not you","exclude":"`+id+`"}`); r.status != 200 {
		t.Fatalf("exclude: %d %s", r.status, r.body)
	}
	if r := td.publish(t, `{"topic":"news","data":"all"}`); r.status != 200 {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	for _, want := range []string{"direct", "all"} {
		if got := next(t, "welcomed", ch, adminTimeout); got != want {
			t.Fatalf("welcomed client got %q, want %q", got, want)
		}
	}
	for _, want := range []string{"not you", "all"} { // no welcome without ?welcome=1
		if got := next(t, "plain", plain, adminTimeout); got != want {
			t.Fatalf("plain client got %q, want %q", got, want)
		}
	}
	for _, bad := range []struct {
		method, path, body string
		status             int
		has                string
	}{
		{"POST", "/api/publish", `{"to":"a.1","data":"x"}`, 400, `"to": connection id "a.1": this wsd is not in a cluster`},
		{"POST", "/api/publish", `{"topic":"news","data":"x","exclude":"a.1"}`, 400, `"exclude": connection id "a.1": this wsd is not in a cluster`},
		{"POST", "/api/publish", `{"to":"999999","data":"x"}`, 404, "no connection 999999"},
		{"GET", "/api/topics?scope=cluster", "", 400, "scope=cluster: this wsd is not in a cluster"},
		{"GET", "/api/topics/news?scope=cluster", "", 400, "scope=cluster: this wsd is not in a cluster"},
	} {
		r := call(t, td.admin, bad.method, bad.path, "", bad.body)
		if r.status != bad.status || !strings.Contains(r.errorText(t), bad.has) {
			t.Errorf("%s %s %s: %d %s; want %d with %q", bad.method, bad.path, bad.body, r.status, r.body, bad.status, bad.has)
		}
	}
}

// clusterHealthOf returns td's /healthz answer, checking that its status
// code goes with it (200 for ok, 503 for degraded).
func clusterHealthOf(t *testing.T, td *testDaemon) clusterHealthReply {
	t.Helper()
	var h clusterHealthReply
	r := call(t, td.admin, "GET", "/healthz", "", "")
	decodeStrict(t, r, &h)
	if (r.status == 200) != (h.Status == "ok") {
		t.Fatalf("healthz: status %d with %+v", r.status, h)
	}
	return h
}

// TestClusterNATSRestart: the NATS server of -nats-url stops in the middle
// of a stream and comes back on the same port. While it is away, the
// publish API answers 503 and /healthz says degraded (503); once it is
// back, the nodes reconnect by themselves, their subscriptions come back,
// /healthz says ok and the stream goes on, each message once, in order.
func TestClusterNATSRestart(t *testing.T) {
	s := natsServer(t, -1)
	port := s.Addr().(*net.TCPAddr).Port
	nodes := joinNATS(t, s.ClientURL(), []string{"-mode", "push", "-client-publish", "s"}, "a", "b")
	a, b := nodes[0], nodes[1]
	sub := readMessages(b.dialWS(t, "/?topics=s"))
	publisherConn := a.dialWS(t, "/")
	publisher := readMessages(publisherConn)
	// clientPublish publishes data to s as a client of a, and returns the
	// ack.
	clientPublish := func(data string) pushAck {
		t.Helper()
		if err := publisherConn.WriteMessage(websocket.TextMessage, []byte(`{"op":"publish","topic":"s","data":"`+data+`"}`)); err != nil {
			t.Fatal(err)
		}
		var ack pushAck
		if m := next(t, "publisher", publisher, adminTimeout); json.Unmarshal([]byte(m), &ack) != nil {
			t.Fatalf("publisher got %q, want an ack", m)
		}
		return ack
	}
	waitInterest(t, 1, b)
	// stream publishes "<name> <i>" for i below n through a, and checks
	// that sub gets each, in order, skipping the probes.
	stream := func(name string, n int) {
		t.Helper()
		for i := range n {
			if r := a.publish(t, fmt.Sprintf(`{"topic":"s","data":"%s %d"}`, name, i)); r.status != 200 {
				t.Fatalf("publish %s %d: %d %s", name, i, r.status, r.body)
			}
		}
		for i := 0; i < n; {
			m := next(t, "subscriber", sub, adminTimeout)
			if strings.HasPrefix(m, "probe ") {
				continue
			}
			if want := fmt.Sprintf("%s %d", name, i); m != want {
				t.Fatalf("subscriber got %q, want %q", m, want)
			}
			i++
		}
	}
	health := func(td *testDaemon) clusterHealthReply { return clusterHealthOf(t, td) }
	stream("before", 50)

	s.Shutdown()
	s.WaitForShutdown()
	var down adminReply
	wstest.WaitFor(t, adminTimeout, "a publish to fail", func() bool {
		down = a.publish(t, `{"topic":"s","data":"probe down"}`) // may arrive, if NATS had it
		return down.status != 200
	})
	if down.status != 503 || down.header.Get("Retry-After") != "1" || !strings.Contains(down.errorText(t), "publish: NATS is unreachable, so the message may not be delivered; try again later") {
		t.Errorf("publish while NATS is away: %d, Retry-After %q: %s", down.status, down.header.Get("Retry-After"), down.body)
	}
	for _, td := range nodes {
		wstest.WaitFor(t, adminTimeout, "healthz to say degraded", func() bool { return health(td).Status == "degraded" })
		if h := health(td); !strings.HasPrefix(h.Reason, "not connected to NATS (NATS at nats://127.0.0.1:") || h.Cluster.Connected {
			t.Errorf("healthz %+v", h)
		}
	}
	for _, path := range []string{"/api/topics?scope=cluster", "/api/topics/s?scope=cluster"} {
		if r := call(t, a.admin, "GET", path, "", ""); r.status != 503 {
			t.Errorf("%s while NATS is away: %d %s", path, r.status, r.body)
		}
	}
	if ack := clientPublish("probe client"); ack != (pushAck{Op: "error", Code: "unavailable", Topic: "s", Message: "the cluster's NATS is unreachable: nothing was sent; try again later"}) {
		t.Errorf("a client's publish while NATS is away: %+v", ack)
	}
	samples, _ := promSamples(t, call(t, a.admin, "GET", "/metrics", "", "").body)
	if samples["wsd_broker_connected"] != "0" || samples["wsd_broker_publish_errors_total"] == "0" {
		t.Errorf("metrics while NATS is away: connected %s, publish errors %s", samples["wsd_broker_connected"], samples["wsd_broker_publish_errors_total"])
	}

	natsServer(t, port)
	for _, td := range nodes {
		wstest.WaitFor(t, 2*adminTimeout, "healthz to say ok", func() bool { return health(td).Status == "ok" })
		samples, _ := promSamples(t, call(t, td.admin, "GET", "/metrics", "", "").body)
		if samples["wsd_broker_connected"] != "1" || samples["wsd_broker_reconnects_total"] == "0" {
			t.Errorf("metrics after the return: connected %s, reconnects %s", samples["wsd_broker_connected"], samples["wsd_broker_reconnects_total"])
		}
	}
	// b subscribes again as it reconnects; probe until its subscription
	// is back, then the stream goes on.
	wstest.WaitFor(t, adminTimeout, "b's subscription to come back", func() bool {
		a.publish(t, `{"topic":"s","data":"probe up"}`)
		select {
		case m := <-sub:
			return m == "probe up"
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	stream("after", 50)
	if ack := clientPublish("client 0"); ack != (pushAck{Op: "published", Topic: "s"}) {
		t.Errorf("a client's publish: %+v", ack)
	}
	if m := next(t, "subscriber", sub, adminTimeout); m != "client 0" {
		t.Errorf("subscriber got %q, want the client's publish", m)
	}
}

// TestClusterChatPresence: chat rooms span the nodes, and presence events
// count the room's connections on every node.
func TestClusterChatPresence(t *testing.T) {
	s := natsServer(t, -1)
	nodes := joinNATS(t, s.ClientURL(), []string{"-mode", "chat"}, "a", "b")
	a, b := nodes[0], nodes[1]
	expectOnline := func(who string, ch <-chan string, online int) {
		t.Helper()
		m := next(t, who, ch, adminTimeout)
		var got presenceEvent
		dec := json.NewDecoder(strings.NewReader(m))
		dec.DisallowUnknownFields()
		if want := (presenceEvent{"presence", "lobby", online}); dec.Decode(&got) != nil || got != want {
			t.Fatalf("%s got %q, want the presence event %+v", who, m, want)
		}
	}
	aWatcherConn := a.dialWS(t, "/lobby?presence=1")
	aWatcher := readMessages(aWatcherConn)
	expectOnline("a's watcher", aWatcher, 1)
	joinerConn := b.dialWS(t, "/lobby")
	joiner := readMessages(joinerConn)
	expectOnline("a's watcher", aWatcher, 2)
	bWatcher := readMessages(b.dialWS(t, "/lobby?presence=1"))
	expectOnline("b's watcher", bWatcher, 3)
	expectOnline("a's watcher", aWatcher, 3)

	var all clusterTopicsReply
	getJSON(t, a, "/api/topics?scope=cluster", 200, &all)
	if want := []broadcast.TopicInfo{{Name: "lobby", Subscribers: 3}}; !reflect.DeepEqual(all.Topics, want) || len(all.Nodes) != 2 {
		t.Errorf("cluster topics %+v, want %+v on 2 nodes", all, want)
	}

	// A message in the room reaches every node's members, the sender's
	// included.
	if err := aWatcherConn.WriteMessage(websocket.TextMessage, []byte("hello from a")); err != nil {
		t.Fatal(err)
	}
	for who, ch := range map[string]<-chan string{"a's watcher": aWatcher, "joiner": joiner, "b's watcher": bWatcher} {
		if m := next(t, who, ch, adminTimeout); m != "hello from a" {
			t.Fatalf("%s got %q", who, m)
		}
	}
	joinerConn.Close()
	expectOnline("a's watcher", aWatcher, 2)
	expectOnline("b's watcher", bWatcher, 2)
}

// TestClusterDaemonExitStatus runs the daemon with NATS settings that are
// wrong (status 2, before anything starts) or that cannot run (status 1).
func TestClusterDaemonExitStatus(t *testing.T) {
	nowhere := "nats://" + wstest.FreeAddr(t) // nothing listens there
	cases := []struct {
		name   string
		args   []string
		env    []string
		status int
		stderr string
	}{
		{"two ways to reach NATS", []string{"-mode", "push", "-nats-url", "nats://127.0.0.1:4222"}, []string{"WSD_NATS_LISTEN=127.0.0.1:6248"}, 2,
			"wsd: -nats-listen 127.0.0.1:6248 (from WSD_NATS_LISTEN) cannot go with -nats-url nats://127.0.0.1:4222: -nats-url joins an existing NATS deployment, while -nats-listen, -nats-routes and -nats-cluster-name run an embedded NATS node; give one or the other\n"},
		{"bad route", []string{"-nats-listen", "127.0.0.1:6248", "-nats-routes", "127.0.0.1:6249"}, nil, 2,
			"wsd: -nats-routes: invalid NATS route \"127.0.0.1:6249\": want nats://host:port, the -nats-listen address of another node\n"},
		{"NATS unreachable", []string{"-mode", "push", "-nats-url", nowhere, "-admin-addr="}, nil, 1,
			"wsd: starting the broker (NATS at " + nowhere + "): natsbroker: connecting to NATS: nats: no servers available for connection\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, stdout, stderr := runDaemon(t, append([]string{"-addr", wstest.FreeAddr(t)}, tc.args...), tc.env)
			if status != tc.status || stderr != tc.stderr || stdout != "" {
				t.Errorf("exit status %d, stderr:\n%s\nstdout:\n%s\nwant status %d and stderr:\n%s", status, stderr, stdout, tc.status, tc.stderr)
			}
		})
	}
}
