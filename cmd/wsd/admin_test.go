package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// adminTimeout bounds every HTTP exchange and every wait of these tests.
const adminTimeout = 10 * time.Second

// fakeStats returns a stats func that always reports s.
func fakeStats(s engine.Stats) func() engine.Stats { return func() engine.Stats { return s } }

// adminServer serves newAdmin on a loopback httptest server closed at cleanup.
func adminServer(t *testing.T, hub *broadcast.Hub, stats func() engine.Stats, token string, maxMessage int64, withPprof bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newAdmin(hub, stats, token, maxMessage, withPprof))
	t.Cleanup(srv.Close)
	return srv
}

// adminReply is an HTTP response with its body read.
type adminReply struct {
	status int
	header http.Header
	body   []byte
}

// errorText returns the "error" field of a JSON error body, or fails.
func (r adminReply) errorText(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: body is not a JSON error object (%v): %q", r.status, err, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error response Content-Type %q, want application/json", ct)
	}
	return e.Error
}

// call sends one request with a deadline. auth, if not empty, is the whole
// Authorization header value.
func call(t *testing.T, srv *httptest.Server, method, path, auth, body string) adminReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return adminReply{status: resp.StatusCode, header: resp.Header, body: b}
}

// publishReply is the body of a successful POST /api/publish.
type publishReply struct {
	Recipients int      `json:"recipients"`
	Queued     int      `json:"queued"`
	Dropped    int      `json:"dropped"`
	Closed     int      `json:"closed"`
	Overloaded int      `json:"overloaded"`
	Topics     []string `json:"topics"`
}

// decodeStrict decodes a JSON body into v, rejecting unknown fields, so
// that the shape of each answer is pinned.
func decodeStrict(t *testing.T, r adminReply, v any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("status %d: body %q does not decode into %T: %v", r.status, r.body, v, err)
	}
}

