package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// TestHistoryFlag: what -history takes and refuses, and which rule a topic
// gets (the first that matches).
func TestHistoryFlag(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"news.*=100/10m", true},
		{"news.*=100/10m, alerts=20 ,*=5/1h", true},
		{"", true},
		{"news.*", false},
		{"=100", false},
		{"news.*=0", false},
		{"news.*=100001", false},
		{"news.*=ten", false},
		{"news.*=100/10", false},
		{"news.*=100/-1m", false},
		{"news*x*=100", false},
	} {
		_, err := parseHistoryRules(tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("-history %q: error %v, want ok %t", tc.value, err, tc.ok)
		}
		_, _, cerr := loadConfig([]string{"-history", tc.value}, nil)
		if (cerr == nil) != tc.ok || (cerr != nil && !strings.Contains(cerr.Error(), "-history")) {
			t.Errorf("wsd -history %q: %v, want ok %t (an error naming -history)", tc.value, cerr, tc.ok)
		}
	}
	if _, _, err := loadConfig(nil, []string{"WSD_HISTORY=a=1/x"}); err == nil || !strings.Contains(err.Error(), "WSD_HISTORY") {
		t.Errorf("WSD_HISTORY=a=1/x: %v, want an error naming the variable", err)
	}
	rules, _ := parseHistoryRules("news.eu=5,news.*=100/10m,*=1")
	pol := historyPolicy(rules)
	for topic, want := range map[string]broadcast.HistoryPolicy{
		"news.eu": {Size: 5},
		"news.us": {Size: 100, TTL: 10 * time.Minute},
		"other":   {Size: 1},
	} {
		if got := pol(topic); got != want {
			t.Errorf("topic %s: policy %+v, want %+v", topic, got, want)
		}
	}
	if got := historyPolicy(rules[:2])("sport"); got.Size != 0 {
		t.Errorf("a topic no rule names gets %+v, want no history", got)
	}
}

// TestHistoryEnvelopeJSON: the envelope is JSON that decodes to the topic,
// the position and the data, whatever bytes the data holds.
func TestHistoryEnvelopeJSON(t *testing.T) {
	type env struct {
		Topic      string  `json:"topic"`
		Offset     *uint64 `json:"offset"`
		Epoch      *string `json:"epoch"`
		Data       *string `json:"data"`
		DataBase64 *string `json:"data_base64"`
	}
	for _, tc := range []struct {
		name    string
		topic   string
		pos     broadcast.Position
		op      codec.OpCode
		payload string
		want    string // the data as decoded (text), or the base64
	}{
		{"plain text", "news", broadcast.Position{Offset: 7, Epoch: "e1"}, codec.OpText, "hello", "hello"},
		{"quotes and controls", `a"b\c`, broadcast.Position{Offset: 1, Epoch: "e"}, codec.OpText, "\"q\"\\\n\r\t\x00\x1f\x7f", "\"q\"\\\n\r\t\x00\x1f\x7f"},
		{"unicode", "ünï", broadcast.Position{Offset: 2, Epoch: "e"}, codec.OpText, "héllo 世界 🎉 \u2028", "héllo 世界 🎉 \u2028"},
		{"invalid UTF-8", "t", broadcast.Position{Offset: 3, Epoch: "e"}, codec.OpText, "a\xffb\xe2\x82", "a\ufffdb\ufffd\ufffd"},
		{"binary", "t", broadcast.Position{Offset: 4, Epoch: "e"}, codec.OpBinary, "\x00\x01\xfe\xff", "AAH+/w=="},
		{"no history", "t", broadcast.Position{}, codec.OpText, "x", "x"},
		{"empty", "t", broadcast.Position{Offset: 5, Epoch: "e"}, codec.OpText, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendEnvelope([]byte("junk"), tc.topic, tc.pos, tc.op, []byte(tc.payload))
			b, ok := bytes.CutPrefix(b, []byte("junk"))
			if !ok || !json.Valid(b) {
				t.Fatalf("not JSON appended to dst: %q", b)
			}
			var got env
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("%q: %v", b, err)
			}
			if got.Topic != tc.topic {
				t.Errorf("topic %q, want %q", got.Topic, tc.topic)
			}
			if tc.pos.Epoch == "" {
				if got.Offset != nil || got.Epoch != nil {
					t.Errorf("%s: a topic without history has no position", b)
				}
			} else if got.Offset == nil || *got.Offset != tc.pos.Offset || got.Epoch == nil || *got.Epoch != tc.pos.Epoch {
				t.Errorf("%s: want offset %d epoch %s", b, tc.pos.Offset, tc.pos.Epoch)
			}
			data := got.Data
			if tc.op == codec.OpBinary {
				data = got.DataBase64
				if got.Data != nil {
					t.Errorf("%s: binary data in data", b)
				}
			}
			if data == nil || *data != tc.want {
				t.Errorf("%s: data %v, want %q", b, data, tc.want)
			}
		})
	}
}

