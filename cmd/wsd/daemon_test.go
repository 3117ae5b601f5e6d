package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// testDaemon is wsd built by newDaemon from a command line, as the binary
// builds it, and run in this process: its engine on a free loopback port,
// its admin handler on an httptest server.
type testDaemon struct {
	*daemon
	addr  string           // host:port of the WebSocket listener
	admin *httptest.Server // the admin API
}

// startWSD builds wsd from args (after "-addr FREE -log-level error", with
// pings and the idle timeout off unless args set them) and runs it until
// the test ends.
func startWSD(t *testing.T, args ...string) *testDaemon {
	t.Helper()
	addr := wstest.FreeAddr(t)
	base := []string{"-addr", addr, "-log-level", "error", "-ping-interval", "0", "-idle-timeout", "0"}
	cfg, warnings, err := loadConfig(append(base, args...), nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("config %q: %v %q", args, err, warnings)
	}
	d, err := newDaemon(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.engine.Run() }()
	select {
	case <-d.engine.Ready():
	case err := <-runErr:
		t.Fatalf("engine Run: %v", err)
	case <-time.After(adminTimeout):
		t.Fatal("engine did not start")
	}
	td := &testDaemon{daemon: d, addr: addr, admin: httptest.NewServer(d.admin)}
	t.Cleanup(func() {
		td.admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if err := d.shutdown(ctx); err != nil && !errors.Is(err, engine.ErrEngineClosed) {
			t.Errorf("engine Shutdown: %v", err)
		}
		if err := <-runErr; !errors.Is(err, engine.ErrEngineClosed) {
			t.Errorf("engine Run returned %v, want ErrEngineClosed", err)
		}
	})
	return td
}

// dialWS opens a gorilla/websocket client on path, closed when the test
// ends; every read of the test must set its own deadline (readJSON does).
func (td *testDaemon) dialWS(t *testing.T, path string) *websocket.Conn {
	t.Helper()
	return td.dialHeader(t, path, nil)
}

// dialHeader is dialWS with header sent with the upgrade request.
func (td *testDaemon) dialHeader(t *testing.T, path string, header http.Header) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: adminTimeout}
	c, resp, err := d.Dial("ws://"+td.addr+path, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP status %d)", path, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// publish posts body to the admin API and returns its answer.
func (td *testDaemon) publish(t *testing.T, body string) adminReply {
	t.Helper()
	return call(t, td.admin, "POST", "/api/publish", "", body)
}