func TestAdminPublishRequests(t *testing.T) {
	// Large enough that the base64 of a maximal binary message is well
	// over maxMessage plus any fixed allowance for the JSON around it.
	const maxMessage = 300_000
	limit := newAdmin(nil, nil, "", maxMessage, false).maxBody
	// bodyOfSize returns a valid publish body of exactly n bytes.
	bodyOfSize := func(n int) string {
		pre, post := `{"topic":"a","data":"`, `"}`
		return pre + strings.Repeat("x", n-len(pre)-len(post)) + post
	}
	maxBinary := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff, 0x00, 0x80}, maxMessage/3))

	cases := []struct {
		name   string
		body   string
		status int
		errHas string   // for errors: part of the "error" text
		topics []string // for 200: the topics echoed back
	}{
		{"text to one topic", `{"topic":"a","data":"hello"}`, 200, "", []string{"a"}},
		{"topics list", `{"topics":["a","b"],"data":"x"}`, 200, "", []string{"a", "b"}},
		{"topic and topics, topic first", `{"topics":["b","c"],"topic":"a","data":"x"}`, 200, "", []string{"a", "b", "c"}},
		{"topic name with slashes", `{"topic":"chat/lobby","data":"x"}`, 200, "", []string{"chat/lobby"}},
		{"binary", `{"topic":"a","data_base64":"AP+A"}`, 200, "", []string{"a"}},
		{"empty text", `{"topic":"a","data":""}`, 200, "", []string{"a"}},
		{"empty binary", `{"topic":"a","data_base64":""}`, 200, "", []string{"a"}},
		{"unicode text", `{"topic":"a","data":"✓ 𝄞 \u00e9"}`, 200, "", []string{"a"}},
		{"exclude", `{"topic":"a","data":"x","exclude":42}`, 200, "", []string{"a"}},
		{"max-size binary message as base64", `{"topic":"a","data_base64":"` + maxBinary + `"}`, 200, "", []string{"a"}},
		{"body at the limit, payload over max-message-size", bodyOfSize(int(limit)), 413, "over max-message-size", nil},
		{"text one byte over max-message-size", bodyOfSize(maxMessage + 1 + len(`{"topic":"a","data":""}`)), 413, "over max-message-size", nil},
		{"text exactly max-message-size", bodyOfSize(maxMessage + len(`{"topic":"a","data":""}`)), 200, "", []string{"a"}},
		{"trailing bracket", `{"topic":"a","data":"x"}]`, 400, "more than one JSON value", nil},
		{"trailing braces", `{"topic":"a","data":"x"}}}`, 400, "more than one JSON value", nil},
		{"trailing space is fine", `{"topic":"a","data":"x"}` + "\n ", 200, "", []string{"a"}},

		{"body one byte over the limit", bodyOfSize(int(limit) + 1), 413, "body over", nil},
		{"body far over the limit", bodyOfSize(int(limit) * 3), 413, "body over", nil},
		{"empty body", ``, 400, "invalid JSON body", nil},
		{"truncated JSON", `{"topic":"a","data":"x"`, 400, "invalid JSON body", nil},
		{"not an object", `["a"]`, 400, "invalid JSON body", nil},
		{"wrong type", `{"topic":1,"data":"x"}`, 400, "invalid JSON body", nil},
		{"negative exclude", `{"topic":"a","data":"x","exclude":-1}`, 400, "invalid JSON body", nil},
		{"two JSON values", `{"topic":"a","data":"x"} {"topic":"b","data":"y"}`, 400, "more than one JSON value", nil},
		{"unknown field", `{"topic":"a","data":"x","extra":1}`, 400, `unknown field "extra"`, nil},
		{"both data fields", `{"topic":"a","data":"x","data_base64":"eA=="}`, 400, "not both", nil},
		{"no data", `{"topic":"a"}`, 400, "is required", nil},
		{"null data", `{"topic":"a","data":null}`, 400, "is required", nil},
		{"invalid base64", `{"topic":"a","data_base64":"!!!!"}`, 400, "not valid base64", nil},
		{"unpadded base64", `{"topic":"a","data_base64":"eA"}`, 400, "not valid base64", nil},
		{"no topic", `{"data":"x"}`, 400, `"topic" or "topics" is required`, nil},
		{"empty topic", `{"topic":"","data":"x"}`, 400, `"topic" or "topics" is required`, nil},
		{"empty topics list", `{"topics":[],"data":"x"}`, 400, `"topic" or "topics" is required`, nil},
		{"empty name in topics", `{"topics":["a",""],"data":"x"}`, 400, "empty topic name", nil},
	}
	hub := broadcast.New(broadcast.Options{})
	srv := adminServer(t, hub, fakeStats(engine.Stats{}), "", maxMessage, false)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := hub.Stats().Published
			r := call(t, srv, "POST", "/api/publish", "", tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %q", r.status, tc.status, truncate(r.body, 300))
			}
			published := hub.Stats().Published - before
			if tc.status != 200 {
				if msg := r.errorText(t); !strings.Contains(msg, tc.errHas) {
					t.Errorf("error %q does not mention %q", msg, tc.errHas)
				}
				if published != 0 {
					t.Errorf("a rejected request published %d messages", published)
				}
				return
			}
			var got publishReply
			decodeStrict(t, r, &got)
			if got.Recipients != 0 || !reflect.DeepEqual(got.Topics, tc.topics) {
				t.Errorf("reply %+v, want 0 recipients and topics %q", got, tc.topics)
			}
			if published != 1 {
				t.Errorf("hub counted %d publishes, want 1", published)
			}
		})
	}
}

// TestAdminPublishBodyLimit checks the bound on publish bodies: none
// without a payload limit, and no overflow for the largest limits.
func TestAdminPublishBodyLimit(t *testing.T) {
	for _, tc := range []struct{ maxMessage, want int64 }{
		{0, 0},
		{3, 4 + 64<<10},
		{16 << 20, 16<<20*4/3 + 64<<10},
		{math.MaxInt64 / 4, math.MaxInt64/4*4/3 + 64<<10},
		{math.MaxInt64/4 + 1, 0},
		{math.MaxInt64, 0},
	} {
		if got := publishBodyLimit(tc.maxMessage); got != tc.want {
			t.Errorf("publishBodyLimit(%d) = %d, want %d", tc.maxMessage, got, tc.want)
		}
	}
}

