package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/internal/wstest"
)

// TestHistoryClusterStarting: node a of two embedded NATS nodes with
// -history starts while node b does not run, so their JetStream has no
// quorum and a waits for it. Meanwhile a's admin listener answers: 503
// {"status":"starting","waiting":"jetstream quorum"} on /healthz, 503 on
// the other endpoints, and its WebSocket listener is not open. Once b
// runs, a's /healthz turns 200 and a client of a subscribes to a topic
// with history.
func TestHistoryClusterStarting(t *testing.T) {
	listens, routes := routeAddrs(t, 2)
	history := func(name string) []string {
		return []string{"-history", "news.*=100/10m", "-nats-store-dir", filepath.Join(t.TempDir(), name)}
	}
	a := launchRouted(t, "a", listens[0], routes, history("a")...)
	var (
		status int
		body   []byte
	)
	wstest.WaitFor(t, 30*time.Second, "node a to answer /healthz", func() bool {
		var err error
		status, body, err = httpDo("GET", "http://"+a.admin+"/healthz", "")
		return err == nil
	})
	var h startingReply
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil || status != 503 || h.Status != "starting" || h.Waiting != "jetstream quorum" || h.Reason == "" {
		t.Fatalf("/healthz while a waits for its quorum: %d %s (%v)", status, body, err)
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/metrics", ""},
		{"GET", "/api/topics", ""},
		{"POST", "/api/publish", `{"topic":"news.eu","data":"x"}`},
	} {
		status, body, err := httpDo(r.method, "http://"+a.admin+r.path, r.body)
		if err != nil || status != 503 || !strings.Contains(string(body), "starting") {
			t.Errorf("%s %s while a starts: %d %s (%v)", r.method, r.path, status, body, err)
		}
	}
	if c, err := net.DialTimeout("tcp", a.addr, adminTimeout); err == nil {
		c.Close()
		t.Errorf("a's WebSocket listener is open before its quorum")
	}

	launchRouted(t, "b", listens[1], routes, history("b")...)
	wstest.WaitFor(t, time.Minute, "node a to serve", func() bool {
		status, h, _ := a.health()
		return status == 200 && h.Status == "ok"
	})
	c, _, err := (&websocket.Dialer{HandshakeTimeout: adminTimeout}).Dial("ws://"+a.addr+"/?format=json&topics=news.eu", nil)
	if err != nil {
		t.Fatalf("dial a once it serves: %v", err)
	}
	defer c.Close()
	expectSubscribed(t, "node a", c, "news.eu", nil, 0)
}

// TestHistoryClusterStartingSignal: SIGTERM to a node that is starting
// ends its wait, whether for its JetStream quorum (the other node is not
// running) or for its NATS node to listen (its route port is taken): the
// node closes what it opened and exits 0, saying why, within a few seconds
// (without the abort, the second would wait 10 s and exit 1), rather than
// dying by the signal.
func TestHistoryClusterStartingSignal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen func(listens []string) string
	}{
		{"quorum", func(listens []string) string { return listens[0] }},
		{"route port taken", func([]string) string { return holdPort(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listens, routes := routeAddrs(t, 2)
			a := launchRouted(t, "a", tc.listen(listens), routes, "-history", "news.*=100/10m", "-nats-store-dir", t.TempDir())
			wstest.WaitFor(t, 30*time.Second, "node a to answer /healthz: starting", func() bool {
				status, body, err := httpDo("GET", "http://"+a.admin+"/healthz", "")
				return err == nil && status == 503 && strings.Contains(string(body), `"starting"`)
			})
			if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-a.done:
			case <-time.After(8 * time.Second):
				t.Fatal("node a did not exit within 8 s of SIGTERM")
			}
			if code := a.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit status %d (%v), want 0", code, a.cmd.ProcessState)
			}
			out, err := os.ReadFile(a.log)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), "wsd: stopped by a signal (terminated) while its cluster node was starting") {
				t.Errorf("node a's output does not say why it stopped:\n%s", out)
			}
			if c, err := net.DialTimeout("tcp", a.admin, adminTimeout); err == nil {
				c.Close()
				t.Errorf("a's admin listener is still open")
			}
		})
	}
}
