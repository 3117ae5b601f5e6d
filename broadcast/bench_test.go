package broadcast_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// fanout is a benchmark fixture: a hub on a 2-loop engine, and a child
// process holding n upgraded connections subscribed to "fanout" that read
// and discard everything.
type fanout struct {
	srv   *hubServer
	n     int
	child *exec.Cmd
	stdin io.Closer
}

func startFanout(n int) (*fanout, error) {
	// A cap that does not drop: the benchmark publishes in a burst.
	srv, err := newHubServer(hubConfig{hub: broadcast.Options{MaxBuffered: 64 << 20}, loops: 2})
	if err != nil {
		return nil, err
	}
	f := &fanout{srv: srv, n: n}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHubClientProcess$")
	cmd.Env = append(os.Environ(), "WSD_HUB_CLIENT_ADDR="+srv.addr, "WSD_HUB_CLIENT_N="+strconv.Itoa(n), "WSD_HUB_CLIENT_PATH=/fanout")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		_ = srv.stop()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = srv.stop()
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		_ = srv.stop()
		return nil, err
	}
	f.child, f.stdin = cmd, stdin
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "ready") {
			f.close()
			return nil, fmt.Errorf("client process: %q", line)
		}
	case <-time.After(2 * time.Minute):
		f.close()
		return nil, errors.New("client process did not get ready")
	}
	for deadline := time.Now().Add(time.Minute); srv.hub.Count("fanout") != n; {
		if time.Now().After(deadline) {
			f.close()
			return nil, fmt.Errorf("%d subscribers, want %d", srv.hub.Count("fanout"), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return f, nil
}

// close stops the child (it exits when its stdin closes) and the engine.
func (f *fanout) close() {
	if f.child != nil {
		f.stdin.Close()
		_ = f.child.Wait()
	}
	_ = f.srv.stop()
}

// run publishes b.N 64-byte messages and waits until the hub has handed
// b.N×n frames to the sockets.
func (f *fanout) run(b *testing.B) {
	hub := f.srv.hub
	payload := make([]byte, 64)
	want := int64(b.N) * int64(f.n)
	s0 := hub.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		hub.Publish("fanout", codec.OpBinary, payload)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		s := hub.Stats()
		if s.Delivered+s.Dropped-s0.Delivered-s0.Dropped >= want {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("stalled: stats %+v, want %d more frames", s, want)
		}
		time.Sleep(20 * time.Microsecond)
	}
	elapsed := b.Elapsed()
	b.StopTimer()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(want), "ns/delivered")
	if s := hub.Stats(); s.Dropped != s0.Dropped {
		b.Errorf("%d frames dropped", s.Dropped-s0.Dropped)
	}
}

// BenchmarkHubFanout publishes 64-byte messages to 1, 100 and 10,000
// subscribers on a 2-loop engine; the subscribers are a child process (a
// process may not open 20,000 files), reading and discarding. ns/delivered
// is the time per frame handed to a socket; allocs/op are the server's and
// publisher's per Publish. Run it with a fixed count, e.g.
//
//	go test -run '^$' -bench HubFanout -benchtime 2000x ./broadcast/
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		var (
			f   *fanout
			err error
		)
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			if f == nil && err == nil { // once for every run of this function
				f, err = startFanout(n)
			}
			if err != nil {
				b.Fatal(err)
			}
			f.run(b)
		})
		if f != nil {
			f.close()
		}
	}
}

// BenchmarkHubPublishNoSubscribers is the cost of a Publish to a topic
// nobody is subscribed to.
func BenchmarkHubPublishNoSubscribers(b *testing.B) {
	hub := broadcast.New(broadcast.Options{})
	payload := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		hub.Publish("nobody", codec.OpText, payload)
	}
}

// TestHubClientProcess is the child side of BenchmarkHubFanout: it opens
// WSD_HUB_CLIENT_N upgraded connections to WSD_HUB_CLIENT_PATH at
// WSD_HUB_CLIENT_ADDR, prints "ready", reads and discards everything they
// receive, and exits when its stdin closes. Without the variables it does
// nothing.
func TestHubClientProcess(t *testing.T) {
	addr := os.Getenv("WSD_HUB_CLIENT_ADDR")
	if addr == "" {
		t.Skip("child process of BenchmarkHubFanout")
	}
	n, _ := strconv.Atoi(os.Getenv("WSD_HUB_CLIENT_N"))
	path := os.Getenv("WSD_HUB_CLIENT_PATH")
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				conns[i], errs[i] = upgradeRaw(addr, path)
				if errs[i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		fmt.Printf("error: %v\n", err)
		return
	}
	for _, c := range conns {
		// One deadline for the connection's life (the parent ends it by
		// closing our stdin long before).
		_ = c.SetReadDeadline(time.Now().Add(time.Hour))
		go func() {
			buf := make([]byte, 4<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// upgradeRaw opens one connection and completes the opening handshake,
// reading exactly the response header (nothing else arrives before the
// benchmark publishes).
func upgradeRaw(addr, path string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(wstest.BuildRequest("GET", path, wstest.UpgradeHeaders(addr, wstest.NewKey()))); err != nil {
		c.Close()
		return nil, err
	}
	var buf []byte
	var tmp [512]byte
	for !bytes.Contains(buf, []byte("\r\n\r\n")) {
		m, err := c.Read(tmp[:])
		if err != nil {
			c.Close()
			return nil, err
		}
		buf = append(buf, tmp[:m]...)
	}
	if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101")) {
		c.Close()
		return nil, fmt.Errorf("upgrade: %q", buf)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
