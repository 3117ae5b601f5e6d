package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// soakReport renders a soak run as markdown, with the chart files.
func soakReport(meta map[string]any, r SoakRun, charts []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %v (%v CPUs, Linux %v, %v); server pinned to CPU %q, load generators to CPU %q; `%v` (took %v).\n\n",
		meta["date"], meta["cpu"], meta["cpus"], meta["kernel"], meta["go"], meta["server_cpu"], meta["client_cpu"], meta["command"], meta["took"])
	fmt.Fprintf(&b, "### soak: %s connections for %s: %s\n\n", thousands(r.Conns), seconds(r.DurationS), verdict(r.OK))
	fmt.Fprintf(&b, "%s well-behaved clients in %d rooms of %d, %d abusive clients (%d load-generator processes); "+
		"wsd %v: `%s`. CPU over the run, in shares of one core: wsd %.0f%%, load generators %.0f%%, other processes on the machine %.0f%%.\n\n",
		thousands(r.Good), r.Rooms, r.RoomSize, r.Abusers, r.Workers, meta["wsd"], strings.Join(r.ServerCmd, " "), 100*r.ServerCPU, 100*r.ClientCPU, 100*r.OtherCPU)
	fmt.Fprintf(&b, "Samples once a second. Goroutines are judged after the first %.0f%% of the run (%s); memory after %s: that, and at least one whole abuse cycle, "+
		"since the abusers' memory only reaches its steady level once each has been through every abuse. Judged: memory, the median of each %s within ±%.0f%% of the median of the judged samples "+
		"(each second's sample also holds the buffers of the abusers at their caps just then, and the garbage of the current GC cycle: its range is shown); goroutines, every sample within ±%.0f%% or ±%d. "+
		"The Go heap is read after two forced collections, so that sync.Pool contents (gnet's buffers of connections closed since the last sample) are not counted as held.\n\n",
		100*r.WarmupS/max(r.DurationS, 1), seconds(r.WarmupS), seconds(r.MemWarmS), seconds(soakMemWindow.Seconds()), 100*r.Tolerance, 100*r.Tolerance, soakGoroutineAt)
	if len(r.Failures) > 0 {
		b.WriteString("Failed checks:\n\n")
		for _, f := range r.Failures {
			b.WriteString("- " + f + "\n")
		}
		b.WriteString("\n")
	}

	b.WriteString("| check | result | |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| messages lost / reordered | %s / %s of %s received | %s |\n", thousands(int(r.Lost)), thousands(int(r.Reordered)), thousands(int(r.Messages)), okIf(r.Lost == 0 && r.Reordered == 0))
	fmt.Fprintf(&b, "| unexpected messages, error answers | %d, %d | %s |\n", r.Unexpected, r.Errors, okIf(r.Unexpected == 0 && r.Errors == 0))
	fmt.Fprintf(&b, "| room publishes answered | %s of %s | %s |\n", thousands(int(r.Acks)), thousands(int(r.Published)), okIf(r.Acks == r.Published))
	fmt.Fprintf(&b, "| well-behaved connections closed by the server | %d | %s |\n", r.Closed, okIf(r.Closed == 0))
	fmt.Fprintf(&b, "| server RSS after %s | %s | %s |\n", seconds(r.MemWarmS), flatCell(r.RSS, mib), flatOK(r.RSS))
	fmt.Fprintf(&b, "| Go heap after two GCs, after %s | %s | %s |\n", seconds(r.MemWarmS), flatCell(r.Heap, mib), flatOK(r.Heap))
	fmt.Fprintf(&b, "| goroutines after %s | %s | %s |\n", seconds(r.WarmupS), flatCell(r.Goroutines, count), flatOK(r.Goroutines))
	var attempts, unexpected uint64
	for _, row := range r.AbuseRows {
		attempts += row.Count
		if !row.Expected {
			unexpected += row.Count
		}
	}
	fmt.Fprintf(&b, "| abusive attempts with an unexpected outcome | %d of %s | %s |\n\n", unexpected, thousands(int(attempts)), okIf(unexpected == 0))

	fmt.Fprintf(&b, "Well-behaved clients: %s room publishes; %s messages received, publish to delivery p50 %.1f ms, p99 %.1f ms, max %.0f ms; lost: %d room, %d news, %d bulk.\n\n",
		thousands(int(r.Published)), thousands(int(r.Messages)), r.P50ms, r.P99ms, r.MaxMs, r.LostBy[0], r.LostBy[1], r.LostBy[2])
	b.WriteString("The publish API's answers (news reaches every well-behaved client; bulk one in 1,500 of them and the non-reading abusers):\n\n")
	b.WriteString("| topic | publishes | answered 202 (pending) | deliveries dropped (slow consumer) | loops that skipped one (overloaded) | failed calls |\n|---|---|---|---|---|---|\n")
	for _, p := range []struct {
		topic string
		st    PublishStats
	}{{"news", r.News}, {"bulk", r.Bulk}} {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d |\n", p.topic, thousands(int(p.st.Sent)), thousands(int(p.st.Pending)),
			thousands(int(p.st.Dropped)), thousands(int(p.st.Overloaded)), p.st.Errors)
	}
	fmt.Fprintf(&b, "\nThe server skipped %s broadcast frames for slow consumers in all (`wsd_dropped_total`).", thousands(int(r.Dropped)))
	if r.Unread > 0 {
		fmt.Fprintf(&b, " %d readings could not be taken (the admin listener did not answer within 5 s); they are left out.", r.Unread)
	}
	b.WriteString("\n\n")

	b.WriteString("Abusive clients, as they saw it (time: from the abuse to the outcome; a reset or an EOF is the server ending the connection when the client could not read a close frame):\n\n")
	b.WriteString("| abuse | outcome | attempts | median | max | |\n|---|---|---|---|---|---|\n")
	for _, row := range r.AbuseRows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", row.Case, row.Outcome, thousands(int(row.Count)), ms(row.MedianMs), ms(row.MaxMs), okIf(row.Expected))
	}
	b.WriteString("\n")
	if len(r.AbuseErrors) > 0 {
		b.WriteString("First error of each abuse that could not connect or upgrade:\n\n")
		names := make([]string, 0, len(r.AbuseErrors))
		for name := range r.AbuseErrors {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fmt.Fprintf(&b, "- %s: %s\n", name, r.AbuseErrors[name])
		}
		b.WriteString("\n")
	}
	if len(r.ServerCloses) > 0 {
		b.WriteString("Server, `wsd_closes_total` over the run: " + series(r.ServerCloses) + ".")
		if len(r.ServerLimits) > 0 {
			b.WriteString(" `wsd_closed_total`: " + series(r.ServerLimits) + ".")
		} else {
			b.WriteString(" (This wsd has no `wsd_closed_total{reason}`.)")
		}
		b.WriteString("\n\n")
	}
	for _, f := range charts {
		fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(f, ".png"), f)
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "passed"
	}
	return "FAILED"
}

