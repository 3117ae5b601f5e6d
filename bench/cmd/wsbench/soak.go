package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// soakPlan is the soak scenario's settings.
type soakPlan struct {
	conns     int
	duration  time.Duration
	abusers   float64 // fraction of the connections
	rate      float64 // frames per second the well-behaved clients get, together
	room      int     // well-behaved clients per room
	tolerance float64 // memory and goroutines: allowed deviation from the median after warm-up
	warmup    float64 // fraction of the run before memory and goroutines are judged
}

// The soak's fixed settings.
const (
	soakMaxMessage  = 64 << 10 // wsd's -max-message-size: oversized messages are one byte more
	soakHandshake   = 10 * time.Second
	soakWriteLimit  = 30 * time.Second // the engine's default WriteTimeout (no daemon flag sets it yet)
	soakBulkSize    = 32 << 10         // bulk messages: what makes a non-reading client's backlog grow
	soakBulkRate    = 20               // bulk messages per second
	soakBulkEvery   = 1500             // one well-behaved client in this many also follows bulk
	soakDrain       = 15 * time.Second
	soakGoroutineAt = 5 // goroutines may move this many either way, whatever the tolerance
	// soakMemWindow is the span whose median memory is judged (flatness):
	// each second's sample also holds the buffers of the abusers that are
	// at their caps just then (1 MiB each, up to 2 in gnet's power-of-two
	// buffers) and whatever garbage Go has not yet collected.
	soakMemWindow = time.Minute
)

// soakFill is the most a non-reading client's server socket takes before
// wsd has a backlog, and the time to fill it and wsd's cap at the bulk
// rate: wsd lets the kernel keep at most 128 KiB unsent per connection
// (TCP_NOTSENT_LOWAT, an eighth of -max-buffered), and the client's
// receive buffer takes about as much more; then wsd's own cap
// (-max-buffered, 1 MiB) fills, and only then do frames wait in wsd. At the
// bulk rate that takes about 2 s. (Before wsd set TCP_NOTSENT_LOWAT, the
// kernel grew the socket's send buffer to tcp_wmem's maximum, 4 MiB, and
// filling took 8 s.)
const soakFill = (256<<10 + 1<<20) / (soakBulkSize * soakBulkRate) * time.Second

// soakCycle is the abusers' schedule: each abuse's slot. A slot is longer
// than the time the server is given to act (soakBounds), so that an
// abuser the server ignores ends "timeout", not "cut".
func soakCycle() loadgen.AbuseCycle {
	var c loadgen.AbuseCycle
	c.Slots[loadgen.Flood] = 15 * time.Second
	c.Slots[loadgen.NonReading] = soakWriteLimit + soakFill + 14*time.Second
	c.Slots[loadgen.Slowloris] = soakHandshake + 5*time.Second
	c.Slots[loadgen.Garbage] = 10 * time.Second
	c.Slots[loadgen.Oversized] = 10 * time.Second
	c.Slots[loadgen.Churn] = 20 * time.Second
	return c
}

// soakBounds is how long the server may take to close each slow abuse.
func soakBounds() [loadgen.NumAbuses]time.Duration {
	var b [loadgen.NumAbuses]time.Duration
	b[loadgen.Flood] = 10 * time.Second
	b[loadgen.NonReading] = soakWriteLimit + soakFill + 9*time.Second // the write timeout counts from wsd's first unsent byte
	b[loadgen.Slowloris] = soakHandshake + 3*time.Second
	return b
}

