package loadgen

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"
)

// Handler gets what a Poller reads. It runs on the poller's goroutine.
type Handler interface {
	// OnMessage gets a complete message: its opcode, its length, and its
	// first up-to-HeadSize payload bytes (valid during the call).
	OnMessage(p *Poller, c *Conn, op byte, length int, head []byte)
}

// Poller reads many connections on one epoll instance and one goroutine.
type Poller struct {
	epfd  int
	conns []*Conn // by fd
	rbuf  []byte
	h     Handler
	pong  []byte
	n     int
	dead  []*Conn // connections the server closed

	infl      *inflater // permessage-deflate, made at the first compressed message
	readBytes uint64    // bytes read from every connection: the wire's share of the frames
}

// NewPoller returns a Poller that reports to h.
func NewPoller(h Handler) (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &Poller{epfd: fd, rbuf: make([]byte, 256<<10), h: h}, nil
}

// Add registers c. Call it before Run, or from the poller's goroutine.
func (p *Poller) Add(c *Conn) error {
	for c.fd >= len(p.conns) {
		p.conns = append(p.conns, make([]*Conn, len(p.conns)+1024)...)
	}
	p.conns[c.fd] = c
	p.n++
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
}

// Len returns the number of connections added.
func (p *Poller) Len() int { return p.n }

// Each calls fn for every connection. Poller goroutine only (or before Run).
func (p *Poller) Each(fn func(c *Conn)) {
	for _, c := range p.conns {
		if c != nil {
			fn(c)
		}
	}
}

func (p *Poller) wantWrite(c *Conn, on bool) {
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP)
	if on {
		ev |= unix.EPOLLOUT
	}
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: ev, Fd: int32(c.fd)})
}

// Run polls until stop is closed, then returns. Before processing each
// batch of events it calls tick, if not nil (for paced senders).
func (p *Poller) Run(stop <-chan struct{}, tick func()) {
	events := make([]unix.EpollEvent, 512)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if tick != nil {
			tick()
		}
		n, err := unix.EpollWait(p.epfd, events, 20)
		if err != nil && err != unix.EINTR {
			return
		}
		for i := 0; i < n; i++ {
			ev := events[i]
			c := p.conns[ev.Fd]
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 && len(c.out) > 0 {
				m, err := unix.Write(c.fd, c.out)
				if err == nil {
					c.out = c.out[:copy(c.out, c.out[m:])]
				}
				if len(c.out) == 0 {
					p.wantWrite(c, false)
				}
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				p.read(c)
			}
		}
	}
}

// read drains c's socket and parses the frames. Poller goroutine only.
func (p *Poller) read(c *Conn) {
	for {
		n, err := unix.Read(c.fd, p.rbuf)
		if err == unix.EAGAIN {
			return
		}
		if err != nil || n == 0 {
			p.drop(c)
			return
		}
		p.readBytes += uint64(n)
		data := p.rbuf[:n]
		if len(c.in) > 0 {
			c.in = append(c.in, data...)
			data = c.in
		}
		rest := p.parse(c, data)
		if len(rest) > 0 {
			c.in = append(c.in[:0], rest...)
		} else {
			c.in = c.in[:0]
		}
		if n < len(p.rbuf) {
			return
		}
	}
}

func (p *Poller) drop(c *Conn) {
	c.Closed = true
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	p.conns[c.fd] = nil
	p.n--
	p.dead = append(p.dead, c)
	_ = unix.Close(c.fd)
}

// parse handles the complete frames at the start of b and returns the rest.
// A frame is processed only when whole, except that large payloads are
// skipped as they arrive: only the first HeadSize bytes of a message matter
// here.
func (p *Poller) parse(c *Conn, b []byte) []byte {
	for len(b) >= 2 {
		hl := 2
		ln := int(b[1] & 0x7f)
		switch ln {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		if len(b) < hl {
			return b
		}
		switch ln {
		case 126:
			ln = int(binary.BigEndian.Uint16(b[2:4]))
		case 127:
			ln = int(binary.BigEndian.Uint64(b[2:10]))
		}
		if len(b) < hl+ln {
			return b
		}
		fin, op, payload := b[0]&0x80 != 0, b[0]&0x0f, b[hl:hl+ln]
		rsv1 := b[0]&0x40 != 0
		b = b[hl+ln:]
		switch op {
		case 0x9: // ping: answer with a masked pong
			p.pong = append(p.pong[:0], ClientFrame(0xA, payload)...)
			c.Send(p, p.pong)
			continue
		case 0xA:
			continue
		case 0x8:
			c.Closed = true
			continue
		case 0x1, 0x2:
			c.inMsg, c.msgOp, c.msgLen = true, op, 0
			if c.fl != nil {
				c.fl.compressed = rsv1
			}
		}
		if !c.inMsg {
			continue
		}
		if c.fl != nil && c.fl.compressed {
			p.onCompressed(c, payload, fin)
			continue
		}
		if c.msgLen < HeadSize {
			copy(c.msgHead[c.msgLen:], payload)
		}
		c.msgLen += len(payload)
		if fin {
			c.inMsg = false
			c.Got++
			p.h.OnMessage(p, c, c.msgOp, c.msgLen, c.msgHead[:min(c.msgLen, HeadSize)])
		}
	}
	return b
}

// Now is the clock of the generator, in ns, comparable across processes.
func Now() int64 { return time.Now().UnixNano() }
