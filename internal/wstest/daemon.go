// Package wstest holds helpers for wsd's tests: starting the wsd daemon as a
// child process, raw frame builders and a raw TCP client. It is internal and
// has no stability promise.
package wstest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildDir  string
)

// DaemonBinary builds cmd/wsd once per test process (without -race, so the
// daemon runs at full speed) and returns the path of the binary. The binary
// lives in a temporary directory removed by CleanupBinary.
func DaemonBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		buildDir, buildErr = os.MkdirTemp("", "wsd-test-bin-")
		if buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "wsd")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/wsd")
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/wsd: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// CleanupBinary removes the binary built by DaemonBinary. Call it from
// TestMain after m.Run.
func CleanupBinary() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// FreeAddr returns a loopback "127.0.0.1:port" that was free a moment ago,
// and that FreeAddr has not returned among the last freeRecent in this
// process (whose users may not have bound them yet). The port is
// below the kernel's ephemeral range (net.ipv4.ip_local_port_range), where
// the outgoing connections of every process take their local ports: one
// of those could take a port from "127.0.0.1:0" between this check and
// the daemon's bind (a route that failed "address already in use" once in
// 200 runs).
func FreeAddr(t testing.TB) string {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	if lo := ephemeralLow(); lo > freeLow+1000 {
		for range 1000 {
			p := freeLow + rand.IntN(lo-freeLow)
			if freePorts.given[p] {
				continue
			}
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
				l.Close()
				freePorts.remember(p)
				return l.Addr().String()
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// freeLow is the lowest port FreeAddr returns, above the usual services'.
// freeRecent is how many of the ports it returned last it does not return
// again: far fewer than the 12,768 ports between freeLow and the usual
// ephemeral range, so that it never runs out.
const (
	freeLow    = 20000
	freeRecent = 4096
)

// freePorts are the last ports FreeAddr returned.
var freePorts = &recentPorts{given: map[int]bool{}}

type recentPorts struct {
	sync.Mutex
	given map[int]bool
	order []int // given's ports, oldest first
}

// remember adds p, and forgets the oldest port past freeRecent.
func (r *recentPorts) remember(p int) {
	if len(r.order) == freeRecent {
		delete(r.given, r.order[0])
		r.order = r.order[1:]
	}
	r.given[p] = true
	r.order = append(r.order, p)
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if n, _ := fmt.Sscan(string(b), &lo, &hi); n != 2 {
		return 32768
	}
	return lo
}

// Daemon is a running wsd child process.
type Daemon struct {
	Addr string // host:port of the WebSocket listener
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// PID returns the daemon's process id (to read its CPU time, say).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Output returns everything the daemon has written to stdout and stderr.
func (d *Daemon) Output() string { return d.out.String() }

// Stop sends SIGTERM and waits up to 10 s for the process to exit, then kills it.
func (d *Daemon) Stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// Exited reports whether the process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// StartDaemon runs the wsd binary with "-addr ADDR" plus args on a free
// loopback port (and without the admin listener unless args name
// -admin-addr), waits until it accepts TCP connections and stops it when the
// test ends. The daemon's output is logged if the test fails.
//
// The daemon runs with -reuse-port=false (unless args say otherwise): with
// SO_REUSEPORT two daemons given the same port by FreeAddr would share it,
// and each test would talk to either; without it the second fails to start.
func StartDaemon(t testing.TB, args ...string) *Daemon {
	t.Helper()
	bin := DaemonBinary(t)
	addr := FreeAddr(t)
	d := &Daemon{Addr: addr, out: &syncBuffer{}, done: make(chan struct{})}
	pre := []string{"-addr", addr, "-reuse-port=false"}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(strings.TrimLeft(a, "-"), "admin-addr") }) {
		pre = append(pre, "-admin-addr=") // no admin listener: daemons run in parallel
	}
	d.cmd = exec.Command(bin, append(pre, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("wsd output:\n%s", d.Output())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return d
		}
		if d.Exited() || time.Now().After(deadline) {
			t.Fatalf("wsd did not start listening on %s: %v\n%s", addr, err, d.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