// SoakRun is the outcome of one soak run.
type SoakRun struct {
	Conns     int      `json:"conns"`
	Good      int      `json:"well_behaved"`
	Abusers   int      `json:"abusers"`
	Workers   int      `json:"workers"`
	Rooms     int      `json:"rooms"`
	RoomSize  int      `json:"room_size"`
	Rate      float64  `json:"rate"`
	DurationS float64  `json:"duration_s"`
	WarmupS   float64  `json:"warmup_s"`     // goroutines are judged after this
	MemWarmS  float64  `json:"mem_warmup_s"` // memory is judged after this: the warm-up, and one whole abuse cycle
	Tolerance float64  `json:"tolerance"`
	ServerCmd []string `json:"server_cmd"`

	OK       bool     `json:"ok"`
	Failures []string `json:"failures,omitempty"`

	Connected int          `json:"connected"`
	News      PublishStats `json:"news"`
	Bulk      PublishStats `json:"bulk"`
	ServerCPU float64      `json:"server_cpu"` // share of one CPU over the run
	ClientCPU float64      `json:"client_cpu"` // the load generators' (workers and this runner), share of one CPU
	OtherCPU  float64      `json:"other_cpu"`  // every other process on the machine, share of one CPU
	loadgen.SoakStats
	Drained bool    `json:"drained"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`

	RSS        Flatness `json:"rss"`
	Heap       Flatness `json:"heap"`
	Goroutines Flatness `json:"goroutines"`

	Unread       int                `json:"unread"` // readings (RSS, heap, goroutines) that could not be taken
	AbuseRows    []AbuseRow         `json:"abuse_rows"`
	AbuseErrors  map[string]string  `json:"abuse_errors,omitempty"` // the first error of each case that had one
	ServerCloses map[string]float64 `json:"server_closes"`          // wsd_closes_total by code, over the run
	ServerLimits map[string]float64 `json:"server_limits"`          // wsd_closed_total by reason, when wsd has it
	Dropped      float64            `json:"dropped"`                // broadcast frames skipped for slow consumers
	Samples      []SoakSample       `json:"samples"`
}

// SoakSample is one reading, once a second.
type SoakSample struct {
	T          float64           `json:"t"`      // seconds since the start
	RSS        int64             `json:"rss"`    // 0: not read
	Heap       int64             `json:"heap"`   // Go heap after two forced GCs; -1: not read (so for the figures of /metrics)
	Unsent     int64             `json:"unsent"` // wsd_unsent_bytes: bytes waiting to be sent (and of partly received messages)
	Goroutines int               `json:"goroutines"`
	Conns      int               `json:"conns"`
	CPU        float64           `json:"cpu"`             // server CPU since the last sample, share of one CPU
	ClientCPU  float64           `json:"client_cpu"`      // the load generators', the same way
	OtherCPU   float64           `json:"other_cpu"`       // every other process's, the same way
	Abuse      map[string]uint64 `json:"abuse,omitempty"` // abusive attempts ended so far, by abuse and outcome ("flood eof")
	Received   uint64            `json:"received"`        // messages the well-behaved clients got so far
}

// Flatness is a series judged after its warm-up: its extremes against its
// median there.
type Flatness struct {
	Judged bool    `json:"judged"` // enough samples after the warm-up
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Median float64 `json:"median"`
	Lo     float64 `json:"lo"`    // (min-median)/median
	Hi     float64 `json:"hi"`    // (max-median)/median
	Trend  float64 `json:"trend"` // least-squares slope, per minute, relative to the median
	Slack  float64 `json:"slack"` // the absolute deviation allowed
	// Window, when not 0, is the length in seconds of the spans whose
	// medians are judged instead of each sample; WinLo and WinHi are the
	// lowest and highest of those medians, relative to the median.
	Window float64 `json:"window,omitempty"`
	WinLo  float64 `json:"window_lo,omitempty"`
	WinHi  float64 `json:"window_hi,omitempty"`
	OK     bool    `json:"ok"`
}

// minJudged is the fewest samples after the warm-up that a series is judged on.
const minJudged = 10

// flatness judges vals (taken at times ts, seconds) after warmup seconds:
// every value must lie within ±tol of their median, or within ±floor of
// it when that is wider. With a window (seconds) it is the median of each
// whole window from the warm-up on that must: what a leak or a drift
// moves, and what the moment of one sample in a GC cycle, or a few
// abusers more or less holding their caps, does not.
func flatness(ts, vals []float64, warmup, tol, floor, window float64) Flatness {
	var xs, ys []float64
	for i, t := range ts {
		if t >= warmup {
			xs, ys = append(xs, t), append(ys, vals[i])
		}
	}
	if len(ys) < minJudged {
		return Flatness{OK: true}
	}
	med, lo, hi := Median(ys)
	f := Flatness{Judged: true, Min: lo, Max: hi, Median: med}
	if med != 0 {
		f.Lo, f.Hi = (lo-med)/med, (hi-med)/med
		f.Trend = slope(xs, ys) * 60 / med
	}
	f.Slack = math.Max(tol*math.Abs(med), floor)
	f.OK = med-lo <= f.Slack && hi-med <= f.Slack
	if meds := windowMedians(xs, ys, warmup, window); len(meds) > 0 {
		_, wlo, whi := Median(meds)
		f.Window = window
		if med != 0 {
			f.WinLo, f.WinHi = (wlo-med)/med, (whi-med)/med
		}
		f.OK = med-wlo <= f.Slack && whi-med <= f.Slack
	}
	return f
}

