package wstest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ServerSocket is the server's end, in the test process, of a client's
// loopback TCP connection to an engine running in the same process: its
// file descriptor, only queried (gnet owns it), so that a test can wait for
// what the kernel has done instead of sleeping (Linux: TCP_INFO, SIOCINQ).
type ServerSocket struct{ fd int }

// ServerSocketOf finds the server's end of client: the socket of this
// process whose address is client's remote one and whose peer is client.
// Call it while the connection is open.
func ServerSocketOf(t testing.TB, client net.Conn) ServerSocket {
	t.Helper()
	local, peer := client.RemoteAddr().String(), client.LocalAddr().String()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err1 := unix.Getsockname(fd)
		pa, err2 := unix.Getpeername(fd)
		if err1 == nil && err2 == nil && inet4String(sa) == local && inet4String(pa) == peer {
			return ServerSocket{fd}
		}
	}
	t.Fatalf("no socket of this process is the server's end of %s -> %s", peer, local)
	return ServerSocket{}
}

// inet4String formats an IPv4 socket address as net.TCPAddr does.
func inet4String(sa unix.Sockaddr) string {
	in, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return ""
	}
	return net.JoinHostPort(net.IP(in.Addr[:]).String(), strconv.Itoa(in.Port))
}

// Info returns the socket's TCP_INFO.
func (s ServerSocket) Info(t testing.TB) *unix.TCPInfo {
	t.Helper()
	ti, err := unix.GetsockoptTCPInfo(s.fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		t.Fatalf("TCP_INFO of the server's socket: %v", err)
	}
	return ti
}

// WaitRead waits until the socket has received n bytes from its peer (since
// the connection opened) and the server has read every one of them.
func (s ServerSocket) WaitRead(t testing.TB, n uint64) {
	t.Helper()
	WaitFor(t, 10*time.Second, fmt.Sprintf("the server to have received and read %d bytes", n), func() bool {
		unread, err := unix.IoctlGetInt(s.fd, unix.SIOCINQ)
		if err != nil {
			t.Fatalf("SIOCINQ of the server's socket: %v", err)
		}
		got := s.Info(t).Bytes_received
		if got > n {
			t.Fatalf("the server's socket received %d bytes, more than the %d sent", got, n)
		}
		return got == n && unread == 0
	})
}

// WaitClosed waits until the kernel has closed the socket (TCP state
// CLOSE), as it does at once when the peer resets the connection. The
// server must not close its descriptor meanwhile (hold its event loop).
func (s ServerSocket) WaitClosed(t testing.TB) {
	t.Helper()
	WaitFor(t, 10*time.Second, "the kernel to close the server's socket", func() bool {
		return s.Info(t).State == unix.BPF_TCP_CLOSE
	})
}
