//go:build linux

package abuse_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsdproject/wsd/internal/abuse"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestFloodEcho is the acceptance test of the flood problem: 50 clients
// send 64-byte messages to `wsd -mode echo` as fast as their sockets take
// them and never read the echoes, on the same event loops as 100
// well-behaved echo clients. Before the engine's limits, 50 such clients
// grew the daemon by 3 GiB in 10 s, for good. Now:
//
//   - the daemon's RSS stays within 64 MiB of where it was;
//   - each flooder is closed (1008) within 1 s of the server passing its
//     cap for it (MaxBuffered, 1 MiB by default);
//   - the echo clients lose nothing, and their p99 round trip during the
//     flood stays under 50 ms;
//   - both times for a daemon that gets a CPU whenever it is ready to
//     run. On a machine that other processes keep busy, the daemon's
//     threads wait for a CPU (the kernel counts it: schedstat), and every
//     answer waits with them: the time bounds are stretched by the
//     daemon's run time plus that wait, over its run time
//     (schedTimes.stretch), at most maxStretch times. The test's own
//     clients count among those processes: with the machine otherwise
//     nearly idle (load average about 1), the daemon still waited 3 to 5
//     ms per ms it ran, behind the flooders and the echo clients on the
//     same 2 CPUs, and over 7 runs the p99 was 26-100 ms (bounds 195-290
//     ms), the slowest close 63-216 ms after the cap, the RSS growth 9-25
//     MiB. Over 10 runs while other test runs kept the 2 CPUs busy (load
//     average 4 to 6), the daemon waited 5 to 11 ms per ms it ran; the
//     p99 was 62-217 ms (bounds 285-570 ms), the slowest close 169-430 ms
//     after the cap, the RSS growth 11-30 MiB. The engine then spent 110-135 ms of CPU on the flood;
//     before it bounded the kernel's unsent bytes it spent 440-640 ms,
//     decoding 2.7 million messages instead of 0.5, and the p99 was
//     29-101 ms with the machine nearly idle, 87-190 ms at a load average
//     of 5 to 6;
//   - afterwards the daemon's Go heap is back within 10% of where it was,
//     and the daemon still serves new clients.
//
// How long the daemon's RSS takes to come back is logged, not asserted:
// that is the Go runtime's scavenger's business.
//
// The clients run in child processes (loadclient, built without -race):
// apart from the test process, and at full speed whether or not the test
// runs with -race.
func TestFloodEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("a flood through the daemon: about 10 s")
	}
	const (
		flooders     = 50
		echoers      = 100
		payload      = 64
		floodTimeout = 5 * time.Second       // a flooder the server has not closed by then fails
		echoInterval = 10 * time.Millisecond // each echo client sends a message this often
		capBytes     = 1 << 20               // the daemon's default -max-buffered
		maxGrowth    = 64 << 20              // RSS
		maxDelay     = time.Second           // from passing the cap to the close
		// maxP99 bounds the well-behaved clients' p99 round trip while the
		// flooders are being closed: the 50 ms. Both time bounds
		// hold for a daemon that gets a CPU when it is ready to run; on a
		// machine that other processes keep busy they are stretched by the
		// share of the CPU the daemon got (schedTimes.stretch).
		maxP99      = 50 * time.Millisecond
		maxStretch  = 20               // the most the bounds are stretched: a p99 of 1 s
		rssWait     = 5 * time.Second  // how long RSS is followed after a collection
		reclaimWait = 10 * time.Second // the engine gives memory back 3 s after the last limit close, on a tick
		sample      = 100 * time.Millisecond
	)
	d := startDaemon(t, "-mode", "echo", "-pprof")
	echo := startChild(t, "echo", "-mode=echo", "-addr="+d.addr, "-conns="+strconv.Itoa(echoers),
		"-payload="+strconv.Itoa(payload), "-interval="+echoInterval.String(), "-duration=30s", "-timeout=2s")
	flood := startChild(t, "flood", "-mode=flood", "-addr="+d.addr, "-conns="+strconv.Itoa(flooders),
		"-payload="+strconv.Itoa(payload), "-rcvbuf=4096", "-cap="+strconv.Itoa(capBytes), "-flood-timeout="+floodTimeout.String())
	// Abusers run on their own machines, not on the server's CPUs: here they
	// share them, so they yield to the daemon and the echo clients.
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, flood.cmd.Process.Pid, 19); err != nil {
		t.Fatal(err)
	}

	// A second of echoes before the flood, for comparison.
	var calm abuse.EchoReport
	echo.send("run " + time.Second.String())
	if err := echo.report(30*time.Second, &calm); err != nil {
		t.Fatal(err)
	}
	t.Logf("echo before the flood: %d round trips: p50 %v, p99 %v, max %v",
		calm.RoundTrips, calm.P50.Round(time.Microsecond), calm.P99.Round(time.Microsecond), calm.Max.Round(time.Microsecond))

	heapBefore := d.heapInUse(t)
	rssBefore := d.rss(t)
	const closed1008 = `wsd_closes_total{code="1008"}`
	closesBefore := d.metrics(t)[closed1008]

	// The flood, with RSS sampled every 100 ms until the flooders report
	// (each closed, or failed at floodTimeout); the echo clients run as
	// long.
	sched0 := d.sched(t)
	start := time.Now()
	echo.send("run")
	flood.send("run")
	var (
		fr       abuse.FloodReport
		er       abuse.EchoReport
		reported = make(chan error, 2)
	)
	go func() {
		err := flood.report(floodTimeout+30*time.Second, &fr)
		echo.send("stop")
		reported <- err
		reported <- echo.report(30*time.Second, &er)
	}()
	rssPeak, peakAt := rssBefore, time.Duration(0)
	tick := time.NewTicker(sample)
	defer tick.Stop()
	for pending := 2; pending > 0; {
		select {
		case err := <-reported:
			if err != nil {
				t.Fatal(err)
			}
			pending--
		case <-tick.C:
		}
		if r := d.rss(t); r > rssPeak {
			rssPeak, peakAt = r, time.Since(start)
		}
	}
	floodTime := time.Since(start)
	cpu := d.sched(t).sub(sched0)
	stretch := min(cpu.stretch(), maxStretch)
	t.Logf("the daemon's threads ran %v during the flood and waited %v for a CPU that other processes had: its time bounds are stretched %.1f times",
		cpu.ran.Round(time.Millisecond), cpu.waited.Round(time.Millisecond), stretch)
	closeBound, p99Bound := stretched(maxDelay, stretch), stretched(maxP99, stretch)
	t.Logf("RSS before the flood %s, peak %s (+%s, %v after the start); the flood took %v",
		mib(rssBefore), mib(rssPeak), mib(rssPeak-rssBefore), peakAt.Round(time.Millisecond), floodTime.Round(time.Millisecond))
	if growth := rssPeak - rssBefore; growth >= maxGrowth {
		t.Errorf("daemon RSS grew by %s during the flood (%s to %s), want less than %s",
			mib(growth), mib(rssBefore), mib(rssPeak), mib(maxGrowth))
	}

	// Flooders: each closed by the server within maxDelay of its cap. The
	// flooder sees the close as a failed write (ECONNRESET or EPIPE: it
	// never reads, so it cannot see the close frame, which waits behind
	// the echoes it did not read); the daemon's close counter says the
	// close was the backpressure limit's 1008.
	var delays []time.Duration
	var written int64
	closed, open := 0, 0
	for _, f := range fr.Floods {
		written += f.Written
		if f.Closed {
			closed++
			delays = append(delays, f.CloseDelay())
			continue
		}
		if open++; open <= 3 {
			t.Errorf("flooder %d: not closed by the server: %s (%s written in %v)", f.Flooder, f.Err, mib(f.Written), f.EndAfter)
		}
	}
	if open > 0 {
		t.Errorf("%d of %d flooders not closed by the server", open, len(fr.Floods))
	}
	if len(fr.Floods) != flooders {
		t.Errorf("%d flooders reported, want %d", len(fr.Floods), flooders)
	}
	if !fr.ServerQueues {
		t.Log("the flooders could not read the server's socket queues: the time each cap was passed is an early estimate")
	}
	slices.Sort(delays)
	if n := len(delays); n > 0 {
		t.Logf("flood: %d flooders wrote %s; closed after the server passed its cap: p50 %v, p90 %v, max %v",
			n, mib(written), delays[n/2].Round(time.Millisecond), delays[n*9/10].Round(time.Millisecond), delays[n-1].Round(time.Millisecond))
		if delays[n-1] > closeBound {
			t.Errorf("a flooder was closed %v after the server passed its cap, want at most %v (%v stretched %.1f times)", delays[n-1], closeBound, maxDelay, stretch)
		}
	}
	if got := int(d.metrics(t)[closed1008] - closesBefore); got != closed {
		t.Errorf("the daemon counts %d closes with 1008 (the backpressure limit), the flooders saw %d closes", got, closed)
	}

	// Echo clients: nothing lost, p99 under maxP99 (stretched).
	t.Logf("echo during the flood: %d clients, %d round trips (at least %d each): p50 %v, p99 %v, p99.9 %v, max %v",
		er.Conns, er.RoundTrips, er.MinPerConn, er.P50.Round(time.Microsecond), er.P99.Round(time.Microsecond),
		er.P999.Round(time.Microsecond), er.Max.Round(time.Microsecond))
	if er.ErrorCount > 0 {
		t.Errorf("%d echo clients failed: %s", er.ErrorCount, strings.Join(er.Errors, "; "))
	}
	if er.Conns != echoers || er.MinPerConn < 5 {
		t.Errorf("%d echo clients, the slowest made %d round trips: too few to measure", er.Conns, er.MinPerConn)
	}
	if er.P99 >= p99Bound {
		t.Errorf("echo p99 round trip %v during the flood, want under %v (%v stretched %.1f times)", er.P99, p99Bound, maxP99, stretch)
	}

	// Memory comes back by itself: once the limits have closed the
	// flooders and a few quiet seconds passed, the engine gives memory
	// back to the system (engine/reclaim.go), with no collection forced
	// from outside.
	if !rssTimeline(t, d, rssBefore, rssPeak, time.Now(), reclaimWait, tick.C) {
		t.Errorf("RSS did not come back by itself within %v of the flood", reclaimWait)
	}

	// Memory comes back: the Go heap at once (after two collections), RSS
	// as the runtime's scavenger returns free pages to the kernel.
	heapAfter := d.heapInUse(t)
	gcAt := time.Now()
	t.Logf("Go heap in use before the flood %s, after it %s", mib(heapBefore), mib(heapAfter))
	if heapAfter > heapBefore+heapBefore/10 {
		t.Errorf("Go heap in use %s after the flood, want within 10%% of %s", mib(heapAfter), mib(heapBefore))
	}
	if !rssTimeline(t, d, rssBefore, rssPeak, gcAt, rssWait, tick.C) {
		// The flooders' buffers sat in sync.Pools (gnet's), which the
		// second collection emptied; the scavenger skips pages of chunks
		// that were densely used during the last whole GC cycle, so those
		// pages wait for the next one. An idle daemon collects only every
		// 2 minutes (the runtime's forced GC): start that cycle now.
		if _, err := d.get("/debug/pprof/heap?gc=1"); err != nil {
			t.Fatal(err)
		}
		t.Log("a third collection")
		rssTimeline(t, d, rssBefore, rssPeak, time.Now(), rssWait, tick.C)
	}

	// The daemon still serves new clients.
	c := wstest.Connect(t, d.addr)
	c.WriteFrames(wstest.Text("after the flood"))
	c.ExpectText("after the flood")
	c.CloseHandshake()
}

// rssTimeline logs the daemon's RSS once a second from since until it has
// given back 90% of what it grew from before to peak, or for at most wait,
// and reports whether it did; tick paces the samples.
func rssTimeline(t *testing.T, d *daemon, before, peak int64, since time.Time, wait time.Duration, tick <-chan time.Time) bool {
	t.Helper()
	back := before + (peak-before)/10
	var timeline []string
	next := time.Duration(0)
	for {
		r, at := d.rss(t), time.Since(since)
		if r <= back || at >= wait || at >= next {
			timeline = append(timeline, fmt.Sprintf("%.1fs %s", at.Seconds(), mib(r)))
			next += time.Second
		}
		if r <= back {
			t.Logf("RSS gave back 90%% of its growth %v after the collection: %s", at.Round(100*time.Millisecond), strings.Join(timeline, ", "))
			return true
		}
		if at >= wait {
			t.Logf("RSS had not given back 90%% of its growth (down to %s) %v after the collection: %s", mib(back), wait, strings.Join(timeline, ", "))
			return false
		}
		<-tick
	}
}

// mib formats a byte count in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
