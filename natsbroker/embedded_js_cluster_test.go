package natsbroker

import (
	"strings"
	"testing"

	"github.com/wsdproject/wsd/broadcast"
)

// TestEmbeddedHistoryOptions: History with Listen needs Routes (clustered
// JetStream has no quorum without them), and the stream's replicas are
// one per node of Routes, at most three; none are asked with URLs.
func TestEmbeddedHistoryOptions(t *testing.T) {
	hist := func(string) broadcast.HistoryPolicy { return broadcast.HistoryPolicy{Size: 10} }
	_, err := Options{Listen: "127.0.0.1:0", History: hist}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "needs Routes") {
		t.Fatalf("History with Listen and no Routes: %v, want an error that says it needs Routes", err)
	}
	for _, tc := range []struct {
		o    Options
		want int
	}{
		{Options{URLs: []string{"nats://a:4222"}}, 0},
		{Options{}, 0},
		{Options{Listen: "127.0.0.1:0", Routes: []string{"nats://a:1", "nats://b:1"}}, 2},
		{Options{Listen: "127.0.0.1:0", Routes: []string{"nats://a:1", "nats://b:1", "nats://c:1"}}, 3},
		{Options{Listen: "127.0.0.1:0", Routes: []string{"nats://a:1", "nats://b:1", "nats://c:1", "nats://d:1", "nats://e:1"}}, 3},
	} {
		if got := (&Broker{opts: tc.o}).historyReplicas(); got != tc.want {
			t.Errorf("%+v: %d replicas, want %d", tc.o, got, tc.want)
		}
	}
}
