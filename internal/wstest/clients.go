package wstest

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
)

// A client process holds many upgraded connections for a test, so that the
// connections' file descriptors and memory are not the test's own (a process
// may open 20,000 files here). The test binary runs itself again as the
// child: each package that uses it declares
//
//	func TestClientProcess(t *testing.T) { wstest.ClientProcessMain(t) }
//
// and starts children with StartClientProcess.

const (
	envAddr = "WSTEST_CLIENT_ADDR"
	envPath = "WSTEST_CLIENT_PATH"
	envN    = "WSTEST_CLIENT_N"
	envRead = "WSTEST_CLIENT_READ"
)

// ClientProcess is a running child holding connections.
type ClientProcess struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

// StartClientProcess runs TestClientProcess of the current test binary,
// which opens n upgraded connections to addr on path (reading and discarding
// whatever arrives when read is set), and returns once all are open.
func StartClientProcess(addr, path string, n int, read bool) (*ClientProcess, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestClientProcess$")
	cmd.Env = append(os.Environ(), envAddr+"="+addr, envPath+"="+path, envN+"="+strconv.Itoa(n), envRead+"="+strconv.FormatBool(read))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &ClientProcess{cmd: cmd, stdin: stdin}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "ready") {
			p.Close()
			return nil, fmt.Errorf("client process: %q", line)
		}
	case <-time.After(2 * time.Minute):
		p.Close()
		return nil, errors.New("client process did not get ready in 2 minutes")
	}
	return p, nil
}

// Close ends the child (it exits when its stdin closes) and waits for it.
func (p *ClientProcess) Close() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// ClientProcessMain is the child's side: without the environment that
// StartClientProcess sets it skips; with it, it opens the connections with 8
// dialers, prints "ready" (or "error: ..."), and holds them until its stdin
// closes.
func ClientProcessMain(t *testing.T) {
	addr := os.Getenv(envAddr)
	if addr == "" {
		t.Skip("the child side of StartClientProcess")
	}
	path := os.Getenv(envPath)
	n, _ := strconv.Atoi(os.Getenv(envN))
	read := os.Getenv(envRead) == "true"
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	const dialers = 8
	for d := range dialers {
		wg.Go(func() {
			for i := d; i < n; i += dialers {
				if conns[i], errs[i] = dialUpgraded(addr, path); errs[i] != nil {
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
	if read {
		for _, c := range conns {
			go func() {
				buf := make([]byte, 4<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// dialUpgraded opens one connection and completes the opening handshake,
// with buffers no larger than the handshake needs.
func dialUpgraded(addr, path string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(BuildRequest("GET", path, UpgradeHeaders(addr, NewKey()))); err != nil {
		c.Close()
		return nil, err
	}
	var (
		buf []byte
		tmp [512]byte
	)
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
