// Package abuse holds the client side of wsd's abuse tests: connections that
// flood the daemon without reading, and well-behaved echo clients that
// measure what the flood costs them. The tests run them in child processes
// (the loadclient command, built without -race) so that neither their
// memory nor their scheduling is the test's own. It is internal and has no
// stability promise.
package abuse

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

// dial opens a TCP connection to addr, with a receive buffer of rcvbuf bytes
// when rcvbuf > 0 (set before connecting, so that the window the peer sees
// is small from the start), and completes the WebSocket opening handshake on
// path "/". It returns the connection and a reader holding whatever the
// server sent after its 101 answer.
func dial(addr string, rcvbuf int, timeout time.Duration) (*net.TCPConn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: timeout}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c := nc.(*net.TCPConn)
	_ = c.SetDeadline(time.Now().Add(timeout))
	key := wstest.NewKey()
	if _, err := c.Write(wstest.BuildRequest("GET", "/", wstest.UpgradeHeaders(addr, key))); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("upgrade request: %w", err)
	}
	r := bufio.NewReaderSize(c, 4<<10)
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		line, err := r.ReadSlice('\n')
		if err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("upgrade response: %w", err)
		}
		head = append(head, line...)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) ||
		!bytes.Contains(head, []byte("Sec-WebSocket-Accept: "+wstest.AcceptKey(key)+"\r\n")) {
		c.Close()
		return nil, nil, fmt.Errorf("upgrade response: %q", head)
	}
	_ = c.SetDeadline(time.Time{})
	return c, r, nil
}
