package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/auth"
	"github.com/wsdproject/wsd/internal/wstest"
)

// BenchmarkAuthHandshake measures the CPU time wsd spends per upgrade,
// without authentication and with an HS256 or an ES256 token in the
// Authorization header: the daemon runs as its own process (its CPU time
// is read from /proc, so the clients' is not counted), and 4 clients
// connect, send the upgrade request, read the 101 and close, b.N times in
// all. server-cpu-us/op is the daemon's user and system time per
// handshake; the ES256 share runs on the -auth-check-workers goroutines,
// not on the event loops (TestAuthBcryptOffLoop shows the loop free while
// slow checks run).
//
//	go test ./cmd/wsd -run '^$' -bench AuthHandshake -benchtime 4000x -count 3
func BenchmarkAuthHandshake(b *testing.B) {
	dir := b.TempDir()
	secret := []byte(strings.Repeat("h", 32))
	esPriv, esPub, err := auth.GenerateKey(auth.AlgES)
	if err != nil {
		b.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	hsFile, esFile := write("hs", secret), write("es.pub", esPub)
	mintWith := func(cfg auth.Config) string {
		tok, err := auth.Mint(cfg, auth.Claims{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour), Topics: []string{"news.*"}})
		if err != nil {
			b.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name  string
		args  []string
		token string
	}{
		{"plain", nil, ""},
		{"HS256", []string{"-auth", "required", "-auth-jwt-key", hsFile, "-auth-jwt-alg", "HS"}, mintWith(auth.Config{Alg: auth.AlgHS, Key: secret})},
		{"ES256", []string{"-auth", "required", "-auth-jwt-key", esFile, "-auth-jwt-alg", "ES"}, mintWith(auth.Config{Alg: auth.AlgES, Key: esPriv})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			args := append([]string{"-mode", "push", "-log-level", "error", "-event-loops", "1", "-ping-interval", "0", "-idle-timeout", "0", "-close-timeout", "0"}, tc.args...)
			d := wstest.StartDaemon(b, args...)
			req := upgradeRequest(d.Addr, tc.token)
			handshake(b, d.Addr, req) // warm up: the first connection's allocations
			serverCPUPerOp(b, d.PID(), func() { handshake(b, d.Addr, req) })
		})
	}
}

// upgradeRequest is a push upgrade request, with token as a bearer token.
func upgradeRequest(addr, token string) []byte {
	hs := wstest.UpgradeHeaders(addr, wstest.NewKey())
	if token != "" {
		hs = wstest.WithHeader(hs, "Authorization", "Bearer "+token)
	}
	return wstest.BuildRequest("GET", "/?topics=news.a", hs)
}

// handshake connects, upgrades and closes.
func handshake(b *testing.B, addr string, req []byte) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		b.Error(err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		b.Error(err)
		return
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		b.Errorf("upgrade: %q %v", line, err)
	}
}

// serverCPUPerOp runs op b.N times in all from 4 goroutines and reports
// the CPU time of process pid (the daemon) per op, server-cpu-us/op.
func serverCPUPerOp(b *testing.B, pid int, op func()) {
	cpu0 := processCPU(b, pid)
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				op()
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	cpu := processCPU(b, pid) - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "server-cpu-us/op")
}

// processCPU returns the user and system CPU time of process pid, from
// /proc/PID/stat (in clock ticks of 10 ms).
func processCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Skipf("reading the daemon's CPU time: %v", err)
	}
	// The fields after the command name, which is in parentheses.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
