package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wsdproject/wsd/bench/loadgen"
)

// historyRule is the -history wsd runs with when history is on.
const historyRule = "h.*=1000/10m"

// historyPlan is the history scenario's size.
type historyPlan struct {
	subs      int           // subscribers of the publish-cost topic
	rate      float64       // publishes per second
	duration  time.Duration // publishing time, each mode
	memTopics int           // topics with history and no subscriber
	memEach   int           // messages published to each
	size      int           // payload bytes
	resumers  int           // clients that resume
	missed    int           // messages each misses
}

// HistoryCost is one publish-cost run, history off or on.
type HistoryCost struct {
	History      bool    `json:"history"`
	Subscribers  int     `json:"subscribers"`
	Rate         float64 `json:"rate"`     // publishes per second aimed at
	Duration     float64 `json:"duration"` // publishing time, s
	Published    uint64  `json:"published"`
	Frames       uint64  `json:"frames"`
	Seconds      float64 `json:"seconds"`
	CPUS         float64 `json:"cpu_s"`
	CPUPerPubUs  float64 `json:"cpu_per_publish_us"`
	FramesPerSec float64 `json:"frames_per_s"`
	Errors       int     `json:"publish_errors"`
}

// HistoryMemory is the memory the retained messages take.
type HistoryMemory struct {
	Topics       int     `json:"topics"`
	Messages     int     `json:"messages"`
	Size         int     `json:"payload_bytes"`
	HeapGrowth   int64   `json:"heap_growth"`
	RSSGrowth    int64   `json:"rss_growth"`
	HistoryBytes int64   `json:"wsd_history_bytes"`
	HeapPerMsg   float64 `json:"heap_per_message"`
	RSSPerMsg    float64 `json:"rss_per_message"`
}

// HistoryResume is the reconnection of clients that missed messages.
type HistoryResume struct {
	Clients     int     `json:"clients"`
	Missed      int     `json:"missed_each"`
	Recovered   int     `json:"recovered"`
	Complete    int     `json:"complete"` // got every missed message once, in order
	Seconds     float64 `json:"seconds"`  // first dial to the last client complete
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	CPUS        float64 `json:"cpu_s"`
	FirstErr    string  `json:"first_error,omitempty"`
	MessagesPer float64 `json:"messages_per_s"`
}

// HistoryRun is the history scenario's result.
type HistoryRun struct {
	ServerCmd []string      `json:"server_cmd"`
	Cost      []HistoryCost `json:"publish_cost"`
	Memory    HistoryMemory `json:"memory"`
	Resume    HistoryResume `json:"resume"`
	Failures  []string      `json:"failures,omitempty"`
	OK        bool          `json:"ok"`
}

