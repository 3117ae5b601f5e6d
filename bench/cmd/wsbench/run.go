package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// Run is the outcome of one scenario against one server.
type Run struct {
	Server   string `json:"server"`
	Scenario string `json:"scenario"`
	Conns    int    `json:"conns"`
	Size     int    `json:"size"`
	Target   int    `json:"target_rate,omitempty"` // broadcast: delivered frames per second aimed at
	Depth    int    `json:"depth,omitempty"`       // echo: messages in flight per connection (0 in older results: 1)
	Round    int    `json:"round"`
	Deflate  bool   `json:"deflate,omitempty"` // permessage-deflate negotiated (-compress)
	TLS      bool   `json:"tls,omitempty"`     // over wss (-tls)

	OK  bool   `json:"ok"`
	Err string `json:"error,omitempty"`

	Connected int     `json:"connected"`
	ConnectS  float64 `json:"connect_s"`
	RunS      float64 `json:"run_s"`
	CPUS      float64 `json:"server_cpu_s"` // during the measured phase
	RSSBase   int64   `json:"rss_base"`
	RSS       int64   `json:"rss"`
	HeapBase  int64   `json:"heap_base"`
	Heap      int64   `json:"heap"`

	Messages  uint64  `json:"messages"`
	Sent      uint64  `json:"sent,omitempty"` // broadcast: messages published
	Lost      uint64  `json:"lost"`
	Reordered uint64  `json:"reordered"`
	Closed    int     `json:"closed"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	MaxUs     float64 `json:"max_us"`

	// Derived figures, per scenario.
	HandshakesPerS float64 `json:"handshakes_per_s,omitempty"`
	CPUPerOpUs     float64 `json:"cpu_per_op_us,omitempty"` // per handshake, echo or delivered frame
	RatePerS       float64 `json:"rate_per_s,omitempty"`    // echoes or delivered frames per second
	RSSPerConn     float64 `json:"rss_per_conn,omitempty"`
	// KernelPerConn estimates the kernel memory of one server-side socket:
	// the growth of slab and TCP buffer memory over the idle phase, halved
	// because on loopback the client's sockets live in the same kernel.
	KernelPerConn float64 `json:"kernel_per_conn,omitempty"`
	HeapPerConn   float64 `json:"heap_per_conn,omitempty"`
	// WireBytesPerOp is what the clients read per echo or delivered frame,
	// frame headers included.
	WireBytesPerOp float64 `json:"wire_bytes_per_op,omitempty"`
}

// plan is what to run against every server.
type plan struct {
	scenarios    []string
	conns, sizes []int
	rounds       int
	echoFor      time.Duration
	idleFor      time.Duration
	bcastRates   []int // delivered frames per second to aim at, one run each
	echoDepths   []int // echo messages in flight per connection, one run each
	bcastFor     time.Duration
	serverCPU    string
	clientCPU    string
	perWorker    int
	profileDir   string // where to save CPU profiles of wsd's measured phases
	sourceBase   int    // first source address is 127.0.0.<sourceBase>
	dialParallel int
	compress     bool     // -compress: JSON messages, each case plain and with permessage-deflate
	tls          *tlsPlan // -tls: the run's certificate; nil without
	idleTopic    string   // -idle-topic: the idle runs' wsd in push mode, each connection subscribed to it
}

// workerProc is one load-generator process.
type workerProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startWorkers starts enough workers for n connections, sends them their
// jobs and waits until every connection is open.
func startWorkers(p *plan, job loadgen.Job, n int) ([]*workerProc, loadgen.Result, error) {
	count := (n + p.perWorker - 1) / p.perWorker
	return startWorkersWith(p, job, count, func(i int, j *loadgen.Job) {
		j.Conns = n/count + btoi(i < n%count)
	})
}

// startWorkersWith starts count workers, sends each the job as set for it
// by setJob (which must set Conns), and waits until every connection is
// open.
func startWorkersWith(p *plan, job loadgen.Job, count int, setJob func(i int, j *loadgen.Job)) ([]*workerProc, loadgen.Result, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, loadgen.Result{}, err
	}
	var (
		ws  []*workerProc
		agg loadgen.Result
	)
	for i := range count {
		args := []string{self, "worker"}
		if p.clientCPU != "" {
			args = append([]string{"taskset", "-c", p.clientCPU}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stderr = os.Stderr
		in, _ := cmd.StdinPipe()
		outPipe, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return ws, agg, err
		}
		w := &workerProc{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
		w.out.Buffer(make([]byte, 4<<20), 4<<20)
		ws = append(ws, w)
		j := job
		setJob(i, &j)
		j.Sources = nil
		for k := range 4 { // four source addresses per worker
			j.Sources = append(j.Sources, fmt.Sprintf("127.0.0.%d", p.sourceBase+i*4+k))
		}
		b, _ := json.Marshal(j)
		if _, err := fmt.Fprintf(in, "%s\n", b); err != nil {
			return ws, agg, err
		}
	}
	for _, w := range ws {
		if !w.out.Scan() {
			return ws, agg, fmt.Errorf("worker ended before ready")
		}
		var r loadgen.Result
		if err := json.Unmarshal(w.out.Bytes(), &r); err != nil {
			return ws, agg, fmt.Errorf("worker ready line %q: %v", w.out.Text(), err)
		}
		agg.Connected += r.Connected
		agg.DialErrs += r.DialErrs
		if agg.FirstErr == "" {
			agg.FirstErr = r.FirstErr
		}
	}
	return ws, agg, nil
}

// finishWorkers says go, waits for every result and merges them. The
// workers keep their connections open until stopWorkers.
func finishWorkers(ws []*workerProc, onGo func()) (loadgen.Result, *loadgen.Hist, error) {
	for _, w := range ws {
		fmt.Fprintln(w.in, "go")
	}
	if onGo != nil {
		onGo()
	}
	var (
		agg  loadgen.Result
		hist loadgen.Hist
		err  error
	)
	for _, w := range ws {
		if !w.out.Scan() {
			err = fmt.Errorf("worker ended without a result")
			continue
		}
		var r loadgen.Result
		if e := json.Unmarshal(w.out.Bytes(), &r); e != nil {
			err = e
			continue
		}
		agg.Messages += r.Messages
		agg.Lost += r.Lost
		agg.Reordered += r.Reordered
		agg.BadSize += r.BadSize
		agg.Closed += r.Closed
		agg.RunNs = max(agg.RunNs, r.RunNs)
		agg.WireBytes += r.WireBytes
		hist.Merge(r.Histogram())
	}
	return agg, &hist, err
}

// stopWorkers closes the workers' input, which makes them close their
// connections and exit, and waits for them.
func stopWorkers(ws []*workerProc) {
	for _, w := range ws {
		w.in.Close()
		done := make(chan struct{})
		go func() { _ = w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = w.cmd.Process.Kill()
			<-done
		}
	}
}

// runOne runs one scenario against a fresh server process.
// runOne runs one case; load is the broadcast rate aimed at, or the echo
// depth; deflate negotiates permessage-deflate (see compressSpec); wss
// runs it over TLS (see tlsSpec).
func runOne(p *plan, spec serverSpec, bin, scenario string, conns, size, load, round int, deflate, wss bool) (r Run) {
	r = Run{Server: spec.name, Scenario: scenario, Conns: conns, Size: size, Round: round, Deflate: deflate, TLS: wss}
	spec = compressSpec(p, spec, deflate)
	spec = tlsSpec(p, spec, wss)
	spec = idleTopicSpec(p, spec, scenario)
	switch scenario {
	case "broadcast":
		r.Target = load
	case "echo":
		r.Depth = load
	}
	mode := "echo"
	if scenario == "broadcast" {
		mode = "broadcast"
	}
	srv, err := startServer(spec, bin, mode, p.serverCPU)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer srv.stop()
	time.Sleep(200 * time.Millisecond)
	r.RSSBase, r.HeapBase = srv.rss(), srv.heap()
	kernelBase := kernelMemory()

	job := loadgen.Job{Scenario: scenario, Addr: srv.addr, Path: spec.path(mode), DialConcurrency: p.dialParallel, Size: size}
	compressJob(p, &job, deflate)
	tlsJob(p, &job, wss)
	var (
		rate  float64 // broadcast: messages per second
		count uint64  // broadcast: messages to publish
	)
	switch scenario {
	case "connect":
		job.Scenario = "idle"
	case "echo":
		job.Duration, job.Depth = p.echoFor, r.Depth
	case "broadcast":
		rate = max(1, float64(r.Target)/float64(conns))
		count = uint64(max(10, rate*p.bcastFor.Seconds()))
		job.Expect = count
		job.Duration = 10*p.bcastFor + 20*time.Second // the longest a worker waits: a saturated server lags behind
	}
	var waitProfile func()
	if scenario == "connect" {
		waitProfile = p.maybeProfile(srv, r, 2*time.Second)
	}
	cpu0 := srv.cpuSeconds()
	t0 := time.Now()
	ws, ready, err := startWorkers(p, job, conns)
	defer stopWorkers(ws) // after every measurement: closing is not measured
	if waitProfile != nil {
		waitProfile()
	}
	r.ConnectS = time.Since(t0).Seconds()
	r.Connected = ready.Connected
	cpuConnect := srv.cpuSeconds() - cpu0
	if err != nil || ready.Connected != conns {
		r.Err = fmt.Sprintf("connected %d of %d (%v) %s", ready.Connected, conns, err, ready.FirstErr)
		return r
	}

	var (
		res  loadgen.Result
		hist *loadgen.Hist
	)
	switch scenario {
	case "connect":
		r.CPUS = cpuConnect
		r.HandshakesPerS = float64(conns) / r.ConnectS
		r.CPUPerOpUs = cpuConnect / float64(conns) * 1e6
		res, hist, err = finishWorkers(ws, nil)
	case "idle":
		time.Sleep(p.idleFor)
		r.RSS, r.Heap = srv.rss(), srv.heap()
		r.RSSPerConn = float64(r.RSS-r.RSSBase) / float64(conns)
		r.KernelPerConn = float64(kernelMemory()-kernelBase) / float64(2*conns)
		if r.Heap >= 0 && r.HeapBase >= 0 {
			r.HeapPerConn = float64(r.Heap-r.HeapBase) / float64(conns)
		}
		res, hist, err = finishWorkers(ws, nil)
	case "echo":
		wait := p.maybeProfile(srv, r, p.echoFor)
		c0 := srv.cpuSeconds()
		res, hist, err = finishWorkers(ws, nil)
		wait()
		r.CPUS = srv.cpuSeconds() - c0
		r.RunS = float64(res.RunNs) / 1e9
		r.RatePerS = float64(res.Messages) / r.RunS
		if res.Messages > 0 {
			r.CPUPerOpUs = r.CPUS / float64(res.Messages) * 1e6
		}
		if res.BadSize > 0 {
			err = fmt.Errorf("%d echoes of the wrong size", res.BadSize)
		}
	case "broadcast":
		r.Sent = count
		sender, serr := dialSender(p, wss, srv.addr, job.Path)
		if serr != nil {
			r.Err = "sender: " + serr.Error()
			return r
		}
		defer sender.Close()
		wait := p.maybeProfile(srv, r, p.bcastFor)
		c0 := srv.cpuSeconds()
		t1 := time.Now()
		res, hist, err = finishBroadcast(ws, sender, count, rate, size, p.broadcastMessage())
		wait()
		r.CPUS = srv.cpuSeconds() - c0
		r.RunS = time.Since(t1).Seconds()
		r.RatePerS = float64(res.Messages) / r.RunS
		if res.Messages > 0 {
			r.CPUPerOpUs = r.CPUS / float64(res.Messages) * 1e6
		}
		if res.Lost > 0 || res.Reordered > 0 {
			err = fmt.Errorf("lost %d, reordered %d", res.Lost, res.Reordered)
		}
	}
	r.Messages, r.Lost, r.Reordered, r.Closed = res.Messages, res.Lost, res.Reordered, res.Closed
	r.WireBytesPerOp = wireBytesPerOp(res)
	if hist != nil && hist.N > 0 {
		r.P50us = float64(hist.Quantile(0.5)) / 1e3
		r.P99us = float64(hist.Quantile(0.99)) / 1e3
		r.MaxUs = float64(hist.Max) / 1e3
	}
	if err != nil {
		r.Err = err.Error()
		return r
	}
	if r.Closed > 0 {
		r.Err = fmt.Sprintf("server closed %d connections", r.Closed)
		return r
	}
	r.OK = true
	return r
}

// finishBroadcast tells the workers to start, publishes count messages of
// size bytes (written by msg) through sender at rate per second, and
// collects the results.
func finishBroadcast(ws []*workerProc, sender *loadgen.Conn, count uint64, rate float64, size int, msg broadcastMessage) (loadgen.Result, *loadgen.Hist, error) {
	fd := sender.Fd()
	_ = unix.SetNonblock(fd, false)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the sender gets its own messages too: drain them
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			if n, err := unix.Read(fd, buf); err != nil || n == 0 {
				return
			}
		}
	}()
	send := func() {
		payload := make([]byte, 0, size)
		interval := time.Duration(float64(time.Second) / rate)
		next := time.Now()
		for seq := uint64(1); seq <= count; seq++ {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
			payload = msg.payload(payload, seq, size)
			if err := sender.WriteBlocking(loadgen.ClientFrame(msg.op, payload)); err != nil {
				return
			}
		}
	}
	res, hist, err := finishWorkers(ws, send)
	_ = unix.Shutdown(fd, unix.SHUT_RDWR)
	wg.Wait()
	return res, hist, err
}

func splitInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// maybeProfile starts a CPU profile of a wsd server for d when profiling is on.
func (p *plan) maybeProfile(s *server, r Run, d time.Duration) func() {
	if p.profileDir == "" || s.name != "wsd" || d < time.Second {
		return func() {}
	}
	_ = os.MkdirAll(p.profileDir, 0o755)
	return s.profile(d, filepath.Join(p.profileDir, fmt.Sprintf("%s-%s-%d-%d-r%d.pprof", s.name, r.Scenario, r.Conns, r.Size, r.Round)))
}
