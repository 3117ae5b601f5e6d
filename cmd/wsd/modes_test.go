package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// startChatEngine runs the chat mode on an in-process engine on a free
// loopback port, stopped at cleanup.
func startChatEngine(t *testing.T) string {
	t.Helper()
	hub := broadcast.New(broadcast.Options{})
	md, err := newMode(&config{Mode: "chat"}, hub)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := wstest.StartEngine(t, md.handler, engine.Options{OnUpgrade: md.onUpgrade, PingInterval: -1, IdleTimeout: -1})
	return addr
}

// presenceEvent is the JSON of a chat presence event.
type presenceEvent struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Online int    `json:"online"`
}

// expectPresence reads the next frame of c and fails unless it is the
// presence event of room with online connections.
func expectPresence(t *testing.T, c *wstest.Client, room string, online int) {
	t.Helper()
	f := c.ExpectFrame()
	var got presenceEvent
	dec := json.NewDecoder(bytes.NewReader(f.Payload))
	dec.DisallowUnknownFields()
	if want := (presenceEvent{"presence", room, online}); f.Opcode != wstest.OpText || dec.Decode(&got) != nil || got != want {
		t.Fatalf("got %v %q, want the presence event %+v", f, f.Payload, want)
	}
}

// TestChatPresenceSpoofing connects clients whose room names look like the
// lobby's presence topic, has each send a forged presence event, and checks
// that the lobby's presence watcher gets only the events wsd makes.
func TestChatPresenceSpoofing(t *testing.T) {
	addr := startChatEngine(t)
	watcher := wstest.Dial(t, addr)
	watcher.Handshake("/?presence=1") // room "lobby"
	expectPresence(t, watcher, "lobby", 1)

	forged := `{"type":"presence","room":"lobby","online":9999}`
	spoofPaths := []string{"/presence:lobby", "/presence%20lobby", "/presence+lobby", "/presence", "//presence:lobby"}
	for i, path := range spoofPaths {
		spoofer := wstest.Dial(t, addr)
		spoofer.Handshake(path)
		spoofer.WriteFrames(wstest.Text(forged))
		// The sender gets its own message back once the hub has taken it:
		// from then on, anything the watcher would get from it is queued
		// before the next presence event of the lobby.
		spoofer.ExpectText(forged)

		wstest.Dial(t, addr).Handshake("/lobby")
		expectPresence(t, watcher, "lobby", 2+i)
		spoofer.CloseHandshake()
	}
}

// TestChatRoomNames checks which request paths name which room, and that
// paths with bytes no request target may hold are refused.
func TestChatRoomNames(t *testing.T) {
	addr := startChatEngine(t)
	for _, tc := range []struct{ path, room string }{
		{"/", "lobby"},
		{"/chat/lobby", "chat/lobby"},
		{"/presence:lobby", "presence:lobby"},
	} {
		c := wstest.Dial(t, addr)
		c.Handshake(tc.path + "?presence=1")
		expectPresence(t, c, tc.room, 1)
		c.CloseHandshake()
	}
	for _, path := range []string{"/a\tb", "/a\x00b", "/a\x7fb"} {
		c := wstest.Dial(t, addr)
		c.Write(wstest.BuildRequest("GET", path, wstest.UpgradeHeaders(addr, wstest.NewKey())))
		resp, err := c.ReadResponse()
		if err != nil {
			t.Fatalf("%q: reading the response: %v", path, err)
		}
		if resp.StatusCode != 400 {
			t.Errorf("%q: status %d, want 400", path, resp.StatusCode)
		}
	}
}