func okIf(ok bool) string {
	if ok {
		return "ok"
	}
	return "**failed**"
}

func flatOK(f Flatness) string {
	if !f.Judged {
		return "not judged"
	}
	return okIf(f.OK)
}

// flatCell describes a judged series: its range, median and deviations.
func flatCell(f Flatness, unit func(float64) string) string {
	if !f.Judged {
		return fmt.Sprintf("the run is too short: fewer than %d samples after the warm-up", minJudged)
	}
	if f.Window > 0 {
		return fmt.Sprintf("each %.0f s: median %+.1f%% to %+.1f%% of %s (allowed ±%s); each second: %s to %s (%+.1f%% / %+.1f%%); trend %+.2f%%/min",
			f.Window, 100*f.WinLo, 100*f.WinHi, unit(f.Median), unit(f.Slack), unit(f.Min), unit(f.Max), 100*f.Lo, 100*f.Hi, 100*f.Trend)
	}
	return fmt.Sprintf("%s to %s, median %s (%+.1f%% / %+.1f%%, allowed ±%s), trend %+.2f%%/min",
		unit(f.Min), unit(f.Max), unit(f.Median), 100*f.Lo, 100*f.Hi, unit(f.Slack), 100*f.Trend)
}

func ms(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 1000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func seconds(s float64) string {
	if s >= 120 {
		return fmt.Sprintf("%.0f min", s/60)
	}
	return fmt.Sprintf("%.0f s", s)
}

// thousands writes n with thousands separators.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// series writes a label -> count map as "a: 1, b: 2", by label.
func series(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %s", k, thousands(int(m[k])))
	}
	return strings.Join(parts, ", ")
}

