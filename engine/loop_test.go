package engine_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// record is a Task that appends its value to a log owned by the loop.
type record struct {
	log *loopLog
	v   int
}

type loopLog struct {
	vals    []int
	flushes []int // len(vals) at each Flush
	done    atomic.Int64
}

func (r *record) Run(l *engine.Loop) {
	r.log.vals = append(r.log.vals, r.v)
	l.FlushLater(r.log)
	r.log.done.Add(1)
}

func (g *loopLog) Flush(*engine.Loop) { g.flushes = append(g.flushes, len(g.vals)) }

// Posted tasks run on the loop in the order each goroutine posted them, and
// FlushLater runs once per posted call, after the batch it was called in.
func TestEngineLoopPostOrder(t *testing.T) {
	rec := newRecorder()
	_, addr := startEngine(t, rec, engine.Options{})
	wstest.Connect(t, addr)
	lp := rec.next(t).Loop()

	const goroutines, each = 4, 2000
	log := &loopLog{}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				lp.Post(&record{log: log, v: g*each + i})
			}
		}()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "all tasks", func() bool { return log.done.Load() == goroutines*each })
	// Read the log from the loop itself, after everything before it ran.
	got := make(chan []int, 1)
	lp.Post(taskFunc(func(*engine.Loop) { got <- append([]int(nil), log.vals...) }))
	vals := <-got
	next := make([]int, goroutines)
	for _, v := range vals {
		g, i := v/each, v%each
		if i != next[g] {
			t.Fatalf("goroutine %d: task %d ran before %d", g, i, next[g])
		}
		next[g]++
	}
	if len(log.flushes) != goroutines*each {
		t.Fatalf("%d flushes for %d FlushLater calls", len(log.flushes), goroutines*each)
	}
	for k, n := range log.flushes {
		// The flush asked for by the k-th task runs after that task's batch.
		if n < k+1 || (k > 0 && n < log.flushes[k-1]) {
			t.Fatalf("flush %d saw %d tasks done", k, n)
		}
	}
}

type taskFunc func(*engine.Loop)

func (f taskFunc) Run(l *engine.Loop) { f(l) }
