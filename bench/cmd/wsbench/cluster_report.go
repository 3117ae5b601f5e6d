package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writeClusterReport writes cluster.md and the cluster's charts into dir.
func writeClusterReport(dir string, meta map[string]any, r ClusterRun) (string, error) {
	var files []string
	if len(r.NodeList) > 0 && r.Frames > 0 {
		var err error
		if files, err = clusterCharts(r, dir); err != nil {
			return "", fmt.Errorf("charts: %w", err)
		}
	}
	md := clusterReport(meta, r, files)
	return md, os.WriteFile(filepath.Join(dir, "cluster.md"), []byte(md), 0o644)
}

// rereportCluster rebuilds cluster.md and its charts from cluster.json in
// dir, if there is one, and reports whether there was.
func rereportCluster(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var data struct {
		Machine map[string]any `json:"machine"`
		Cluster ClusterRun     `json:"cluster"`
	}
	if err := json.Unmarshal(b, &data); err != nil {
		return false, fmt.Errorf("cluster.json: %w", err)
	}
	md, err := writeClusterReport(dir, data.Machine, data.Cluster)
	if err == nil {
		fmt.Print(md)
	}
	return true, err
}

// clusterReport renders a cluster run as markdown, with the chart files.
func clusterReport(meta map[string]any, r ClusterRun, charts []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %v (%v CPUs, Linux %v, %v); every node pinned to CPU %q, load generators to CPU %q; `%v` (took %v).\n\n",
		meta["date"], meta["cpu"], meta["cpus"], meta["kernel"], meta["go"], meta["server_cpu"], meta["client_cpu"], meta["command"], meta["took"])
	fmt.Fprintf(&b, "### cluster: %s connections over %d wsd nodes: %s\n\n", thousands(r.Conns), r.Nodes, verdict(r.OK))
	fmt.Fprintf(&b, "%d wsd processes (wsd %v) in push mode, each with an embedded NATS node routed to every other (`%s`, and so on); "+
		"%s news subscribers (%s) and %d probe subscribers per node, held by %d load-generator processes; one publisher through node n1's `POST /api/publish`.\n\n",
		r.Nodes, meta["wsd"], strings.Join(r.ServerCmd, " "), thousands(r.Conns), perNodeConns(r.NodeList), r.ProbeConns, workers(r))
	if len(r.Failures) > 0 {
		b.WriteString("Failed checks:\n\n")
		for _, f := range r.Failures {
			b.WriteString("- " + f + "\n")
		}
		b.WriteString("\n")
	}
	if len(r.NodeList) == 0 || r.Frames == 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "Cluster formed (every node routed to every other) %.1f s after the first start; %s connections opened in %.1f s; the publishing node counted every node's subscribers %.1f s later.\n\n",
		r.FormedS, thousands(r.Connected), r.ConnectS, r.InterestS)

	b.WriteString("| check | result | |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| news frames delivered | %s of %s publishes × %s subscribers | %s |\n", thousands(int(r.Frames)), thousands(int(r.News.Sent)), thousands(r.Conns),
		okIf(r.Frames == r.News.Sent*uint64(r.Conns)))
	fmt.Fprintf(&b, "| lost / reordered (sequence-checked on every connection) | %s / %s | %s |\n", thousands(int(r.Lost)), thousands(int(r.Reordered)), okIf(r.Lost == 0 && r.Reordered == 0))
	fmt.Fprintf(&b, "| connections closed by a node | %d | %s |\n", r.Closed, okIf(r.Closed == 0))
	fmt.Fprintf(&b, "| publish API calls failed | %d | %s |\n\n", r.News.Errors+r.Probe.Errors, okIf(r.News.Errors+r.Probe.Errors == 0))

	fmt.Fprintf(&b, "**Fan-out**: %s publishes of %d B at %.2f a second (aiming at %s frames/s): **%s frames/s delivered** (%s frames in %.1f s, from the first publish to the last frame). "+
		"CPU over the fan-out, in shares of one core: the nodes %.0f%% together, the load generators %.0f%%, other processes on the machine %.0f%%.\n\n",
		thousands(int(r.News.Sent)), r.Size, r.PublishHz, thousands(int(r.Rate)), thousands(int(r.FramesPerS)), thousands(int(r.Frames)), r.RunS, 100*r.ServerCPU, 100*r.ClientCPU, 100*r.OtherCPU)
	fmt.Fprintf(&b, "**The broker hop**: %d probes at %.0f a second to %d idle subscribers per node, the %s news subscribers connected and idle. "+
		"Latency from the publisher's call to the frame's arrival (the publish API, NATS, the frame), same node (n1) against the other nodes (one route further):\n\n",
		r.Probes, r.ProbeRate, r.ProbeConns, thousands(r.Conns))
	b.WriteString("| | same node p50 | other nodes p50 | added | same node p99 | other nodes p99 | added |\n|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| probes, nodes idle | %s | %s | %s | %s | %s | %s |\n", us(r.HopSame.P50us), us(r.HopCross.P50us), added(r.HopSame.P50us, r.HopCross.P50us),
		us(r.HopSame.P99us), us(r.HopCross.P99us), added(r.HopSame.P99us, r.HopCross.P99us))
	fmt.Fprintf(&b, "| news, during the fan-out | %s | %s | %s | %s | %s | %s |\n\n", us(r.FanoutSame.P50us), us(r.FanoutCross.P50us), added(r.FanoutSame.P50us, r.FanoutCross.P50us),
		us(r.FanoutSame.P99us), us(r.FanoutCross.P99us), added(r.FanoutSame.P99us, r.FanoutCross.P99us))
	b.WriteString("During the fan-out the latency is mostly each node's turn on the shared CPU and its place in its own fan-out (the last of a node's subscribers is written to after all the others), not the hop.\n\n")

	b.WriteString("Each node (memory: growth from before the connections, with its NATS node running, to all connected; Go heap after a GC):\n\n")
	b.WriteString("| node | connections | frames | CPU per frame | RSS per conn | heap per conn | hop p50 / p99 | fan-out p50 / p99 | NATS messages in (both phases) |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, nd := range r.NodeList {
		name := nd.Name
		if nd.Publisher {
			name += " (publisher)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f µs | %s B | %s B | %s / %s | %s / %s | %.0f |\n", name, thousands(nd.Conns), thousands(int(nd.Frames)), nd.CPUPerFrameUs(),
			thousands(int(nd.RSSPerConn())), thousands(int(nd.HeapPerConn())), us(nd.Hop.P50us), us(nd.Hop.P99us), us(nd.Fanout.P50us), us(nd.Fanout.P99us), nd.BrokerIn)
	}
	fmt.Fprintf(&b, "\nKernel memory per server socket (estimate, as in the idle scenario: the growth of slab and TCP buffer pages over the connections, halved; other processes' noise included): %s B.\n\n", thousands(int(r.KernelPerConn)))
	b.WriteString(clusterProjection(r))
	for _, f := range charts {
		fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(f, ".png"), f)
	}
	return b.String()
}

