package abuse_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// schedTimes is how a process has used the CPUs: the time its threads ran,
// and the time they were ready to run and waited for a CPU (the kernel's
// schedstat run delay: other processes had it).
type schedTimes struct{ ran, waited time.Duration }

// sched sums /proc/PID/task/*/schedstat over the daemon's threads. A thread
// that ended meanwhile drops out of the sum: compare two readings over a
// span in which the daemon starts no threads (Go's are long-lived).
func (d *daemon) sched(t *testing.T) schedTimes {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", d.pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s schedTimes
	for _, task := range tasks {
		b, err := os.ReadFile(dir + "/" + task.Name() + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			t.Fatalf("%s/%s/schedstat: %q", dir, task.Name(), b)
		}
		ran, err1 := strconv.ParseInt(f[0], 10, 64)
		waited, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s/%s/schedstat: %q", dir, task.Name(), b)
		}
		s.ran += time.Duration(ran)
		s.waited += time.Duration(waited)
	}
	return s
}

func (s schedTimes) sub(o schedTimes) schedTimes {
	return schedTimes{s.ran - o.ran, s.waited - o.waited}
}

// stretch returns how much longer than its own work the daemon's answers
// could take over a span in which it ran s.ran and waited s.waited for a
// CPU: (ran + waited) / ran, the inverse of the share of the CPU it got
// while it wanted one (1: it never waited).
func (s schedTimes) stretch() float64 {
	if s.ran <= 0 {
		return 1
	}
	return float64(s.ran+s.waited) / float64(s.ran)
}

// stretched returns bound stretched by f (at least 1).
func stretched(bound time.Duration, f float64) time.Duration {
	return time.Duration(float64(bound) * max(f, 1))
}