// pushAck is any answer of the push mode to a control message.
type pushAck struct {
	Op      string `json:"op"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Topic   string `json:"topic,omitempty"`
}

// readAck reads the next message of c, which must be a text message
// holding exactly the JSON of a pushAck.
func readAck(t *testing.T, c *websocket.Conn) pushAck {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
	op, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reading an ack: %v", err)
	}
	var a pushAck
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if op != websocket.TextMessage || dec.Decode(&a) != nil {
		t.Fatalf("got message type %d %q, want a JSON ack", op, p)
	}
	return a
}

// expectText reads the next message of c and fails unless it is text s.
func expectText(t *testing.T, c *websocket.Conn, s string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
	op, p, err := c.ReadMessage()
	if err != nil || op != websocket.TextMessage || string(p) != s {
		t.Fatalf("got message type %d %q (%v), want text %q", op, truncate(p, 100), err, s)
	}
}

// TestPushErrorAcks sends push control messages that are refused, each on
// a connection subscribed to "live" by its URL, and checks the error ack,
// then that the connection stays open: a publish to "live" still reaches it.
func TestPushErrorAcks(t *testing.T) {
	td := startWSD(t, "-mode", "push", "-client-publish", "pub.*")
	long := strings.Repeat("x", maxTopicLen+1)
	cases := []struct {
		name string
		bin  bool // send as a binary message
		msg  string
		want pushAck
	}{
		{"space", false, `{"op":"subscribe","topic":"a b"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a b"}},
		{"too long", false, `{"op":"subscribe","topic":"` + long + `"}`, pushAck{Op: "error", Code: "bad_topic"}},
		{"control character", false, `{"op":"subscribe","topic":"a\u0001b"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a\x01b"}},
		{"newline", false, `{"op":"subscribe","topic":"a\nb"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a\nb"}},
		{"DEL", false, `{"op":"subscribe","topic":"a\u007f"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a\x7f"}},
		{"C1 control", false, `{"op":"subscribe","topic":"a\u0085"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a\u0085"}},
		{"bidi override", false, `{"op":"subscribe","topic":"a\u202eb"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a\u202eb"}},
		{"no-break space", false, `{"op":"subscribe","topic":"a\u00a0b"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a\u00a0b"}},
		{"comma", false, `{"op":"subscribe","topic":"a,b"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a,b"}},
		{"lone surrogate", false, `{"op":"subscribe","topic":"a\ud800"}`, pushAck{Op: "subscribed", Topic: "a\ufffd"}}, // JSON makes it U+FFFD, a printable name
		{"no topic", false, `{"op":"subscribe"}`, pushAck{Op: "error", Code: "bad_topic"}},
		{"unsubscribe a bad name", false, `{"op":"unsubscribe","topic":"a b"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "a b"}},
		{"publish to a bad name", false, `{"op":"publish","topic":"pub.a b","data":"x"}`, pushAck{Op: "error", Code: "bad_topic", Topic: "pub.a b"}},
		{"unknown op", false, `{"op":"frobnicate","topic":"a"}`, pushAck{Op: "error", Code: "bad_request", Topic: "a"}},
		{"no op", false, `{"topic":"a"}`, pushAck{Op: "error", Code: "bad_request", Topic: "a"}},
		{"long unknown op", false, `{"op":"` + long + `","topic":"a"}`, pushAck{Op: "error", Code: "bad_request", Topic: "a"}},
		{"not JSON", false, `subscribe a`, pushAck{Op: "error", Code: "bad_request"}},
		{"binary", true, `{"op":"subscribe","topic":"a"}`, pushAck{Op: "error", Code: "bad_request"}},
		{"publish not allowed", false, `{"op":"publish","topic":"news","data":"x"}`, pushAck{Op: "error", Code: "forbidden", Topic: "news"}},
		{"bad base64", false, `{"op":"publish","topic":"pub.a","data_base64":"!!"}`, pushAck{Op: "error", Code: "bad_request", Topic: "pub.a"}},

		// Names at the edges of the rule are taken.
		{"256 bytes", false, `{"op":"subscribe","topic":"` + long[1:] + `"}`, pushAck{Op: "subscribed", Topic: long[1:]}},
		{"UTF-8 and punctuation", false, `{"op":"subscribe","topic":"día/ñ.*#+-_:@"}`, pushAck{Op: "subscribed", Topic: "día/ñ.*#+-_:@"}},
		{"allowed publish", false, `{"op":"publish","topic":"pub.a","data":"x"}`, pushAck{Op: "published", Topic: "pub.a"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			live := fmt.Sprint("live", i)
			c := td.dialWS(t, "/?topics="+live)
			typ := websocket.TextMessage
			if tc.bin {
				typ = websocket.BinaryMessage
			}
			if err := c.WriteMessage(typ, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			got := readAck(t, c)
			if got.Op == "error" && (got.Message == "" || len(got.Message) > 200) {
				t.Errorf("error ack with a message of %d bytes: %+v", len(got.Message), got)
			}
			got.Message = ""
			if got != tc.want {
				t.Errorf("ack %+v, want %+v", got, tc.want)
			}
			r := td.publish(t, `{"topic":"`+live+`","data":"still here"}`)
			if r.status != 200 {
				t.Fatalf("publish: %d %s", r.status, r.body)
			}
			expectText(t, c, "still here")
		})
	}
}

// TestPushSubscriptionCap subscribes one connection up to -max-subscriptions
// and past it: the subscription past the cap gets an error ack and is not
// made, the connection keeps its topics and gets their publishes, and
// leaving a topic makes room.
func TestPushSubscriptionCap(t *testing.T) {
	td := startWSD(t, "-mode", "push", "-max-subscriptions", "3")
	c := td.dialWS(t, "/?topics=a")
	steps := []struct {
		op, topic string
		want      pushAck
	}{
		{"subscribe", "b", pushAck{Op: "subscribed", Topic: "b"}},
		{"subscribe", "c", pushAck{Op: "subscribed", Topic: "c"}},
		{"subscribe", "d", pushAck{Op: "error", Code: "too_many_subscriptions", Topic: "d"}},
		{"subscribe", "b", pushAck{Op: "subscribed", Topic: "b"}}, // already: not one more
		{"unsubscribe", "c", pushAck{Op: "unsubscribed", Topic: "c"}},
		{"subscribe", "d", pushAck{Op: "subscribed", Topic: "d"}},
		{"subscribe", "e", pushAck{Op: "error", Code: "too_many_subscriptions", Topic: "e"}},
	}
	for i, st := range steps {
		if err := c.WriteJSON(map[string]string{"op": st.op, "topic": st.topic}); err != nil {
			t.Fatal(err)
		}
		got := readAck(t, c)
		if got.Code == "too_many_subscriptions" && !strings.Contains(got.Message, "at most 3") {
			t.Errorf("step %d: message %q does not name the cap", i, got.Message)
		}
		got.Message = ""
		if got != st.want {
			t.Errorf("step %d (%s %s): ack %+v, want %+v", i, st.op, st.topic, got, st.want)
		}
	}
	// The connection is on a, b and d, and on nothing else.
	r := td.publish(t, `{"topics":["a","b","c","d","e"],"data":"all"}`)
	var res publishReply
	decodeStrict(t, r, &res)
	if res.Recipients != 3 || res.Queued != 1 {
		t.Errorf("publish to every topic: %+v, want 3 subscriptions of 1 connection", res)
	}
	expectText(t, c, "all")
}

// TestPushURLTopics checks ?topics= at the upgrade: names that break the
// rule, a query that is not URL encoding, and more topics than
// -max-subscriptions get 400 with the reason; the others subscribe.
func TestPushURLTopics(t *testing.T) {
	td := startWSD(t, "-mode", "push", "-max-subscriptions", "3")
	long := strings.Repeat("y", maxTopicLen+1)
	cases := []struct {
		query  string
		status int
		has    string   // 400: part of the body
		topics []string // 101: the topics it is subscribed to
	}{
		{"topics=a,b", 101, "", []string{"a", "b"}},
		{"topics=a&topics=b,c", 101, "", []string{"a", "b", "c"}},
		{"topics=a,a,b,b,c", 101, "", []string{"a", "b", "c"}},
		{"topics=a,,b,", 101, "", []string{"a", "b"}},
		{"topics=" + long[1:], 101, "", []string{long[1:]}},
		{"topics=d%C3%ADa", 101, "", []string{"día"}},
		{"", 101, "", nil},
		{"topics=a,b,c,d", 400, "4 topics; a connection may subscribe to at most 3", nil},
		{"topics=a,b&topics=c,d", 400, "4 topics", nil},
		{"topics=a%20b", 400, `bad topic "a b": a topic name holds printable characters only`, nil},
		{"topics=a+b", 400, `bad topic "a b"`, nil},
		{"topics=a%01", 400, `bad topic "a\x01"`, nil},
		{"topics=a%E2%80%AEb", 400, `bad topic "a\u202eb"`, nil},
		{"topics=%FF", 400, `bad topic "\xff": a topic name is UTF-8 text`, nil},
		{"topics=" + long, 400, "bad topic of 257 bytes: a topic name is at most 256 bytes", nil},
		{"topics=%zz", 400, "the query is not valid URL encoding", nil},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			d := websocket.Dialer{HandshakeTimeout: adminTimeout}
			c, resp, err := d.Dial("ws://"+td.addr+"/?"+tc.query, nil)
			if tc.status != 101 {
				if err == nil {
					c.Close()
					t.Fatalf("upgraded, want %d", tc.status)
				}
				if resp == nil || resp.StatusCode != tc.status {
					t.Fatalf("dial: %v, response %v; want status %d", err, resp, tc.status)
				}
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), tc.has) {
					t.Errorf("body %q does not have %q", body, tc.has)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			// Once a control message is answered, OnOpen has subscribed.
			if err := c.WriteJSON(map[string]string{"op": "unsubscribe", "topic": "sync"}); err != nil {
				t.Fatal(err)
			}
			if got := readAck(t, c); got != (pushAck{Op: "unsubscribed", Topic: "sync"}) {
				t.Fatalf("ack %+v", got)
			}
			var list struct {
				Topics []broadcast.TopicInfo `json:"topics"`
			}
			decodeStrict(t, call(t, td.admin, "GET", "/api/topics", "", ""), &list)
			var got []string
			for _, ti := range list.Topics {
				got = append(got, ti.Name)
			}
			if !reflect.DeepEqual(got, tc.topics) {
				t.Errorf("subscribed to %q, want %q", got, tc.topics)
			}
			// Leave the topics before the next case looks at them.
			if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
			if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 1000) {
				t.Fatalf("closing: %v", err)
			}
			wstest.WaitFor(t, adminTimeout, "the topics to be left", func() bool { return len(td.hub.Topics()) == 0 })
		})
	}
}
