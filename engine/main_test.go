package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// echo writes every message back, like wsd -mode echo.
type echo struct{ engine.NopHandler }

func (echo) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) { _ = c.Write(op, p) }

// startEngine runs an Engine for h on a free loopback port and shuts it down
// when the test ends. It returns the engine and its host:port.
func startEngine(t testing.TB, h engine.Handler, o engine.Options) (*engine.Engine, string) {
	t.Helper()
	addr := wstest.FreeAddr(t)
	if o.Addrs == nil {
		o.Addrs = []string{"tcp://" + addr}
	}
	if o.EventLoops == 0 {
		o.EventLoops = 2
	}
	e, err := engine.New(h, o)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run() }()
	select {
	case <-e.Ready():
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("engine did not start")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil && !errors.Is(err, engine.ErrEngineClosed) {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-runErr:
			if !errors.Is(err, engine.ErrEngineClosed) {
				t.Errorf("Run returned %v, want ErrEngineClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after Shutdown")
		}
	})
	return e, addr
}

// waitFor polls cond every 5 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
