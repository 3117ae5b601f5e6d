package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

// setupNode finds node and npm (see nodeTool) and installs node/node_modules
// if it is missing. Call it before t.Parallel: the sequential phase of the
// package runs before any parallel test, so two tests never run npm in the
// same directory at once.
func setupNode(t *testing.T) (node, dir string) {
	t.Helper()
	node = nodeTool(t, "node")
	npm := nodeTool(t, "npm")
	dir, err := filepath.Abs("node")
	if err != nil {
		t.Fatal(err)
	}
	npmInstall(t, npm, dir)
	return node, dir
}

// adminClient talks to a daemon's admin listener.
type adminClient struct {
	base, token string
	http        *http.Client
}

func newAdminClient(addr, token string) *adminClient {
	return &adminClient{base: "http://" + addr, token: token, http: &http.Client{Timeout: ioTimeout}}
}

// do sends a request (with the bearer token if withToken) and returns the
// status and body.
func (a *adminClient) do(t *testing.T, method, path, body string, withToken bool) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if withToken && a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// publish posts body to /api/publish and checks the answer's recipients
// and topics.
func (a *adminClient) publish(t *testing.T, body string, recipients int, topics ...string) {
	t.Helper()
	status, b := a.do(t, "POST", "/api/publish", body, true)
	if status != http.StatusOK {
		t.Fatalf("POST /api/publish %s: status %d: %s", body, status, b)
	}
	var got struct {
		Recipients int      `json:"recipients"`
		Topics     []string `json:"topics"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("POST /api/publish %s: %v: %s", body, err, b)
	}
	if got.Recipients != recipients || !reflect.DeepEqual(got.Topics, topics) {
		t.Errorf("POST /api/publish %s: recipients %d, topics %q; want %d, %q", body, got.Recipients, got.Topics, recipients, topics)
	}
}

type topicInfo struct {
	Name        string `json:"name"`
	Subscribers int    `json:"subscribers"`
}

// waitTopics polls GET /api/topics until it lists exactly want.
func (a *adminClient) waitTopics(t *testing.T, want []topicInfo) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		status, b := a.do(t, "GET", "/api/topics", "", true)
		var got struct {
			Topics []topicInfo `json:"topics"`
		}
		if status == http.StatusOK && json.Unmarshal(b, &got) == nil && reflect.DeepEqual(got.Topics, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/topics: status %d, %s; want topics %+v", status, b, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pushScript is a running node/push.mjs.
type pushScript struct {
	stdin  io.WriteCloser
	events chan pushEvent
	nextID int
}

type pushEvent struct {
	Event   string                      `json:"event"`
	ID      int                         `json:"id"`
	Reply   json.RawMessage             `json:"reply"`
	Error   string                      `json:"error"`
	Clients map[string]pushClientResult `json:"clients"`
	Fatal   string                      `json:"fatal"`
}

type pushClientResult struct {
	Messages []struct {
		Binary bool   `json:"binary"`
		Data   []byte `json:"data"` // base64 in the JSON
	} `json:"messages"`
	Close *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"close"`
}

// pushClient is one connection the script opens.
type pushClient struct {
	Name      string   `json:"name"`
	Query     string   `json:"query"`
	Subscribe []string `json:"subscribe,omitempty"`
}

func startPushScript(t *testing.T, node, dir, url string, clients []pushClient) *pushScript {
	t.Helper()
	spec, err := json.Marshal(clients)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	cmd := exec.CommandContext(ctx, node, "push.mjs", url, string(spec))
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &pushScript{stdin: stdin, events: make(chan pushEvent, 64)}
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		defer close(s.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			var ev pushEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = pushEvent{Event: "garbage", Error: fmt.Sprintf("%v: %q", err, truncate(sc.Bytes(), 300))}
			}
			s.events <- ev
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		go func() { // the scanner must never block on a full channel
			for range s.events {
			}
		}()
		waitErr := make(chan error, 1)
		go func() {
			<-scanDone // Wait closes stdout; read it all first
			waitErr <- cmd.Wait()
		}()
		var err error
		select {
		case err = <-waitErr:
		case <-time.After(10 * time.Second):
			cancel()
			err = <-waitErr
		}
		cancel()
		switch {
		case err != nil && t.Failed():
			// A failed test stops the script early: it exits 1.
			t.Logf("node push.mjs: %v", err)
		case err != nil:
			t.Errorf("node push.mjs: %v", err)
		}
		if stderr.Len() > 0 {
			t.Logf("node stderr:\n%s", stderr.String())
		}
	})
	return s
}

