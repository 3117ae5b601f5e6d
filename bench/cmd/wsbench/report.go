package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// machineFacts describes where and how the results were measured.
func machineFacts(p *plan, took time.Duration, args []string) map[string]any {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return map[string]any{
		"cpu":        model,
		"cpus":       runtime.NumCPU(),
		"kernel":     strings.TrimSpace(string(kernel)),
		"go":         runtime.Version(),
		"server_cpu": p.serverCPU,
		"client_cpu": p.clientCPU,
		"rounds":     p.rounds,
		"command":    strings.Join(append([]string{"wsbench"}, args[1:]...), " "),
		"date":       time.Now().UTC().Format("2006-01-02 15:04 MST"),
		"took":       took.Round(time.Second).String(),
	}
}

// metric is one column of figures a table shows.
type metric struct {
	title  string
	unit   string
	get    func(Run) float64
	better string // "lower" or "higher"
}

var tables = map[string][]metric{
	"connect": {
		{"server CPU per handshake", "µs", func(r Run) float64 { return r.CPUPerOpUs }, "lower"},
		{"handshakes per second", "/s", func(r Run) float64 { return r.HandshakesPerS }, "higher"},
	},
	"idle": {
		{"server RSS per idle connection", "B", func(r Run) float64 { return r.RSSPerConn }, "lower"},
		{"server Go heap per idle connection", "B", func(r Run) float64 { return r.HeapPerConn }, "lower"},
		{"kernel memory per server socket (estimate)", "B", func(r Run) float64 { return r.KernelPerConn }, "lower"},
	},
	"echo": {
		{"echoes per second", "/s", func(r Run) float64 { return r.RatePerS }, "higher"},
		{"server CPU per echo", "µs", func(r Run) float64 { return r.CPUPerOpUs }, "lower"},
		{"p99 round trip", "µs", func(r Run) float64 { return r.P99us }, "lower"},
	},
	"broadcast": {
		{"server CPU per delivered frame", "µs", func(r Run) float64 { return r.CPUPerOpUs }, "lower"},
		{"delivered frames per second", "/s", func(r Run) float64 { return r.RatePerS }, "higher"},
		{"p99 fan-out latency", "µs", func(r Run) float64 { return r.P99us }, "lower"},
		{"max fan-out latency", "µs", func(r Run) float64 { return r.MaxUs }, "lower"},
	},
}

// report renders the runs as markdown: per scenario and metric, a table of
// medians with the spread (min-max over rounds).
func report(meta map[string]any, runs []Run, servers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %v (%v CPUs, Linux %v, %v); server pinned to CPU %q, load generators to CPU %q; %v round(s), medians with min-max; `%v` (took %v).\n\n",
		meta["date"], meta["cpu"], meta["cpus"], meta["kernel"], meta["go"], meta["server_cpu"], meta["client_cpu"], meta["rounds"], meta["command"], meta["took"])
	for _, scenario := range []string{"connect", "idle", "echo", "broadcast"} {
		cases := casesOf(runs, scenario)
		if len(cases) == 0 {
			continue
		}
		for _, m := range tables[scenario] {
			if !measured(runs, scenario, m) {
				continue // e.g. kernel memory, read only by newer runs
			}
			fmt.Fprintf(&b, "### %s: %s (%s, %s is better)\n\n", scenario, m.title, m.unit, m.better)
			b.WriteString("| connections | size | load |")
			for _, s := range servers {
				fmt.Fprintf(&b, " %s |", s)
			}
			b.WriteString("\n|---|---|---|")
			for range servers {
				b.WriteString("---|")
			}
			b.WriteString("\n")
			for _, c := range cases {
				fmt.Fprintf(&b, "| %d | %s | %s |", c.conns, sizeLabel(c.size), loadLabel(scenario, c))
				for _, s := range servers {
					b.WriteString(" " + cell(runsOf(runs, s, scenario, c), m) + " |")
				}
				b.WriteString("\n")
			}
			b.WriteString("\n")
		}
	}
	b.WriteString(failedSection(runs))
	return b.String()
}

// failedSection lists the runs that failed under a heading, or is empty.
func failedSection(runs []Run) string {
	var failed []string
	for _, r := range runs {
		if !r.OK {
			failed = append(failed, fmt.Sprintf("- %s %s n=%d size=%d load %s round %d: %s", label(r), r.Scenario, r.Conns, r.Size, loadLabel(r.Scenario, keyOf(r)), r.Round, r.Err))
		}
	}
	if len(failed) == 0 {
		return ""
	}
	return "### Failed runs\n\n" + strings.Join(failed, "\n") + "\n\n"
}

// caseKey is one case of a scenario: connections, payload size, and the
// broadcast rate aimed at or the echo depth (1 when not set).
type caseKey struct{ conns, size, target, depth int }

func keyOf(r Run) caseKey {
	k := caseKey{r.Conns, r.Size, r.Target, r.Depth}
	if r.Scenario == "echo" && k.depth == 0 {
		k.depth = 1
	}
	return k
}

// loadLabel describes a case's load: the rate aimed at, or the depth.
func loadLabel(scenario string, c caseKey) string {
	switch scenario {
	case "broadcast":
		return num(float64(c.target)) + " frames/s"
	case "echo":
		return fmt.Sprintf("%d in flight", c.depth)
	}
	return "-"
}

func casesOf(runs []Run, scenario string) []caseKey {
	seen := map[caseKey]bool{}
	var out []caseKey
	for _, r := range runs {
		k := keyOf(r)
		if r.Scenario == scenario && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.target != b.target {
			return a.target < b.target
		}
		if a.depth != b.depth {
			return a.depth < b.depth
		}
		if a.conns != b.conns {
			return a.conns < b.conns
		}
		return a.size < b.size
	})
	return out
}

func runsOf(runs []Run, server, scenario string, c caseKey) []Run {
	var out []Run
	for _, r := range runs {
		if label(r) == server && r.Scenario == scenario && keyOf(r) == c {
			out = append(out, r)
		}
	}
	return out
}

func sizeLabel(n int) string {
	switch {
	case n == 0:
		return "-"
	case n >= 1024 && n%1024 == 0:
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// cell is the median and spread of m over the successful runs, or the
// failure count.
func cell(rs []Run, m metric) string {
	var vals []float64
	failed := 0
	for _, r := range rs {
		if r.OK {
			vals = append(vals, m.get(r))
		} else {
			failed++
		}
	}
	if len(vals) == 0 {
		if failed > 0 {
			return "failed"
		}
		return ""
	}
	med, lo, hi := Median(vals)
	s := num(med)
	if len(vals) > 1 {
		s += fmt.Sprintf(" (%s-%s)", num(lo), num(hi))
	}
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	return s
}

// Median returns the median, minimum and maximum of vals.
func Median(vals []float64) (med, lo, hi float64) {
	v := append([]float64(nil), vals...)
	sort.Float64s(v)
	n := len(v)
	med = v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return med, v[0], v[n-1]
}

func num(f float64) string {
	switch {
	case f >= 10000:
		return fmt.Sprintf("%.0fk", f/1000)
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.2f", f)
}

// measured reports whether any successful run of scenario has a value for m.
func measured(runs []Run, scenario string, m metric) bool {
	for _, r := range runs {
		if r.Scenario == scenario && r.OK && m.get(r) != 0 {
			return true
		}
	}
	return false
}