// windowMedians returns the median of ys in each whole window of window
// seconds of xs from start on (none without a window, or with less than
// two whole windows).
func windowMedians(xs, ys []float64, start, window float64) []float64 {
	if window <= 0 {
		return nil
	}
	var meds, cur []float64
	end := start + window
	for i, x := range xs {
		for x >= end {
			if len(cur) > 0 {
				m, _, _ := Median(cur)
				meds = append(meds, m)
			}
			cur, end = cur[:0], end+window
		}
		cur = append(cur, ys[i])
	}
	if len(meds) < 2 {
		return nil
	}
	return meds
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// AbuseRow is one case of abuse and one outcome, with how long the
// attempts took (from the abuse to the outcome).
type AbuseRow struct {
	Case     string  `json:"case"`
	Outcome  string  `json:"outcome"`
	Count    uint64  `json:"count"`
	MedianMs float64 `json:"median_ms"`
	MaxMs    float64 `json:"max_ms"`
	Expected bool    `json:"expected"`
}

// abuseRows flattens the workers' counts and times, in the order of the
// cycle, then by case and outcome.
func abuseRows(counts map[string]map[string]uint64, times map[string]map[string]*loadgen.Hist) []AbuseRow {
	var rows []AbuseRow
	for name, m := range counts {
		for outcome, n := range m {
			r := AbuseRow{Case: name, Outcome: outcome, Count: n, Expected: loadgen.AbuseExpected(name, outcome)}
			if h := times[name][outcome]; h != nil && h.N > 0 {
				r.MedianMs = float64(h.Quantile(0.5)) / 1e6
				r.MaxMs = float64(h.Max) / 1e6
			}
			rows = append(rows, r)
		}
	}
	order := map[string]int{}
	for i, k := range loadgen.AbuseNames {
		order[k] = i
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		ka, _, _ := strings.Cut(a.Case, "/")
		kb, _, _ := strings.Cut(b.Case, "/")
		if order[ka] != order[kb] {
			return order[ka] < order[kb]
		}
		if a.Case != b.Case {
			return a.Case < b.Case
		}
		return a.Outcome < b.Outcome
	})
	return rows
}

// soakArgs is wsd's command line for the soak: push mode, with clients
// allowed to publish to their rooms and to the flood topic.
func soakArgs(bin, addr, debug string) []string {
	args := []string{bin, "-mode", "push", "-addr", addr, "-admin-addr", debug, "-pprof",
		"-client-publish", "room.*,flood", "-max-message-size", strconv.Itoa(soakMaxMessage),
		"-handshake-timeout", soakHandshake.String(), "-log-level", "warn"}
	if hasFlag(bin, "write-timeout") {
		args = append(args, "-write-timeout", soakWriteLimit.String())
	}
	if os.Getenv("WSBENCH_WSD_ARGS") != "" {
		args = append(args, strings.Fields(os.Getenv("WSBENCH_WSD_ARGS"))...)
	}
	return args
}

// hasFlag reports whether the program bin lists -name in its -h output.
func hasFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	return bytes.Contains(out, []byte("-"+name+" "))
}

