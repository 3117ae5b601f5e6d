package engine_test

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/wsdproject/wsd/engine"
)

// What the kernel saw, for tests that must not take the engine's word for
// it (Linux: /proc). The server runs in the test process, so its event
// loops' threads are the test's own to inspect (and its sockets: see
// wstest.ServerSocket).

// loopThread is the OS thread of an event loop, whose write syscalls a test
// counts in /proc/self/task/TID/io.
type loopThread struct{ tid int }

// pinTask locks the loop's goroutine to its OS thread (runtime.LockOSThread)
// for the rest of the engine's life: gnet does not, and a goroutine may
// otherwise move between threads. Nothing else runs on a locked thread.
type pinTask chan int

func (p pinTask) Run(*engine.Loop) {
	runtime.LockOSThread()
	p <- syscall.Gettid()
}

// syncTask tells when the loop has run everything posted before it.
type syncTask chan struct{}

func (s syncTask) Run(*engine.Loop) { close(s) }

// pinLoop pins l to its thread and returns the thread.
func pinLoop(t *testing.T, l *engine.Loop) loopThread {
	t.Helper()
	p := make(pinTask, 1)
	l.Post(p)
	select {
	case tid := <-p:
		return loopThread{tid}
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not run a posted task")
		return loopThread{}
	}
}

// threadIO is a thread's write(2)-family syscalls and the bytes they wrote.
type threadIO struct{ calls, bytes int64 }

func (lt loopThread) io(t *testing.T) threadIO {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/io", lt.tid))
	if err != nil {
		t.Fatalf("reading the loop thread's I/O counts: %v", err)
	}
	var io threadIO
	for _, line := range bytes.Split(b, []byte("\n")) {
		name, value, _ := bytes.Cut(line, []byte(": "))
		n, _ := strconv.ParseInt(string(value), 10, 64)
		switch string(name) {
		case "syscw":
			io.calls = n
		case "wchar":
			io.bytes = n
		}
	}
	return io
}

// socketWrites returns the socket writes the loop's thread has made since
// before, in which it wrote sent bytes (what the clients received). The
// thread's other writes are the runtime's wake-ups of its poller, 8 bytes
// to an eventfd each, made when the loop's goroutine blocks: they are told
// apart by their bytes. It first waits until the loop has run everything
// posted so far, so that writes it has started are counted.
func (lt loopThread) socketWrites(t *testing.T, l *engine.Loop, before threadIO, sent int) int64 {
	t.Helper()
	done := make(syncTask)
	l.Post(done)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not run a posted task")
	}
	now := lt.io(t)
	calls, extra := now.calls-before.calls, now.bytes-before.bytes-int64(sent)
	if extra < 0 || extra%8 != 0 || extra/8 > calls {
		t.Fatalf("the loop thread wrote %d bytes in %d write calls; the clients received %d", now.bytes-before.bytes, calls, sent)
	}
	return calls - extra/8
}