func TestAdminMethods(t *testing.T) {
	srv := adminServer(t, broadcast.New(broadcast.Options{}), fakeStats(engine.Stats{}), "tok", 0, false)
	cases := []struct {
		method, path string
		status       int
		allow        string // expected in the Allow header of a 405
	}{
		{"GET", "/api/publish", 405, "POST"},
		{"PUT", "/api/publish", 405, "POST"},
		{"DELETE", "/api/publish", 405, "POST"},
		{"POST", "/api/topics", 405, "GET"},
		{"POST", "/api/topics/a", 405, "GET"},
		{"POST", "/healthz", 405, "GET"},
		{"POST", "/metrics", 405, "GET"},
		{"GET", "/api/nope", 404, ""},
		{"GET", "/", 404, ""},
		{"GET", "/debug/pprof/", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := call(t, srv, tc.method, tc.path, "", "")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %q", r.status, tc.status, truncate(r.body, 200))
			}
			if tc.allow != "" && !strings.Contains(r.header.Get("Allow"), tc.allow) {
				t.Errorf("Allow %q, want it to contain %q", r.header.Get("Allow"), tc.allow)
			}
		})
	}
	// The dedicated 405 of /api/publish says what to use, as JSON.
	if msg := call(t, srv, "GET", "/api/publish", "", "").errorText(t); !strings.Contains(msg, "POST") {
		t.Errorf("405 error %q does not name POST", msg)
	}
}

func TestAdminAuth(t *testing.T) {
	const token = "s3cret"
	publish := `{"topic":"a","data":"x"}`
	cases := []struct {
		name         string
		token        string // configured token
		method, path string
		auth, body   string
		status       int
	}{
		{"publish without a header", token, "POST", "/api/publish", "", publish, 401},
		{"publish with a wrong token", token, "POST", "/api/publish", "Bearer wrong", publish, 401},
		{"publish with a token prefix", token, "POST", "/api/publish", "Bearer s3cre", publish, 401},
		{"publish with a longer token", token, "POST", "/api/publish", "Bearer s3crett", publish, 401},
		{"publish with the bare token", token, "POST", "/api/publish", token, publish, 401},
		{"publish with basic auth", token, "POST", "/api/publish", "Basic czNjcmV0", publish, 401},
		{"publish with an empty bearer", token, "POST", "/api/publish", "Bearer ", publish, 401},
		{"bad body without a token is 401, not 400", token, "POST", "/api/publish", "", "{", 401},
		{"publish with the right token", token, "POST", "/api/publish", "Bearer " + token, publish, 200},
		{"scheme is case-insensitive", token, "POST", "/api/publish", "bearer " + token, publish, 200},
		{"token is case-sensitive", token, "POST", "/api/publish", "Bearer " + strings.ToUpper(token), publish, 401},
		{"bad body with the right token", token, "POST", "/api/publish", "Bearer " + token, "{", 400},
		{"topics without a header", token, "GET", "/api/topics", "", "", 401},
		{"topics with a wrong token", token, "GET", "/api/topics", "Bearer nope", "", 401},
		{"topics with the right token", token, "GET", "/api/topics", "Bearer " + token, "", 200},
		{"topic without a header", token, "GET", "/api/topics/chat/lobby", "", "", 401},
		{"topic with the right token", token, "GET", "/api/topics/chat/lobby", "Bearer " + token, "", 200},
		{"healthz needs no token", token, "GET", "/healthz", "", "", 200},
		{"metrics need no token", token, "GET", "/metrics", "", "", 200},

		{"no token configured: publish is open", "", "POST", "/api/publish", "", publish, 200},
		{"no token configured: any header is ignored", "", "POST", "/api/publish", "Bearer whatever", publish, 200},
		{"no token configured: topics are open", "", "GET", "/api/topics", "", "", 200},
		{"no token configured: topic is open", "", "GET", "/api/topics/a", "", "", 200},
	}
	hubs := map[string]*broadcast.Hub{}
	srvs := map[string]*httptest.Server{}
	for _, tok := range []string{token, ""} {
		hubs[tok] = broadcast.New(broadcast.Options{})
		srvs[tok] = adminServer(t, hubs[tok], fakeStats(engine.Stats{}), tok, 0, false)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := hubs[tc.token]
			before := hub.Stats().Published
			r := call(t, srvs[tc.token], tc.method, tc.path, tc.auth, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %q", r.status, tc.status, truncate(r.body, 200))
			}
			published := hub.Stats().Published - before
			if tc.status == 401 {
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("401 without a Bearer WWW-Authenticate challenge (got %q)", got)
				}
				r.errorText(t)
				if published != 0 {
					t.Errorf("an unauthorized request published %d messages", published)
				}
				return
			}
			if r.header.Get("WWW-Authenticate") != "" {
				t.Errorf("status %d carries WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
			}
			if tc.status == 200 && tc.method == "POST" && published != 1 {
				t.Errorf("hub counted %d publishes, want 1", published)
			}
		})
	}
}

