package main

import (
	"math"
	"strings"
	"testing"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// series returns n samples a second apart of f(t).
func testSeries(n int, f func(t float64) float64) (ts, vals []float64) {
	for i := range n {
		t := float64(i)
		ts, vals = append(ts, t), append(vals, f(t))
	}
	return ts, vals
}

func TestFlatness(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      func(t float64) float64
		warmup float64
		floor  float64
		window float64
		ok     bool
	}{
		{"flat with noise", func(t float64) float64 { return 100 + 3*math.Sin(t) }, 120, 0, 0, true},
		{"warm-up ramp ignored", func(t float64) float64 { return 100 * math.Min(1, t/100) }, 120, 0, 0, true},
		{"slow leak", func(t float64) float64 { return 100 + t/20 }, 120, 0, 0, false}, // +24% over the run
		{"one spike", func(t float64) float64 {
			if t == 400 {
				return 110
			}
			return 100
		}, 120, 0, 0, false},
		{"a dip counts too", func(t float64) float64 {
			if t == 300 {
				return 90
			}
			return 100
		}, 120, 0, 0, false},
		{"small counts: the floor", func(t float64) float64 { return 14 + 3*float64(int(t)%50/49) }, 120, 5, 0, true},
		{"windows: one spike", func(t float64) float64 {
			if t == 400 {
				return 110
			}
			return 100
		}, 120, 0, 60, true},
		{"windows: swings each second", func(t float64) float64 { return 100 + 40*float64(int(t)%3-1) }, 120, 0, 60, true},
		{"windows: slow leak", func(t float64) float64 { return 100 + t/20 }, 120, 0, 60, false},
		{"windows: a step", func(t float64) float64 { return 100 + 10*float64(int(t)/400) }, 120, 0, 60, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, vals := testSeries(600, tc.f)
			f := flatness(ts, vals, tc.warmup, 0.05, tc.floor, tc.window)
			if !f.Judged || f.OK != tc.ok {
				t.Fatalf("%+v, want ok=%v", f, tc.ok)
			}
		})
	}
	ts, vals := testSeries(600, func(t float64) float64 { return 100 + t/20 })
	f := flatness(ts, vals, 120, 0.05, 0, 0)
	if f.Min != 106 || f.Max != 100+599.0/20 || math.Abs(f.Trend-0.05*60/f.Median) > 1e-9 {
		t.Fatalf("leak: %+v", f)
	}
	if f := flatness(ts[:125], vals[:125], 120, 0.05, 0, 60); f.Judged || !f.OK {
		t.Fatalf("5 samples after the warm-up: %+v, want not judged", f)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 14
wsd_connections 15000
wsd_closes_total{code="1002"} 32
wsd_closes_total{code="1009"} 40
wsd_closed_total{reason="write_timeout"} 7
wsd_closed_total{reason="backpressure"} 3
`
	m1 := parseMetrics([]byte(text))
	if m1["go_goroutines"] != 14 || m1["wsd_connections"] != 15000 || m1[`wsd_closes_total{code="1002"}`] != 32 {
		t.Fatalf("%v", m1)
	}
	m0 := map[string]float64{`wsd_closes_total{code="1002"}`: 30, `wsd_closes_total{code="1009"}`: 40}
	d := delta(m0, m1, "wsd_closes_total", "code")
	if len(d) != 1 || d["1002"] != 2 {
		t.Fatalf("closes %v, want 1002: 2 alone", d)
	}
	if d := delta(m0, m1, "wsd_closed_total", "reason"); d["write_timeout"] != 7 || d["backpressure"] != 3 {
		t.Fatalf("limits %v", d)
	}
}

func TestJudge(t *testing.T) {
	good := func() SoakRun {
		r := SoakRun{Tolerance: 0.05, WarmupS: 120, MemWarmS: 120, Drained: true}
		r.Published, r.Acks = 10, 10
		for i := range 600 {
			r.Samples = append(r.Samples, SoakSample{T: float64(i), RSS: 100 << 20, Heap: 50 << 20, Goroutines: 14})
		}
		r.AbuseRows = []AbuseRow{{Case: "flood", Outcome: "reset", Count: 3, Expected: true}}
		return r
	}
	r := good()
	judge(&r)
	if len(r.Failures) != 0 {
		t.Fatalf("a clean run failed: %v", r.Failures)
	}
	// Memory is judged by the minute: one sample far off is not a leak.
	r = good()
	r.Samples[500].Heap, r.Samples[300].RSS = 60<<20, 200<<20
	if judge(&r); len(r.Failures) != 0 {
		t.Fatalf("one sample off: %v", r.Failures)
	}
	// Readings that could not be taken are left out, not taken for zeros.
	r = good()
	for i := 200; i < 210; i++ {
		r.Samples[i].Heap, r.Samples[i].Goroutines, r.Samples[i].RSS = -1, -1, 0
	}
	judge(&r)
	if len(r.Failures) != 0 || r.Unread != 30 {
		t.Fatalf("unread samples: failures %v, %d unread, want none and 30", r.Failures, r.Unread)
	}
	for _, tc := range []struct {
		want  string
		spoil func(r *SoakRun)
	}{
		{"1 messages lost (room 0, news 1, bulk 0)", func(r *SoakRun) { r.Lost, r.LostBy[1] = 1, 1 }},
		{"2 reordered", func(r *SoakRun) { r.Reordered = 2 }},
		{"closed 1 well-behaved", func(r *SoakRun) { r.Closed = 1 }},
		{"10 room publishes, 9 answered", func(r *SoakRun) { r.Acks = 9 }},
		{"Go heap not flat", func(r *SoakRun) { // judged by the minute: one sample is not enough, a step is
			for i := 400; i < 600; i++ {
				r.Samples[i].Heap = 44 << 20
			}
		}},
		{"server RSS not flat", func(r *SoakRun) {
			for i := range r.Samples {
				r.Samples[i].RSS += int64(i) << 15 // 32 KiB a second
			}
		}},
		{"goroutines not flat", func(r *SoakRun) {
			for i := 300; i < 600; i++ {
				r.Samples[i].Goroutines = 14 + i/10
			}
		}},
		{"publish API calls to bulk failed: 503", func(r *SoakRun) { r.Bulk.Errors, r.Bulk.FirstErr = 3, "503 Service Unavailable" }},
		{"flood: 1 × timeout", func(r *SoakRun) {
			r.AbuseRows = append(r.AbuseRows, AbuseRow{Case: "flood", Outcome: "timeout", Count: 1})
		}},
	} {
		r := good()
		tc.spoil(&r)
		judge(&r)
		if !strings.Contains(strings.Join(r.Failures, "\n"), tc.want) {
			t.Errorf("failures %q, want one about %q", r.Failures, tc.want)
		}
	}
}

func TestAbuseRowsOrder(t *testing.T) {
	counts := map[string]map[string]uint64{
		"churn/fin":      {"ok": 5},
		"flood":          {"reset": 2, "timeout": 1},
		"garbage/utf8":   {"close 1007": 4},
		"garbage/opcode": {"close 1002": 4},
	}
	h := new(loadgen.Hist)
	h.Record(1500000) // 1.5 ms
	rows := abuseRows(counts, map[string]map[string]*loadgen.Hist{"flood": {"reset": h}})
	var got []string
	for _, r := range rows {
		got = append(got, r.Case+" "+r.Outcome)
	}
	want := "flood reset,flood timeout,garbage/opcode close 1002,garbage/utf8 close 1007,churn/fin ok"
	if strings.Join(got, ",") != want {
		t.Fatalf("rows %v, want %s", got, want)
	}
	if !rows[0].Expected || rows[1].Expected || rows[0].MedianMs < 1.4 || rows[0].MedianMs > 1.6 {
		t.Fatalf("rows %+v", rows[:2])
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
