package abuse

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

// FloodConfig describes flooders: connections that write masked text frames
// as fast as their sockets take them and never read.
type FloodConfig struct {
	Addr    string // host:port of the daemon
	Conns   int    // flooders
	Payload int    // payload bytes per frame
	RcvBuf  int    // SO_RCVBUF of each flooder (the kernel doubles it)
	// Cap is the server's cap on what one connection may make it hold
	// (MaxBuffered); each flooder records when the server may first have
	// held that much.
	Cap int
	// Timeout ends a flooder the server has not closed (a failure).
	Timeout time.Duration
}

// Flood is what one flooder saw, from its first write to its end.
type Flood struct {
	Flooder int   `json:"flooder"`
	Written int64 `json:"written"` // bytes written, whole frames
	// CapAfter is the time from the first write to the first moment the
	// bytes the server may hold for the connection reached Cap (see
	// serverHolds). The bound is an upper one, so the server passed its
	// cap at CapAfter or later.
	CapAfter time.Duration `json:"cap_after"`
	EndAfter time.Duration `json:"end_after"` // from the first write to the end
	// Closed reports that the server ended the flood: a write failed with
	// ECONNRESET or EPIPE. Otherwise Err says why it ended.
	Closed bool   `json:"closed"`
	Err    string `json:"err,omitempty"`
}

// CloseDelay is the time from the server passing its cap (at the latest
// estimate) to the flooder seeing the connection closed.
func (f Flood) CloseDelay() time.Duration { return f.EndAfter - f.CapAfter }

// FloodReport is what the flooders saw.
type FloodReport struct {
	Floods []Flood `json:"floods"`
	// ServerQueues reports that every flooder could read the queues of the
	// server's end of its connection (Flood.CapAfter is then tight).
	ServerQueues bool `json:"server_queues"`
}

// Flooders are connected flooders waiting for Run.
type Flooders struct {
	cfg   FloodConfig
	conns []*net.TCPConn
	batch []byte
}

// batchFrames is how many frames one write carries.
const batchFrames = 64

// NewFlooders connects cfg.Conns flooders, so that the connections exist
// before the flood starts.
func NewFlooders(cfg FloodConfig) (*Flooders, error) {
	f := &Flooders{cfg: cfg}
	frame := wstest.Text(strings.Repeat("f", cfg.Payload)).Bytes()
	for range batchFrames {
		f.batch = append(f.batch, frame...)
	}
	for range cfg.Conns {
		c, _, err := dial(cfg.Addr, cfg.RcvBuf, 10*time.Second)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.conns = append(f.conns, c)
	}
	return f, nil
}

// Close closes the connections.
func (f *Flooders) Close() {
	for _, c := range f.conns {
		c.Close()
	}
}

// Run floods on every connection at once until the server has closed each
// one or Timeout has passed, and reports.
func (f *Flooders) Run() FloodReport {
	floods := make([]Flood, len(f.conns))
	var blind atomic.Int32 // flooders that cannot read the server's queues
	var wg sync.WaitGroup
	for i, c := range f.conns {
		wg.Go(func() {
			diag, err := newSockDiag()
			if err != nil {
				diag = nil // the looser bound
				blind.Add(1)
			} else {
				defer diag.Close()
			}
			floods[i] = f.flood(c, diag)
			floods[i].Flooder = i
			c.Close() // a flooder the server did not close is done too
		})
	}
	wg.Wait()
	return FloodReport{Floods: floods, ServerQueues: blind.Load() == 0}
}

// flood writes batches of frames to c until a write fails or Timeout
// passes. diag, when not nil, reads the server's end of c.
func (f *Flooders) flood(c *net.TCPConn, diag *sockDiag) Flood {
	r := Flood{CapAfter: -1}
	rc, err := c.SyscallConn()
	if err != nil {
		r.Err = err.Error()
		return r
	}
	local, remote := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
	start := time.Now()
	_ = c.SetWriteDeadline(start.Add(f.cfg.Timeout))
	var last time.Duration // when the last write returned
	for {
		n, err := c.Write(f.batch)
		r.Written += int64(n)
		now := time.Now()
		if err != nil {
			r.EndAfter = now.Sub(start)
			if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
				r.Closed = true
			} else {
				r.Err = fmt.Sprintf("after %d bytes: %v", r.Written, err)
			}
			if r.CapAfter < 0 && r.Closed {
				// Closed before a sample showed the cap passed: it was
				// passed after the last write that returned, if at all.
				r.CapAfter = last
			}
			return r
		}
		last = now.Sub(start)
		if r.CapAfter < 0 && f.serverHolds(r.Written, rc, diag, remote, local) >= int64(f.cfg.Cap) {
			r.CapAfter = now.Sub(start)
		}
	}
}

// serverHolds bounds from above the bytes the server process holds for a
// connection (its input read and not answered, its answers not handed to
// the kernel), from what the flooder wrote and the kernel's queues:
//
//	read by the server <= written - not sent (flooder) - unread (server)
//	handed back        >= max(unacknowledged (server), unread (flooder))
//
// The echo of a 70-byte frame is 66 bytes, so the bytes held are at most
// read minus handed back. Without diag the server's queues count as held:
// a looser bound.
func (f *Flooders) serverHolds(written int64, rc syscall.RawConn, diag *sockDiag, server, client *net.TCPAddr) int64 {
	inq, notsent, ok := socketQueues(rc)
	if !ok {
		return written
	}
	held := written - int64(notsent) - int64(inq)
	if held < int64(f.cfg.Cap) || diag == nil {
		return held // already below: no need to ask about the server's end
	}
	rq, wq, err := diag.queues(server, client)
	if err != nil {
		return held
	}
	return written - int64(notsent) - int64(rq) - int64(max(wq, inq))
}