func TestAdminHealthz(t *testing.T) {
	for _, conns := range []int{0, 3} {
		t.Run(strconv.Itoa(conns), func(t *testing.T) {
			srv := adminServer(t, broadcast.New(broadcast.Options{}), fakeStats(engine.Stats{Conns: conns}), "tok", 0, false)
			r := call(t, srv, "GET", "/healthz", "", "")
			if r.status != 200 {
				t.Fatalf("status %d: %q", r.status, r.body)
			}
			var got struct {
				Status      string `json:"status"`
				Connections int    `json:"connections"`
			}
			decodeStrict(t, r, &got)
			if got.Status != "ok" || got.Connections != conns {
				t.Errorf("healthz %+v, want status ok and %d connections", got, conns)
			}
		})
	}
}

// promSamples parses Prometheus text exposition into "name{labels}" ->
// value, and "name" -> type from the # TYPE lines.
func promSamples(t *testing.T, body []byte) (samples, types map[string]string) {
	t.Helper()
	samples, types = map[string]string{}, map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "# HELP ") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			types[name] = typ
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("malformed metrics line %q", line)
		}
		if _, dup := samples[line[:i]]; dup {
			t.Errorf("metric %s appears twice", line[:i])
		}
		samples[line[:i]] = line[i+1:]
	}
	return samples, types
}

