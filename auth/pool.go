package auth

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// PoolOptions configures a Pool.
type PoolOptions struct {
	// Workers is how many checks may run at once. 0 means half of
	// GOMAXPROCS, at least 1: the checks are CPU-bound, and the event
	// loops keep the other half.
	Workers int
	// Queue is how many checks may wait for a worker; Submit fails with
	// ErrBusy past it. A check waits at most about Queue/Workers times the
	// cost of one (about 60 ms for bcrypt at cost 10). 0 means 32 per
	// worker; negative, none (a check is taken only by an idle worker).
	Queue int
}

// Pool runs slow authentication checks (bcrypt, RSA and ECDSA signatures)
// off the event loops, on a fixed number of goroutines fed by a bounded
// queue, so that a storm of logins costs a bounded amount of CPU and
// memory and is refused early (503) rather than served late.
type Pool struct {
	tasks   chan poolTask
	mu      sync.RWMutex // held for writing to close tasks
	closed  bool
	closing atomic.Bool
	wg      sync.WaitGroup
	workers int

	running   atomic.Int64
	completed atomic.Uint64
	rejected  atomic.Uint64
}

type poolTask struct {
	check func() (*Identity, error)
	done  func(*Identity, error)
}

// PoolStats counts a Pool's work.
type PoolStats struct {
	Workers   int    // goroutines running checks
	Running   int    // checks running now
	Queued    int    // checks waiting for a worker
	Completed uint64 // checks that ran, whatever their result
	Rejected  uint64 // Submit calls refused with ErrBusy
}

// NewPool starts a Pool's workers. Close stops them.
func NewPool(opts PoolOptions) *Pool {
	workers := opts.Workers
	if workers <= 0 {
		workers = max(1, runtime.GOMAXPROCS(0)/2)
	}
	queue := opts.Queue
	switch {
	case queue == 0:
		queue = 32 * workers
	case queue < 0:
		queue = 0
	}
	p := &Pool{tasks: make(chan poolTask, queue), workers: workers}
	for range workers {
		p.wg.Go(p.work)
	}
	return p
}

// Submit queues check to run on a worker, then done with its result, on
// the same worker goroutine: done must hand the result to whoever waits
// for it (an engine posts it to the connection's event loop) and not
// block. Submit never blocks: when the queue is full it returns ErrBusy
// (503), after Close ErrClosed (503), and then neither function is called.
// Otherwise done is called exactly once: with check's result; with an
// error wrapping ErrInternal if check panicked; or with ErrClosed, without
// running check, if the Pool was closed while check waited. Neither
// function may be nil.
func (p *Pool) Submit(check func() (*Identity, error), done func(*Identity, error)) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	select {
	case p.tasks <- poolTask{check, done}:
		return nil
	default:
		p.rejected.Add(1)
		return ErrBusy
	}
}

// Close refuses new checks, calls done with ErrClosed for the queued ones,
// waits for the running ones to finish and their workers to exit.
func (p *Pool) Close() {
	p.closing.Store(true)
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.tasks)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Stats returns the Pool's counters.
func (p *Pool) Stats() PoolStats {
	return PoolStats{
		Workers:   p.workers,
		Running:   int(p.running.Load()),
		Queued:    len(p.tasks),
		Completed: p.completed.Load(),
		Rejected:  p.rejected.Load(),
	}
}

// work runs tasks until the queue is closed and empty.
func (p *Pool) work() {
	for t := range p.tasks {
		if p.closing.Load() {
			t.done(nil, ErrClosed)
			continue
		}
		p.running.Add(1)
		id, err := runCheck(t.check)
		p.running.Add(-1)
		p.completed.Add(1)
		t.done(id, err)
	}
}

// runCheck calls check. A panic becomes an error that wraps ErrInternal
// (and names the panic, for the log), so that done is still called and the
// worker survives; so does a check that returns neither an identity nor an
// error.
func runCheck(check func() (*Identity, error)) (id *Identity, err error) {
	defer func() {
		if r := recover(); r != nil {
			id, err = nil, fmt.Errorf("%w: panic: %v", ErrInternal, r)
		}
	}()
	id, err = check()
	if id == nil && err == nil {
		err = fmt.Errorf("%w: the check returned no identity and no error", ErrInternal)
	}
	return id, err
}