// runSoak runs the soak scenario against wsd once.
func runSoak(p *plan, sp soakPlan, bin string) (r SoakRun) {
	abusers := int(math.Round(float64(sp.conns) * sp.abusers))
	r = SoakRun{Conns: sp.conns, Abusers: abusers, Good: sp.conns - abusers, RoomSize: sp.room, Rate: sp.rate,
		DurationS: sp.duration.Seconds(), Tolerance: sp.tolerance}
	cycle := soakCycle()
	r.WarmupS = sp.warmup * sp.duration.Seconds()
	r.MemWarmS = math.Max(r.WarmupS, cycle.Period().Seconds())
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	defer func() { r.OK = len(r.Failures) == 0 }()
	if r.Good < sp.room {
		fail("%d connections leave %d well-behaved clients, fewer than a room of %d", sp.conns, r.Good, sp.room)
		return r
	}

	spec := specs["wsd"]
	spec.args = func(bin, _, addr, debug string) []string { return soakArgs(bin, addr, debug) }
	srv, err := startServer(spec, bin, "soak", p.serverCPU)
	if err != nil {
		fail("%v", err)
		return r
	}
	defer srv.stop()
	r.ServerCmd = spec.args(bin, "", srv.addr, srv.debug)
	r.ServerCmd[0] = "wsd"

	// Workers: well-behaved clients and abusers spread evenly, rooms whole.
	r.Workers = (sp.conns + p.perWorker - 1) / p.perWorker
	share := func(total, i int) int { return total/r.Workers + btoi(i < total%r.Workers) }
	var (
		roomBase  = make([]int, r.Workers)
		abuseBase = make([]int, r.Workers)
	)
	for i, rooms, ab := 0, 0, 0; i < r.Workers; i++ {
		roomBase[i], abuseBase[i] = rooms, ab
		rooms += (share(r.Good, i) + sp.room - 1) / sp.room
		ab += share(abusers, i)
		r.Rooms = rooms
	}
	abuse := loadgen.AbuseConfig{
		Cycle: cycle, Bounds: soakBounds(), MaxMessageSize: soakMaxMessage,
		Pause: time.Second, ChurnEvery: 200 * time.Millisecond,
		NonReadingPath: "/?topics=bulk", ChurnPath: "/?topics=news", ChurnRooms: r.Rooms,
		FloodFrame: `{"op":"publish","topic":"flood","data":"flood flood flood flood"}`,
	}
	// Half the frames come from the clients' room messages (each reaches
	// the room), half from news publishes (each reaches everyone).
	roomRate := sp.rate / 2 / float64(sp.room)
	newsRate := sp.rate / 2 / float64(r.Good)
	job := loadgen.Job{Scenario: "soak", Addr: srv.addr, DialConcurrency: p.dialParallel, Duration: sp.duration}
	ws, ready, err := startWorkersWith(p, job, r.Workers, func(i int, j *loadgen.Job) {
		j.Conns = share(r.Good, i)
		j.Soak = &loadgen.SoakJob{RoomSize: sp.room, RoomBase: roomBase[i], BulkEvery: soakBulkEvery,
			PublishRate: roomRate * float64(j.Conns) / float64(r.Good),
			Abusers:     share(abusers, i), AbuseBase: abuseBase[i], AbuseTotal: abusers, Abuse: abuse, Drain: soakDrain}
	})
	defer stopWorkers(ws)
	r.Connected = ready.Connected
	if err != nil || ready.Connected != r.Good {
		fail("connected %d of %d (%v) %s", ready.Connected, r.Good, err, ready.FirstErr)
		return r
	}

	// Progress lines and the final results of every worker.
	var (
		mu       sync.Mutex
		progress = make([]loadgen.SoakStats, len(ws))
		finals   = make(chan loadgen.Result, len(ws))
	)
	for i, w := range ws {
		go func() {
			for w.out.Scan() {
				var line loadgen.SoakLine
				if json.Unmarshal(w.out.Bytes(), &line) != nil {
					continue
				}
				if line.Progress != nil {
					mu.Lock()
					progress[i] = *line.Progress
					mu.Unlock()
					continue
				}
				finals <- line.Result
				return
			}
			finals <- loadgen.Result{FirstErr: "worker ended without a result"}
		}()
	}

	for _, w := range ws {
		fmt.Fprintln(w.in, "go")
	}
	t0 := time.Now()
	cpuStart := srv.cpuSeconds()
	clientCPU := func() float64 {
		t := procCPU(os.Getpid())
		for _, w := range ws {
			t += procCPU(w.cmd.Process.Pid)
		}
		return t
	}
	clientStart, busyStart := clientCPU(), machineBusy()
	stop := make(chan struct{})
	var bg sync.WaitGroup
	url := "http://" + srv.debug + "/api/publish"
	bg.Add(3)
	go func() { defer bg.Done(); r.News = publish(url, stop, "news", newsRate, 0) }()
	go func() { defer bg.Done(); r.Bulk = publish(url, stop, "bulk", soakBulkRate, soakBulkSize) }()
	go func() {
		defer bg.Done()
		cpus := func() [3]float64 { return [3]float64{srv.cpuSeconds(), clientCPU(), machineBusy()} }
		r.Samples = sample(srv, stop, t0, cpus, func() (map[string]uint64, uint64) {
			mu.Lock()
			defer mu.Unlock()
			outcomes := map[string]uint64{}
			var got uint64
			for _, st := range progress {
				got += st.Messages
				for name, m := range st.Abuse {
					kind, _, _ := strings.Cut(name, "/")
					for outcome, n := range m {
						outcomes[kind+" "+outcome] += n
					}
				}
			}
			return outcomes, got
		})
	}()
	metrics0 := scrape(srv.debug)
	time.Sleep(sp.duration)
	close(stop)
	bg.Wait()
	took := time.Since(t0).Seconds()
	server, client, busy := srv.cpuSeconds()-cpuStart, clientCPU()-clientStart, machineBusy()-busyStart
	r.ServerCPU, r.ClientCPU, r.OtherCPU = server/took, client/took, max(0, busy-server-client)/took
	metrics1 := scrape(srv.debug)

	end, _ := json.Marshal(loadgen.SoakEnd{News: r.News.Sent, Bulk: r.Bulk.Sent})
	for _, w := range ws {
		fmt.Fprintf(w.in, "end %s\n", end)
	}
	var (
		lat    loadgen.Hist
		counts = map[string]map[string]uint64{}
		times  = map[string]map[string]*loadgen.Hist{}
	)
	r.Drained = true
	for range ws {
		res := <-finals
		if res.Soak == nil {
			fail("worker: %s", res.FirstErr)
			r.Drained = false
			continue
		}
		s := res.Soak
		r.Messages += s.Messages
		r.Lost += s.Lost
		for t, n := range s.LostBy {
			r.LostBy[t] += n
		}
		r.Reordered += s.Reordered
		r.Unexpected += s.Unexpected
		r.Errors += s.Errors
		r.Published += s.Published
		r.Acks += s.Acks
		r.Closed += s.Closed
		r.Drained = r.Drained && s.Drained
		lat.Merge(s.Latency.Hist())
		for name, e := range s.AbuseErrors {
			if r.AbuseErrors == nil {
				r.AbuseErrors = map[string]string{}
			}
			if _, ok := r.AbuseErrors[name]; !ok {
				r.AbuseErrors[name] = e
			}
		}
		for name, m := range s.Abuse {
			if counts[name] == nil {
				counts[name], times[name] = map[string]uint64{}, map[string]*loadgen.Hist{}
			}
			for outcome, n := range m {
				counts[name][outcome] += n
				if times[name][outcome] == nil {
					times[name][outcome] = new(loadgen.Hist)
				}
				times[name][outcome].Merge(s.AbuseTimes[name][outcome].Hist())
			}
		}
	}
	r.P50ms = float64(lat.Quantile(0.5)) / 1e6
	r.P99ms = float64(lat.Quantile(0.99)) / 1e6
	r.MaxMs = float64(lat.Max) / 1e6
	r.AbuseRows = abuseRows(counts, times)
	r.ServerCloses = delta(metrics0, metrics1, "wsd_closes_total", "code")
	r.ServerLimits = delta(metrics0, metrics1, "wsd_closed_total", "reason")
	r.Dropped = metrics1["wsd_dropped_total"] - metrics0["wsd_dropped_total"]

	judge(&r)
	return r
}