func TestAdminMetrics(t *testing.T) {
	full := engine.Stats{
		Conns: 3, Upgrades: 11, MessagesIn: 5, BytesIn: 123, FramesOut: 7, BytesOut: 456, Writes: 3,
		CloseCodes:  []engine.CloseCount{{Code: 1000, Count: 4}, {Code: 1006, Count: 2}, {Code: 4002, Count: 1}},
		Unsent:      4096,
		Limits:      engine.LimitCounts{Backpressure: 21, WriteTimeout: 22, Budget: 23, RateLimit: 24, MessageTimeout: 25, RateDropped: 26},
		Rejected:    engine.RejectCounts{MaxConns: 31, PerIP: 32, Rate: 33},
		IPTableFull: 34,
	}
	cases := []struct {
		name      string
		stats     engine.Stats
		publishes int
		want      map[string]string // samples that must be present with these values
		absent    []string          // metric names (any labels) that must not appear
	}{
		{
			name:  "zero",
			stats: engine.Stats{},
			want: map[string]string{
				"wsd_connections": "0", "wsd_upgrades_total": "0", "wsd_published_total": "0", "wsd_published_compressed_total": "0",
				"wsd_topics": "0", "wsd_subscriptions": "0",
				// The series of the limits exist from the start.
				`wsd_closed_total{reason="backpressure"}`: "0", `wsd_closed_total{reason="write_timeout"}`: "0",
				`wsd_closed_total{reason="budget"}`: "0", `wsd_closed_total{reason="rate_limit"}`: "0",
				`wsd_closed_total{reason="message_timeout"}`: "0", `wsd_closed_total{reason="slow_consumer"}`: "0",
				`wsd_rejected_total{reason="max_conns"}`: "0", `wsd_rejected_total{reason="per_ip"}`: "0",
				`wsd_rejected_total{reason="rate"}`: "0", "wsd_rate_dropped_total": "0", "wsd_unsent_bytes": "0",
				"wsd_publish_overloaded_total": "0", "wsd_ip_table_full_total": "0",
			},
			absent: []string{"wsd_closes_total"},
		},
		{
			name:      "counters",
			stats:     full,
			publishes: 2,
			want: map[string]string{
				"wsd_connections":                            "3",
				"wsd_upgrades_total":                         "11",
				"wsd_messages_received_total":                "5",
				"wsd_received_bytes_total":                   "123",
				"wsd_frames_sent_total":                      "7",
				"wsd_sent_bytes_total":                       "456",
				"wsd_socket_writes_total":                    "3",
				`wsd_closes_total{code="1000"}`:              "4",
				`wsd_closes_total{code="1006"}`:              "2",
				`wsd_closes_total{code="4xxx"}`:              "1",
				"wsd_published_total":                        "2",
				"wsd_delivered_total":                        "0",
				"wsd_dropped_total":                          "0",
				"wsd_slow_closed_total":                      "0",
				"wsd_topics":                                 "0",
				"wsd_subscriptions":                          "0",
				`wsd_closed_total{reason="backpressure"}`:    "21",
				`wsd_closed_total{reason="write_timeout"}`:   "22",
				`wsd_closed_total{reason="budget"}`:          "23",
				`wsd_closed_total{reason="rate_limit"}`:      "24",
				`wsd_closed_total{reason="message_timeout"}`: "25",
				`wsd_closed_total{reason="slow_consumer"}`:   "0",
				"wsd_rate_dropped_total":                     "26",
				`wsd_rejected_total{reason="max_conns"}`:     "31",
				`wsd_rejected_total{reason="per_ip"}`:        "32",
				`wsd_rejected_total{reason="rate"}`:          "33",
				"wsd_ip_table_full_total":                    "34",
				"wsd_unsent_bytes":                           "4096",
				"wsd_publish_overloaded_total":               "0",
				"go_goroutines":                              "", // present, any value
				"process_resident_memory_bytes":              "",
				"go_memstats_alloc_bytes":                    "",
				"process_cpu_seconds_total":                  "",
				"go_gc_duration_seconds_count":               "",
			},
		},
	}
	wantTypes := map[string]string{
		"wsd_connections": "gauge", "wsd_upgrades_total": "counter", "wsd_messages_received_total": "counter",
		"wsd_received_bytes_total": "counter", "wsd_frames_sent_total": "counter", "wsd_sent_bytes_total": "counter",
		"wsd_published_total": "counter", "wsd_published_compressed_total": "counter", "wsd_delivered_total": "counter", "wsd_dropped_total": "counter",
		"wsd_slow_closed_total": "counter", "wsd_topics": "gauge", "wsd_subscriptions": "gauge",
		"wsd_closed_total": "counter", "wsd_rejected_total": "counter", "wsd_rate_dropped_total": "counter",
		"wsd_unsent_bytes": "gauge", "wsd_publish_overloaded_total": "counter", "wsd_ip_table_full_total": "counter",
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := broadcast.New(broadcast.Options{})
			for i := range tc.publishes {
				hub.Publish(fmt.Sprint("t", i), codec.OpText, []byte("x"))
			}
			srv := adminServer(t, hub, fakeStats(tc.stats), "tok", 0, false)
			r := call(t, srv, "GET", "/metrics", "", "")
			if r.status != 200 {
				t.Fatalf("status %d: %q", r.status, truncate(r.body, 300))
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want Prometheus text (text/plain)", ct)
			}
			samples, types := promSamples(t, r.body)
			for key, want := range tc.want {
				got, ok := samples[key]
				switch {
				case !ok:
					t.Errorf("metric %s missing", key)
				case want != "" && got != want:
					t.Errorf("%s = %s, want %s", key, got, want)
				}
			}
			for _, name := range tc.absent {
				for k := range samples {
					if k == name || strings.HasPrefix(k, name+"{") {
						t.Errorf("metric %s present: %s %s", name, k, samples[k])
					}
				}
			}
			for name, want := range wantTypes {
				if types[name] != want {
					t.Errorf("# TYPE %s is %q, want %q", name, types[name], want)
				}
			}
		})
	}
}