// next returns the script's next event, which must be of kind event.
func (s *pushScript) next(t *testing.T, event string) pushEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatalf("node push.mjs ended its output while the test waited for %q", event)
		}
		if ev.Event != event {
			t.Fatalf("node push.mjs: got event %+v, want %q", ev, event)
		}
		return ev
	case <-time.After(2 * ioTimeout):
		t.Fatalf("node push.mjs: no %q event within %v", event, 2*ioTimeout)
	}
	return pushEvent{}
}

// command sends one command and returns the reply of its "done" event.
func (s *pushScript) command(t *testing.T, cmd map[string]any) json.RawMessage {
	t.Helper()
	s.nextID++
	cmd["id"] = s.nextID
	b, _ := json.Marshal(cmd)
	if _, err := s.stdin.Write(append(b, '\n')); err != nil {
		t.Fatalf("writing to node push.mjs: %v", err)
	}
	ev := s.next(t, "done")
	if ev.ID != s.nextID || ev.Error != "" {
		t.Fatalf("node command %s: %+v", b, ev)
	}
	return ev.Reply
}

// control makes client send a control message and returns the reply with
// op (and topic).
func (s *pushScript) control(t *testing.T, client string, msg map[string]string, op, topic string) map[string]string {
	t.Helper()
	want := map[string]string{"op": op}
	if topic != "" {
		want["topic"] = topic
	}
	raw := s.command(t, map[string]any{"client": client, "send": msg, "reply": want})
	var reply map[string]string
	if err := json.Unmarshal(raw, &reply); err != nil {
		t.Fatalf("%s: reply %s: %v", client, raw, err)
	}
	return reply
}

// pushMsg is a message a client must receive: data as text or binary, or
// a control reply with op and topic.
type pushMsg struct {
	binary bool
	data   string
	op     string // control reply: op (its "code" and "message" must be set for op "error")
	topic  string
}

func (m pushMsg) String() string {
	if m.op != "" {
		return fmt.Sprintf("control reply {op:%q topic:%q}", m.op, m.topic)
	}
	if m.binary {
		return fmt.Sprintf("binary %x", m.data)
	}
	return fmt.Sprintf("text %q", m.data)
}

func pushText(s string) pushMsg         { return pushMsg{data: s} }
func pushBinary(b []byte) pushMsg       { return pushMsg{binary: true, data: string(b)} }
func pushReplyMsg(op, t string) pushMsg { return pushMsg{op: op, topic: t} }

