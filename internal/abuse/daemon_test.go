package abuse_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

// daemon is a wsd child process started by startDaemon: wstest.StartDaemon
// does not tell the process id, and these tests read the process's memory.
type daemon struct {
	addr  string // WebSocket listener
	admin string // admin listener, base URL
	pid   int
	cmd   *exec.Cmd
	log   string // the file of its stdout and stderr
	done  chan struct{}
}

// startDaemon runs the wsd binary with -addr and -admin-addr on free
// loopback ports plus args, waits until the admin listener answers
// /healthz, and stops the daemon when the test ends (its output is logged
// if the test failed).
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	bin := wstest.DaemonBinary(t)
	d := &daemon{addr: wstest.FreeAddr(t), log: filepath.Join(t.TempDir(), "wsd.log"), done: make(chan struct{})}
	adminAddr := wstest.FreeAddr(t)
	d.admin = "http://" + adminAddr
	d.cmd = exec.Command(bin, append([]string{"-addr", d.addr, "-admin-addr", adminAddr}, args...)...)
	out, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child has its own copy
	d.cmd.Stdout, d.cmd.Stderr = out, out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.pid = d.cmd.Process.Pid
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(os.Interrupt)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("wsd output:\n%s", d.output())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := d.get("/healthz"); err == nil {
			return d
		} else if time.Now().After(deadline) {
			t.Fatalf("wsd did not answer /healthz: %v\n%s", err, d.output())
		}
		select {
		case <-d.done:
			t.Fatalf("wsd exited:\n%s", d.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// output returns what the daemon has written to stdout and stderr.
func (d *daemon) output() string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// get fetches path from the admin listener.
func (d *daemon) get(path string) ([]byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(d.admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, err
}

// rss returns the daemon's resident set size (VmRSS) in bytes.
func (d *daemon) rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS: %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", d.pid)
	return 0
}

// metrics returns the daemon's Prometheus samples by series
// (`wsd_closes_total{code="1008"}`).
func (d *daemon) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	b, err := d.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]float64)
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// heapInUse collects garbage in the daemon twice (the first collection only
// moves sync.Pool contents to the victim cache, the second frees them) and
// returns its Go heap in use (go_memstats_heap_inuse_bytes). It needs
// -pprof: /debug/pprof/heap?gc=1 runs runtime.GC.
func (d *daemon) heapInUse(t *testing.T) int64 {
	t.Helper()
	for range 2 {
		if _, err := d.get("/debug/pprof/heap?gc=1"); err != nil {
			t.Fatal(err)
		}
	}
	const name = "go_memstats_heap_inuse_bytes"
	v, ok := d.metrics(t)[name]
	if !ok {
		t.Fatalf("no %s in /metrics", name)
	}
	return int64(v)
}

var (
	clientOnce sync.Once
	clientDir  string
	clientPath string
	clientErr  error
)

// loadClientBinary builds the loadclient command once per test process,
// without -race whatever the tests run with, so that the clients' speed
// does not depend on it.
func loadClientBinary(t *testing.T) string {
	t.Helper()
	clientOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		if clientDir, clientErr = os.MkdirTemp("", "wsd-abuse-bin-"); clientErr != nil {
			return
		}
		clientPath = filepath.Join(clientDir, "loadclient")
		cmd := exec.Command("go", "build", "-o", clientPath, "./loadclient")
		cmd.Dir = filepath.Dir(file)
		if out, err := cmd.CombinedOutput(); err != nil {
			clientErr = fmt.Errorf("go build ./loadclient: %v\n%s", err, out)
		}
	})
	if clientErr != nil {
		t.Fatal(clientErr)
	}
	return clientPath
}

// child is a running loadclient process.
type child struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
}

// startChild runs loadclient with args and returns once it has printed
// "ready" (its connections are open). It ends when the test does.
func startChild(t *testing.T, name string, args ...string) *child {
	t.Helper()
	c := &child{t: t, name: name, cmd: exec.Command(loadClientBinary(t), args...), lines: make(chan string, 16), done: make(chan struct{})}
	c.cmd.Stderr = os.Stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Lines nobody waits for are dropped rather than blocking the child;
		// Wait comes after the last read, as os/exec requires.
		r := bufio.NewReaderSize(stdout, 1<<20)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			select {
			case c.lines <- strings.TrimSpace(line):
			default:
			}
		}
		_ = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.stop)
	if line := c.line(30 * time.Second); line != "ready" {
		t.Fatalf("%s: %q instead of ready", name, line)
	}
	return c
}

// line returns the child's next line of output ("" after d, or at its end).
func (c *child) line(d time.Duration) string {
	select {
	case line := <-c.lines:
		return line
	case <-c.done:
		select {
		case line := <-c.lines:
			return line
		default:
			return ""
		}
	case <-time.After(d):
		return ""
	}
}

// send sends the child a command: "run", "run 1s" or "stop".
func (c *child) send(cmd string) {
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		c.t.Errorf("%s: %v", c.name, err)
	}
}

// report waits up to d for the child's JSON report and decodes it into v.
func (c *child) report(d time.Duration, v any) error {
	line := c.line(d)
	if line == "" {
		return fmt.Errorf("%s: no report within %v", c.name, d)
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		return fmt.Errorf("%s: report %q: %v", c.name, line, err)
	}
	return nil
}

// stop closes the child's stdin, which ends it, and waits up to 10 s
// before killing it.
func (c *child) stop() {
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
