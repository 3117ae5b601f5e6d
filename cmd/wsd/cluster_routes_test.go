package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/internal/wstest"
)

// routedNode is a wsd process of a cluster of embedded NATS nodes joined
// by routes (-nats-listen, -nats-routes), which the test can kill.
type routedNode struct {
	name   string
	listen string // host:port of its NATS routes
	addr   string // host:port of its WebSocket listener
	admin  string // host:port of its admin listener
	cmd    *exec.Cmd
	done   chan struct{}
	log    string // the file of its output
}

// startRouted runs node name of a cluster whose route addresses are
// routes, listening for routes on listen, until the test ends (or kill),
// and waits until it answers /healthz.
func startRouted(t *testing.T, name, listen string, routes []string) *routedNode {
	t.Helper()
	n := launchRouted(t, name, listen, routes)
	n.waitAnswer(t)
	return n
}

// launchRouted starts node name like startRouted, with the extra flags,
// and returns at once: a node with -history answers only once a quorum of
// the nodes runs (the JetStream meta leader of the embedded servers).
func launchRouted(t *testing.T, name, listen string, routes []string, extra ...string) *routedNode {
	t.Helper()
	n := &routedNode{name: name, listen: listen, addr: wstest.FreeAddr(t), admin: wstest.FreeAddr(t), done: make(chan struct{}),
		log: filepath.Join(t.TempDir(), name+".log")}
	out, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-mode", "push", "-addr", n.addr, "-reuse-port=false", "-admin-addr", n.admin,
		"-nats-listen", listen, "-nats-routes", strings.Join(routes, ","), "-nats-node", name, "-log-level", "warn"}, extra...)
	n.cmd = exec.Command(wstest.DaemonBinary(t), args...)
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); out.Close(); close(n.done) }()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			b, _ := os.ReadFile(n.log)
			t.Logf("node %s output:\n%s", name, b)
		}
	})
	return n
}

// waitAnswer waits until the node answers /healthz.
func (n *routedNode) waitAnswer(t *testing.T) {
	t.Helper()
	wstest.WaitFor(t, 30*time.Second, "node "+n.name+" to answer /healthz", func() bool {
		status, _, _ := n.health()
		return status != 0
	})
}

// routeAddrs returns n free route addresses (host:port) and the same as
// -nats-routes takes them (nats://host:port).
func routeAddrs(t *testing.T, n int) (listens, routes []string) {
	t.Helper()
	for range n {
		l := wstest.FreeAddr(t)
		listens, routes = append(listens, l), append(routes, "nats://"+l)
	}
	return listens, routes
}