// historyRun runs "wsbench run -scenarios history ...", which runs alone,
// with its own flags; handled is false for any other run.
func historyRun(args []string) (handled bool, err error) {
	fs := flag.NewFlagSet("wsbench run -scenarios history", flag.ContinueOnError)
	scenarios := fs.String("scenarios", "", "history")
	out := fs.String("out", "results", "directory for history.json and history.md")
	wsdRev := fs.String("wsd-rev", "", "build wsd from this git revision instead of the working tree")
	serverCPU := fs.String("server-cpu", "0", "CPU list wsd is pinned to; empty: no pinning")
	quick := fs.Bool("history-quick", false, "a plumbing test of a few seconds: 50 subscribers, 50 resuming clients that miss 10 messages")
	hp := historyPlan{subs: 1000, rate: 50, duration: 10 * time.Second, memTopics: 20, memEach: 1000, size: 100, resumers: 1000, missed: 100}
	fs.IntVar(&hp.subs, "history-subs", hp.subs, "publish cost: subscribers")
	fs.Float64Var(&hp.rate, "history-rate", hp.rate, "publish cost: publishes per second")
	fs.DurationVar(&hp.duration, "history-duration", hp.duration, "publish cost: publishing time, each mode")
	fs.IntVar(&hp.resumers, "history-resumers", hp.resumers, "resume: clients")
	fs.IntVar(&hp.missed, "history-missed", hp.missed, "resume: messages each client misses")
	for i, a := range args { // only -scenarios history is ours
		if strings.TrimLeft(a, "-") == "scenarios=history" || (strings.TrimLeft(a, "-") == "scenarios" && i+1 < len(args) && args[i+1] == "history") {
			handled = true
		}
	}
	if !handled {
		return false, nil
	}
	if err := fs.Parse(args); err != nil {
		return true, err
	}
	if *scenarios != "history" {
		return true, fmt.Errorf("-scenarios history runs alone")
	}
	if *quick {
		hp = historyPlan{subs: 50, rate: 100, duration: time.Second, memTopics: 2, memEach: 200, size: 100, resumers: 50, missed: 10}
	}
	binDir, err := os.MkdirTemp("", "wsbench-bin-")
	if err != nil {
		return true, err
	}
	defer os.RemoveAll(binDir)
	bin, err := build("wsd", binDir, *wsdRev)
	if err != nil {
		return true, err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return true, err
	}
	p := &plan{serverCPU: *serverCPU}
	started := time.Now()
	r := runHistory(p, hp, bin)
	return true, saveOnce(p, started, *out, "history", describeWsd(*wsdRev), r, r.Failures, func(meta map[string]any) (string, error) {
		return writeHistoryReport(*out, meta, r)
	})
}

func historyArgs(bin, addr, debug string, history bool) []string {
	args := []string{bin, "-mode", "push", "-addr", addr, "-admin-addr", debug, "-pprof", "-ping-interval", "0", "-idle-timeout", "0", "-log-level", "warn"}
	if history {
		args = append(args, "-history", historyRule)
	}
	return args
}

func startHistoryWsd(p *plan, bin string, history bool) (*server, []string, error) {
	spec := specs["wsd"]
	spec.args = func(bin, _, addr, debug string) []string { return historyArgs(bin, addr, debug, history) }
	s, err := startServer(spec, bin, "push", p.serverCPU)
	if err != nil {
		return nil, nil, err
	}
	return s, historyArgs(filepath.Base(bin), s.addr, s.debug, history), nil
}

func runHistory(p *plan, hp historyPlan, bin string) (r HistoryRun) {
	fail := func(format string, a ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, a...)) }
	for _, on := range []bool{false, true} {
		c, err := historyCost(p, hp, bin, on)
		if err != nil {
			fail("publish cost (history %v): %v", on, err)
			continue
		}
		r.Cost = append(r.Cost, c)
		fmt.Fprintf(os.Stderr, "history: publish cost, history %v: %.1f µs CPU per publish, %.0f frames/s\n", on, c.CPUPerPubUs, c.FramesPerSec)
	}
	s, cmd, err := startHistoryWsd(p, bin, true)
	if err != nil {
		fail("%v", err)
		return r
	}
	defer s.stop()
	r.ServerCmd = cmd
	if r.Memory, err = historyMemory(s, hp); err != nil {
		fail("memory: %v", err)
	}
	fmt.Fprintf(os.Stderr, "history: %d retained messages: %.0f B heap each\n", r.Memory.Messages, r.Memory.HeapPerMsg)
	r.Resume = historyResume(s, hp)
	fmt.Fprintf(os.Stderr, "history: %d clients resumed %d messages each in %.2f s\n", r.Resume.Complete, r.Resume.Missed, r.Resume.Seconds)
	judgeHistory(&r, hp)
	return r
}

