package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// clusterPlan is the cluster scenario's settings: nodes wsd processes in
// push mode, each with an embedded NATS node routed to all the others, and
// conns WebSocket connections spread evenly over them, subscribed to
// "news"; probeConns more per node are subscribed to "probe". One
// publisher publishes through the first node's HTTP API.
type clusterPlan struct {
	conns      int           // connections to news, over all nodes
	perNode    int           // most connections one node holds: nodes follow from it
	nodes      int           // wsd processes; 0: as many as perNode requires (at least 2)
	size       int           // payload bytes (at least 16: sequence number and send time)
	rate       float64       // fan-out: delivered frames per second aimed at, over all nodes
	duration   time.Duration // fan-out: publishing time
	probes     int           // hop: messages published to probe
	probeRate  float64       // hop: probes per second
	probeConns int           // hop: probe subscribers per node
}

// clusterFlags registers the cluster scenario's flags on fs. The returned
// function makes the plan once fs is parsed; conns is the largest -conns
// when it was given, else 0.
func clusterFlags(fs *flag.FlagSet) func(conns int) clusterPlan {
	var (
		nodes    = fs.Int("cluster-nodes", 0, "cluster: wsd processes (0: as many as holding at most -cluster-per-node connections each takes, at least 2)")
		perNode  = fs.Int("cluster-per-node", 15000, "cluster: most connections one wsd process holds (a process may open 20,000 files here)")
		rate     = fs.Float64("cluster-rate", 50000, "cluster: delivered frames per second aimed at during the fan-out, over all nodes (publish rate = this / connections)")
		duration = fs.Duration("cluster-duration", 30*time.Second, "cluster: fan-out publishing time")
		size     = fs.Int("cluster-size", 32, "cluster: payload bytes (at least 16)")
		quick    = fs.Bool("cluster-quick", false, "cluster for a quick check: 3 nodes, 600 connections, short phases")
	)
	return func(conns int) clusterPlan {
		cp := clusterPlan{conns: 100000, perNode: *perNode, nodes: *nodes, size: max(16, *size), rate: *rate, duration: *duration,
			probes: 300, probeRate: 50, probeConns: 10}
		if conns > 0 {
			cp.conns = conns
		}
		if *quick {
			cp.conns, cp.nodes, cp.rate, cp.duration = 600, 3, 6000, 2*time.Second
			cp.probes, cp.probeRate, cp.probeConns = 40, 40, 5
		}
		return cp
	}
}

// nodeCount is how many wsd processes the plan takes.
func (cp clusterPlan) nodeCount() int {
	if cp.nodes > 0 {
		return cp.nodes
	}
	return max(2, (cp.conns+cp.perNode-1)/max(1, cp.perNode))
}

// ClusterNode is one wsd process of a cluster run and what its clients saw.
type ClusterNode struct {
	Name      string `json:"name"`
	Publisher bool   `json:"publisher"` // the publisher's HTTP API is this node's
	Conns     int    `json:"conns"`     // news subscribers connected to it
	Workers   int    `json:"workers"`   // load-generator processes holding them

	RSSBase  int64 `json:"rss_base"` // before the connections, with its NATS node running
	RSS      int64 `json:"rss"`      // with every connection open, before the fan-out
	HeapBase int64 `json:"heap_base"`
	Heap     int64 `json:"heap"`
	RSSEnd   int64 `json:"rss_end"` // after the fan-out

	Frames      uint64  `json:"frames"` // news frames its clients received
	CPUS        float64 `json:"cpu_s"`  // over the fan-out
	Lost        uint64  `json:"lost"`
	Reordered   uint64  `json:"reordered"`
	Closed      int     `json:"closed"`
	ProbeFrames uint64  `json:"probe_frames"`

	Hop    Latency `json:"hop"`    // probe: publish call to delivery, the node idle
	Fanout Latency `json:"fanout"` // news: publish call to delivery, under the fan-out

	// Over both phases (probes and fan-out):
	BrokerIn     float64 `json:"broker_in"`     // wsd_broker_messages_in_total
	SlowConsumer float64 `json:"slow_consumer"` // wsd_broker_slow_consumer_total
	Dropped      float64 `json:"dropped"`       // wsd_dropped_total
	Overloaded   float64 `json:"overloaded"`    // wsd_publish_overloaded_total

	hist, probeHist loadgen.Hist
}

