package main

import (
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
	"github.com/wsdproject/wsd/natsbroker"
)

// TestClusterSlowConsumer: node b's embedded NATS node keeps at most 8 KiB
// for b's connection, and node a publishes faster than that goes out, so
// NATS drops b as a slow consumer. b counts it in
// wsd_broker_slow_consumer_total, logs it, and /healthz says degraded
// with the reason for slowHold, then ok again.
func TestClusterSlowConsumer(t *testing.T) {
	logs := tuneSlow(t, "b", func(o *natsbroker.Options) { o.MaxPayload, o.MaxPending = 4<<10, 8<<10 })
	a := startNode(t, "-mode", "push", "-nats-listen", "127.0.0.1:0", "-nats-node", "a")
	b := startNode(t, "-mode", "push", "-nats-listen", "127.0.0.1:0", "-nats-node", "b", "-nats-routes", "nats://"+a.nodes.b.ClusterAddr())
	b.dialWS(t, "/?topics=hot")
	waitInterest(t, 1, b)
	health := func() clusterHealthReply { return clusterHealthOf(t, b) }
	slowTotal := func() string {
		samples, _ := promSamples(t, call(t, b.admin, "GET", "/metrics", "", "").body)
		return samples["wsd_broker_slow_consumer_total"]
	}
	wstest.WaitFor(t, adminTimeout, "b to say ok with a route to a", func() bool { return health().Status == "ok" })
	if n := slowTotal(); n != "0" {
		t.Fatalf("wsd_broker_slow_consumer_total %s before the burst", n)
	}

	m := &broadcast.BrokerMessage{Topics: []string{"hot"}, Op: codec.OpBinary, Payload: make([]byte, 1024), Origin: "a"}
	wstest.WaitFor(t, time.Minute, "b to be dropped as a slow consumer", func() bool {
		for range 1000 {
			_ = a.nodes.b.Publish(m)
		}
		return b.nodes.b.Stats().SlowConsumer > 0
	})
	if n := slowTotal(); n == "0" || n == "" {
		t.Errorf("wsd_broker_slow_consumer_total %q after the drop", n)
	}
	// b has reconnected (or soon will): the reason is the drop, not the
	// connection.
	var h clusterHealthReply
	wstest.WaitFor(t, adminTimeout, "b to say degraded for the drop", func() bool {
		h = health()
		return strings.HasPrefix(h.Reason, "NATS dropped publications on their way to this node")
	})
	if h.Status != "degraded" || !strings.Contains(h.Reason, "as from a slow consumer") || !h.Cluster.Connected {
		t.Errorf("healthz after the drop: %+v", h)
	}
	// One line, or more if the drops went on for longer than natsbroker
	// waits between two.
	if lines := logs.FilterMessageSnippet("natsbroker: slow consumer").All(); len(lines) == 0 || lines[0].ContextMap()["where"] != "server" {
		t.Errorf("log lines about slow consumers: %v", lines)
	}
	// Once slowHold has passed without another drop, b is ok again.
	wstest.WaitFor(t, adminTimeout+slowHold, "b to say ok again", func() bool { return health().Status == "ok" })
	if st := b.nodes.b.Stats(); time.Since(st.LastSlowConsumer) < slowHold {
		t.Errorf("ok %v after the last drop (hold %v)", time.Since(st.LastSlowConsumer), slowHold)
	}
}
