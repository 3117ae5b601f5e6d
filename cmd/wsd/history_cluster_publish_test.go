package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestHistoryClusterPublishPositions: in a cluster with JetStream history,
// POST /api/publish answers the positions the stream gave the message on
// its topics with history (those a ?format=json subscriber of another node
// gets it with), through the hub and with "exclude" of another node's
// connection; with the stream deleted it answers 503 "not stored", and
// wsd_history_not_stored_total counts it.
func TestHistoryClusterPublishPositions(t *testing.T) {
	s := jetStreamServer(t)
	nodes := joinNATS(t, s.ClientURL(), []string{"-mode", "push", "-history", "news.*=100/10m"}, "a", "b")
	a, b := nodes[0], nodes[1]

	cb := b.dialWS(t, "/?format=json&topics=news.eu")
	expectSubscribed(t, "node B", cb, "news.eu", nil, 0)
	waitInterest(t, 1, b)

	post := func(body string) clusterPublishResult {
		t.Helper()
		r := a.publish(t, body)
		if r.status != http.StatusOK {
			t.Fatalf("publish %s: %d %s", body, r.status, r.body)
		}
		var res clusterPublishResult
		decodeStrict(t, r, &res)
		return res
	}
	check := func(res clusterPublishResult, data string) {
		t.Helper()
		if len(res.Positions) != 2 || res.Positions[0].Topic != "news.eu" || res.Positions[1].Topic != "news.us" ||
			res.Positions[0].Epoch == "" || res.Positions[1].Epoch != res.Positions[0].Epoch || res.Positions[1].Offset <= res.Positions[0].Offset {
			t.Fatalf("positions %+v, want news.eu then news.us, of one epoch", res.Positions)
		}
		m := readPush(t, "node B", cb)
		if m.Data == nil || *m.Data != data || m.Offset == nil || *m.Offset != res.Positions[0].Offset || m.Epoch != res.Positions[0].Epoch {
			t.Fatalf("node B got %+v, publish answered %+v", m, res.Positions[0])
		}
	}
	first := post(`{"topics":["news.eu","plain","news.us"],"data":"one"}`)
	check(first, "one")
	second := post(`{"topics":["news.eu","plain","news.us"],"data":"two","exclude":"b.999999"}`)
	check(second, "two")
	if second.Positions[0].Offset <= first.Positions[1].Offset {
		t.Fatalf("second publish at %+v, first at %+v", second.Positions, first.Positions)
	}
	if res := post(`{"topic":"plain","data":"three"}`); res.Positions != nil {
		t.Fatalf("a topic without history: positions %+v", res.Positions)
	}

	deleteHistoryStream(t, s.ClientURL())
	r := a.publish(t, `{"topic":"news.eu","data":"lost"}`)
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(r.body, &e); r.status != http.StatusServiceUnavailable || !strings.Contains(e.Error, "not stored") || r.header.Get("Retry-After") == "" {
		t.Fatalf("publish with the stream deleted: %d %s, want 503 not stored", r.status, r.body)
	}
	samples, _ := promSamples(t, call(t, a.admin, "GET", "/metrics", "", "").body)
	if n, _ := strconv.Atoi(samples["wsd_history_not_stored_total"]); n != 1 {
		t.Errorf("wsd_history_not_stored_total %q, want 1", samples["wsd_history_not_stored_total"])
	}
	if n, _ := strconv.Atoi(samples["wsd_history_stored_total"]); n != 4 {
		t.Errorf("wsd_history_stored_total %q, want 4", samples["wsd_history_stored_total"])
	}
}