// kill ends the process with SIGKILL: no goodbye to the other nodes.
func (n *routedNode) kill() {
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// health returns the node's /healthz status, answer, and routes (-1 if
// it does not answer).
func (n *routedNode) health() (status int, h clusterHealthReply, routes int) {
	status, body, err := httpDo("GET", "http://"+n.admin+"/healthz", "")
	if err != nil || json.Unmarshal(body, &h) != nil || h.Cluster.Routes == nil {
		return 0, h, -1
	}
	return status, h, *h.Cluster.Routes
}

// publish posts body to the node's publish API; any goroutine.
func (n *routedNode) publish(body string) error {
	status, answer, err := httpDo("POST", "http://"+n.admin+"/api/publish", body)
	if err == nil && status != 200 {
		err = fmt.Errorf("node %s: publish %s: %d %s", n.name, body, status, answer)
	}
	return err
}

// metric returns one sample of the node's /metrics.
func (n *routedNode) metric(t *testing.T, key string) string {
	t.Helper()
	s, err := (&limitDaemon{admin: n.admin}).tryMetrics()
	if err != nil {
		t.Fatalf("node %s: /metrics: %v", n.name, err)
	}
	return s[key]
}

// httpDo sends one request with a deadline; any goroutine.
func httpDo(method, url, body string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// subscriber is a push client of a routed node, its messages read into a
// channel.
type subscriber struct {
	name   string
	topics string
	msgs   <-chan string
	next   map[string]int // by stream: the number of the next message
}

func subscribe(t *testing.T, n *routedNode, topics string) *subscriber {
	t.Helper()
	c, _, err := (&websocket.Dialer{HandshakeTimeout: adminTimeout}).Dial("ws://"+n.addr+"/?topics="+topics, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &subscriber{name: n.name + "/" + topics, topics: topics, msgs: readMessages(c), next: map[string]int{}}
}

// read reads messages "<stream> <i>" until it has had "end <node>" from
// each of the nodes ends, and checks that each stream's numbers run from 0
// without a gap or a repeat. Probes are skipped.
func (s *subscriber) read(t *testing.T, ends ...string) {
	t.Helper()
	for len(ends) > 0 {
		m := next(t, s.name, s.msgs, adminTimeout)
		if strings.HasPrefix(m, "probe ") {
			continue
		}
		if node, ok := strings.CutPrefix(m, "end "); ok && slices.Contains(ends, node) {
			ends = slices.DeleteFunc(ends, func(e string) bool { return e == node })
			continue
		}
		var stream string
		var i int
		if _, err := fmt.Sscanf(m, "%s %d", &stream, &i); err != nil {
			t.Fatalf("%s: unexpected message %q", s.name, m)
		}
		if i != s.next[stream] {
			t.Fatalf("%s: stream %s: got message %d, want %d", s.name, stream, i, s.next[stream])
		}
		s.next[stream] = i + 1
	}
}

// probe publishes through each of from to topics until every subscriber
// has received a probe from each: then NATS knows, on every node, of every
// subscription, and what follows reaches them all.
func probe(t *testing.T, topics string, from []*routedNode, subs ...*subscriber) {
	t.Helper()
	want := len(from)
	got := make([]map[string]bool, len(subs))
	for i := range got {
		got[i] = map[string]bool{}
	}
	deadline := time.Now().Add(adminTimeout)
	for {
		done := true
		for i, s := range subs {
		drain:
			for {
				select {
				case m := <-s.msgs:
					if !strings.HasPrefix(m, "probe ") {
						t.Fatalf("%s: %q before the stream started", s.name, m)
					}
					got[i][m] = true
				default:
					break drain
				}
			}
			done = done && len(got[i]) == want
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("probes did not reach every subscriber: %v", got)
		}
		for _, n := range from {
			if err := n.publish(`{"topics":[` + topics + `],"data":"probe ` + n.name + `"}`); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterRoutes runs three wsd processes, each with an embedded NATS
// node on a port of its own, joined by routes: a node with no subscriber
// of a topic receives none of its messages; publishes through node A's API
// (and B's) reach the subscribers on A, B and C, each once, in order;
// when one process is killed the other two keep serving and stay healthy,
// a node left without routes says degraded, and ok again once a peer is
// back.
func TestClusterRoutes(t *testing.T) {
	names := []string{"a", "b", "c"}
	listens, routes := routeAddrs(t, len(names))
	var nodes []*routedNode
	for i, name := range names {
		nodes = append(nodes, startRouted(t, name, listens[i], routes))
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		wstest.WaitFor(t, 15*time.Second, "node "+n.name+" to route to the two others", func() bool {
			status, h, routes := n.health()
			return status == 200 && h.Status == "ok" && routes == 2 && h.Cluster.Nodes == 3
		})
	}

	// Topic z has subscribers on a and b only: c's broker gets none of
	// its messages.
	za, zb := subscribe(t, a, "z"), subscribe(t, b, "z")
	probe(t, `"z"`, []*routedNode{a}, za, zb)
	for i := range 50 {
		if err := a.publish(fmt.Sprintf(`{"topic":"z","data":"z %d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.publish(`{"topic":"z","data":"end a"}`); err != nil {
		t.Fatal(err)
	}
	za.read(t, "a")
	zb.read(t, "a")
	if got := c.metric(t, "wsd_broker_messages_in_total"); got != "0" {
		t.Errorf("c, with no subscriber, received %s messages from NATS", got)
	}
	if got, _ := strconv.Atoi(b.metric(t, "wsd_broker_messages_in_total")); got < 51 {
		t.Errorf("b received %d messages from NATS, want at least 51", got)
	}

	// On each node a subscriber of x, one of y and one of both. Two
	// publishers through a's API, on x and on y, and one through b's on
	// both at once.
	var subs []*subscriber
	for _, n := range nodes {
		subs = append(subs, subscribe(t, n, "x"), subscribe(t, n, "y"), subscribe(t, n, "x,y"))
	}
	probe(t, `"x","y"`, []*routedNode{a, b}, subs...)
	const count = 200
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, p := range []struct {
		n      *routedNode
		name   string
		topics string
	}{{a, "ax", `"x"`}, {a, "ay", `"y"`}, {b, "bxy", `"x","y"`}} {
		wg.Go(func() {
			for i := range count {
				if err := p.n.publish(fmt.Sprintf(`{"topics":[%s],"data":"%s %d"}`, p.topics, p.name, i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		})
	}
	wg.Wait()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The ends follow each node's publishes: every subscriber reads up to
	// both, and has then had all of the streams, once each.
	for _, n := range []*routedNode{a, b} {
		if err := n.publish(`{"topics":["x","y"],"data":"end ` + n.name + `"}`); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range subs {
		s.read(t, "a", "b")
		want := map[string]int{"bxy": count}
		if strings.Contains(s.topics, "x") {
			want["ax"] = count
		}
		if strings.Contains(s.topics, "y") {
			want["ay"] = count
		}
		if fmt.Sprint(s.next) != fmt.Sprint(want) {
			t.Errorf("%s: got %v messages by stream, want %v", s.name, s.next, want)
		}
	}
	var all clusterTopicsReply
	status, body, err := httpDo("GET", "http://"+a.admin+"/api/topics?scope=cluster", "")
	if err != nil || status != 200 || json.Unmarshal(body, &all) != nil {
		t.Fatalf("cluster topics: %d %s %v", status, body, err)
	}
	if got := fmt.Sprint(all.Topics, all.Nodes["c"]); got != "[{x 6} {y 6} {z 2}] [{x 2} {y 2}]" {
		t.Errorf("cluster topics: %s", got)
	}

	// c is killed: a and b route to each other still, stay healthy and
	// keep delivering.
	c.kill()
	for _, n := range []*routedNode{a, b} {
		wstest.WaitFor(t, adminTimeout, "node "+n.name+" to lose its route to c", func() bool {
			_, _, routes := n.health()
			return routes == 1
		})
		if status, h, _ := n.health(); status != 200 || h.Status != "ok" {
			t.Errorf("node %s without c: %d %+v, want ok", n.name, status, h)
		}
	}
	if err := a.publish(`{"topic":"z","data":"after c"}`); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*subscriber{za, zb} {
		if m := next(t, s.name, s.msgs, adminTimeout); m != "after c" {
			t.Fatalf("%s got %q, want \"after c\"", s.name, m)
		}
	}

	// b is killed too: a has no route left and says degraded, but serves
	// its own clients; b comes back, and a is ok again.
	b.kill()
	wstest.WaitFor(t, adminTimeout, "a to say degraded", func() bool {
		status, h, _ := a.health()
		return status == 503 && h.Status == "degraded"
	})
	if _, h, routes := a.health(); h.Reason != "no route to any other node (-nats-routes): this node reaches only its own clients" || routes != 0 || !h.Cluster.Connected {
		t.Errorf("a alone: %+v", h)
	}
	if err := a.publish(`{"topic":"z","data":"a alone"}`); err != nil {
		t.Fatal(err)
	}
	if m := next(t, za.name, za.msgs, adminTimeout); m != "a alone" {
		t.Fatalf("%s got %q, want \"a alone\"", za.name, m)
	}
	startRouted(t, "b", listens[1], routes)
	wstest.WaitFor(t, 15*time.Second, "a to be ok again", func() bool {
		status, h, routes := a.health()
		return status == 200 && h.Status == "ok" && routes == 1
	})
}