// RSSPerConn is the growth of the node's RSS per connection.
func (n ClusterNode) RSSPerConn() float64 { return float64(n.RSS-n.RSSBase) / float64(max(1, n.Conns)) }

// HeapPerConn is the growth of the node's Go heap (after a GC) per connection.
func (n ClusterNode) HeapPerConn() float64 {
	return float64(n.Heap-n.HeapBase) / float64(max(1, n.Conns))
}

// CPUPerFrameUs is the node's CPU time per news frame it delivered, in µs.
func (n ClusterNode) CPUPerFrameUs() float64 { return n.CPUS / float64(max(1, n.Frames)) * 1e6 }

// Latency is a latency distribution, in µs.
type Latency struct {
	N     uint64  `json:"n"`
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	MaxUs float64 `json:"max_us"`
}

func latencyOf(h *loadgen.Hist) Latency {
	if h.N == 0 {
		return Latency{}
	}
	return Latency{N: h.N, P50us: float64(h.Quantile(0.5)) / 1e3, P99us: float64(h.Quantile(0.99)) / 1e3, MaxUs: float64(h.Max) / 1e3}
}

// ClusterRun is the outcome of one cluster run.
type ClusterRun struct {
	Conns      int      `json:"conns"`
	Nodes      int      `json:"nodes"`
	Size       int      `json:"size"`
	Rate       float64  `json:"rate"` // delivered frames per second aimed at
	PublishHz  float64  `json:"publish_hz"`
	Probes     int      `json:"probes"`
	ProbeRate  float64  `json:"probe_rate"`
	ProbeConns int      `json:"probe_conns"` // per node
	ServerCmd  []string `json:"server_cmd"`  // the first node's command line

	OK       bool     `json:"ok"`
	Failures []string `json:"failures,omitempty"`

	Connected int     `json:"connected"` // news and probe connections
	ConnectS  float64 `json:"connect_s"`
	FormedS   float64 `json:"formed_s"`   // from start to every node routed to every other
	InterestS float64 `json:"interest_s"` // from all connected to the publishing node seeing every node's subscribers

	News  PublishStats `json:"news"`
	Probe PublishStats `json:"probe"`

	Frames     uint64  `json:"frames"` // news frames delivered, all nodes
	RunS       float64 `json:"run_s"`  // from the first news publish to the last frame
	FramesPerS float64 `json:"frames_per_s"`
	Lost       uint64  `json:"lost"`
	Reordered  uint64  `json:"reordered"`
	Closed     int     `json:"closed"`

	HopSame     Latency `json:"hop_same"` // probes to the publishing node's subscribers
	HopCross    Latency `json:"hop_cross"`
	FanoutSame  Latency `json:"fanout_same"`
	FanoutCross Latency `json:"fanout_cross"`

	KernelPerConn float64 `json:"kernel_per_conn"` // estimate, as the idle scenario's
	ServerCPU     float64 `json:"server_cpu"`      // all nodes over the fan-out, share of one CPU
	ClientCPU     float64 `json:"client_cpu"`      // the load generators and the runner, the same way
	OtherCPU      float64 `json:"other_cpu"`       // every other process on the machine, the same way

	NodeList []ClusterNode `json:"node_list"`
}

// clusterScenario runs the cluster scenario once and writes cluster.json,
// cluster.md and its charts into out. It fails if any check failed.
func clusterScenario(p *plan, cp clusterPlan, bin, out, wsd string) error {
	started := time.Now()
	fmt.Fprintf(os.Stderr, "cluster: %d connections over %d nodes, wsd %s\n", cp.conns, cp.nodeCount(), wsd)
	r := runCluster(p, cp, bin)
	return saveOnce(p, started, out, "cluster", wsd, r, r.Failures, func(meta map[string]any) (string, error) { return writeClusterReport(out, meta, r) })
}