func workers(r ClusterRun) int {
	n := len(r.NodeList) // one probe process per node
	for _, nd := range r.NodeList {
		n += nd.Workers
	}
	return n
}

// us renders µs, in ms from 1 ms on.
func us(v float64) string {
	switch {
	case math.Abs(v) >= 1000:
		return ms(v / 1000)
	case v == 0:
		return "-"
	}
	return fmt.Sprintf("%.0f µs", v)
}

// added renders cross-same, signed (histogram buckets are about 3% wide,
// so equal quantiles differ by less than that).
func added(same, cross float64) string {
	d := cross - same
	if math.Abs(d) >= 1000 {
		return fmt.Sprintf("%+.1f ms", d/1000)
	}
	return fmt.Sprintf("%+.0f µs", d)
}

// clusterFigures are the measured figures the projection rests on.
type clusterFigures struct {
	cpuPerFrameUs float64 // the median over the nodes that do not publish
	publisherUs   float64 // the publishing node's, for comparison
	rssPerConn    float64 // the median over the nodes
	kernelPerConn float64
}

func figuresOf(r ClusterRun) clusterFigures {
	var cpu, rss []float64
	var f clusterFigures
	for _, nd := range r.NodeList {
		rss = append(rss, nd.RSSPerConn())
		if nd.Publisher {
			f.publisherUs = nd.CPUPerFrameUs()
		} else {
			cpu = append(cpu, nd.CPUPerFrameUs())
		}
	}
	f.cpuPerFrameUs, _, _ = Median(cpu)
	f.rssPerConn, _, _ = Median(rss)
	f.kernelPerConn = r.KernelPerConn
	return f
}

