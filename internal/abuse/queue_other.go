//go:build !linux

package abuse

import (
	"errors"
	"net"
	"syscall"
)

// socketQueues cannot read socket queues here: callers fall back to the
// bytes written, a looser bound.
func socketQueues(syscall.RawConn) (inq, notsent int, ok bool) { return 0, 0, false }

type sockDiag struct{}

func newSockDiag() (*sockDiag, error) { return nil, errors.New("sock_diag: Linux only") }

func (*sockDiag) Close() {}

func (*sockDiag) queues(_, _ *net.TCPAddr) (rq, wq int, err error) {
	return 0, 0, errors.New("sock_diag: Linux only")
}
