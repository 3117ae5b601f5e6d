package abuse

import (
	"syscall"
	"unsafe"
)

// ioctl requests of linux/sockios.h.
const (
	siocinq     = 0x541B // FIONREAD: bytes in the receive queue not read yet
	siocoutqnsd = 0x894B // bytes in the send queue not sent yet
)

// socketQueues returns the bytes waiting in the receive queue of fd and the
// bytes of its send queue not yet sent to the peer. ok is false if the
// kernel would not tell.
func socketQueues(rc syscall.RawConn) (inq, notsent int, ok bool) {
	var e1, e2 syscall.Errno
	err := rc.Control(func(fd uintptr) {
		var v int32
		_, _, e1 = syscall.Syscall(syscall.SYS_IOCTL, fd, siocinq, uintptr(unsafe.Pointer(&v)))
		inq = int(v)
		_, _, e2 = syscall.Syscall(syscall.SYS_IOCTL, fd, siocoutqnsd, uintptr(unsafe.Pointer(&v)))
		notsent = int(v)
	})
	return inq, notsent, err == nil && e1 == 0 && e2 == 0
}
