package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHistoryScenario runs the quick history scenario against a wsd built
// from the working tree: every resuming client gets exactly what it missed,
// and the report has every figure.
func TestHistoryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs wsd")
	}
	dir := t.TempDir()
	if err := run([]string{"-scenarios", "history", "-history-quick", "-server-cpu", "", "-out", dir}); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "history.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### history: passed", "| off |", "| on |", "B of heap per message", "50 got every missed message once"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("history.md lacks %q:\n%s", want, md)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "history.json")); err != nil {
		t.Error(err)
	}
}

// TestJudgeHistory: a client that missed a message, a lost frame or a
// missing figure fails the run.
func TestJudgeHistory(t *testing.T) {
	hp := historyPlan{resumers: 10, missed: 5}
	good := func() HistoryRun {
		return HistoryRun{
			Cost:   []HistoryCost{{Subscribers: 3, Published: 4, Frames: 12}, {History: true, Subscribers: 3, Published: 4, Frames: 12}},
			Memory: HistoryMemory{Messages: 100, HistoryBytes: 1000},
			Resume: HistoryResume{Clients: 10, Recovered: 10, Complete: 10},
		}
	}
	r := good()
	judgeHistory(&r, hp)
	if !r.OK {
		t.Fatalf("a clean run failed: %v", r.Failures)
	}
	for _, tc := range []struct {
		want  string
		spoil func(r *HistoryRun)
	}{
		{"history true: 11 frames delivered, want 12", func(r *HistoryRun) { r.Cost[1].Frames = 11 }},
		{"1 publish-cost runs, want 2", func(r *HistoryRun) { r.Cost = r.Cost[:1] }},
		{"no memory figure", func(r *HistoryRun) { r.Memory.HistoryBytes = -1 }},
		{"resume: 10 of 10 clients recovered, 9 complete: offset 7, want 6", func(r *HistoryRun) { r.Resume.Complete, r.Resume.FirstErr = 9, "offset 7, want 6" }},
		{"resume: 8 of 10 clients recovered", func(r *HistoryRun) { r.Resume.Recovered = 8 }},
	} {
		r := good()
		tc.spoil(&r)
		judgeHistory(&r, hp)
		if r.OK || !strings.Contains(strings.Join(r.Failures, "\n"), tc.want) {
			t.Errorf("ok %v, failures %q, want one about %q", r.OK, r.Failures, tc.want)
		}
	}
}
