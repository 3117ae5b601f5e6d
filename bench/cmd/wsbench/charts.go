package main

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// chartSpec is one grouped bar chart: one group per case, one bar per server.
type chartSpec struct {
	file     string
	title    string
	ylabel   string
	scenario string
	filter   func(caseKey) bool
	label    func(caseKey) string
	metric   metric
}

var palette = []color.Color{
	color.RGBA{R: 0x25, G: 0x63, B: 0xeb, A: 0xff}, // wsd first: blue
	color.RGBA{R: 0xf5, G: 0x9e, B: 0x0b, A: 0xff},
	color.RGBA{R: 0x10, G: 0xb9, B: 0x81, A: 0xff},
	color.RGBA{R: 0xef, G: 0x44, B: 0x44, A: 0xff},
	color.RGBA{R: 0x8b, G: 0x5c, B: 0xf6, A: 0xff},
	color.RGBA{R: 0x64, G: 0x74, B: 0x8b, A: 0xff},
}

func chartSpecs() []chartSpec {
	byConns := func(c caseKey) string { return fmt.Sprintf("%d conns", c.conns) }
	byDepth := func(c caseKey) string { return fmt.Sprintf("%d conns, %d in flight", c.conns, c.depth) }
	small := func(c caseKey) bool { return c.size == 32 }
	return []chartSpec{
		{"idle-rss.png", "Server RSS per idle connection", "bytes per connection", "idle", nil, byConns, tables["idle"][0]},
		{"connect-cpu.png", "Server CPU per handshake", "µs per handshake", "connect", nil, byConns, tables["connect"][0]},
		{"echo-cpu.png", "Server CPU per echo (32 B)", "µs per echo", "echo", small, byDepth, tables["echo"][1]},
		{"echo-rate.png", "Echoes per second (32 B)", "echoes per second", "echo", small, byDepth, tables["echo"][0]},
		{"broadcast-cpu.png", "Server CPU per delivered broadcast frame (32 B)", "µs per delivered frame", "broadcast", small,
			func(c caseKey) string { return fmt.Sprintf("%d subs, %s/s", c.conns, num(float64(c.target))) }, tables["broadcast"][0]},
		{"broadcast-rate.png", "Delivered broadcast frames per second (32 B)", "frames per second", "broadcast", small,
			func(c caseKey) string { return fmt.Sprintf("%d subs, %s/s", c.conns, num(float64(c.target))) }, tables["broadcast"][1]},
		{"broadcast-p99.png", "p99 fan-out latency (32 B)", "ms", "broadcast", small,
			func(c caseKey) string { return fmt.Sprintf("%d subs, %s/s", c.conns, num(float64(c.target))) },
			metric{"p99 fan-out latency", "ms", func(r Run) float64 { return r.P99us / 1000 }, "lower"}},
	}
}

// charts draws every chart into dir as PNG and returns the file names.
func charts(runs []Run, servers []string, dir string) ([]string, error) {
	return drawCharts(chartSpecs(), runs, servers, dir)
}

// drawCharts draws the charts of specs into dir as PNG, one bar per server
// (the runs' Server) in each group, and returns the file names.
func drawCharts(specs []chartSpec, runs []Run, servers []string, dir string) ([]string, error) {
	var files []string
	for _, cs := range specs {
		var cases []caseKey
		for _, c := range casesOf(runs, cs.scenario) {
			if cs.filter == nil || cs.filter(c) {
				cases = append(cases, c)
			}
		}
		if len(cases) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = cs.title + " (" + cs.metric.better + " is better, median of rounds)"
		p.Y.Label.Text = cs.ylabel
		p.Legend.Top = true
		p.Legend.Left = true
		width := vg.Points(14)
		for i, s := range servers {
			vals := make(plotter.Values, len(cases))
			for j, c := range cases {
				var ok []float64
				for _, r := range runsOf(runs, s, cs.scenario, c) {
					if r.OK {
						ok = append(ok, cs.metric.get(r))
					}
				}
				if len(ok) > 0 {
					vals[j], _, _ = Median(ok)
				}
			}
			bars, err := plotter.NewBarChart(vals, width)
			if err != nil {
				return files, err
			}
			bars.LineStyle.Width = 0
			bars.Color = barColor(servers, i)
			bars.Offset = width * vg.Length(float64(i)-float64(len(servers)-1)/2)
			p.Add(bars)
			p.Legend.Add(s, bars)
		}
		p.Y.Min = 0
		p.Y.Max *= 1.35 // room for the legend above the bars
		names := make([]string, len(cases))
		for j, c := range cases {
			names[j] = cs.label(c)
		}
		p.NominalX(names...)
		name := cs.file
		if err := p.Save(vg.Length(max(6, len(cases)*len(servers)/3+3))*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}