// clusterProjection projects the run to a million connections over N nodes.
func clusterProjection(r ClusterRun) string {
	f := figuresOf(r)
	var b strings.Builder
	const total = 1000000
	b.WriteString("#### Projection to 1,000,000 connections\n\n")
	fmt.Fprintf(&b, "It rests on this run's figures: **%.2f µs of CPU per delivered frame** (the median of the nodes that do not publish; the publishing node %.2f µs, its publish API and its NATS node's sends to the routes included), "+
		"**%s B of RSS per connection** (median of the nodes) and about **%s B of kernel memory per socket**. "+
		"A publish costs every node one NATS message (its NATS node gets it over one route) whatever its subscribers, so a node's work grows with the frames it writes, not with the number of nodes; "+
		"the publishing node's NATS node sends one copy per other node.\n\n",
		f.cpuPerFrameUs, f.publisherUs, thousands(int(f.rssPerConn)), thousands(int(f.kernelPerConn)))
	b.WriteString("| nodes | connections per node | memory per node (wsd + kernel) | CPU cores per node for one publish a second to everyone | NATS copies per publish |\n|---|---|---|---|---|\n")
	for _, n := range []int{4, 10, 20, int(math.Ceil(total / 15000.0))} {
		per := total / n
		mem := float64(per) * (f.rssPerConn + f.kernelPerConn)
		cores := float64(per) * f.cpuPerFrameUs / 1e6
		fmt.Fprintf(&b, "| %d | %s | %.2f GiB | %.2f | %d |\n", n, thousands(per), mem/(1<<30), cores, n-1)
	}
	fmt.Fprintf(&b, "\nOne publish a second to a million subscribers is a million frames a second: %.1f cores in all at this run's cost per frame, however they are split into nodes. "+
		"The last row is this machine's limit of 15,000 connections per process; with a file limit of a million, memory and cores decide. "+
		"These are figures of a loaded 2-CPU machine, where every node shared one core with the others: pessimistic.\n\n",
		total*f.cpuPerFrameUs/1e6)
	return b.String()
}

// clusterCharts draws the cluster's charts into dir and returns their names.
func clusterCharts(r ClusterRun, dir string) ([]string, error) {
	names := make([]string, len(r.NodeList))
	var cpu, hop50, hop99, fan50, fan99 plotter.Values
	for i, nd := range r.NodeList {
		names[i] = nd.Name
		if nd.Publisher {
			names[i] += " (publisher)"
		}
		cpu = append(cpu, nd.CPUPerFrameUs())
		hop50, hop99 = append(hop50, nd.Hop.P50us/1000), append(hop99, nd.Hop.P99us/1000)
		fan50, fan99 = append(fan50, nd.Fanout.P50us/1000), append(fan99, nd.Fanout.P99us/1000)
	}
	title := fmt.Sprintf(" (%s connections, %d nodes)", thousands(r.Conns), r.Nodes)
	charts := []struct {
		file, title, ylabel string
		series              []plotter.Values
		labels              []string
	}{
		{"cluster-cpu.png", "CPU per delivered frame, each node" + title, "µs per frame", []plotter.Values{cpu}, []string{"CPU per frame"}},
		{"cluster-hop.png", "Probe publish to delivery, nodes idle" + title, "ms", []plotter.Values{hop50, hop99}, []string{"p50", "p99"}},
		{"cluster-fanout.png", "News publish to delivery, during the fan-out" + title, "ms", []plotter.Values{fan50, fan99}, []string{"p50", "p99"}},
	}
	var files []string
	for _, c := range charts {
		p := plot.New()
		p.Title.Text = c.title
		p.Y.Label.Text = c.ylabel
		p.Legend.Top, p.Legend.Left = true, true
		width := vg.Points(12)
		for i, vals := range c.series {
			bars, err := plotter.NewBarChart(vals, width)
			if err != nil {
				return files, err
			}
			bars.LineStyle.Width = 0
			bars.Color = palette[i%len(palette)]
			bars.Offset = width * vg.Length(float64(i)-float64(len(c.series)-1)/2)
			p.Add(bars)
			p.Legend.Add(c.labels[i], bars)
		}
		p.Y.Min = 0
		p.Y.Max *= 1.35
		p.NominalX(names...)
		if err := p.Save(vg.Length(max(6, len(names)*len(c.series)/3+3))*vg.Inch, 4*vg.Inch, filepath.Join(dir, c.file)); err != nil {
			return files, err
		}
		files = append(files, c.file)
	}
	return files, nil
}