// soakCharts draws the soak's charts into dir and returns their names.
func soakCharts(r SoakRun, dir string) ([]string, error) {
	if len(r.Samples) == 0 {
		return nil, nil
	}
	minutes := func(get func(SoakSample) float64) plotter.XYs { // a negative value: not read
		xy := make(plotter.XYs, 0, len(r.Samples))
		for _, s := range r.Samples {
			if v := get(s); v >= 0 {
				xy = append(xy, plotter.XY{X: s.T / 60, Y: v})
			}
		}
		return xy
	}
	mibOf := func(v int64, read bool) float64 {
		if !read {
			return -1
		}
		return float64(v) / (1 << 20)
	}
	type line struct {
		name string
		xy   plotter.XYs
		band *Flatness
	}
	type chart struct {
		file, title, ylabel string
		warm                float64
		lines               []line
	}
	toMiB := func(f Flatness) *Flatness {
		f.Median, f.Slack = f.Median/(1<<20), f.Slack/(1<<20)
		return &f
	}
	abuse := make([]line, 0, loadgen.NumAbuses)
	for _, kind := range loadgen.AbuseNames {
		abuse = append(abuse, line{name: kind, xy: minutes(func(s SoakSample) float64 {
			var n uint64
			for k, v := range s.Abuse {
				if strings.HasPrefix(k, kind+" ") {
					n += v
				}
			}
			return float64(n)
		})})
	}
	charts := []chart{
		{"soak-memory.png", "wsd memory under the soak", "MiB", r.MemWarmS / 60, []line{
			{"RSS", minutes(func(s SoakSample) float64 { return mibOf(s.RSS, s.RSS > 0) }), toMiB(r.RSS)},
			{"Go heap after two GCs", minutes(func(s SoakSample) float64 { return mibOf(s.Heap, s.Heap >= 0) }), toMiB(r.Heap)},
			{"unsent bytes (wsd_unsent_bytes)", minutes(func(s SoakSample) float64 { return mibOf(s.Unsent, s.Unsent >= 0) }), nil},
		}},
		{"soak-goroutines.png", "wsd goroutines under the soak", "goroutines", r.WarmupS / 60, []line{
			{"goroutines", minutes(func(s SoakSample) float64 { return float64(s.Goroutines) }), &r.Goroutines},
		}},
		{"soak-conns.png", "wsd open connections under the soak", "connections", 0, []line{
			{"connections", minutes(func(s SoakSample) float64 { return float64(s.Conns) }), nil},
		}},
		{"soak-cpu.png", "CPU use during the soak", "% of one core", 0, []line{
			{"wsd", minutes(func(s SoakSample) float64 { return 100 * s.CPU }), nil},
			{"load generators", minutes(func(s SoakSample) float64 { return 100 * s.ClientCPU }), nil},
			{"other processes", minutes(func(s SoakSample) float64 { return 100 * s.OtherCPU }), nil},
		}},
		{"soak-abuse.png", "Abusive attempts ended, by abuse (cumulative)", "attempts", 0, abuse},
	}
	var files []string
	for _, c := range charts {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = "minutes"
		p.Y.Label.Text = c.ylabel
		p.Legend.Top = true
		p.Legend.Left = true
		p.Y.Min = 0
		ymax := 0.0
		for i, l := range c.lines {
			pl, err := plotter.NewLine(l.xy)
			if err != nil {
				return files, err
			}
			pl.Color = palette[i%len(palette)]
			pl.Width = vg.Points(1.2)
			p.Add(pl)
			p.Legend.Add(l.name, pl)
			for _, v := range l.xy {
				ymax = max(ymax, v.Y)
			}
			if l.band != nil && l.band.Judged {
				for _, y := range []float64{l.band.Median - l.band.Slack, l.band.Median + l.band.Slack} {
					bl, _ := plotter.NewLine(plotter.XYs{{X: c.warm, Y: y}, {X: l.xy[len(l.xy)-1].X, Y: y}})
					bl.Color = pl.Color
					bl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
					bl.Width = vg.Points(0.6)
					p.Add(bl)
					ymax = max(ymax, y)
				}
			}
		}
		if c.warm > 0 && c.warm < c.lines[0].xy[len(c.lines[0].xy)-1].X {
			wl, _ := plotter.NewLine(plotter.XYs{{X: c.warm, Y: 0}, {X: c.warm, Y: ymax * 1.05}})
			wl.Color = color.Gray{Y: 0x90}
			wl.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
			p.Add(wl)
			p.Legend.Add("end of warm-up (dashed bands: allowed range)", wl)
		}
		p.Y.Max = ymax * 1.35 // room for the legend above the lines
		p.Legend.ThumbnailWidth = vg.Points(20)
		p.Legend.TextStyle.Font.Size = vg.Points(9)
		p.Add(plotter.NewGrid())
		if err := p.Save(8*vg.Inch, 4*vg.Inch, filepath.Join(dir, c.file)); err != nil {
			return files, err
		}
		files = append(files, c.file)
	}
	return files, nil
}
