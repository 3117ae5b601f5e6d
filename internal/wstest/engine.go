package wstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wsdproject/wsd/engine"
)

// StartEngine runs an engine.Engine for h in this process, on a free
// loopback port unless o.Addrs is set, with 2 event loops unless
// o.EventLoops is set. It returns once the engine listens, and when the test
// ends it shuts the engine down and checks that Run returned
// ErrEngineClosed. The second result is the host:port (or "" with o.Addrs).
func StartEngine(t testing.TB, h engine.Handler, o engine.Options) (*engine.Engine, string) {
	t.Helper()
	addr := ""
	if o.Addrs == nil {
		addr = FreeAddr(t)
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
		t.Fatalf("engine Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("engine did not start")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil && !errors.Is(err, engine.ErrEngineClosed) {
			t.Errorf("engine Shutdown: %v", err)
		}
		select {
		case err := <-runErr:
			if !errors.Is(err, engine.ErrEngineClosed) {
				t.Errorf("engine Run returned %v, want ErrEngineClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("engine Run did not return after Shutdown")
		}
	})
	return e, addr
}

// WaitFor polls cond every 2 ms until it holds, and fails the test if it
// does not within d. what names the condition in the failure.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
