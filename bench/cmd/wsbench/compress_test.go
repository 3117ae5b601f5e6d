package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCompressDefaults(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		servers string
		sizes   string
		err     string
	}{
		{[]string{}, "wsd,gorilla,gobwas,gws,nbio", "32,1024", ""}, // without -compress nothing changes
		{[]string{"-compress"}, "wsd,gorilla,gws", "1024", ""},
		{[]string{"-compress", "-servers", "wsd,gws", "-sizes", "4096"}, "wsd,gws", "4096", ""},
		{[]string{"-compress", "-servers", "wsd,nbio"}, "", "", "nbio cannot compress"},
		{[]string{"-compress", "-sizes", "32"}, "", "", "below the JSON messages"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		servers := fs.String("servers", "wsd,gorilla,gobwas,gws,nbio", "")
		fs.String("scenarios", "connect,idle,echo,broadcast", "")
		fs.String("conns", "1000,5000,15000", "")
		sizes := fs.String("sizes", "32,1024", "")
		fs.Bool("compress", false, "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := compressDefaults(fs)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || *servers != tc.servers || *sizes != tc.sizes {
			t.Errorf("%v: servers %q sizes %q err %v, want %q %q", tc.args, *servers, *sizes, err, tc.servers, tc.sizes)
		}
	}
}

func TestCompressSpec(t *testing.T) {
	p := &plan{compress: true}
	for _, tc := range []struct {
		name    string
		deflate bool
		want    string // the argument added
	}{
		{"wsd", false, "-compression=off"},
		{"wsd", true, "-compression=on"},
		{"gws", true, "-compress"},
		{"gorilla", false, ""},
	} {
		spec := compressSpec(p, specs[tc.name], tc.deflate)
		args := spec.args("bin", "broadcast", "a", "d")
		base := specs[tc.name].args("bin", "broadcast", "a", "d")
		added := strings.Join(args[len(base):], " ")
		if added != tc.want {
			t.Errorf("%s deflate=%v: added %q, want %q", tc.name, tc.deflate, added, tc.want)
		}
	}
	if a, b := compressSpec(&plan{}, specs["wsd"], true).args("bin", "echo", "a", "d"), specs["wsd"].args("bin", "echo", "a", "d"); !slices.Equal(a, b) {
		t.Errorf("without -compress wsd's arguments changed: %q", a)
	}
}

func TestCompressReport(t *testing.T) {
	run := func(server string, deflate bool, round int, cpu float64) Run {
		return Run{Server: server, Deflate: deflate, Scenario: "broadcast", Conns: 1000, Size: 1024, Target: 20000, Round: round, OK: true, CPUPerOpUs: cpu, WireBytesPerOp: 400}
	}
	runs := []Run{
		run("wsd", false, 1, 7), run("wsd", true, 1, 8), run("wsd", true, 2, 10),
		run("gws", false, 1, 11), run("gws", true, 1, 30), run("gws", true, 2, 36),
		run("gorilla", true, 1, 40),
	}
	labelled := make([]Run, len(runs))
	for i, r := range runs {
		labelled[i] = r
		labelled[i].Server = deflateLabel(r)
	}
	md := compressReport(map[string]any{}, labelled, []string{"wsd", "wsd+deflate", "gws", "gws+deflate", "gorilla+deflate"})
	for _, want := range []string{
		"### broadcast: 1000 connections, 1 KiB, 20k frames/s",
		"| wsd+deflate | 9.00 (8.00-10.0) | 400 (400-400) |",
		"| gws | 11.0 | 400 |",
		"wsd+deflate uses 0.27× the CPU per message of the best compressing peer (gws+deflate, 33.0 µs).",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestCompressRereport: wsbench report rebuilds compress.md and the charts
// from compress.json alone.
func TestCompressRereport(t *testing.T) {
	dir := t.TempDir()
	runs := []Run{
		{Server: "wsd", Deflate: true, Scenario: "broadcast", Conns: 1000, Size: 1024, Target: 20000, Round: 1, OK: true, CPUPerOpUs: 9, WireBytesPerOp: 410, P99us: 5000, RatePerS: 20000},
		{Server: "gws", Deflate: true, Scenario: "broadcast", Conns: 1000, Size: 1024, Target: 20000, Round: 1, OK: true, CPUPerOpUs: 10, WireBytesPerOp: 411, P99us: 6000, RatePerS: 20000},
	}
	if _, err := writeCompress(dir, map[string]any{"rounds": 1}, runs); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "compress.md")); err != nil {
		t.Fatal(err)
	}
	if err := rereport([]string{"-dir", dir}); err != nil {
		t.Fatalf("wsbench report: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "compress.md"))
	if err != nil || !strings.Contains(string(md), "0.90× the CPU per message of the best compressing peer (gws+deflate") {
		t.Fatalf("compress.md (%v):\n%s", err, md)
	}
	if _, err := os.Stat(filepath.Join(dir, "compress-broadcast-cpu.png")); err != nil {
		t.Fatal(err)
	}
}
