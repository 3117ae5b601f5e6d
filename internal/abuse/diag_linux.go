package abuse

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
)

// sockDiag asks the kernel (NETLINK_SOCK_DIAG) about the queues of one
// TCP socket of this network namespace, the server's end of a loopback
// connection included.
type sockDiag struct{ fd int }

func newSockDiag() (*sockDiag, error) {
	const netlinkSockDiag = 4
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, netlinkSockDiag)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &sockDiag{fd: fd}, nil
}

func (s *sockDiag) Close() { syscall.Close(s.fd) }

// queues returns the receive queue (bytes received and not read by the
// application) and the send queue (bytes written and not acknowledged) of
// the IPv4 TCP socket whose local address is local and remote address is
// remote.
func (s *sockDiag) queues(local, remote *net.TCPAddr) (rq, wq int, err error) {
	l4, r4 := local.IP.To4(), remote.IP.To4()
	if l4 == nil || r4 == nil {
		return 0, 0, errors.New("sock_diag: IPv4 addresses only")
	}
	const (
		sockDiagByFamily = 20
		hdrLen           = 16 // struct nlmsghdr
		reqLen           = 56 // struct inet_diag_req_v2
	)
	var req [hdrLen + reqLen]byte
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], syscall.NLM_F_REQUEST)
	r := req[hdrLen:]
	r[0], r[1] = syscall.AF_INET, syscall.IPPROTO_TCP
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	id := r[8:]                     // struct inet_diag_sockid
	binary.BigEndian.PutUint16(id[0:], uint16(local.Port))
	binary.BigEndian.PutUint16(id[2:], uint16(remote.Port))
	copy(id[4:], l4)
	copy(id[20:], r4)
	ne.PutUint32(id[40:], ^uint32(0)) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], ^uint32(0))
	if err := syscall.Sendto(s.fd, req[:], 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, 0, err
	}
	var buf [512]byte
	n, _, err := syscall.Recvfrom(s.fd, buf[:], 0)
	if err != nil {
		return 0, 0, err
	}
	if n < hdrLen+64 {
		if n >= hdrLen+4 && ne.Uint16(buf[4:]) == syscall.NLMSG_ERROR {
			return 0, 0, syscall.Errno(-int32(ne.Uint32(buf[hdrLen:])))
		}
		return 0, 0, errors.New("sock_diag: short answer")
	}
	msg := buf[hdrLen:] // struct inet_diag_msg: rqueue at 56, wqueue at 60
	return int(ne.Uint32(msg[56:])), int(ne.Uint32(msg[60:])), nil
}
