package auth_test

import (
	"errors"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/auth"
)

// TestPoolBounded checks that no more than Workers checks ever run at
// once, and that every accepted check's done runs exactly once.
func TestPoolBounded(t *testing.T) {
	const workers, tasks = 3, 200
	p := auth.NewPool(auth.PoolOptions{Workers: workers, Queue: tasks})
	defer p.Close()
	var running, peak atomic.Int64
	var calls [tasks]atomic.Int32
	var wg sync.WaitGroup
	for i := range tasks {
		wg.Add(1)
		err := p.Submit(func() (*auth.Identity, error) {
			n := running.Add(1)
			for {
				m := peak.Load()
				if n <= m || peak.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(100 * time.Microsecond)
			running.Add(-1)
			return &auth.Identity{Sub: "u"}, nil
		}, func(id *auth.Identity, err error) {
			if err != nil || id.Sub != "u" {
				t.Errorf("task %d: %v, %v", i, id, err)
			}
			calls[i].Add(1)
			wg.Done()
		})
		if err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
	}
	wg.Wait()
	if m := peak.Load(); m > workers || m < 1 {
		t.Errorf("%d checks at once, want at most %d", m, workers)
	}
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Errorf("task %d: done called %d times", i, n)
		}
	}
	if s := p.Stats(); s.Completed != tasks || s.Rejected != 0 || s.Workers != workers {
		t.Errorf("Stats %+v", s)
	}
}

// TestPoolFull checks that Submit fails fast with ErrBusy (503) once the
// workers are busy and the queue is full, and calls neither function then.
func TestPoolFull(t *testing.T) {
	p := auth.NewPool(auth.PoolOptions{Workers: 1, Queue: 2})
	defer p.Close()
	release := make(chan struct{})
	started := make(chan struct{}, 1) // the first check to start says so
	var done sync.WaitGroup
	block := func() (*auth.Identity, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return &auth.Identity{}, nil
	}
	finish := func(*auth.Identity, error) { done.Done() }

	done.Add(1)
	if err := p.Submit(block, finish); err != nil {
		t.Fatal(err)
	}
	<-started // the worker is busy
	for range 2 {
		done.Add(1)
		if err := p.Submit(block, finish); err != nil {
			t.Fatal(err)
		}
	}
	called := false
	err := p.Submit(func() (*auth.Identity, error) { called = true; return nil, nil }, func(*auth.Identity, error) { called = true })
	if !errors.Is(err, auth.ErrBusy) || auth.Status(err) != http.StatusServiceUnavailable {
		t.Fatalf("Submit to a full pool: %v, want ErrBusy (503)", err)
	}
	if s := p.Stats(); s.Running != 1 || s.Queued != 2 || s.Rejected != 1 {
		t.Errorf("Stats %+v", s)
	}
	close(release)
	done.Wait()
	if called {
		t.Error("a refused check ran")
	}
}

// TestPoolNoQueue checks Queue < 0: only an idle worker takes a check.
func TestPoolNoQueue(t *testing.T) {
	p := auth.NewPool(auth.PoolOptions{Workers: 1, Queue: -1})
	defer p.Close()
	release := make(chan struct{})
	done := make(chan error, 2)
	// The worker may not be waiting yet: retry until it takes the check.
	for p.Submit(func() (*auth.Identity, error) { <-release; return &auth.Identity{}, nil }, func(_ *auth.Identity, err error) { done <- err }) != nil {
		runtime.Gosched()
	}
	if err := p.Submit(func() (*auth.Identity, error) { return &auth.Identity{}, nil }, func(_ *auth.Identity, err error) { done <- err }); !errors.Is(err, auth.ErrBusy) {
		t.Errorf("Submit while the only worker is busy: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestPoolClose checks that queued checks get ErrClosed without running,
// that Submit after Close fails, and that Close may be called twice.
func TestPoolClose(t *testing.T) {
	p := auth.NewPool(auth.PoolOptions{Workers: 1, Queue: 4})
	release := make(chan struct{})
	started := make(chan struct{})
	results := make(chan error, 5)
	if err := p.Submit(func() (*auth.Identity, error) {
		close(started)
		<-release
		return &auth.Identity{}, nil
	}, func(_ *auth.Identity, err error) { results <- err }); err != nil {
		t.Fatal(err)
	}
	<-started
	var ran atomic.Bool
	for range 4 {
		if err := p.Submit(func() (*auth.Identity, error) { ran.Store(true); return &auth.Identity{}, nil }, func(_ *auth.Identity, err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	// Close waits for the running check.
	select {
	case <-closed:
		t.Fatal("Close returned while a check ran")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-closed
	if err := <-results; err != nil {
		t.Errorf("the running check: %v", err)
	}
	for range 4 {
		if err := <-results; !errors.Is(err, auth.ErrClosed) {
			t.Errorf("a queued check: %v, want ErrClosed", err)
		}
	}
	if ran.Load() {
		t.Error("a queued check ran after Close")
	}
	if err := p.Submit(func() (*auth.Identity, error) { return nil, nil }, func(*auth.Identity, error) {}); !errors.Is(err, auth.ErrClosed) {
		t.Errorf("Submit after Close: %v", err)
	}
	p.Close()
}

// TestPoolPanic checks that a check that panics, or returns nothing, gives
// an error wrapping ErrInternal (500) and that the worker survives.
func TestPoolPanic(t *testing.T) {
	p := auth.NewPool(auth.PoolOptions{Workers: 1})
	defer p.Close()
	results := make(chan error, 3)
	report := func(_ *auth.Identity, err error) { results <- err }
	for _, check := range []func() (*auth.Identity, error){
		func() (*auth.Identity, error) { panic("boom") },
		func() (*auth.Identity, error) { return nil, nil },
		func() (*auth.Identity, error) { return nil, auth.ErrBadCredentials },
	} {
		if err := p.Submit(check, report); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []error{auth.ErrInternal, auth.ErrInternal, auth.ErrBadCredentials} {
		if err := <-results; !errors.Is(err, want) || auth.Status(err) != auth.Status(want) {
			t.Errorf("check %d: %v, want %v", i, err, want)
		}
	}
}

// TestPoolConcurrent submits from many goroutines until the pool closes
// under them: every done runs exactly once for an accepted check, never
// for a refused one. Run it with -race -count=50.
func TestPoolConcurrent(t *testing.T) {
	p := auth.NewPool(auth.PoolOptions{Workers: 2, Queue: 8})
	var accepted, dones atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				var once atomic.Int32
				err := p.Submit(func() (*auth.Identity, error) { return &auth.Identity{}, nil }, func(*auth.Identity, error) {
					if once.Add(1) != 1 {
						t.Error("done called twice")
					}
					dones.Add(1)
				})
				switch {
				case err == nil:
					accepted.Add(1)
				case errors.Is(err, auth.ErrBusy):
					runtime.Gosched()
				case errors.Is(err, auth.ErrClosed):
					return
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	for dones.Load() < 100 {
		runtime.Gosched()
	}
	p.Close()
	wg.Wait()
	if accepted.Load() != dones.Load() {
		t.Errorf("%d accepted, done called %d times", accepted.Load(), dones.Load())
	}
}

// TestPoolDefaults checks the default number of workers.
func TestPoolDefaults(t *testing.T) {
	p := auth.NewPool(auth.PoolOptions{})
	defer p.Close()
	if got, want := p.Stats().Workers, max(1, runtime.GOMAXPROCS(0)/2); got != want {
		t.Errorf("%d workers, want %d", got, want)
	}
}