// TestHistoryEnvelopeAllocs: the envelope is built into the caller's
// buffer (the hub's pooled one) without allocating.
func TestHistoryEnvelopeAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	payload := []byte("a \"b\" é\n")
	if n := testing.AllocsPerRun(1000, func() {
		buf = appendEnvelope(buf[:0], "news", broadcast.Position{Offset: 9, Epoch: "e"}, codec.OpText, payload)
		buf = appendEnvelope(buf[:0], "news", broadcast.Position{Offset: 9, Epoch: "e"}, codec.OpBinary, payload)
	}); n != 0 {
		t.Errorf("appendEnvelope: %.1f allocations, want 0", n)
	}
}

// pushMsg is a push server message: an ack or an envelope.
type pushMsg struct {
	Op         string  `json:"op"`
	Topic      string  `json:"topic"`
	Recovered  *bool   `json:"recovered"`
	Offset     *uint64 `json:"offset"`
	Epoch      string  `json:"epoch"`
	Data       *string `json:"data"`
	DataBase64 *string `json:"data_base64"`
	Code       string  `json:"code"`
	Message    string  `json:"message"`
}

// readPush reads the next message of c as a pushMsg (unknown fields fail).
func readPush(t *testing.T, who string, c *websocket.Conn) pushMsg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
	op, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	if op != websocket.TextMessage {
		t.Fatalf("%s: a binary message %q, want JSON text", who, p)
	}
	var m pushMsg
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %q: %v", who, p, err)
	}
	return m
}

// expectEnvelope reads an envelope of topic at offset with text data.
func expectEnvelope(t *testing.T, who string, c *websocket.Conn, topic string, offset uint64, epoch, data string) {
	t.Helper()
	m := readPush(t, who, c)
	if m.Op != "" || m.Topic != topic || m.Offset == nil || *m.Offset != offset || m.Epoch != epoch || m.Data == nil || *m.Data != data {
		t.Fatalf("%s: got %+v, want the envelope of %q at %s:%d:%s", who, m, data, topic, offset, epoch)
	}
}

// expectSubscribed reads a subscribed ack.
func expectSubscribed(t *testing.T, who string, c *websocket.Conn, topic string, recovered *bool, offset uint64) pushMsg {
	t.Helper()
	m := readPush(t, who, c)
	if m.Op != "subscribed" || m.Topic != topic || m.Offset == nil || *m.Offset != offset || m.Epoch == "" ||
		(recovered == nil) != (m.Recovered == nil) || (recovered != nil && *recovered != *m.Recovered) {
		t.Fatalf("%s: got %+v, want subscribed to %s at offset %d, recovered %v", who, m, topic, offset, fmtBool(recovered))
	}
	return m
}

func fmtBool(b *bool) string {
	if b == nil {
		return "absent"
	}
	return fmt.Sprint(*b)
}

// publishText publishes data to topic through the admin API.
func publishText(t *testing.T, td *testDaemon, topic, data string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"topic": topic, "data": data})
	if r := td.publish(t, string(b)); r.status != http.StatusOK {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
}