// checkReceived compares one client's messages with want, in order.
func checkReceived(t *testing.T, name string, got pushClientResult, want []pushMsg) {
	t.Helper()
	var desc []string
	for _, m := range got.Messages {
		if m.Binary {
			desc = append(desc, fmt.Sprintf("binary %x", m.Data))
		} else {
			desc = append(desc, fmt.Sprintf("text %q", m.Data))
		}
	}
	if len(got.Messages) != len(want) {
		t.Errorf("client %s received %d messages, want %d:\n got: %s\nwant: %v", name, len(got.Messages), len(want), strings.Join(desc, ", "), want)
		return
	}
	for i, w := range want {
		g := got.Messages[i]
		if w.op == "" {
			if g.Binary != w.binary || string(g.Data) != w.data {
				t.Errorf("client %s message %d: got %s, want %v", name, i, desc[i], w)
			}
			continue
		}
		var r struct {
			Op      string `json:"op"`
			Topic   string `json:"topic"`
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		dec := json.NewDecoder(bytes.NewReader(g.Data))
		dec.DisallowUnknownFields()
		if g.Binary || dec.Decode(&r) != nil || r.Op != w.op || r.Topic != w.topic || (r.Op == "error") != (r.Code != "" && r.Message != "") {
			t.Errorf("client %s message %d: got %s, want %v", name, i, desc[i], w)
		}
	}
}

// TestPushNode runs push-mode subscribers on Node's ws client and publishes
// to them through the admin HTTP API and through client control messages.
func TestPushNode(t *testing.T) {
	node, dir := setupNode(t)
	t.Parallel()

	const token = "T0k3n"
	adminAddr := wstest.FreeAddr(t)
	d := wstest.StartDaemon(t, "-mode", "push", "-admin-addr", adminAddr, "-api-token", token, "-client-publish", "room.*")
	admin := newAdminClient(adminAddr, token)

	// Every client is on "sync", so that the last publish, to "sync", is
	// behind everything else on every connection.
	clients := []pushClient{
		{Name: "ab1", Query: "/?topics=a,b,sync"},
		{Name: "ab2", Query: "/?topics=a,b,sync"},
		{Name: "a", Query: "/?topics=a,sync"},
		{Name: "c1", Query: "/?topics=sync", Subscribe: []string{"c"}},
		{Name: "c2", Query: "/?topics=sync", Subscribe: []string{"c", "a"}},
		{Name: "rx", Query: "/?topics=sync", Subscribe: []string{"room.x"}},
		{Name: "pub", Query: "/?topics=sync"},
		{Name: "u", Query: "/?topics=d,sync"},
		{Name: "d", Query: "/?topics=d,sync"},
	}
	script := startPushScript(t, node, dir, "ws://"+d.Addr, clients)
	script.next(t, "ready")
	// The ?topics= subscriptions are made after the 101 is sent; wait
	// until the hub has them all.
	admin.waitTopics(t, []topicInfo{{"a", 4}, {"b", 2}, {"c", 2}, {"d", 2}, {"room.x", 1}, {"sync", len(clients)}})

	bin := []byte{0x00, 0xff, 0xfe, 0x80, 'b', 0x00}
	bin2 := []byte{0xc3, 0x28, 0x01}
	want := map[string][]pushMsg{
		"c1": {pushReplyMsg("subscribed", "c")},
		"c2": {pushReplyMsg("subscribed", "c"), pushReplyMsg("subscribed", "a")},
		"rx": {pushReplyMsg("subscribed", "room.x")},
	}
	add := func(m pushMsg, to ...string) {
		for _, c := range to {
			want[c] = append(want[c], m)
		}
	}

	// HTTP publishes.
	admin.publish(t, `{"topic":"a","data":"text to a ✓"}`, 4, "a")
	add(pushText("text to a ✓"), "ab1", "ab2", "a", "c2")
	admin.publish(t, `{"topic":"b","data_base64":"`+base64.StdEncoding.EncodeToString(bin)+`"}`, 2, "b")
	add(pushBinary(bin), "ab1", "ab2")
	// c2 is on both topics: counted twice, delivered once.
	admin.publish(t, `{"topics":["a","c"],"data":"to a and c"}`, 6, "a", "c")
	add(pushText("to a and c"), "ab1", "ab2", "a", "c1", "c2")
	if status, b := admin.do(t, "POST", "/api/publish", `{"topic":"a","data":"no token"}`, false); status != http.StatusUnauthorized {
		t.Errorf("publish without the token: status %d, want 401: %s", status, b)
	}

	// Client publishes, allowed by -client-publish "room.*" or not.
	script.control(t, "pub", map[string]string{"op": "publish", "topic": "room.x", "data": "from pub"}, "published", "room.x")
	add(pushReplyMsg("published", "room.x"), "pub")
	add(pushText("from pub"), "rx")
	script.control(t, "pub", map[string]string{"op": "publish", "topic": "room.x", "data_base64": base64.StdEncoding.EncodeToString(bin2)}, "published", "room.x")
	add(pushReplyMsg("published", "room.x"), "pub")
	add(pushBinary(bin2), "rx")
	r := script.control(t, "pub", map[string]string{"op": "publish", "topic": "other", "data": "not allowed"}, "error", "other")
	if r["code"] != "forbidden" || !strings.Contains(r["message"], "not allowed") {
		t.Errorf("publish to other: error code %q, message %q; want forbidden, not allowed", r["code"], r["message"])
	}
	add(pushReplyMsg("error", "other"), "pub")
	script.control(t, "pub", map[string]string{"op": "subscribe"}, "error", "")
	add(pushReplyMsg("error", ""), "pub")

	// unsubscribe stops delivery.
	admin.publish(t, `{"topic":"d","data":"d before"}`, 2, "d")
	add(pushText("d before"), "u", "d")
	script.command(t, map[string]any{"client": "u", "count": 1}) // delivered before u unsubscribes
	script.control(t, "u", map[string]string{"op": "unsubscribe", "topic": "d"}, "unsubscribed", "d")
	add(pushReplyMsg("unsubscribed", "d"), "u")
	admin.publish(t, `{"topic":"d","data":"d after"}`, 1, "d")
	add(pushText("d after"), "d")

	// The end: every client gets "END" last.
	names := make([]string, len(clients))
	for i, c := range clients {
		names[i] = c.Name
	}
	admin.publish(t, `{"topic":"sync","data":"END"}`, len(clients), "sync")
	add(pushText("END"), names...)
	b, _ := json.Marshal(map[string]any{"id": script.nextID + 1, "finish": "END"})
	if _, err := script.stdin.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	res := script.next(t, "result")
	if res.Fatal != "" {
		t.Errorf("node push.mjs: %s", res.Fatal)
	}
	for _, name := range names {
		got, ok := res.Clients[name]
		if !ok {
			t.Errorf("no result for client %s", name)
			continue
		}
		checkReceived(t, name, got, want[name])
		if got.Close == nil || got.Close.Code != 1000 {
			t.Errorf("client %s: close %+v, want the server to answer close 1000", name, got.Close)
		}
	}
}
