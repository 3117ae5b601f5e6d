package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a server process under test.
type server struct {
	name  string
	cmd   *exec.Cmd
	addr  string
	debug string
	heap  func() int64 // Go heap in use, or -1
	out   bytes.Buffer
}

// serverSpec says how to start one server.
type serverSpec struct {
	name string
	// args returns the command line for mode ("echo" or "broadcast"),
	// listening on addr, with its heap readable through debugAddr.
	args func(bin, mode, addr, debugAddr string) []string
	path func(mode string) string // WebSocket path
	heap func(debugAddr string) int64
}

var specs = map[string]serverSpec{
	"wsd": {
		name: "wsd",
		args: func(bin, mode, addr, debug string) []string {
			m := "echo"
			if mode == "broadcast" {
				m = "chat"
			}
			args := []string{bin, "-mode", m, "-addr", addr, "-admin-addr", debug, "-pprof", "-ping-interval", "0", "-idle-timeout", "0", "-log-level", "warn"}
			if os.Getenv("WSBENCH_WSD_ARGS") != "" {
				args = append(args, strings.Fields(os.Getenv("WSBENCH_WSD_ARGS"))...)
			}
			return args
		},
		path: func(string) string { return "/ws" },
		heap: func(debug string) int64 { return pprofHeap("http://" + debug + "/debug/pprof/heap?gc=1&debug=1") },
	},
}

func init() {
	for _, name := range []string{"gorilla", "gobwas", "gws", "nbio"} {
		specs[name] = serverSpec{
			name: name,
			args: func(bin, mode, addr, debug string) []string {
				return []string{bin, "-mode", mode, "-addr", addr, "-debug-addr", debug}
			},
			path: func(string) string { return "/ws" },
			heap: func(debug string) int64 { return jsonHeap("http://" + debug + "/debug/vars?gc=1") },
		}
	}
}

// startServer runs spec's binary pinned to cpu ("" for no pinning) and
// waits until it accepts connections.
func startServer(spec serverSpec, bin, mode, cpu string) (*server, error) {
	addr, debug := freeAddr(), freeAddr()
	args := spec.args(bin, mode, addr, debug)
	if cpu != "" {
		args = append([]string{"taskset", "-c", cpu}, args...)
	}
	s := &server{name: spec.name, addr: addr, debug: debug}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	s.heap = func() int64 { return spec.heap(debug) }
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			// Wait for the debug listener too.
			for time.Now().Before(deadline) && s.heap() < 0 {
				time.Sleep(20 * time.Millisecond)
			}
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not start: %v\n%s", spec.name, err, s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// pid is the server's own process (taskset execs it, keeping the pid).
func (s *server) pid() int { return s.cmd.Process.Pid }

// cpuSeconds returns the user+system CPU time the server has used.
func (s *server) cpuSeconds() float64 { return procCPU(s.pid()) }

// procCPU returns the user+system CPU time process pid has used, in
// seconds (0 when it cannot be read).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" that ends the command name; utime and stime are
	// fields 14 and 15 of the whole line.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// rss returns the server's resident set size in bytes.
func (s *server) rss() int64 { return statusField(s.pid(), "VmRSS:") }

func statusField(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(url string) ([]byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// pprofHeap reads "# HeapAlloc = N" from a pprof heap profile in debug=1
// form; with gc=1 the server collects garbage first.
func pprofHeap(url string) int64 {
	b, err := httpGet(url)
	if err != nil {
		return -1
	}
	i := bytes.Index(b, []byte("# HeapAlloc = "))
	if i < 0 {
		return -1
	}
	rest := b[i+len("# HeapAlloc = "):]
	if end := bytes.IndexByte(rest, '\n'); end >= 0 {
		rest = rest[:end]
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// jsonHeap reads "heap_alloc" from the peers' debug endpoint (with gc=1
// they collect garbage first).
func jsonHeap(url string) int64 {
	b, err := httpGet(url)
	if err != nil {
		return -1
	}
	var v struct {
		HeapAlloc *int64 `json:"heap_alloc"`
	}
	if json.Unmarshal(b, &v) != nil || v.HeapAlloc == nil {
		return -1
	}
	return *v.HeapAlloc
}

// profile fetches a CPU profile of d from a wsd server into path, in the
// background; wait for it with the returned function.
func (s *server) profile(d time.Duration, path string) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := http.Client{Timeout: d + 10*time.Second}
		resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.debug, int(d.Seconds())))
		if err != nil {
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		_ = os.WriteFile(path, b, 0o644)
	}()
	return func() { <-done }
}

// kernelMemory returns the kernel's slab memory plus the pages TCP sockets
// hold for buffers, in bytes: what the kernel spends on sockets, with noise
// from everything else the machine does.
func kernelMemory() int64 {
	var slab int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Slab:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				slab = kb << 10
			}
		}
	}
	var pages int64
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "TCP:"); ok {
				f := strings.Fields(rest)
				for i := 0; i+1 < len(f); i += 2 {
					if f[i] == "mem" {
						pages, _ = strconv.ParseInt(f[i+1], 10, 64)
					}
				}
			}
		}
	}
	return slab + pages*int64(os.Getpagesize())
}

// machineBusy returns the CPU time all CPUs have spent busy (neither idle
// nor waiting for I/O) since boot, in seconds.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait; guest time is in user already
			busy += n
		}
	}
	return busy / 100 // USER_HZ
}