// TestHistoryPush goes through the push protocol of history: ?format=json
// envelopes, resuming on the URL and with the subscribe op (after 0, 1 and
// several missed messages), recovered false for another epoch and for a
// position history no longer holds, raw delivery unchanged, and the admin
// API and metrics.
func TestHistoryPush(t *testing.T) {
	td := startWSD(t, "-mode", "push", "-history", "news.*=3/10m", "-client-publish", "*")
	yes, no := true, false

	live := td.dialWS(t, "/?format=json&topics=news.eu,plain")
	first := expectSubscribed(t, "live", live, "news.eu", nil, 0)
	epoch := first.Epoch
	if m := readPush(t, "live", live); m.Op != "subscribed" || m.Topic != "plain" || m.Offset != nil || m.Epoch != "" || m.Recovered != nil {
		t.Fatalf("live: %+v, want subscribed to plain with no position", m)
	}
	raw := td.dialWS(t, "/?topics=news.eu") // today's clients: no ack, raw data
	for i := 1; i <= 2; i++ {
		publishText(t, td, "news.eu", fmt.Sprintf("m%d", i))
		expectEnvelope(t, "live", live, "news.eu", uint64(i), epoch, fmt.Sprintf("m%d", i))
		_ = raw.SetReadDeadline(time.Now().Add(adminTimeout))
		if _, p, err := raw.ReadMessage(); err != nil || string(p) != fmt.Sprintf("m%d", i) {
			t.Fatalf("raw: %q %v, want m%d", p, err, i)
		}
	}
	publishText(t, td, "plain", "p1")
	if m := readPush(t, "live", live); m.Topic != "plain" || m.Offset != nil || m.Data == nil || *m.Data != "p1" {
		t.Fatalf("live: %+v, want the envelope of p1 without a position", m)
	}
	b := td.publish(t, `{"topic":"news.eu","data_base64":"AAH+/w=="}`) // offset 3, binary
	if b.status != http.StatusOK {
		t.Fatalf("publish: %d %s", b.status, b.body)
	}
	if m := readPush(t, "live", live); m.Offset == nil || *m.Offset != 3 || m.DataBase64 == nil || *m.DataBase64 != "AAH+/w==" || m.Data != nil {
		t.Fatalf("live: %+v, want a data_base64 envelope at offset 3", m)
	}

	// Resuming on the URL from offset 1: 2 and 3 come back, then live.
	url := td.dialWS(t, fmt.Sprintf("/?format=json&topics=news.eu&since=news.eu:1:%s", epoch))
	expectSubscribed(t, "url", url, "news.eu", &yes, 3)
	expectEnvelope(t, "url", url, "news.eu", 2, epoch, "m2")
	if m := readPush(t, "url", url); m.Offset == nil || *m.Offset != 3 || m.DataBase64 == nil {
		t.Fatalf("url: %+v, want offset 3", m)
	}
	// Resuming with the subscribe op, raw delivery: after 3 (none
	// missed), after 2 (one), from another epoch, from before what is
	// kept (size 3).
	cases := []struct {
		name      string
		since     string
		recovered bool
		replay    []string
	}{
		{"missed none", fmt.Sprintf(`{"offset":3,"epoch":%q}`, epoch), true, nil},
		{"missed one", fmt.Sprintf(`{"offset":2,"epoch":%q}`, epoch), true, []string{"\x00\x01\xfe\xff"}},
		{"another epoch", `{"offset":2,"epoch":"other"}`, false, nil},
		{"from the first", `{"offset":0,"epoch":"` + epoch + `"}`, true, []string{"m1", "m2", "\x00\x01\xfe\xff"}},
	}
	op := td.dialWS(t, "/")
	for _, tc := range cases {
		req := fmt.Sprintf(`{"op":"subscribe","topic":"news.eu","since":%s}`, tc.since)
		if err := op.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
		rec := tc.recovered
		expectSubscribed(t, tc.name, op, "news.eu", &rec, 3)
		for _, want := range tc.replay {
			_ = op.SetReadDeadline(time.Now().Add(adminTimeout))
			if _, p, err := op.ReadMessage(); err != nil || string(p) != want {
				t.Fatalf("%s: replay %q %v, want %q", tc.name, p, err, want)
			}
		}
		if err := op.WriteMessage(websocket.TextMessage, []byte(`{"op":"unsubscribe","topic":"news.eu"}`)); err != nil {
			t.Fatal(err)
		}
		if m := readPush(t, tc.name, op); m.Op != "unsubscribed" {
			t.Fatalf("%s: %+v, want unsubscribed", tc.name, m)
		}
	}
	publishText(t, td, "news.eu", "m4") // offset 4: offset 0 is now out of reach
	expectEnvelope(t, "live", live, "news.eu", 4, epoch, "m4")
	late := td.dialWS(t, fmt.Sprintf("/?topics=news.eu&since=news.eu:0:%s", epoch))
	expectSubscribed(t, "late", late, "news.eu", &no, 4)
	publishText(t, td, "news.eu", "m5")
	_ = late.SetReadDeadline(time.Now().Add(adminTimeout))
	if _, p, err := late.ReadMessage(); err != nil || string(p) != "m5" {
		t.Fatalf("late: %q %v, want only the live m5", p, err)
	}

	// The admin API.
	var h struct {
		Topic    string           `json:"topic"`
		Offset   uint64           `json:"offset"`
		Epoch    string           `json:"epoch"`
		Messages []historyMessage `json:"messages"`
	}
	getJSON(t, td, "/api/history/news.eu?since=3&limit=1", http.StatusOK, &h)
	if h.Topic != "news.eu" || h.Offset != 5 || h.Epoch != epoch || len(h.Messages) != 1 || h.Messages[0].Offset != 4 || h.Messages[0].Data == nil || *h.Messages[0].Data != "m4" {
		t.Fatalf("GET /api/history: %+v", h)
	}
	getJSON(t, td, "/api/history/news.eu", http.StatusOK, &h)
	if len(h.Messages) != 3 || h.Messages[0].Offset != 3 || h.Messages[0].DataBase64 == nil || *h.Messages[0].DataBase64 != "AAH+/w==" {
		t.Fatalf("GET /api/history: %+v", h)
	}
	for path, status := range map[string]int{
		"/api/history/plain":           http.StatusNotFound,
		"/api/history/news.eu?since=x": http.StatusBadRequest,
		"/api/history/news.eu?limit=0": http.StatusBadRequest,
	} {
		if r := call(t, td.admin, "GET", path, "", ""); r.status != status {
			t.Errorf("GET %s: %d %s, want %d", path, r.status, r.body, status)
		} else {
			r.errorText(t)
		}
	}
	samples, _ := promSamples(t, call(t, td.admin, "GET", "/metrics", "", "").body)
	for name, want := range map[string]string{
		"wsd_history_topics":                               "1",
		"wsd_history_messages":                             "3",
		"wsd_history_recoveries_attempted_total":           "6",
		`wsd_history_recoveries_total{result="recovered"}`: "4",
		`wsd_history_recoveries_total{result="failed"}`:    "2",
		"wsd_history_replayed_total":                       "6",
		"wsd_history_forgotten_total":                      "0",
	} {
		if got := samples[name]; got != want {
			t.Errorf("metric %s = %q, want %s", name, got, want)
		}
	}
}

