package main

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
	"github.com/wsdproject/wsd/natsbroker"
)

// tuneSlow makes slowHold 3 s, and has tune change the broker options of
// node, whose warnings go to the returned logs, until the nodes the test
// starts next have stopped.
func tuneSlow(t *testing.T, node string, tune func(*natsbroker.Options)) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zapcore.WarnLevel)
	hold := slowHold
	t.Cleanup(func() { tuneNATS, slowHold = nil, hold }) // after the nodes stop (cleanups run in reverse)
	slowHold = 3 * time.Second
	tuneNATS = func(o *natsbroker.Options) {
		if o.Node == node {
			o.Logger = zap.New(core)
			tune(o)
		}
	}
	return logs
}

// routeProxy passes the TCP connections it accepts on to target, both
// ways. Once stalled it reads nothing more from target, as a node that
// stopped taking its route in: target's writes to it block.
type routeProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	stalled chan struct{} // while stalled: the copies from target wait until it is closed
	conns   []net.Conn
	closed  bool
	wg      sync.WaitGroup
}

// startRouteProxy runs a routeProxy to target until the test ends.
func startRouteProxy(t *testing.T, target string) *routeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &routeProxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *routeProxy) accept() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.pass(down) })
	}
}

// pass joins down to a new connection to target, both ways, until one of
// them ends.
func (p *routeProxy) pass(down net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(down, up) {
		down.Close()
		return
	}
	p.wg.Go(func() { _, _ = io.Copy(up, down); up.Close() })
	p.copyUp(down, up)
	down.Close()
}

// track records the connections to close at the end; false once closed.
func (p *routeProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

// copyUp copies what target sends, reading nothing while stalled.
func (p *routeProxy) copyUp(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		wait := p.stalled
		p.mu.Unlock()
		if wait != nil {
			<-wait
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *routeProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = make(chan struct{})
}

// resume reads from target again. Safe when not stalled.
func (p *routeProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

func (p *routeProxy) close() {
	p.ln.Close()
	p.resume()
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// TestClusterRouteSlowConsumer: node b's route to node a goes through a
// proxy, and b has a subscriber of topic hot. The proxy stops reading what
// a sends, and a publishes to hot until its embedded NATS node's writes to
// the route pass its write deadline (200 ms here): a route slow consumer.
// a counts it in wsd_broker_route_slow_consumer_total (not in
// wsd_broker_slow_consumer_total, which is about a's own connection), logs
// it, and its /healthz says degraded with the reason for slowHold once
// the route is back, then ok again.
func TestClusterRouteSlowConsumer(t *testing.T) {
	logs := tuneSlow(t, "a", func(o *natsbroker.Options) { o.WriteDeadline = 200 * time.Millisecond })
	a := startNode(t, "-mode", "push", "-nats-listen", "127.0.0.1:0", "-nats-node", "a")
	proxy := startRouteProxy(t, a.nodes.b.ClusterAddr())
	b := startNode(t, "-mode", "push", "-nats-listen", "127.0.0.1:0", "-nats-node", "b", "-nats-routes", "nats://"+proxy.ln.Addr().String())
	b.dialWS(t, "/?topics=hot")
	waitInterest(t, 1, b)
	metric := func(name string) string {
		samples, _ := promSamples(t, call(t, a.admin, "GET", "/metrics", "", "").body)
		return samples[name]
	}
	wstest.WaitFor(t, adminTimeout, "a to say ok with a route to b", func() bool { return clusterHealthOf(t, a).Status == "ok" })
	if n := metric("wsd_broker_route_slow_consumer_total"); n != "0" {
		t.Fatalf("wsd_broker_route_slow_consumer_total %q before the stall", n)
	}

	proxy.stall()
	m := &broadcast.BrokerMessage{Topics: []string{"hot"}, Op: codec.OpBinary, Payload: make([]byte, 1024), Origin: "a"}
	wstest.WaitFor(t, time.Minute, "a's route to b to be a slow consumer", func() bool {
		for range 100 {
			_ = a.nodes.b.Publish(m)
		}
		return a.nodes.b.Stats().SlowConsumerRoutes > 0
	})
	proxy.resume()
	if n := metric("wsd_broker_route_slow_consumer_total"); n == "0" || n == "" {
		t.Errorf("wsd_broker_route_slow_consumer_total %q after the stall", n)
	}
	if n := metric("wsd_broker_slow_consumer_total"); n != "0" {
		t.Errorf("wsd_broker_slow_consumer_total %q: a's own connection was not slow", n)
	}
	var h clusterHealthReply
	wstest.WaitFor(t, adminTimeout, "a to say degraded for the route", func() bool {
		h = clusterHealthOf(t, a)
		return strings.HasPrefix(h.Reason, "this node's embedded NATS node fell behind on its route to another node")
	})
	if h.Status != "degraded" || !strings.Contains(h.Reason, "wsd_broker_route_slow_consumer_total") {
		t.Errorf("healthz after the stall: %+v", h)
	}
	wstest.WaitFor(t, adminTimeout+slowHold, "a to say ok again", func() bool { return clusterHealthOf(t, a).Status == "ok" })
	if st := a.nodes.b.Stats(); time.Since(st.LastRouteSlowConsumer) < slowHold {
		t.Errorf("ok %v after the route slow consumer (hold %v)", time.Since(st.LastRouteSlowConsumer), slowHold)
	}
	if lines := logs.FilterMessageSnippet("natsbroker: route slow consumer").All(); len(lines) == 0 {
		t.Errorf("no log line about the route slow consumer: %v", logs.All())
	}
}