// judge applies the soak's checks to r.
func judge(r *SoakRun) {
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	if r.Lost > 0 || r.Reordered > 0 {
		fail("well-behaved clients: %d messages lost (room %d, news %d, bulk %d), %d reordered", r.Lost, r.LostBy[0], r.LostBy[1], r.LostBy[2], r.Reordered)
	}
	if r.Unexpected > 0 || r.Errors > 0 {
		fail("well-behaved clients: %d unexpected messages, %d error answers", r.Unexpected, r.Errors)
	}
	if r.Acks != r.Published {
		fail("well-behaved clients: %d room publishes, %d answered", r.Published, r.Acks)
	}
	if r.Closed > 0 {
		fail("the server closed %d well-behaved connections", r.Closed)
	}
	if !r.Drained {
		fail("not every message had arrived %v after the end", soakDrain)
	}
	for _, p := range []struct {
		topic string
		st    PublishStats
	}{{"news", r.News}, {"bulk", r.Bulk}} {
		if p.st.Errors > 0 {
			fail("%d publish API calls to %s failed: %s", p.st.Errors, p.topic, p.st.FirstErr)
		}
	}
	// series returns the samples' times and values of one reading, leaving
	// out the samples where it could not be read.
	series := func(get func(SoakSample) float64, read func(float64) bool) (ts, vals []float64) {
		for _, s := range r.Samples {
			if v := get(s); read(v) {
				ts, vals = append(ts, s.T), append(vals, v)
			} else {
				r.Unread++
			}
		}
		return ts, vals
	}
	positive := func(v float64) bool { return v > 0 }
	notNegative := func(v float64) bool { return v >= 0 }
	ts, vals := series(func(s SoakSample) float64 { return float64(s.RSS) }, positive)
	r.RSS = flatness(ts, vals, r.MemWarmS, r.Tolerance, 0, soakMemWindow.Seconds())
	ts, vals = series(func(s SoakSample) float64 { return float64(s.Heap) }, notNegative)
	r.Heap = flatness(ts, vals, r.MemWarmS, r.Tolerance, 0, soakMemWindow.Seconds())
	ts, vals = series(func(s SoakSample) float64 { return float64(s.Goroutines) }, notNegative)
	r.Goroutines = flatness(ts, vals, r.WarmupS, r.Tolerance, soakGoroutineAt, 0)
	for _, f := range []struct {
		name string
		f    Flatness
		unit func(float64) string
	}{{"server RSS", r.RSS, mib}, {"Go heap", r.Heap, mib}, {"goroutines", r.Goroutines, count}} {
		switch {
		case f.f.OK:
		case f.f.Window > 0:
			fail("%s not flat after the warm-up: the medians of each %.0f s from %+.1f%% to %+.1f%% of the median %s (allowed ±%s)",
				f.name, f.f.Window, 100*f.f.WinLo, 100*f.f.WinHi, f.unit(f.f.Median), f.unit(f.f.Slack))
		default:
			fail("%s not flat after the warm-up: %s to %s around a median of %s (%+.1f%% to %+.1f%%; allowed ±%s)",
				f.name, f.unit(f.f.Min), f.unit(f.f.Max), f.unit(f.f.Median), 100*f.f.Lo, 100*f.f.Hi, f.unit(f.f.Slack))
		}
	}
	var bad []string
	for _, row := range r.AbuseRows {
		if !row.Expected {
			bad = append(bad, fmt.Sprintf("%s: %d × %s", row.Case, row.Count, row.Outcome))
		}
	}
	if len(bad) > 0 {
		fail("abusive clients with an unexpected outcome: %s", strings.Join(bad, ", "))
	}
}

