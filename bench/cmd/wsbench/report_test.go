package main

import (
	"strings"
	"testing"
)

func TestReportCases(t *testing.T) {
	runs := []Run{
		// Older results have no depth: they are ping-pong, the same case
		// as depth 1.
		{Server: "wsd", Scenario: "echo", Conns: 1000, Size: 32, Round: 1, OK: true, CPUPerOpUs: 10},
		{Server: "wsd", Scenario: "echo", Conns: 1000, Size: 32, Depth: 1, Round: 2, OK: true, CPUPerOpUs: 20},
		{Server: "wsd", Scenario: "echo", Conns: 1000, Size: 32, Depth: 16, Round: 1, OK: true, CPUPerOpUs: 1.5},
		{Server: "gws", Scenario: "echo", Conns: 1000, Size: 32, Depth: 16, Round: 1, OK: false, Err: "closed"},
		{Server: "wsd", Scenario: "broadcast", Conns: 1000, Size: 32, Target: 20000, Round: 1, OK: true, CPUPerOpUs: 16},
	}
	cases := casesOf(runs, "echo")
	if len(cases) != 2 || cases[0].depth != 1 || cases[1].depth != 16 {
		t.Fatalf("echo cases %+v, want depth 1 then 16", cases)
	}
	if got := len(runsOf(runs, "wsd", "echo", cases[0])); got != 2 {
		t.Fatalf("%d wsd runs at depth 1, want 2 (with the one without a depth)", got)
	}
	md := report(map[string]any{}, runs, []string{"wsd", "gws"})
	for _, want := range []string{
		"| 1000 | 32 B | 1 in flight | 15.0 (10.0-20.0) |", // median and spread of the two rounds
		"| 1000 | 32 B | 16 in flight | 1.50 | failed |",
		"| 1000 | 32 B | 20k frames/s | 16.0 |",
		"- gws echo n=1000 size=32 load 16 in flight round 1: closed",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