// TestAdminMetricsCloseCodes has the engine report every close code a peer
// can send (and a few no peer can) and checks that the codes RFC 6455
// defines keep their own label while the rest share three, each with the
// sum of its codes.
func TestAdminMetricsCloseCodes(t *testing.T) {
	var stats engine.Stats
	want := map[string]int64{}
	for code := 0; code <= 0xffff; code++ {
		if code > 1100 && code < 2990 || code > 5010 && code < 0xfff0 {
			continue // nothing new in the middle of these ranges
		}
		stats.CloseCodes = append(stats.CloseCodes, engine.CloseCount{Code: codec.StatusCode(code), Count: 2})
		label := "other"
		switch {
		case code >= 1000 && code <= 1015 && code != 1004:
			label = strconv.Itoa(code)
		case code >= 3000 && code <= 3999:
			label = "3xxx"
		case code >= 4000 && code <= 4999:
			label = "4xxx"
		}
		want[label] += 2
	}
	srv := adminServer(t, nil, fakeStats(stats), "", 0, false)
	samples, _ := promSamples(t, call(t, srv, "GET", "/metrics", "", "").body)
	got := map[string]string{}
	for k, v := range samples {
		if label, ok := strings.CutPrefix(k, "wsd_closes_total{code=\""); ok {
			got[strings.TrimSuffix(label, "\"}")] = v
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d code labels, want the %d of %v", len(got), len(want), want)
	}
	for label, n := range want {
		if got[label] != strconv.FormatInt(n, 10) {
			t.Errorf(`wsd_closes_total{code=%q} = %q, want %d`, label, got[label], n)
		}
	}
}

func TestAdminPprof(t *testing.T) {
	cases := []struct {
		pprof  bool
		path   string
		status int
		has    string
	}{
		{true, "/debug/pprof/", 200, "goroutine"},
		{true, "/debug/pprof/cmdline", 200, ""},
		{true, "/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{true, "/debug/pprof/symbol", 200, "num_symbols"},
		{false, "/debug/pprof/", 404, ""},
		{false, "/debug/pprof/cmdline", 404, ""},
		{false, "/debug/pprof/goroutine?debug=1", 404, ""},
	}
	srvs := map[bool]*httptest.Server{}
	for _, on := range []bool{true, false} {
		srvs[on] = adminServer(t, broadcast.New(broadcast.Options{}), fakeStats(engine.Stats{}), "tok", 0, on)
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("pprof=%v %s", tc.pprof, tc.path), func(t *testing.T) {
			r := call(t, srvs[tc.pprof], "GET", tc.path, "", "")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if !bytes.Contains(r.body, []byte(tc.has)) {
				t.Errorf("body does not contain %q: %q", tc.has, truncate(r.body, 200))
			}
		})
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// openRecorder passes events to the wrapped handler and reports each
// connection once its OnOpen has run (its ?topics= subscriptions are done).
type openRecorder struct {
	engine.Handler
	opened chan *engine.Conn
}

func (o *openRecorder) OnOpen(c *engine.Conn) {
	o.Handler.OnOpen(c)
	o.opened <- c
}

// startPushEngine runs the push mode's handler on an in-process engine on a
// free loopback port, stopped at cleanup.
func startPushEngine(t *testing.T, hub *broadcast.Hub) (string, *openRecorder) {
	t.Helper()
	md, err := newMode(&config{Mode: "push"}, hub)
	if err != nil {
		t.Fatal(err)
	}
	rec := &openRecorder{Handler: md.handler, opened: make(chan *engine.Conn, 64)}
	_, addr := wstest.StartEngine(t, rec, engine.Options{OnUpgrade: md.onUpgrade, PingInterval: -1, IdleTimeout: -1})
	return addr, rec
}

// TestAdminWithSubscribers publishes through the admin API to push-mode
// connections of an in-process engine and checks the recipients counts,
// what each connection receives, /api/topics and the hub's metrics.
func TestAdminWithSubscribers(t *testing.T) {
	hub := broadcast.New(broadcast.Options{})
	addr, rec := startPushEngine(t, hub)
	srv := adminServer(t, hub, fakeStats(engine.Stats{}), "tok", 0, false)
	const auth = "Bearer tok"

	// Connect the clients one at a time, so that each id is known.
	paths := map[string]string{"ab": "/?topics=a,b", "a": "/?topics=a", "b": "/?topics=b", "lobby": "/?topics=chat/lobby"}
	order := []string{"ab", "a", "b", "lobby"}
	clients := map[string]*wstest.Client{}
	ids := map[string]uint64{}
	for _, name := range order {
		c := wstest.Dial(t, addr)
		c.Handshake(paths[name])
		select {
		case conn := <-rec.opened:
			ids[name] = conn.ID()
		case <-time.After(adminTimeout):
			t.Fatalf("OnOpen of client %s did not run", name)
		}
		clients[name] = c
	}

	// Each message is text unless bin; the frames each client must get
	// are checked at the end, in order.
	type frame struct {
		bin  bool
		data string
	}
	steps := []struct {
		name       string
		body       string
		recipients int
		to         []string // clients that get the message
		msg        frame
	}{
		{"one topic", `{"topic":"a","data":"one"}`, 2, []string{"ab", "a"}, frame{false, "one"}},
		{"binary", `{"topic":"b","data_base64":"AP8Q"}`, 2, []string{"ab", "b"}, frame{true, "\x00\xff\x10"}},
		// A connection on both topics counts twice (subscriptions, as
		// documented by broadcast.Hub.PublishMessage) but gets it once.
		{"two topics", `{"topics":["a","b"],"data":"both"}`, 4, []string{"ab", "a", "b"}, frame{false, "both"}},
		{"topic with slashes", `{"topic":"chat/lobby","data":"lobby"}`, 1, []string{"lobby"}, frame{false, "lobby"}},
		{"no subscribers", `{"topic":"nobody","data":"x"}`, 0, nil, frame{}},
		{"a topic without subscribers among others", `{"topics":["nobody","a"],"data":"mixed"}`, 2, []string{"ab", "a"}, frame{false, "mixed"}},
		// The excluded connection is still counted (the count is taken
		// before delivery) but gets nothing.
		{"exclude", fmt.Sprintf(`{"topic":"a","data":"not ab","exclude":%d}`, ids["ab"]), 2, []string{"a"}, frame{false, "not ab"}},
		{"exclude an unknown id", `{"topic":"b","data":"all b","exclude":999999}`, 2, []string{"ab", "b"}, frame{false, "all b"}},
	}
	want := map[string][]frame{}
	for _, st := range steps {
		r := call(t, srv, "POST", "/api/publish", auth, st.body)
		if r.status != 200 {
			t.Fatalf("%s: status %d: %s", st.name, r.status, r.body)
		}
		var got publishReply
		decodeStrict(t, r, &got)
		if got.Recipients != st.recipients || got.Queued != len(st.to) || got.Dropped+got.Closed+got.Overloaded != 0 {
			t.Errorf("%s: %+v, want %d recipients, queued to %d", st.name, got, st.recipients, len(st.to))
		}
		for _, c := range st.to {
			want[c] = append(want[c], st.msg)
		}
	}
	// A last message to every topic: each client must get exactly its
	// frames above and then this one, so nothing extra or duplicated.
	r := call(t, srv, "POST", "/api/publish", auth, `{"topics":["a","b","chat/lobby"],"data":"end"}`)
	if r.status != 200 {
		t.Fatalf("end: status %d: %s", r.status, r.body)
	}
	for _, name := range order {
		c := clients[name]
		for i, f := range append(want[name], frame{false, "end"}) {
			op := byte(wstest.OpText)
			if f.bin {
				op = wstest.OpBinary
			}
			got := c.ExpectFrame()
			if got.Opcode != op || !got.Fin || string(got.Payload) != f.data {
				t.Fatalf("client %s frame %d: got %v %q, want opcode %d %q", name, i, got, got.Payload, op, f.data)
			}
		}
	}

	// /api/topics and /api/topics/{name} see the subscriptions.
	var list struct {
		Topics []broadcast.TopicInfo `json:"topics"`
	}
	decodeStrict(t, call(t, srv, "GET", "/api/topics", auth, ""), &list)
	wantList := []broadcast.TopicInfo{{Name: "a", Subscribers: 2}, {Name: "b", Subscribers: 2}, {Name: "chat/lobby", Subscribers: 1}}
	if !reflect.DeepEqual(list.Topics, wantList) {
		t.Errorf("GET /api/topics: %+v, want %+v", list.Topics, wantList)
	}
	topicCases := []struct {
		path string
		name string
		n    int
	}{
		{"/api/topics/a", "a", 2},
		{"/api/topics/chat/lobby", "chat/lobby", 1},
		{"/api/topics/chat%2Flobby", "chat/lobby", 1},
		{"/api/topics/nobody", "nobody", 0},
		{"/api/topics/a%20b", "a b", 0},
	}
	for _, tc := range topicCases {
		r := call(t, srv, "GET", tc.path, auth, "")
		if r.status != 200 {
			t.Errorf("GET %s: status %d: %s", tc.path, r.status, r.body)
			continue
		}
		var got broadcast.TopicInfo
		decodeStrict(t, r, &got)
		if got != (broadcast.TopicInfo{Name: tc.name, Subscribers: tc.n}) {
			t.Errorf("GET %s: %+v, want name %q with %d subscribers", tc.path, got, tc.name, tc.n)
		}
	}

	// The hub's side of /metrics.
	delivered := 0
	for _, fs := range want {
		delivered += len(fs) + 1 // + "end"
	}
	metricsWant := map[string]string{
		"wsd_published_total": strconv.Itoa(len(steps) + 1),
		"wsd_delivered_total": strconv.Itoa(delivered),
		"wsd_topics":          "3",
		"wsd_subscriptions":   "5",
		"wsd_dropped_total":   "0",
	}
	samples, _ := promSamples(t, call(t, srv, "GET", "/metrics", "", "").body)
	for k, v := range metricsWant {
		if samples[k] != v {
			t.Errorf("%s = %q, want %s", k, samples[k], v)
		}
	}

	// A closed connection leaves its topics.
	clients["ab"].CloseHandshake()
	deadline := time.Now().Add(adminTimeout)
	for {
		var a, b broadcast.TopicInfo
		decodeStrict(t, call(t, srv, "GET", "/api/topics/a", auth, ""), &a)
		decodeStrict(t, call(t, srv, "GET", "/api/topics/b", auth, ""), &b)
		if a.Subscribers == 1 && b.Subscribers == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after client ab closed: a has %d subscribers, b %d; want 1 and 1", a.Subscribers, b.Subscribers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r = call(t, srv, "POST", "/api/publish", auth, `{"topics":["a","b"],"data":"after"}`)
	var got publishReply
	decodeStrict(t, r, &got)
	if got.Recipients != 2 {
		t.Errorf("after client ab closed: recipients %d, want 2", got.Recipients)
	}
	clients["a"].ExpectText("after")
	clients["b"].ExpectText("after")
}
