package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wstest.CleanupBinary()
	os.Exit(code)
}

// holdPort listens on a free loopback port until the test ends and returns
// its host:port, so that nothing else can listen there.
func holdPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// runDaemon runs the wsd binary with args and env (and no other WSD_
// variable) until it exits, and returns its exit status and output.
func runDaemon(t *testing.T, args, env []string) (status int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wstest.DaemonBinary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("wsd %q did not exit within 30 s; output:\n%s%s", args, out.String(), errOut.String())
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return status, out.String(), errOut.String()
}

// TestDaemonExitStatus runs the daemon with configurations that are wrong,
// or that cannot run, and checks its exit status and what it prints. A
// configuration error is the only thing printed: no log line comes before
// it, and no listener was opened (the admin address is held, so opening it
// would fail at run time, with status 1).
func TestDaemonExitStatus(t *testing.T) {
	held := holdPort(t)
	cases := []struct {
		name   string
		args   []string
		env    []string
		status int
		stderr string // all of stderr, unless stderrHas
		has    string // a part of stderr
		stdout string // a part of stdout
	}{
		{name: "help", args: []string{"-h"}, status: 0, stdout: "Usage: wsd [flags]"},
		{name: "mode", args: []string{"-mode", "nope"}, status: 2,
			stderr: "wsd: -mode: invalid mode \"nope\": want chat, push or echo\n"},
		{name: "addr, before the admin listener", args: []string{"-addr", "bad", "-admin-addr", held}, status: 2,
			stderr: "wsd: -addr: invalid address \"bad\": " + listenAddrWant + "\n"},
		{name: "two errors", args: []string{"-mode", "nope", "-admin-addr", held}, env: []string{"WSD_LOG_LEVEL=loud"}, status: 2,
			stderr: "wsd: -log-level: invalid log level \"loud\" (from WSD_LOG_LEVEL): want debug, info, warn or error\n" +
				"wsd: -mode: invalid mode \"nope\": want chat, push or echo\n"},
		{name: "warning first", args: []string{"-mode", "nope"}, env: []string{"WSD_MODES=echo"}, status: 2,
			stderr: "wsd: warning: environment variable WSD_MODES is not a wsd setting and is ignored (did you mean WSD_MODE?)\n" +
				"wsd: -mode: invalid mode \"nope\": want chat, push or echo\n"},
		{name: "unknown flag", args: []string{"-nope"}, status: 2, stderr: "wsd: unknown flag -nope; see wsd -h\n"},
		{name: "port in use", args: []string{"-addr", held, "-admin-addr="}, status: 1, has: "wsd: engine on " + held + ": "},
		{name: "port in use without reuse-port", args: []string{"-addr", held, "-admin-addr=", "-reuse-port=false"}, status: 1, has: "wsd: engine on " + held + ": "},
		{name: "admin port in use", args: []string{"-addr", wstest.FreeAddr(t), "-admin-addr", held}, status: 1, has: "wsd: admin listener: "},
		// In a cluster the admin listener opens before the broker starts: a
		// broker that does not start is reported, and the listener closed.
		{name: "route port in use, admin listener open", args: []string{"-mode", "push", "-addr", wstest.FreeAddr(t), "-admin-addr", wstest.FreeAddr(t), "-nats-listen", held},
			status: 1, has: "wsd: starting the broker (embedded NATS node, routes on " + held + "): "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, stdout, stderr := runDaemon(t, tc.args, tc.env)
			if status != tc.status {
				t.Errorf("exit status %d, want %d", status, tc.status)
			}
			if tc.has == "" && stderr != tc.stderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, tc.stderr)
			}
			if !strings.Contains(stderr, tc.has) {
				t.Errorf("stderr does not have %q:\n%s", tc.has, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) || tc.stdout == "" && stdout != "" {
				t.Errorf("stdout:\n%s\nwant it to have %q", stdout, tc.stdout)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	cases := []struct {
		err    error
		status int
		out    string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{&configError{errors.New("-mode: x")}, 2, "wsd: -mode: x\n"},
		{&configError{errors.Join(errors.New("a"), errors.New("b"))}, 2, "wsd: a\nwsd: b\n"},
		{fmt.Errorf("engine: %w", errors.New("address already in use")), 1, "wsd: engine: address already in use\n"},
	}
	for _, tc := range cases {
		var b bytes.Buffer
		if got := exitStatus(&b, tc.err); got != tc.status || b.String() != tc.out {
			t.Errorf("exitStatus(%v) = %d, printed %q; want %d, %q", tc.err, got, b.String(), tc.status, tc.out)
		}
	}
}

// TestDaemonPublishLimit checks that the publish API follows
// -max-message-size as the WebSocket side does: the same limit, and none
// for 0 (not a default of its own).
func TestDaemonPublishLimit(t *testing.T) {
	cases := []struct {
		setting string
		size    int
		status  int
	}{
		{"1KiB", 1024, 200},
		{"1KiB", 1025, 413},
		{"0", 1 << 20, 200},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d", tc.setting, tc.size), func(t *testing.T) {
			cfg, _, err := loadConfig([]string{"-max-message-size", tc.setting, "-mode", "push"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			d, err := newDaemon(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.setting == "0" && (d.admin.maxMsg != 0 || d.admin.maxBody != 0) {
				t.Errorf("-max-message-size 0: publish limits %d (payload), %d (body); want 0 (none)", d.admin.maxMsg, d.admin.maxBody)
			}
			srv := httptest.NewServer(d.admin)
			t.Cleanup(srv.Close)
			body := `{"topic":"a","data":"` + strings.Repeat("x", tc.size) + `"}`
			if r := call(t, srv, "POST", "/api/publish", "", body); r.status != tc.status {
				t.Errorf("status %d, want %d: %s", r.status, tc.status, truncate(r.body, 200))
			}
		})
	}
}