// TestHistoryPushURLErrors: a bad ?format= or ?since= is refused with 400
// and the reason.
func TestHistoryPushURLErrors(t *testing.T) {
	td := startWSD(t, "-mode", "push", "-history", "news.*=3")
	for path, want := range map[string]string{
		"/?format=xml":                          "unknown format",
		"/?topics=news.a&since=news.a:x:e":      "bad since",
		"/?topics=news.a&since=news.a:1:":       "bad since",
		"/?topics=news.a&since=news.a":          "bad since",
		"/?topics=news.a&since=news.b:1:e":      "not in ?topics=",
		"/?topics=news.a&since=news.a:1:e,junk": "bad since",
	} {
		d := websocket.Dialer{HandshakeTimeout: adminTimeout}
		c, resp, err := d.Dial("ws://"+td.addr+path, nil)
		if err == nil {
			c.Close()
			t.Errorf("%s: upgraded, want 400", path)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", path, err)
			continue
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		if !strings.Contains(body.String(), want) {
			t.Errorf("%s: %q, want it to say %q", path, body.String(), want)
		}
	}
	// A topic holding colons resumes too: the last two fields are the
	// position.
	c := td.dialWS(t, "/?topics=news.a:b&since=news.a:b:0:nope")
	expectSubscribed(t, "colons", c, "news.a:b", new(bool), 0)
}

// TestHistoryChat: a chat room that -history names resumes like a push
// topic (the room is the topic), and the daemon serves the JavaScript
// client.
func TestHistoryChat(t *testing.T) {
	td := startWSD(t, "-mode", "chat", "-history", "chat/*=10")
	a := td.dialWS(t, "/chat/r?format=json")
	first := expectSubscribed(t, "a", a, "chat/r", nil, 0)
	for i := 1; i <= 3; i++ {
		if err := a.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("m%d", i))); err != nil {
			t.Fatal(err)
		}
		expectEnvelope(t, "a", a, "chat/r", uint64(i), first.Epoch, fmt.Sprintf("m%d", i))
	}
	b := td.dialWS(t, fmt.Sprintf("/chat/r?format=json&since=chat/r:1:%s", first.Epoch))
	yes := true
	expectSubscribed(t, "b", b, "chat/r", &yes, 3)
	expectEnvelope(t, "b", b, "chat/r", 2, first.Epoch, "m2")
	expectEnvelope(t, "b", b, "chat/r", 3, first.Epoch, "m3")
	raw := td.dialWS(t, "/chat/r") // no format: today's chat clients
	if err := raw.WriteMessage(websocket.TextMessage, []byte("m4")); err != nil {
		t.Fatal(err)
	}
	expectEnvelope(t, "b", b, "chat/r", 4, first.Epoch, "m4")
	_ = raw.SetReadDeadline(time.Now().Add(adminTimeout))
	if _, p, err := raw.ReadMessage(); err != nil || string(p) != "m4" {
		t.Fatalf("raw chat client: %q %v, want m4", p, err)
	}
	if resp, err := http.Get("http://" + td.addr + "/wsd-client.js"); err != nil {
		t.Fatal(err)
	} else {
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !bytes.Equal(body.Bytes(), clientJS) {
			t.Fatalf("GET /wsd-client.js: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), body.Len())
		}
	}
}
