package engine

import (
	"net"
	"syscall"

	"github.com/panjf2000/gnet/v2"
)

// tcpNotSentLowat is TCP_NOTSENT_LOWAT (linux/tcp.h), which the syscall
// package does not name.
const tcpNotSentLowat = 25

// limitKernelUnsent bounds the bytes the kernel keeps unsent for gc, a TCP
// connection just accepted, to kernelUnsent(MaxBuffered) (see the top of
// limits.go): one setsockopt per connection. Without a cap, or for a unix
// socket, it does nothing. Loop only (OnOpen).
func (e *Engine) limitKernelUnsent(gc gnet.Conn) {
	n := kernelUnsent(e.opts.MaxBuffered)
	if n <= 0 {
		return
	}
	if _, ok := gc.LocalAddr().(*net.TCPAddr); !ok {
		return
	}
	if fd := gc.Fd(); fd >= 0 {
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpNotSentLowat, n) // best effort: an old kernel keeps its own limit
	}
}
