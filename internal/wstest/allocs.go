package wstest

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

// Allocation guards measure with Allocs rather than testing.AllocsPerRun,
// for two reasons.
//
// AllocsPerRun divides whole numbers: 999 allocations in 1000 runs read as
// 0 there, so a guard built on it passes code that allocates for every
// other message. Allocs returns the count.
//
// And a guard of a running engine measures the whole process, where some
// allocations follow the clock or chance, not the traffic:
//   - the engine's ticker (OnTick, up to once a second) wakes every event
//     loop through gnet's Execute, which allocates;
//   - the garbage collection that publishes the heap profile empties every
//     sync.Pool, whose first use afterwards allocates the pool's per-P
//     storage again (Get takes the old objects back from the pool's victim
//     cache without allocating);
//   - the runtime adds a type to a type switch's or assertion's cache on a
//     random 1 in 1024 of its misses, so a call site's first allocation may
//     come after any number of warm-up runs;
//   - the scheduler starts an OS thread when the running ones are blocked
//     in system calls, which allocates its bookkeeping;
//   - the runtime runs the cleanups and finalizers of objects an earlier
//     collection found dead (crypto/tls's certificate cache has one) on its
//     own goroutine, whenever it gets to them.
//
//   - the project's buffer pool (internal/bufpool) is a sync.Pool per size
//     class, which the collection before the runs and the change of
//     GOMAXPROCS leave empty: the first buffer of a class the runs take
//     (a message split between two reads, at a random run) is allocated.
//
// So Allocs records where every allocation of the runs was made (the heap
// profiler at a rate of 1) and leaves out those made under the functions in
// uncounted, and up to coldPool allocations under bufpool.Get (a pool that
// loses its buffers allocates at every message, thousands in a guard's
// runs). The rest must be exact: garbage collection is otherwise off during
// the runs.

// uncounted lists the functions whose allocations Allocs does not count.
var uncounted = []string{
	"github.com/wsdproject/wsd/engine.(*events).OnTick",
	"sync.(*Pool).pinSlow",
	"sync.(*poolChain).pushHead",
	"runtime.buildTypeAssertCache",
	"runtime.buildInterfaceSwitchCache",
	"runtime.allocm",
	"runtime.runCleanups",
	"runtime.runfinq",
}

// coldPool is how many allocations under bufpool.Get Allocs leaves out: two
// per size class (the classes a test's messages use are far fewer).
const (
	poolGet  = "github.com/wsdproject/wsd/internal/bufpool.Get"
	coldPool = 2 * 18
)

// AllocCount is what Allocs measured.
type AllocCount struct {
	Runs      int
	Total     uint64 // allocations made during the runs, less Uncounted
	Uncounted uint64 // allocations made under the uncounted functions
	where     []stackCount
}

type stackCount struct {
	n     uint64
	stack []uintptr
}

// PerRun returns Total/Runs.
func (a AllocCount) PerRun() float64 { return float64(a.Total) / float64(a.Runs) }

func (a AllocCount) String() string {
	return fmt.Sprintf("%d allocations in %d runs (%.4f per run; %d not counted)", a.Total, a.Runs, a.PerRun(), a.Uncounted)
}

// Under returns how many of the counted allocations were made under
// function fn (its full name, as in a stack trace).
func (a AllocCount) Under(fn string) uint64 {
	var n uint64
	for _, s := range a.where {
		if under(s.stack, fn) {
			n += s.n
		}
	}
	return n
}

// Where lists the stacks that made the counted allocations, most first (up
// to 10), for a failure message.
func (a AllocCount) Where() string {
	var b strings.Builder
	for i, s := range a.where {
		if i == 10 {
			fmt.Fprintf(&b, "... and %d more stacks\n", len(a.where)-i)
			break
		}
		fmt.Fprintf(&b, "%d allocations at:\n", s.n)
		var all, own []runtime.Frame // own: without the runtime's frames
		frames := runtime.CallersFrames(s.stack)
		for {
			f, more := frames.Next()
			all = append(all, f)
			if !strings.HasPrefix(f.Function, "runtime.") {
				own = append(own, f)
			}
			if !more {
				break
			}
		}
		if len(own) == 0 {
			own = all
		}
		for _, f := range own[:min(len(own), 12)] {
			fmt.Fprintf(&b, "\t%s\n\t\t%s:%d\n", f.Function, f.File, f.Line)
		}
	}
	return b.String()
}

// Allocs runs f warm times to warm up, then runs times, and counts the heap
// allocations of the whole process (server, clients, runtime) during the
// runs, except those listed in uncounted.
// Like testing.AllocsPerRun it sets GOMAXPROCS to 1 while it measures. It
// changes process-wide settings (the heap profile rate, the garbage
// collector): tests that call it must not run in parallel with others.
func Allocs(warm, runs int, f func()) AllocCount {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	rate := runtime.MemProfileRate
	defer func() { runtime.MemProfileRate = rate }()

	for range warm {
		f()
	}
	runtime.MemProfileRate = 1
	runtime.GC() // publishes the heap profile so far
	before := heapProfile()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	for range runs {
		f()
	}
	runtime.ReadMemStats(&ms)
	mallocs = ms.Mallocs - mallocs
	runtime.GC() // publishes the runs' allocations
	after := heapProfile()

	a := AllocCount{Runs: runs}
	for key, objects := range after {
		n := uint64(objects - before[key])
		stack := key[:]
		if i := slices.Index(stack, 0); i >= 0 {
			stack = stack[:i]
		}
		switch {
		case n == 0 || under(stack, "github.com/wsdproject/wsd/internal/wstest.heapProfile"):
			// the snapshot itself, between the runs and the profile
		case underAny(stack, uncounted):
			a.Uncounted += n
		default:
			a.Total += n
			a.where = append(a.where, stackCount{n, stack})
		}
	}
	if cold := a.Under(poolGet); cold <= coldPool {
		a.where = slices.DeleteFunc(a.where, func(s stackCount) bool { return under(s.stack, poolGet) })
		a.Total -= cold
		a.Uncounted += cold
	}
	slices.SortFunc(a.where, func(x, y stackCount) int { return int(y.n) - int(x.n) })
	// The profile covers a little more than the runs (from one GC to the
	// next); MemStats covers exactly the runs, but cannot tell the ticker
	// apart. Neither may see fewer allocations than the runs made.
	if mallocs > a.Total+a.Uncounted {
		a.Total = mallocs - a.Uncounted
	}
	return a
}

// heapProfile returns the allocations so far by stack (its first 32
// frames, which several records may share).
func heapProfile() map[[32]uintptr]int64 {
	n, _ := runtime.MemProfile(nil, true)
	for {
		p := make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(p, true); ok {
			m := make(map[[32]uintptr]int64, n)
			for _, r := range p[:n] {
				m[r.Stack0] += r.AllocObjects
			}
			return m
		}
	}
}

func underAny(stack []uintptr, funcs []string) bool {
	return slices.ContainsFunc(funcs, func(fn string) bool { return under(stack, fn) })
}

// under reports whether fn is on stack.
func under(stack []uintptr, fn string) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if f.Function == fn {
			return true
		}
		if !more {
			return false
		}
	}
}