// clusterArgs is node i's command line: push mode, an embedded NATS node
// on route, routed to every node's.
func clusterArgs(bin, addr, debug, name, route string, routes []string) []string {
	args := []string{bin, "-mode", "push", "-addr", addr, "-admin-addr", debug, "-pprof",
		"-ping-interval", "0", "-idle-timeout", "0", "-log-level", "warn", "-max-message-size", "1MiB",
		"-nats-node", name, "-nats-listen", route, "-nats-routes", strings.Join(routes, ",")}
	if os.Getenv("WSBENCH_WSD_ARGS") != "" {
		args = append(args, strings.Fields(os.Getenv("WSBENCH_WSD_ARGS"))...)
	}
	return args
}

// clusterGroup is the load-generator processes of one node and one topic.
type clusterGroup struct {
	node   int
	probe  bool
	conns  int // connections, spread over
	count  int // processes, the first on 127.0.0.<source>, four addresses each
	source int
	ws     []*workerProc
}

// runCluster runs the cluster scenario once. Every process it starts is
// stopped before it returns.
func runCluster(p *plan, cp clusterPlan, bin string) (r ClusterRun) {
	n := cp.nodeCount()
	r = ClusterRun{Conns: cp.conns, Nodes: n, Size: cp.size, Rate: cp.rate, Probes: cp.probes, ProbeRate: cp.probeRate, ProbeConns: cp.probeConns}
	r.PublishHz = cp.rate / float64(max(1, cp.conns))
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	defer func() { judgeCluster(&r) }()
	t0 := time.Now()
	r.NodeList = make([]ClusterNode, n)
	for i := range n {
		r.NodeList[i] = ClusterNode{Name: fmt.Sprintf("n%d", i+1), Publisher: i == 0, Conns: cp.conns/n + btoi(i < cp.conns%n)}
	}

	// The load generators, planned before anything starts: for each node,
	// its share of the news subscribers, and one process of probe
	// subscribers; every process on its own four source addresses.
	var groups []*clusterGroup
	source := p.sourceBase
	for i := range n {
		news := &clusterGroup{node: i, conns: r.NodeList[i].Conns, count: (r.NodeList[i].Conns + p.perWorker - 1) / p.perWorker}
		probe := &clusterGroup{node: i, probe: true, conns: cp.probeConns, count: 1}
		r.NodeList[i].Workers = news.count
		for _, g := range []*clusterGroup{news, probe} {
			g.source = source
			source += 4 * g.count
			groups = append(groups, g)
		}
	}
	if last := source - 1; last > 254 {
		fail("%d load-generator processes need the source addresses 127.0.0.%d to 127.0.0.%d", workers(r), p.sourceBase, last)
		return r
	}

	// The nodes, all started before any is waited for: each routes to all.
	routes := make([]string, n)
	listen := make([]string, n)
	for i := range n {
		listen[i] = freeAddr()
		routes[i] = "nats://" + listen[i]
	}
	var srvs []*server
	defer func() {
		for _, s := range srvs {
			s.stop()
		}
	}()
	for i := range n {
		name := r.NodeList[i].Name
		spec := specs["wsd"]
		spec.args = func(bin, _, addr, debug string) []string {
			return clusterArgs(bin, addr, debug, name, listen[i], routes)
		}
		s, err := startServer(spec, bin, "cluster", p.serverCPU)
		if err != nil {
			fail("node %s: %v", name, err)
			return r
		}
		srvs = append(srvs, s)
		if i == 0 {
			r.ServerCmd = spec.args("wsd", "", s.addr, s.debug)
		}
	}
	if err := waitFormed(srvs, 60*time.Second); err != nil {
		fail("%v", err)
		return r
	}
	r.FormedS = time.Since(t0).Seconds()
	kernelBase := kernelMemory()
	for i, s := range srvs {
		r.NodeList[i].RSSBase, r.NodeList[i].HeapBase = s.rss(), s.heap()
	}

	expect := uint64(max(5, cp.rate/float64(max(1, cp.conns))*cp.duration.Seconds()))
	type started struct {
		ready loadgen.Result
		err   error
	}
	results := make([]started, len(groups))
	var wg sync.WaitGroup
	t1 := time.Now()
	for gi, g := range groups {
		gp := *p
		gp.sourceBase = g.source
		job := loadgen.Job{Scenario: "broadcast", Addr: srvs[g.node].addr, Path: "/?topics=news", DialConcurrency: p.dialParallel,
			Size: cp.size, Expect: expect, Duration: 10*cp.duration + 20*time.Second}
		conns, count := g.conns, g.count
		if g.probe {
			job.Path, job.Expect = "/?topics=probe", uint64(cp.probes)
			job.Duration = 10*time.Duration(float64(cp.probes)/cp.probeRate*float64(time.Second)) + 20*time.Second
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, ready, err := startWorkersWith(&gp, job, count, func(i int, j *loadgen.Job) {
				j.Conns = conns/count + btoi(i < conns%count)
			})
			g.ws = ws
			if err == nil && ready.Connected != conns {
				err = fmt.Errorf("connected %d of %d: %s", ready.Connected, conns, ready.FirstErr)
			}
			results[gi] = started{ready, err}
		}()
	}
	wg.Wait()
	defer func() {
		for _, g := range groups {
			stopWorkers(g.ws)
		}
	}()
	r.ConnectS = time.Since(t1).Seconds()
	for gi, res := range results {
		r.Connected += res.ready.Connected
		if res.err != nil {
			fail("node %s, %s subscribers: %v", r.NodeList[groups[gi].node].Name, topicOf(groups[gi]), res.err)
		}
	}
	if len(r.Failures) > 0 {
		return r
	}

	// Every node must have told NATS of its interest, and the publishing
	// node must count every node's subscribers, before the first publish.
	t2 := time.Now()
	want := map[string]int{}
	for _, nd := range r.NodeList {
		want[nd.Name] = nd.Conns
	}
	probeWant := map[string]int{}
	for _, nd := range r.NodeList {
		probeWant[nd.Name] = cp.probeConns
	}
	if err := waitInterest(srvs, map[string]map[string]int{"news": want, "probe": probeWant}, 60*time.Second); err != nil {
		fail("%v", err)
		return r
	}
	r.InterestS = time.Since(t2).Seconds()
	for i, s := range srvs {
		r.NodeList[i].RSS, r.NodeList[i].Heap = s.rss(), s.heap()
	}
	r.KernelPerConn = float64(kernelMemory()-kernelBase) / float64(2*max(1, r.Connected))
	metrics0 := make([]map[string]float64, n)
	for i, s := range srvs {
		metrics0[i] = scrape(s.debug)
	}
	publishURL := "http://" + srvs[0].debug + "/api/publish"

	// The hop: probes to a few idle subscribers per node.
	var probeGroups, newsGroups []*clusterGroup
	for _, g := range groups {
		if g.probe {
			probeGroups = append(probeGroups, g)
		} else {
			newsGroups = append(newsGroups, g)
		}
	}
	probeRes, err := clusterPhase(probeGroups, func() {
		r.Probe = publishSeq(publishURL, "probe", uint64(cp.probes), cp.probeRate, cp.size)
	})
	if err != nil {
		fail("probe: %v", err)
	}
	for _, g := range probeGroups {
		nd := &r.NodeList[g.node]
		res := probeRes[g]
		nd.ProbeFrames = res.Messages
		nd.probeHist.Merge(res.hist)
		nd.Hop = latencyOf(&nd.probeHist)
		nd.Lost += res.Lost
		nd.Reordered += res.Reordered
		nd.Closed += res.Closed
	}

	// The fan-out: news to every subscriber.
	cpu0 := make([]float64, n)
	for i, s := range srvs {
		cpu0[i] = s.cpuSeconds()
	}
	clientCPU := func() float64 {
		t := procCPU(os.Getpid())
		for _, g := range groups {
			for _, w := range g.ws {
				t += procCPU(w.cmd.Process.Pid)
			}
		}
		return t
	}
	client0, busy0 := clientCPU(), machineBusy()
	t3 := time.Now()
	newsRes, err := clusterPhase(newsGroups, func() {
		r.News = publishSeq(publishURL, "news", expect, r.PublishHz, cp.size)
	})
	if err != nil {
		fail("fan-out: %v", err)
	}
	r.RunS = time.Since(t3).Seconds()
	var serverCPU float64
	for i, s := range srvs {
		r.NodeList[i].CPUS = s.cpuSeconds() - cpu0[i]
		serverCPU += r.NodeList[i].CPUS
	}
	client, busy := clientCPU()-client0, machineBusy()-busy0
	r.ServerCPU, r.ClientCPU, r.OtherCPU = serverCPU/r.RunS, client/r.RunS, max(0, busy-serverCPU-client)/r.RunS
	for _, g := range newsGroups {
		nd := &r.NodeList[g.node]
		res := newsRes[g]
		nd.Frames += res.Messages
		nd.hist.Merge(res.hist)
		nd.Lost += res.Lost
		nd.Reordered += res.Reordered
		nd.Closed += res.Closed
	}
	for i, s := range srvs {
		nd := &r.NodeList[i]
		nd.Fanout = latencyOf(&nd.hist)
		nd.RSSEnd = s.rss()
		m := scrape(s.debug)
		nd.BrokerIn = m["wsd_broker_messages_in_total"] - metrics0[i]["wsd_broker_messages_in_total"]
		nd.SlowConsumer = m["wsd_broker_slow_consumer_total"] - metrics0[i]["wsd_broker_slow_consumer_total"]
		nd.Dropped = m["wsd_dropped_total"] - metrics0[i]["wsd_dropped_total"]
		nd.Overloaded = m["wsd_publish_overloaded_total"] - metrics0[i]["wsd_publish_overloaded_total"]
	}
	var hopSame, hopCross, fanSame, fanCross loadgen.Hist
	for i := range r.NodeList {
		nd := &r.NodeList[i]
		r.Frames += nd.Frames
		r.Lost += nd.Lost
		r.Reordered += nd.Reordered
		r.Closed += nd.Closed
		if nd.Publisher {
			hopSame.Merge(&nd.probeHist)
			fanSame.Merge(&nd.hist)
		} else {
			hopCross.Merge(&nd.probeHist)
			fanCross.Merge(&nd.hist)
		}
	}
	r.FramesPerS = float64(r.Frames) / r.RunS
	r.HopSame, r.HopCross = latencyOf(&hopSame), latencyOf(&hopCross)
	r.FanoutSame, r.FanoutCross = latencyOf(&fanSame), latencyOf(&fanCross)
	return r
}