// judgeHistory fails a run where a client did not get exactly what it
// missed, or a figure is missing.
func judgeHistory(r *HistoryRun, hp historyPlan) {
	if len(r.Cost) != 2 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d publish-cost runs, want 2", len(r.Cost)))
	}
	for _, c := range r.Cost {
		if want := c.Published * uint64(c.Subscribers); c.Frames != want || c.Errors > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("history %v: %d frames delivered, want %d; %d publish errors", c.History, c.Frames, want, c.Errors))
		}
	}
	if r.Memory.Messages == 0 || r.Memory.HistoryBytes <= 0 {
		r.Failures = append(r.Failures, "no memory figure for retained messages")
	}
	if r.Resume.Recovered != hp.resumers || r.Resume.Complete != hp.resumers {
		r.Failures = append(r.Failures, fmt.Sprintf("resume: %d of %d clients recovered, %d complete: %s", r.Resume.Recovered, hp.resumers, r.Resume.Complete, r.Resume.FirstErr))
	}
	r.OK = len(r.Failures) == 0
}

// dialMany runs f(i) for i < n, 64 at a time.
func dialMany(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() { defer func() { <-sem }(); f(i) })
	}
	wg.Wait()
}

func historyCost(p *plan, hp historyPlan, bin string, on bool) (c HistoryCost, err error) {
	s, _, err := startHistoryWsd(p, bin, on)
	if err != nil {
		return c, err
	}
	defer s.stop()
	const topic = "h.cost"
	base := "ws://" + s.addr + "/ws"
	var frames atomic.Uint64
	conns := make([]*websocket.Conn, hp.subs)
	var dialErr atomic.Value
	dialMany(hp.subs, func(i int) {
		cn, _, err := loadgen.HistoryDial(loadgen.HistoryURL(base, topic, nil), topic, 10*time.Second)
		if err != nil {
			dialErr.CompareAndSwap(nil, err)
			return
		}
		conns[i] = cn
	})
	var wg sync.WaitGroup
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.Close()
			}
		}
		wg.Wait()
	}()
	if e := dialErr.Load(); e != nil {
		return c, e.(error)
	}
	for _, cn := range conns {
		_ = cn.SetReadDeadline(time.Time{})
		wg.Go(func() {
			for {
				if _, _, err := cn.ReadMessage(); err != nil {
					return
				}
				frames.Add(1)
			}
		})
	}
	c = HistoryCost{History: on, Subscribers: hp.subs, Rate: hp.rate, Duration: hp.duration.Seconds()}
	cpu0, t0 := s.cpuSeconds(), time.Now()
	stop := make(chan struct{})
	time.AfterFunc(hp.duration, func() { close(stop) })
	st := publish("http://"+s.debug+"/api/publish", stop, topic, hp.rate, hp.size)
	want := st.Sent * uint64(hp.subs)
	for deadline := time.Now().Add(10 * time.Second); frames.Load() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	c.Seconds, c.CPUS = time.Since(t0).Seconds(), s.cpuSeconds()-cpu0
	c.Published, c.Frames, c.Errors = st.Sent, frames.Load(), st.Errors
	c.CPUPerPubUs = c.CPUS / float64(max(1, c.Published)) * 1e6
	c.FramesPerSec = float64(c.Frames) / c.Seconds
	return c, nil
}

var historyBytesRe = regexp.MustCompile(`(?m)^wsd_history_bytes (\S+)$`)

func historyBytes(debug string) int64 {
	b, err := httpGet("http://" + debug + "/metrics")
	if err != nil {
		return -1
	}
	m := historyBytesRe.FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return int64(v)
}

// historyMemory publishes to topics with history and no subscriber and
// reads how much wsd grew.
func historyMemory(s *server, hp historyPlan) (m HistoryMemory, err error) {
	m = HistoryMemory{Topics: hp.memTopics, Size: hp.size}
	heap0, rss0 := s.heap(), s.rss()
	for range hp.memEach {
		for t := range hp.memTopics {
			st := publishN("http://"+s.debug+"/api/publish", fmt.Sprintf("h.mem.%d", t), 1, hp.size)
			if st.Errors > 0 {
				return m, fmt.Errorf("publish: %s", st.FirstErr)
			}
			m.Messages++
		}
	}
	m.HeapGrowth, m.RSSGrowth, m.HistoryBytes = s.heap()-heap0, s.rss()-rss0, historyBytes(s.debug)
	m.HeapPerMsg = float64(m.HeapGrowth) / float64(max(1, m.Messages))
	m.RSSPerMsg = float64(m.RSSGrowth) / float64(max(1, m.Messages))
	return m, nil
}

