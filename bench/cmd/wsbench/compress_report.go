package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// compressMetrics are the columns of the compression report's tables.
var compressMetrics = []metric{
	{"server CPU per message", "µs", func(r Run) float64 { return r.CPUPerOpUs }, "lower"},
	{"bytes on the wire per message", "B", func(r Run) float64 { return r.WireBytesPerOp }, "lower"},
	{"p99 latency", "ms", func(r Run) float64 { return r.P99us / 1000 }, "lower"},
	{"messages per second", "/s", func(r Run) float64 { return r.RatePerS }, "higher"},
}

// compressChartSpecs are the compression report's charts.
func compressChartSpecs() []chartSpec {
	bcast := func(c caseKey) string { return fmt.Sprintf("%d subs, %s/s", c.conns, num(float64(c.target))) }
	echo := func(c caseKey) string { return fmt.Sprintf("%d conns, %d in flight", c.conns, c.depth) }
	return []chartSpec{
		{"compress-broadcast-cpu.png", "Server CPU per delivered frame, JSON, plain and deflate", "µs per delivered frame", "broadcast", nil, bcast, compressMetrics[0]},
		{"compress-broadcast-bytes.png", "Bytes on the wire per delivered frame, JSON", "bytes per frame", "broadcast", nil, bcast, compressMetrics[1]},
		{"compress-broadcast-p99.png", "p99 fan-out latency, JSON, plain and deflate", "ms", "broadcast", nil, bcast, compressMetrics[2]},
		{"compress-echo-cpu.png", "Server CPU per echo, JSON, plain and deflate", "µs per echo", "echo", nil, echo, compressMetrics[0]},
	}
}

// writeCompressReport writes compress.md and the compress-*.png charts
// into dir from runs (plain and deflate, tagged by Run.Deflate).
func writeCompressReport(dir string, meta map[string]any, runs []Run) (string, error) {
	labelled := make([]Run, len(runs))
	var labels []string
	for i, r := range runs {
		labelled[i] = r
		labelled[i].Server = deflateLabel(r)
		if !slices.Contains(labels, labelled[i].Server) {
			labels = append(labels, labelled[i].Server)
		}
	}
	files, err := drawCharts(compressChartSpecs(), labelled, labels, dir)
	if err != nil {
		return "", fmt.Errorf("charts: %w", err)
	}
	md := compressReport(meta, labelled, labels)
	for _, f := range files {
		md += fmt.Sprintf("![%s](%s)\n\n", strings.TrimSuffix(f, ".png"), f)
	}
	return md, os.WriteFile(filepath.Join(dir, "compress.md"), []byte(md), 0o644)
}

// compressReport renders runs whose Server is labelled by deflateLabel:
// for each case, one row per server and mode, and how wsd's CPU per
// message with deflate compares with the best compressing peer's.
func compressReport(meta map[string]any, runs []Run, labels []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %v (%v CPUs, Linux %v, %v); server pinned to CPU %q, load generators to CPU %q; %v round(s), medians with min-max; `%v` (took %v).\n\n",
		meta["date"], meta["cpu"], meta["cpus"], meta["kernel"], meta["go"], meta["server_cpu"], meta["client_cpu"], meta["rounds"], meta["command"], meta["took"])
	b.WriteString("Every message is JSON (market quotes, `loadgen.JSONPayload`). A `+deflate` run negotiates permessage-deflate " +
		"without context takeover and its clients send compressed; the plain runs of the same server run right before it. " +
		"Bytes on the wire: what the clients read from the server per message, frame headers included.\n\n")
	for _, scenario := range []string{"broadcast", "echo"} {
		for _, c := range casesOf(runs, scenario) {
			fmt.Fprintf(&b, "### %s: %d connections, %s, %s\n\n| server |", scenario, c.conns, sizeLabel(c.size), loadLabel(scenario, c))
			for _, m := range compressMetrics {
				fmt.Fprintf(&b, " %s (%s) |", m.title, m.unit)
			}
			b.WriteString("\n|---|" + strings.Repeat("---|", len(compressMetrics)) + "\n")
			for _, l := range labels {
				rs := runsOf(runs, l, scenario, c)
				if len(rs) == 0 {
					continue
				}
				fmt.Fprintf(&b, "| %s |", l)
				for _, m := range compressMetrics {
					b.WriteString(" " + cell(rs, m) + " |")
				}
				b.WriteString("\n")
			}
			b.WriteString("\n" + compareDeflate(runs, labels, scenario, c) + "\n\n")
		}
	}
	b.WriteString(failedSection(runs))
	return b.String()
}

// compareDeflate says how wsd+deflate's median CPU per message compares
// with the lowest of the other +deflate servers' in one case.
func compareDeflate(runs []Run, labels []string, scenario string, c caseKey) string {
	med := func(label string) (float64, bool) {
		var vals []float64
		for _, r := range runsOf(runs, label, scenario, c) {
			if r.OK {
				vals = append(vals, r.CPUPerOpUs)
			}
		}
		if len(vals) == 0 {
			return 0, false
		}
		m, _, _ := Median(vals)
		return m, true
	}
	wsd, ok := med("wsd+deflate")
	if !ok {
		return "wsd+deflate: no successful run."
	}
	best, bestLabel := 0.0, ""
	for _, l := range labels {
		if l == "wsd+deflate" || !strings.HasSuffix(l, "+deflate") {
			continue
		}
		if v, ok := med(l); ok && (bestLabel == "" || v < best) {
			best, bestLabel = v, l
		}
	}
	if bestLabel == "" {
		return "No compressing peer succeeded."
	}
	return fmt.Sprintf("wsd+deflate uses %.2f× the CPU per message of the best compressing peer (%s, %s µs).", wsd/best, bestLabel, num(best))
}