func topicOf(g *clusterGroup) string {
	if g.probe {
		return "probe"
	}
	return "news"
}

// phaseResult is what one group of workers reported.
type phaseResult struct {
	loadgen.Result
	hist *loadgen.Hist
}

// clusterPhase says go to every group's workers, runs publish once all of
// them have been told, and returns each group's merged results.
func clusterPhase(groups []*clusterGroup, publish func()) (map[*clusterGroup]phaseResult, error) {
	var (
		told, done sync.WaitGroup
		mu         sync.Mutex
		out        = map[*clusterGroup]phaseResult{}
		errs       []error
	)
	told.Add(len(groups))
	done.Add(len(groups))
	for _, g := range groups {
		go func() {
			defer done.Done()
			res, hist, err := finishWorkers(g.ws, told.Done)
			mu.Lock()
			defer mu.Unlock()
			out[g] = phaseResult{res, hist}
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	told.Wait()
	publish()
	done.Wait()
	if len(errs) > 0 {
		return out, errs[0]
	}
	return out, nil
}

// waitFormed waits until every node reports itself healthy with a route to
// every other node and all nodes alive.
func waitFormed(srvs []*server, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for i := 0; i < len(srvs); {
		var h struct {
			Status  string
			Cluster struct {
				Routes int
				Nodes  int
			}
		}
		b, err := httpGet("http://" + srvs[i].debug + "/healthz")
		if err == nil && json.Unmarshal(b, &h) == nil && h.Status == "ok" && h.Cluster.Routes == len(srvs)-1 && h.Cluster.Nodes == len(srvs) {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %d of %d did not join the cluster within %v: %s", i+1, len(srvs), limit, bytes.TrimSpace(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// waitInterest waits until every node receives every topic of want from
// NATS (wsd_broker_topics), and then until the first node, asked for each
// topic's subscribers across the cluster, counts want[topic][node] on
// every node: the other nodes' subscriptions reached it before their
// answers did, so from then on its publishes reach them.
func waitInterest(srvs []*server, want map[string]map[string]int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for i := 0; i < len(srvs); {
		m := scrape(srvs[i].debug)
		if int(m["wsd_broker_topics"]) >= len(want) {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %d subscribes to %v of %d topics in NATS after %v", i+1, m["wsd_broker_topics"], len(want), limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	topics := slices.Sorted(func(yield func(string) bool) {
		for t := range want {
			if !yield(t) {
				return
			}
		}
	})
	for _, topic := range topics {
		for {
			var got struct {
				Nodes   map[string]int
				Missing []string
			}
			b, err := httpGet("http://" + srvs[0].debug + "/api/topics/" + topic + "?scope=cluster")
			if err == nil && json.Unmarshal(b, &got) == nil && len(got.Missing) == 0 && equalCounts(got.Nodes, want[topic]) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the publishing node does not see every node's %s subscribers after %v: %s", topic, limit, bytes.TrimSpace(b))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func equalCounts(got, want map[string]int) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// publishSeq publishes count messages to topic through wsd's HTTP API at
// url, rate per second, each a binary loadgen.BroadcastPayload of size
// bytes numbered from 1 (data_base64), waiting for each answer. It stops
// at the first failed call: the messages after it would count as lost.
func publishSeq(url, topic string, count uint64, rate float64, size int) (st PublishStats) {
	client := http.Client{Timeout: 10 * time.Second}
	// Open the client's connection first: the first message's latency
	// would count the TCP handshake.
	if resp, err := client.Get(strings.TrimSuffix(url, "/api/publish") + "/healthz"); err == nil {
		resp.Body.Close()
	}
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	payload := make([]byte, 0, size)
	for seq := uint64(1); seq <= count; seq++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		payload = loadgen.BroadcastPayload(payload, seq, size)
		body, _ := json.Marshal(map[string]string{"topic": topic, "data_base64": base64.StdEncoding.EncodeToString(payload)})
		st.Sent = seq
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err == nil {
			b := new(bytes.Buffer)
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b.Bytes()))
			}
		}
		if err != nil {
			st.Errors++
			st.FirstErr = fmt.Sprintf("publish %d of %d: %v", seq, count, err)
			return st
		}
	}
	return st
}

// judgeCluster applies the cluster scenario's checks to r.
func judgeCluster(r *ClusterRun) {
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	defer func() { r.OK = len(r.Failures) == 0 }()
	if len(r.Failures) > 0 {
		return // it stopped before measuring
	}
	for _, p := range []struct {
		topic string
		st    PublishStats
	}{{"probe", r.Probe}, {"news", r.News}} {
		if p.st.Errors > 0 {
			fail("%s: %d publish API calls failed: %s", p.topic, p.st.Errors, p.st.FirstErr)
		}
	}
	if r.Lost > 0 || r.Reordered > 0 {
		fail("%s messages lost, %s reordered", thousands(int(r.Lost)), thousands(int(r.Reordered)))
	}
	if r.Closed > 0 {
		fail("the nodes closed %d connections", r.Closed)
	}
	var want uint64
	for _, nd := range r.NodeList {
		want += uint64(nd.Conns) * r.News.Sent
		if nd.SlowConsumer > 0 || nd.Dropped > 0 || nd.Overloaded > 0 {
			fail("node %s: %.0f NATS slow-consumer losses, %.0f frames dropped for slow consumers, %.0f publishes skipped by loops behind", nd.Name, nd.SlowConsumer, nd.Dropped, nd.Overloaded)
		}
		if nd.ProbeFrames != uint64(r.ProbeConns)*r.Probe.Sent {
			fail("node %s: %d probe frames, want %d", nd.Name, nd.ProbeFrames, uint64(r.ProbeConns)*r.Probe.Sent)
		}
	}
	if r.Frames != want {
		fail("%s news frames delivered, want %s", thousands(int(r.Frames)), thousands(int(want)))
	}
}

// perNodeConns renders the connections of each node, "14,286 × 7".
func perNodeConns(nodes []ClusterNode) string {
	counts := map[int]int{}
	var order []int
	for _, nd := range nodes {
		if counts[nd.Conns] == 0 {
			order = append(order, nd.Conns)
		}
		counts[nd.Conns]++
	}
	parts := make([]string, len(order))
	for i, c := range order {
		parts[i] = thousands(c) + " × " + strconv.Itoa(counts[c])
	}
	return strings.Join(parts, " + ")
}