// historyResume connects hp.resumers clients to a topic with history,
// closes them, publishes hp.missed messages and times their resumption.
func historyResume(s *server, hp historyPlan) (r HistoryResume) {
	r = HistoryResume{Clients: hp.resumers, Missed: hp.missed}
	const topic = "h.resume"
	base := "ws://" + s.addr + "/ws"
	var mu sync.Mutex
	setErr := func(err error) {
		mu.Lock()
		if r.FirstErr == "" {
			r.FirstErr = err.Error()
		}
		mu.Unlock()
	}
	// One publication first, so the position is not the empty one.
	pub := func(n int) {
		st := publishN("http://"+s.debug+"/api/publish", topic, n, hp.size)
		if st.Errors > 0 {
			setErr(fmt.Errorf("%d publish errors: %s", st.Errors, st.FirstErr))
		}
	}
	pub(1)
	pos := make([]loadgen.Position, hp.resumers)
	dialMany(hp.resumers, func(i int) {
		c, ack, err := loadgen.HistoryDial(loadgen.HistoryURL(base, topic, nil), topic, 10*time.Second)
		if err != nil {
			setErr(err)
			return
		}
		pos[i] = loadgen.Position{Offset: ack.Offset, Epoch: ack.Epoch}
		c.Close()
	})
	pub(hp.missed)
	times := make([]float64, hp.resumers)
	var recovered, complete atomic.Int64
	cpu0, t0 := s.cpuSeconds(), time.Now()
	dialMany(hp.resumers, func(i int) {
		if pos[i].Epoch == "" {
			return
		}
		start := time.Now()
		c, ack, err := loadgen.HistoryDial(loadgen.HistoryURL(base, topic, &pos[i]), topic, 20*time.Second)
		if err != nil {
			setErr(err)
			return
		}
		defer c.Close()
		if ack.Recovered == nil || !*ack.Recovered {
			setErr(fmt.Errorf("not recovered: %+v", ack))
			return
		}
		recovered.Add(1)
		if err := loadgen.ReadSequence(c, topic, pos[i].Epoch, pos[i].Offset+1, pos[i].Offset+uint64(hp.missed), 20*time.Second); err != nil {
			setErr(err)
			return
		}
		times[i] = time.Since(start).Seconds() * 1000
		complete.Add(1)
	})
	r.Seconds, r.CPUS = time.Since(t0).Seconds(), s.cpuSeconds()-cpu0
	r.Recovered, r.Complete = int(recovered.Load()), int(complete.Load())
	r.MessagesPer = float64(r.Complete*hp.missed) / r.Seconds
	times = slices.DeleteFunc(times, func(v float64) bool { return v == 0 })
	slices.Sort(times)
	if n := len(times); n > 0 {
		r.P50Ms, r.P99Ms = times[n/2], times[min(n-1, n*99/100)]
	}
	return r
}

// publishN publishes n messages of size bytes to topic through the
// publish API at url, each after the last one's answer.
func publishN(url, topic string, n, size int) (st PublishStats) {
	client := http.Client{Timeout: 10 * time.Second}
	data := strings.Repeat("m", size)
	for range n {
		body, _ := json.Marshal(map[string]string{"topic": topic, "data": data})
		st.Sent++
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s", resp.Status)
			}
		}
		if err != nil {
			st.Errors++
			if st.FirstErr == "" {
				st.FirstErr = err.Error()
			}
		}
	}
	return st
}
