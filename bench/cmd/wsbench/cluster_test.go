package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// TestMain lets the test binary serve as the load generator: the scenarios
// start os.Executable() with "worker", which here is this binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := loadgen.RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestClusterNodeCount(t *testing.T) {
	for _, tc := range []struct {
		conns, perNode, nodes, want int
	}{
		{100000, 15000, 0, 7},
		{105000, 15000, 0, 7},
		{105001, 15000, 0, 8},
		{1000, 15000, 0, 2}, // a cluster has two nodes at least
		{600, 15000, 3, 3},
		{100000, 15000, 10, 10},
	} {
		cp := clusterPlan{conns: tc.conns, perNode: tc.perNode, nodes: tc.nodes}
		if got := cp.nodeCount(); got != tc.want {
			t.Errorf("%d connections, at most %d per node, -cluster-nodes %d: %d nodes, want %d", tc.conns, tc.perNode, tc.nodes, got, tc.want)
		}
	}
}

// TestClusterSourceAddresses: a plan whose load generators would need more
// 127.0.0.x addresses than there are fails before it starts anything (the
// wsd binary given does not exist).
func TestClusterSourceAddresses(t *testing.T) {
	p := &plan{perWorker: 7500, sourceBase: 2}
	r := runCluster(p, clusterPlan{conns: 1000000, perNode: 15000, probeConns: 10}, filepath.Join(t.TempDir(), "no-wsd"))
	if r.OK || len(r.Failures) != 1 || !strings.Contains(r.Failures[0], "201 load-generator processes need the source addresses 127.0.0.2 to 127.0.0.805") {
		t.Fatalf("ok %v, failures %q", r.OK, r.Failures)
	}
}

// TestClusterScenario runs the scenario small: three wsd processes joined
// by their embedded NATS nodes, 90 subscribers each, the publisher on the
// first. Every frame must arrive, each node's figures must be there, the
// report and charts written, and every node stopped once it returns.
func TestClusterScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts wsd processes")
	}
	bin, err := build("wsd", t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	p := &plan{perWorker: 7500, sourceBase: 2, dialParallel: 8}
	cp := clusterPlan{conns: 270, nodes: 3, size: 32, rate: 2700, duration: 2 * time.Second, probes: 20, probeRate: 40, probeConns: 3}
	r := runCluster(p, cp, bin)
	if !r.OK {
		t.Fatalf("failed: %v", r.Failures)
	}
	if r.News.Sent != 20 || r.Frames != 20*270 || r.Probe.Sent != 20 || r.Lost != 0 || r.Reordered != 0 {
		t.Fatalf("news %d published, %d frames; probes %d; lost %d, reordered %d", r.News.Sent, r.Frames, r.Probe.Sent, r.Lost, r.Reordered)
	}
	if len(r.NodeList) != 3 || !r.NodeList[0].Publisher || r.NodeList[1].Publisher {
		t.Fatalf("nodes %+v", r.NodeList)
	}
	for _, nd := range r.NodeList {
		if nd.Conns != 90 || nd.Frames != 20*90 || nd.ProbeFrames != 20*3 || nd.CPUS <= 0 || nd.RSS <= 0 || nd.Heap <= 0 ||
			nd.Hop.N != 60 || nd.Fanout.N != 1800 || nd.BrokerIn != 40 {
			t.Errorf("node %s: %+v", nd.Name, nd)
		}
	}
	if r.HopSame.N == 0 || r.HopCross.N == 0 || r.FanoutSame.P50us <= 0 || r.FanoutCross.P99us <= 0 || r.FramesPerS <= 0 {
		t.Errorf("latencies %+v %+v %+v %+v, %.0f frames/s", r.HopSame, r.HopCross, r.FanoutSame, r.FanoutCross, r.FramesPerS)
	}
	dir := t.TempDir()
	md, err := writeClusterReport(dir, map[string]any{"wsd": "test"}, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### cluster: 270 connections over 3 wsd nodes: passed", "| n1 (publisher) | 90 | 1,800 |", "Projection to 1,000,000 connections"} {
		if !strings.Contains(md, want) {
			t.Errorf("cluster.md lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{"cluster.md", "cluster-cpu.png", "cluster-hop.png", "cluster-fanout.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	// The nodes are gone: their listeners refuse.
	for i, arg := range r.ServerCmd {
		if arg == "-addr" || arg == "-admin-addr" {
			if c, err := net.DialTimeout("tcp", r.ServerCmd[i+1], time.Second); err == nil {
				c.Close()
				t.Errorf("%s %s still accepts connections", arg, r.ServerCmd[i+1])
			}
		}
	}
}

// TestJudgeCluster: each kind of loss fails the run, naming it.
func TestJudgeCluster(t *testing.T) {
	good := func() ClusterRun {
		r := ClusterRun{Conns: 20, ProbeConns: 2, Frames: 200}
		r.News.Sent, r.Probe.Sent = 10, 5
		r.NodeList = []ClusterNode{{Name: "n1", Publisher: true, Conns: 10, Frames: 100, ProbeFrames: 10}, {Name: "n2", Conns: 10, Frames: 100, ProbeFrames: 10}}
		return r
	}
	r := good()
	judgeCluster(&r)
	if !r.OK {
		t.Fatalf("a clean run failed: %v", r.Failures)
	}
	for _, tc := range []struct {
		want  string
		spoil func(r *ClusterRun)
	}{
		{"3 messages lost, 0 reordered", func(r *ClusterRun) { r.Lost = 3 }},
		{"0 messages lost, 2 reordered", func(r *ClusterRun) { r.Reordered = 2 }},
		{"closed 1 connections", func(r *ClusterRun) { r.Closed = 1 }},
		{"199 news frames delivered, want 200", func(r *ClusterRun) { r.Frames = 199 }},
		{"node n2: 9 probe frames, want 10", func(r *ClusterRun) { r.NodeList[1].ProbeFrames = 9 }},
		{"node n2: 4 NATS slow-consumer losses", func(r *ClusterRun) { r.NodeList[1].SlowConsumer = 4 }},
		{"node n1: 0 NATS slow-consumer losses, 7 frames dropped", func(r *ClusterRun) { r.NodeList[0].Dropped = 7 }},
		{"news: 1 publish API calls failed: 503", func(r *ClusterRun) { r.News.Errors, r.News.FirstErr = 1, "503 Service Unavailable" }},
		{"did not join", func(r *ClusterRun) { r.Failures = []string{"node 2 of 3 did not join the cluster"} }},
	} {
		r := good()
		tc.spoil(&r)
		judgeCluster(&r)
		if r.OK || !strings.Contains(strings.Join(r.Failures, "\n"), tc.want) {
			t.Errorf("ok %v, failures %q, want one about %q", r.OK, r.Failures, tc.want)
		}
	}
}
