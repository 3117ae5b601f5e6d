package loadgen

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Job is what a worker process is asked to do. It arrives as one JSON line
// on the worker's standard input.
type Job struct {
	Scenario        string   `json:"scenario"` // connect, idle, echo, broadcast or soak
	Addr            string   `json:"addr"`     // server host:port
	Path            string   `json:"path"`
	Conns           int      `json:"conns"`
	Sources         []string `json:"sources"` // source addresses, used round-robin
	DialConcurrency int      `json:"dial_concurrency"`
	Size            int      `json:"size"` // echo payload bytes
	// Depth is, for echo, the messages each connection keeps in flight:
	// they are written back to back with one write, and the next burst
	// leaves when all their echoes are back. 0 or 1: one at a time.
	Depth    int           `json:"depth,omitempty"`
	Duration time.Duration `json:"duration"` // echo and idle: how long; broadcast: longest wait; soak: the run's length
	Expect   uint64        `json:"expect"`   // broadcast: messages each connection must get
	Soak     *SoakJob      `json:"soak,omitempty"`
	// Deflate offers permessage-deflate (DialDeflate) and, for echo, sends
	// every message compressed; JSON makes echo payloads JSONPayload's.
	Deflate bool `json:"deflate,omitempty"`
	JSON    bool `json:"json,omitempty"`
	// TLS, when set, makes every connection wss (one goroutine each with
	// crypto/tls: see TLSJob); soak jobs do not run over wss.
	TLS *TLSJob `json:"tls,omitempty"`
}

// Result is what a worker reports at the end, as one JSON line.
type Result struct {
	Connected int            `json:"connected"`
	DialErrs  int            `json:"dial_errors"`
	FirstErr  string         `json:"first_error,omitempty"`
	ConnectNs int64          `json:"connect_ns"` // time to open every connection
	Messages  uint64         `json:"messages"`   // echoes or broadcast messages received
	Lost      uint64         `json:"lost"`       // broadcast: expected but not received
	Reordered uint64         `json:"reordered"`  // broadcast: older than one already seen
	BadSize   uint64         `json:"bad_size"`   // echo: reply of the wrong length
	Closed    int            `json:"closed"`     // connections the server closed
	RunNs     int64          `json:"run_ns"`
	Hist      map[int]uint64 `json:"hist"`
	HistN     uint64         `json:"hist_n"`
	HistMax   int64          `json:"hist_max_ns"`
	HistSum   int64          `json:"hist_sum_ns"`
	WireBytes uint64         `json:"wire_bytes,omitempty"` // bytes read from the server's frames
	Soak      *SoakResult    `json:"soak,omitempty"`
}

// Histogram rebuilds the latency histogram of a Result.
func (r *Result) Histogram() *Hist {
	h := &Hist{N: r.HistN, Max: r.HistMax, Sum: r.HistSum}
	h.FromSparse(r.Hist)
	return h
}

// RunWorker runs one job: it reads the Job from in, connects, writes
// {"ready":...} to out, waits for a line "go" on in, runs the scenario,
// writes the Result, and closes its connections once in ends (so that the
// runner can read the server's CPU time before the server handles the
// closes).
func RunWorker(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return fmt.Errorf("no job on stdin")
	}
	var job Job
	if err := json.Unmarshal(sc.Bytes(), &job); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	if job.TLS != nil {
		return runTLSWorker(job, sc, json.NewEncoder(out))
	}
	w := &worker{job: job}
	p, err := NewPoller(w)
	if err != nil {
		return err
	}
	w.p = p
	res := w.connect()
	enc := json.NewEncoder(out)
	if err := enc.Encode(map[string]any{"ready": true, "connected": res.Connected, "dial_errors": res.DialErrs, "first_error": res.FirstErr}); err != nil {
		return err
	}
	if !sc.Scan() || sc.Text() != "go" {
		return fmt.Errorf("expected go")
	}
	if job.Scenario == "soak" {
		if job.Soak == nil || job.Soak.RoomSize <= 0 {
			return fmt.Errorf("soak job without its settings")
		}
		stdinOpen, err := w.soakRun(sc, enc)
		if err != nil {
			return err
		}
		for stdinOpen && sc.Scan() { // until the runner closes our input
		}
		w.p.Each(func(c *Conn) { c.Close() })
		return nil
	}
	w.run(&res)
	if err := enc.Encode(res); err != nil {
		return err
	}
	for sc.Scan() { // until the runner closes our input
	}
	w.p.Each(func(c *Conn) { c.Close() })
	return nil
}

type worker struct {
	job      Job
	p        *Poller
	frame    []byte // echo: the prebuilt client frames of one burst
	depth    int    // echo: messages per burst
	running  bool
	hist     Hist
	res      *Result
	complete int   // broadcast: connections that got every message
	soak     *soak // soak: the well-behaved clients' state
}

