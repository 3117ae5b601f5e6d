package wstest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// VerifyNoLeaks is a TestMain body that fails the package when its tests
// leave goroutines running (the check coder/websocket makes in its
// main_test.go):
//
//	func TestMain(m *testing.M) { wstest.VerifyNoLeaks(m) }
//
// After m.Run it waits up to 10 s for the goroutines the tests started to
// end (connections closing, engines stopping), then prints the stacks of
// those still running and exits with status 1. Goroutines of the runtime,
// of package testing and the few process-wide ones listed in benign are
// not counted.
func VerifyNoLeaks(m *testing.M) {
	code := m.Run()
	if found := waitLeaked(10 * time.Second); found != nil {
		fmt.Fprintf(os.Stderr, "goroutine leak: %d still running after the tests:\n\n%s\n", len(found), strings.Join(found, "\n\n"))
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// waitLeaked polls leaked until it finds nothing or d has passed, and
// returns what it last found.
func waitLeaked(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		found := leaked()
		if found == nil || time.Now().After(deadline) {
			return found
		}
		time.Sleep(wait)
	}
}

// leaked returns the stack of every goroutine other than the caller's that
// is not the runtime's, package testing's or one listed in benign.
func leaked() []string {
	var found []string
	stacks := strings.Split(allStacks(), "\n\n")
	for _, g := range stacks[1:] { // the first is the caller's
		if !ignored(g) {
			found = append(found, g)
		}
	}
	return found
}

// benign lists the functions goroutines started by imported packages run
// for the life of the process; they are not the tests' doing.
var benign = []string{
	// gnet's package-global ants worker pool (gnet/v2/pkg/pool/goroutine,
	// DefaultWorkerPool, built by a package-level var initializer) starts
	// these two while the program initialises, whether or not an engine
	// ever runs: one purges idle workers every 10 s, the other refreshes
	// the pool's clock. They are two goroutines for the whole process,
	// never one per engine, and Engine.Shutdown cannot stop them (nothing
	// in gnet releases that pool). The pool's workers run only gnet's
	// client-side Enroll, which wsd does not use, so no worker lingers.
	"github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers",
	"github.com/panjf2000/ants/v2.(*poolCommon).ticktock",
	// os/signal's dispatcher, started by the first signal.Notify in the
	// process: package testing's fuzzing coordinator and workers call
	// signal.NotifyContext to stop on ^C.
	"os/signal.loop",
}

// ignored reports whether the goroutine whose stack is g (one block of
// runtime.Stack's output) belongs to the runtime, to package testing or to
// benign, judging by the function it was started with.
func ignored(g string) bool {
	entry := entryFunc(g)
	if strings.HasPrefix(entry, "runtime.") || strings.HasPrefix(entry, "testing.") {
		return true
	}
	for _, f := range benign {
		if entry == f {
			return true
		}
	}
	return false
}

// entryFunc returns the function at the bottom of a goroutine's stack: the
// one it was started with.
func entryFunc(g string) string {
	lines := strings.Split(strings.TrimSpace(g), "\n")
	// Frames are pairs of lines (function, then file:line); a goroutine
	// created by another one ends with "created by ..." and its position.
	end := len(lines)
	if end >= 2 && strings.HasPrefix(lines[end-2], "created by ") {
		end -= 2
	}
	if end < 3 { // the header and one frame
		return ""
	}
	fn := lines[end-2]
	if i := strings.LastIndexByte(fn, '('); i > 0 && strings.HasSuffix(fn, ")") {
		fn = fn[:i] // drop the argument list
	}
	return fn
}

// allStacks returns runtime.Stack(all=true), whatever its length.
func allStacks() string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
