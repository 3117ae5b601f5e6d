package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/auth"
)

// TestAdminAuthAPI: the server API with gorilla clients. Alice has two
// tabs, Bob one: a publish to "user":"alice" reaches both of her tabs and
// not Bob; presence lists the subscribers with their users and info, capped
// with the total; disconnect by id and by user closes with the given code;
// the API needs the admin bearer token.
func TestAdminAuthAPI(t *testing.T) {
	k := newTestKeys(t)
	td := startWSD(t, "-mode", "push", "-auth", "required", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "HS", "-api-token", "admin-secret")
	const admin = "Bearer admin-secret"
	tokenFor := func(sub string) string {
		return mint(t, k.hs, func(c *auth.Claims) {
			c.Subject, c.Info = sub, json.RawMessage(`{"name":"`+strings.ToUpper(sub)+`"}`)
		})
	}
	whoami := func(c *websocket.Conn) string {
		sendJSON(t, c, map[string]string{"op": "whoami"})
		m := readMap(t, c)
		if m["op"] != "whoami" {
			t.Fatalf("whoami: %v", m)
		}
		return m["id"].(string)
	}
	tab1 := td.dialHeader(t, "/?topics=news.a", bearer(tokenFor("alice")))
	tab2 := td.dialHeader(t, "/?topics=news.a", bearer(tokenFor("alice")))
	bob := td.dialHeader(t, "/?topics=news.a", bearer(tokenFor("bob")))
	ids := map[string]string{whoami(tab1): "alice", whoami(tab2): "alice", whoami(bob): "bob"}

	// A publish to alice: both tabs, not bob.
	r := call(t, td.admin, "POST", "/api/publish", admin, `{"user":"alice","data":"for alice"}`)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"recipients":2`)) {
		t.Fatalf("publish to alice: %d %s", r.status, r.body)
	}
	for i, c := range []*websocket.Conn{tab1, tab2} {
		_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "for alice" {
			t.Fatalf("tab %d: %q %v", i+1, p, err)
		}
	}
	// Bob's next message is the one published to the topic after: nothing
	// for alice came before it.
	if r := call(t, td.admin, "POST", "/api/publish", admin, `{"topic":"news.a","data":"for all"}`); r.status != 200 {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	_ = bob.SetReadDeadline(time.Now().Add(adminTimeout))
	if _, p, err := bob.ReadMessage(); err != nil || string(p) != "for all" {
		t.Fatalf("bob got %q %v, want only the topic's message", p, err)
	}
	for _, c := range []*websocket.Conn{tab1, tab2} {
		_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "for all" {
			t.Fatalf("tab: %q %v", p, err)
		}
	}

	// Presence: all three with users and info; capped at 2 with the total.
	var pr struct {
		Topic   string `json:"topic"`
		Total   int    `json:"total"`
		Members []struct {
			ID   string          `json:"id"`
			User string          `json:"user"`
			Info json.RawMessage `json:"info"`
		} `json:"members"`
		Truncated bool `json:"truncated"`
	}
	r = call(t, td.admin, "GET", "/api/presence/news.a", admin, "")
	if err := json.Unmarshal(r.body, &pr); err != nil || r.status != 200 || pr.Total != 3 || len(pr.Members) != 3 || pr.Truncated {
		t.Fatalf("presence: %d %s", r.status, r.body)
	}
	for _, m := range pr.Members {
		if ids[m.ID] != m.User || string(m.Info) != fmt.Sprintf(`{"name":"%s"}`, strings.ToUpper(m.User)) {
			t.Fatalf("member %+v (info %s), want the user of id %s", m, m.Info, m.ID)
		}
	}
	r = call(t, td.admin, "GET", "/api/presence/news.a?limit=2", admin, "")
	if err := json.Unmarshal(r.body, &pr); err != nil || pr.Total != 3 || len(pr.Members) != 2 || !pr.Truncated {
		t.Fatalf("presence limit 2: %s", r.body)
	}
	if r := call(t, td.admin, "GET", "/api/presence/news.a", "", ""); r.status != 401 {
		t.Fatalf("presence without the admin token: %d", r.status)
	}

	// Errors of disconnect.
	for _, body := range []string{`{}`, `{"user":"alice","id":"1"}`, `{"user":"alice","code":999}`, `{"user":"alice","code":1006}`, `{"id":"x"}`} {
		if r := call(t, td.admin, "POST", "/api/disconnect", admin, body); r.status != 400 {
			t.Fatalf("disconnect %s: %d %s, want 400", body, r.status, r.body)
		}
	}
	if r := call(t, td.admin, "POST", "/api/disconnect", admin, `{"id":"999999"}`); r.status != 404 {
		t.Fatalf("disconnect of an unknown id: %d %s", r.status, r.body)
	}

	// Disconnect bob by id with 4100, then alice (both tabs) by user with
	// the default 4005.
	var bobID string
	for id, u := range ids {
		if u == "bob" {
			bobID = id
		}
	}
	r = call(t, td.admin, "POST", "/api/disconnect", admin, `{"id":"`+bobID+`","code":4100,"reason":"bye bob"}`)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"closed":1`)) {
		t.Fatalf("disconnect bob: %d %s", r.status, r.body)
	}
	expectCloseCode(t, bob, 4100, "bye bob")
	r = call(t, td.admin, "POST", "/api/disconnect", admin, `{"user":"alice"}`)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"closed":2`)) {
		t.Fatalf("disconnect alice: %d %s", r.status, r.body)
	}
	expectCloseCode(t, tab1, int(closeDisconnected), "")
	expectCloseCode(t, tab2, int(closeDisconnected), "")
	if r := call(t, td.admin, "POST", "/api/publish", admin, `{"user":"alice","data":"x"}`); !bytes.Contains(r.body, []byte(`"recipients":0`)) {
		t.Fatalf("publish to alice once gone: %s", r.body)
	}
	if r := call(t, td.admin, "POST", "/api/publish", admin, `{"user":"alice","topic":"news.a","data":"x"}`); r.status != 400 {
		t.Fatalf("user and topic: %d", r.status)
	}

	// The metrics count what happened: three authenticated, one refused
	// with 401 and one with 403, two closes with 4005 (bob's 4100 is the
	// API's code, not one of authentication's).
	td.upgradeAnswer(t, "/", bearer("x.y.z"))
	td.upgradeAnswer(t, "/?topics=billing", bearer(tokenFor("carol")))
	waitForMetrics(t, td, []string{
		`wsd_auth_authenticated_total 3`,
		`wsd_auth_refused_total{status="401"} 1`,
		`wsd_auth_refused_total{status="403"} 1`,
		`wsd_auth_closes_total{code="4005"} 2`,
		`wsd_auth_closes_total{code="4001"} 0`,
		`wsd_auth_sessions 0`,
	})
}

// waitForMetrics polls /metrics until it holds every line of want (the
// sessions of closed connections go when their OnClose has run).
func waitForMetrics(t *testing.T, td *testDaemon, want []string) {
	t.Helper()
	deadline := time.Now().Add(adminTimeout)
	for {
		r := call(t, td.admin, "GET", "/metrics", "", "")
		missing := ""
		for _, w := range want {
			if !bytes.Contains(r.body, []byte("\n"+w+"\n")) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no line %q:\n%s", missing, r.body)
		}
		time.Sleep(10 * time.Millisecond) // poll: the closes finish on the event loops
	}
}

// TestAdminAuthOff: without -auth, users are unknown: publish to a user
// and disconnect answer 409; presence lists ids.
func TestAdminAuthOff(t *testing.T) {
	td := startWSD(t, "-mode", "push")
	td.dialWS(t, "/?topics=t")
	if r := call(t, td.admin, "POST", "/api/publish", "", `{"user":"alice","data":"x"}`); r.status != 409 {
		t.Fatalf("publish to a user: %d %s", r.status, r.body)
	}
	if r := call(t, td.admin, "POST", "/api/disconnect", "", `{"user":"alice"}`); r.status != 409 {
		t.Fatalf("disconnect: %d %s", r.status, r.body)
	}
	// The ?topics= subscription is made in OnOpen, on the loop, just after
	// the 101 leaves: the client may read the 101 first.
	deadline := time.Now().Add(adminTimeout)
	for {
		r := call(t, td.admin, "GET", "/api/presence/t", "", "")
		if r.status == 200 && bytes.Contains(r.body, []byte(`"total":1`)) && bytes.Contains(r.body, []byte(`"id":"1"`)) {
			break
		}
		if r.status != 200 || time.Now().After(deadline) {
			t.Fatalf("presence: %d %s", r.status, r.body)
		}
		time.Sleep(5 * time.Millisecond) // poll until OnOpen has run
	}
}

// TestToken: wsd token mints what the daemon accepts, and refuses what
// cannot be a token.
func TestToken(t *testing.T) {
	k := newTestKeys(t)
	var out bytes.Buffer
	if err := runToken([]string{"-key", k.secretFile, "-sub", "alice", "-topics", "news.*", "-ttl", "10m", "-info", `{"n":1}`}, &out); err != nil {
		t.Fatal(err)
	}
	j, err := auth.NewJWT(auth.Config{Alg: auth.AlgHS, KeyFile: k.secretFile})
	if err != nil {
		t.Fatal(err)
	}
	id, err := j.Verify(strings.TrimSpace(out.String()), time.Now())
	if err != nil || id.Sub != "alice" || !id.CanSubscribe("news.x") || id.CanSubscribe("other") || time.Until(id.Expires) > 10*time.Minute+time.Second {
		t.Fatalf("minted %q: %+v %v", out.String(), id, err)
	}
	out.Reset()
	if err := runToken([]string{"-key", k.esPrivateFile, "-alg", "ES", "-sub", "bob"}, &out); err != nil || strings.Count(out.String(), ".") != 2 {
		t.Fatalf("ES256: %q %v", out.String(), err)
	}
	for _, args := range [][]string{
		{"-sub", "alice"},
		{"-key", k.secretFile},
		{"-key", k.secretFile, "-sub", "a b"},
		{"-key", k.secretFile, "-sub", "alice", "-ttl", "-1s"},
		{"-key", k.secretFile, "-sub", "alice", "-info", "[1]"},
		{"-key", k.esPublicFile, "-alg", "ES", "-sub", "alice"},
	} {
		if err := runToken(args, &out); err == nil {
			t.Errorf("%q: no error", args)
		} else if exitStatus(&bytes.Buffer{}, err) != exitConfig {
			t.Errorf("%q: %v is not a usage error", args, err)
		}
	}
}