func mib(v float64) string   { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
func count(v float64) string { return fmt.Sprintf("%.0f", v) }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// PublishStats is what wsd's publish API answered for one topic.
type PublishStats struct {
	Sent       uint64 `json:"sent"`
	Pending    uint64 `json:"pending"`    // answered 202: not handed to every subscriber within wsd's wait (still delivered)
	Dropped    uint64 `json:"dropped"`    // deliveries skipped for connections at -max-buffered
	Overloaded uint64 `json:"overloaded"` // event loops that skipped a publish, -max-queued behind
	Errors     int    `json:"errors"`
	FirstErr   string `json:"first_error,omitempty"`
}

// publish publishes to topic through wsd's HTTP API at url, rate times a
// second, until stop: "n SEQ TIME" for news, "b SEQ TIME" padded to size
// for bulk (the topic's first letter). Each call waits for wsd's answer;
// a publisher that falls more than a second behind skips ahead.
func publish(url string, stop <-chan struct{}, topic string, rate float64, size int) (st PublishStats) {
	if rate <= 0 {
		return st
	}
	client := http.Client{Timeout: 10 * time.Second}
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for seq := uint64(1); ; seq++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-stop:
				return st
			case <-time.After(d):
			}
		}
		select {
		case <-stop:
			return st
		default:
		}
		next = next.Add(interval)
		if behind := time.Now().Add(-time.Second); next.Before(behind) {
			next = behind
		}
		data := fmt.Appendf(nil, "%c %d %d ", topic[0], seq, loadgen.Now())
		for len(data) < size {
			data = append(data, 'x')
		}
		body, _ := json.Marshal(map[string]string{"topic": topic, "data": string(data)})
		st.Sent = seq
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err == nil {
			var answer struct {
				Dropped, Overloaded int
				Pending             bool
			}
			b := new(bytes.Buffer)
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted:
				err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b.Bytes()))
			case json.Unmarshal(b.Bytes(), &answer) != nil:
				err = fmt.Errorf("%s: unreadable answer %q", resp.Status, b.String())
			default:
				st.Dropped += uint64(answer.Dropped)
				st.Overloaded += uint64(answer.Overloaded)
				st.Pending += uint64(btoi(answer.Pending))
			}
		}
		if err != nil {
			st.Errors++
			if st.FirstErr == "" {
				st.FirstErr = err.Error()
			}
		}
	}
}

