package loadgen

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// HeadSize is how many leading payload bytes of a message a Handler sees.
const HeadSize = 48

// Conn is one client connection: a non-blocking socket and the state of the
// frame it is reading. Only its poller's goroutine touches it after Add.
type Conn struct {
	fd  int
	in  []byte // bytes of an incomplete frame carried to the next read
	out []byte // bytes the socket did not take yet

	// the message being read
	msgLen  int            // payload bytes so far
	msgHead [HeadSize]byte // its first HeadSize bytes
	inMsg   bool
	msgOp   byte

	// scenario state
	Index   int    // the connection's number in its worker
	SentAt  int64  // when the outstanding echo burst was sent (ns)
	Waiting int    // echoes of that burst still to come
	LastSeq uint64 // last broadcast sequence number seen
	Got     uint64 // messages received
	Closed  bool   // the server closed the connection or sent a close frame

	fl *deflateConn // permessage-deflate state; nil when not negotiated
}

// Dial connects from source address src (an IPv4 address such as
// "127.0.0.2", port chosen by the kernel) to dst ("127.0.0.1:8080"), sends
// the upgrade request for path and reads the 101 answer, all blocking with
// timeout; then the socket is switched to non-blocking. Bytes the server
// sent after its answer are kept as the start of the first frame.
func Dial(src, dst, path string, timeout time.Duration) (*Conn, error) {
	fd, rest, err := dialUpgrade(src, dst, path, timeout, 0)
	if err != nil {
		return nil, err
	}
	return newConn(fd, rest)
}

// newConn switches an upgraded socket to non-blocking and wraps it; rest
// is what the server sent after its answer.
func newConn(fd int, rest []byte) (*Conn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := &Conn{fd: fd}
	if len(rest) > 0 {
		c.in = rest
	}
	return c, nil
}

// dialTCP opens a blocking TCP connection from src to dst whose reads and
// writes time out after timeout. rcvbuf, if positive, sets SO_RCVBUF
// before the connection is made, which bounds the window the peer sees.
func dialTCP(src, dst string, timeout time.Duration, rcvbuf int) (int, error) {
	ap, err := netip.ParseAddrPort(dst)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if src != "" {
		sa, err := netip.ParseAddr(src)
		if err != nil {
			return -1, err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: sa.As4()}); err != nil {
			return -1, fmt.Errorf("bind %s: %w", src, err)
		}
	}
	if rcvbuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, timeout); err != nil {
		return -1, fmt.Errorf("connect %s: %w", dst, err)
	}
	ok = true
	return fd, nil
}

// upgradeRequest is a client's upgrade request for path on host.
func upgradeRequest(host, path string) []byte {
	var key [16]byte
	_, _ = rand.Read(key[:])
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n")
}

// dialUpgrade opens a blocking connection (see dialTCP) and upgrades it to
// WebSocket on path. It returns the socket, still blocking, and the bytes
// the server sent after its 101 answer.
func dialUpgrade(src, dst, path string, timeout time.Duration, rcvbuf int) (int, []byte, error) {
	fd, _, rest, err := dialRequest(src, dst, upgradeRequest(dst, path), timeout, rcvbuf)
	return fd, rest, err
}

// dialRequest is dialUpgrade with the request given; it also returns the
// server's answer header (up to its blank line).
func dialRequest(src, dst string, req []byte, timeout time.Duration, rcvbuf int) (int, []byte, []byte, error) {
	fd, err := dialTCP(src, dst, timeout, rcvbuf)
	if err != nil {
		return -1, nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := writeAll(fd, req); err != nil {
		return -1, nil, nil, fmt.Errorf("write upgrade: %w", err)
	}
	buf := make([]byte, 0, 512)
	var tmp [512]byte
	for {
		n, err := unix.Read(fd, tmp[:])
		if err == unix.EINTR { // Go's preemption signal interrupts blocking syscalls
			continue
		}
		if err == unix.EAGAIN { // SO_RCVTIMEO
			return -1, nil, nil, fmt.Errorf("no upgrade answer within %v", timeout)
		}
		if err != nil {
			return -1, nil, nil, fmt.Errorf("read upgrade answer: %w", err)
		}
		if n == 0 {
			return -1, nil, nil, errors.New("server closed during the upgrade")
		}
		buf = append(buf, tmp[:n]...)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101")) {
				line, _, _ := bytes.Cut(buf, []byte("\r\n"))
				return -1, nil, nil, fmt.Errorf("upgrade refused: %s", line)
			}
			var rest []byte
			if r := buf[i+4:]; len(r) > 0 {
				rest = append([]byte(nil), r...)
			}
			ok = true
			return fd, buf[:i+4], rest, nil
		}
		if len(buf) > 8192 {
			return -1, nil, nil, errors.New("upgrade answer too long")
		}
	}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// connect is a blocking connect(2) that survives EINTR: an interrupted
// connect goes on in the background, so it waits for the socket to become
// writable and reads the outcome from SO_ERROR.
func connect(fd int, sa unix.Sockaddr, timeout time.Duration) error {
	err := unix.Connect(fd, sa)
	if err != unix.EINTR {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(time.Until(deadline).Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soErr != 0 {
			return unix.Errno(soErr)
		}
		return nil
	}
}

// Close closes the socket.
func (c *Conn) Close() { _ = unix.Close(c.fd) }

// Send writes b, keeping what the socket does not take for the poller to
// flush. Poller goroutine only (or before Add).
func (c *Conn) Send(p *Poller, b []byte) {
	if len(c.out) > 0 {
		c.out = append(c.out, b...)
		return
	}
	n, err := unix.Write(c.fd, b)
	if err != nil {
		if err != unix.EAGAIN {
			c.Closed = true
			return
		}
		n = 0
	}
	if n < len(b) {
		c.out = append(c.out, b[n:]...)
		p.wantWrite(c, true)
	}
}

// ClientFrame builds one masked client frame (RFC 6455 §5.3) with a fixed,
// non-zero mask key, so the server does the real unmasking work while the
// generator reuses the bytes.
func ClientFrame(op byte, payload []byte) []byte {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, key[:]...)
	for i, x := range payload {
		b = append(b, x^key[i&3])
	}
	return b
}

// Fd returns the socket.
func (c *Conn) Fd() int { return c.fd }

// WriteBlocking writes all of b on a socket in blocking mode.
func (c *Conn) WriteBlocking(b []byte) error { return writeAll(c.fd, b) }