// connect opens job.Conns connections with DialConcurrency dialers.
func (w *worker) connect() Result {
	var res Result
	conns := make([]*Conn, w.job.Conns)
	start := time.Now()
	dialAll(w.job, &res, func(i int, src string) error {
		path := w.job.Path
		if w.job.Soak != nil {
			path = w.job.Soak.soakPath(i)
		}
		dial := Dial
		if w.job.Deflate {
			dial = DialDeflate
		}
		c, err := dial(src, w.job.Addr, path, 10*time.Second)
		if err != nil {
			return err
		}
		c.Index = i
		conns[i] = c // each index is dialled once
		return nil
	})
	res.ConnectNs = time.Since(start).Nanoseconds()
	for _, c := range conns {
		if c != nil {
			if err := w.p.Add(c); err == nil {
				res.Connected++
			}
		}
	}
	return res
}

// dialAll calls dial(i, src) for each connection i of job, on
// DialConcurrency goroutines, src being i's source address (the job's
// sources round-robin, "" for any), and counts the errors in res.
func dialAll(job Job, res *Result, dial func(i int, src string) error) {
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range max(1, job.DialConcurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= job.Conns {
					return
				}
				src := ""
				if len(job.Sources) > 0 {
					src = job.Sources[i%len(job.Sources)]
				}
				if err := dial(i, src); err != nil {
					mu.Lock()
					res.DialErrs++
					if res.FirstErr == "" {
						res.FirstErr = err.Error()
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}

func (w *worker) run(res *Result) {
	w.res = res
	stop := make(chan struct{})
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }) } // from the poller or from here
	done := make(chan struct{})
	start := time.Now()
	switch w.job.Scenario {
	case "echo":
		w.depth = max(1, w.job.Depth)
		w.frame = bytes.Repeat(echoFrame(w.job), w.depth)
		w.running = true
		w.p.Each(func(c *Conn) {
			c.SentAt, c.Waiting = Now(), w.depth
			c.Send(w.p, w.frame)
		})
	case "broadcast":
		// Bytes that arrived with the handshake answers are parsed first.
		w.p.Each(func(c *Conn) {
			if len(c.in) > 0 {
				rest := w.p.parse(c, c.in)
				c.in = append(c.in[:0], rest...)
			}
		})
	}
	deadline := start.Add(w.job.Duration)
	go func() {
		defer close(done)
		w.p.Run(stop, func() {
			now := time.Now()
			if w.job.Scenario == "echo" && now.After(deadline) {
				w.running = false
			}
			if w.job.Scenario == "broadcast" && w.allReceived() {
				halt()
			}
		})
	}()
	switch w.job.Scenario {
	case "broadcast":
		select {
		case <-done:
		case <-time.After(w.job.Duration):
			halt()
			<-done
		}
	default:
		time.Sleep(w.job.Duration)
		time.Sleep(500 * time.Millisecond) // let the last echoes return
		halt()
		<-done
	}
	res.RunNs = time.Since(start).Nanoseconds()
	count := func(c *Conn) {
		if c.Closed {
			res.Closed++
		}
		if w.job.Scenario == "broadcast" && c.LastSeq < w.job.Expect {
			res.Lost += w.job.Expect - c.LastSeq
		}
	}
	w.p.Each(count)
	for _, c := range w.p.dead {
		count(c)
	}
	res.Hist, res.HistN, res.HistMax, res.HistSum = w.hist.Sparse(), w.hist.N, w.hist.Max, w.hist.Sum
	res.WireBytes = w.p.readBytes
}

// allReceived reports whether every open connection got every broadcast.
func (w *worker) allReceived() bool {
	return w.complete+len(w.p.dead) >= w.res.Connected
}

// OnMessage implements Handler.
func (w *worker) OnMessage(p *Poller, c *Conn, op byte, length int, head []byte) {
	now := Now()
	switch w.job.Scenario {
	case "soak":
		w.soak.onMessage(c, op, head)
	case "echo":
		w.res.Messages++
		if length != w.job.Size {
			w.res.BadSize++
		}
		w.hist.Record(time.Duration(now - c.SentAt)) // from the burst's write
		c.Waiting--
		if c.Waiting <= 0 && w.running {
			c.SentAt, c.Waiting = now, w.depth
			c.Send(p, w.frame)
		}
	case "broadcast":
		seq, ts, ok := BroadcastStamp(head)
		if !ok {
			return
		}
		w.res.Messages++
		switch {
		case seq == c.LastSeq+1:
			c.LastSeq = seq
		case seq <= c.LastSeq:
			w.res.Reordered++
		default: // a gap: the messages between were lost
			w.res.Lost += seq - c.LastSeq - 1
			c.LastSeq = seq
		}
		if c.LastSeq == w.job.Expect {
			w.complete++
		}
		w.hist.Record(time.Duration(now - ts))
	}
}

// BroadcastPayload writes a broadcast message: sequence number, send time
// (ns), then padding to size bytes (at least 16).
func BroadcastPayload(dst []byte, seq uint64, size int) []byte {
	dst = binary.BigEndian.AppendUint64(dst[:0], seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(Now()))
	for len(dst) < size {
		dst = append(dst, 'x')
	}
	return dst
}