// sample reads the server once a second until stop: RSS, Go heap after
// two forced GCs, goroutines and connections from /metrics; CPU from cpus (the
// CPU seconds of the server, of the load generators, and of the whole
// machine); and, from the clients, what progress returns.
func sample(srv *server, stop <-chan struct{}, t0 time.Time, cpus func() [3]float64, progress func() (map[string]uint64, uint64)) []SoakSample {
	var out []SoakSample
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastCPU, lastT := cpus(), time.Now()
	for {
		select {
		case <-stop:
			return out
		case <-tick.C:
		}
		rss := srv.rss()
		_ = srv.heap()                                                           // a first collection only moves sync.Pool contents aside (gnet's buffers of the connections closed since the last sample):
		s := SoakSample{T: time.Since(t0).Seconds(), RSS: rss, Heap: srv.heap()} // after the second, the heap is what the server holds
		s.Goroutines, s.Conns, s.Unsent = -1, -1, -1                             // when /metrics does not answer
		if m := scrape(srv.debug); len(m) > 0 {
			s.Goroutines, s.Conns, s.Unsent = int(m["go_goroutines"]), int(m["wsd_connections"]), int64(m["wsd_unsent_bytes"])
		}
		cpu, now := cpus(), time.Now()
		dt := now.Sub(lastT).Seconds()
		server, client := cpu[0]-lastCPU[0], cpu[1]-lastCPU[1]
		s.CPU, s.ClientCPU, s.OtherCPU = server/dt, client/dt, max(0, cpu[2]-lastCPU[2]-server-client)/dt
		lastCPU, lastT = cpu, now
		s.Abuse, s.Received = progress()
		out = append(out, s)
	}
}

// scrape reads wsd's /metrics into series name (with its labels, as
// written) -> value; empty when it cannot.
func scrape(debug string) map[string]float64 {
	b, err := httpGet("http://" + debug + "/metrics")
	if err != nil {
		return map[string]float64{}
	}
	return parseMetrics(b)
}

// parseMetrics parses the Prometheus text format: "name{labels} value".
func parseMetrics(b []byte) map[string]float64 {
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// delta returns, for every series of metric, the growth from m0 to m1 by
// the value of its label, without the series that did not grow.
func delta(m0, m1 map[string]float64, metric, label string) map[string]float64 {
	out := map[string]float64{}
	prefix := metric + "{"
	for k, v := range m1 {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		_, val, ok := strings.Cut(rest, label+`="`)
		if !ok {
			continue
		}
		val, _, _ = strings.Cut(val, `"`)
		if d := v - m0[k]; d > 0 {
			out[val] += d
		}
	}
	return out
}
