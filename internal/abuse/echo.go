package abuse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

// EchoConfig describes well-behaved clients of an echo server: each sends a
// message numbered in sequence, waits for its echo, checks it, and repeats.
type EchoConfig struct {
	Addr     string        // host:port of the daemon
	Conns    int           // clients
	Payload  int           // payload bytes per message (at least 32)
	Duration time.Duration // how long a run lasts at most, unless told otherwise
	Timeout  time.Duration // an echo later than this is an error
	// Interval paces each client: a message every Interval (or as soon as
	// the previous echo arrived, if that took longer); 0: no pause.
	Interval time.Duration
}

// EchoReport is what the echo clients saw.
type EchoReport struct {
	Conns      int   `json:"conns"`
	RoundTrips int64 `json:"round_trips"` // echoes received and correct
	MinPerConn int64 `json:"min_per_conn"`
	// Errors are the first errors (a wrong, missing or late echo, a closed
	// connection), in this run or an earlier one; ErrorCount counts the
	// clients that failed.
	Errors     []string      `json:"errors,omitempty"`
	ErrorCount int           `json:"error_count"`
	P50        time.Duration `json:"p50"`
	P99        time.Duration `json:"p99"`
	P999       time.Duration `json:"p999"`
	Max        time.Duration `json:"max"`
}

// EchoClients are connected echo clients waiting for Run.
type EchoClients struct {
	cfg    EchoConfig
	conns  []*net.TCPConn
	rs     []*bufio.Reader
	failed []error // clients that failed in a run, and why
}

// NewEchoClients connects cfg.Conns clients, each of which exchanges one
// message with the server (so that the server has served echoes before
// Run).
func NewEchoClients(cfg EchoConfig) (*EchoClients, error) {
	if cfg.Payload < 32 {
		return nil, fmt.Errorf("echo payload of %d bytes: at least 32 needed", cfg.Payload)
	}
	e := &EchoClients{cfg: cfg}
	for i := range cfg.Conns {
		c, r, err := dial(cfg.Addr, 0, 10*time.Second)
		if err == nil {
			e.conns = append(e.conns, c)
			e.rs = append(e.rs, r)
			err = e.exchange(i, message(make([]byte, cfg.Payload), i, -1))
		}
		if err != nil {
			e.Close()
			return nil, err
		}
	}
	e.failed = make([]error, len(e.conns))
	return e, nil
}

// message fills b with the message of client i numbered seq.
func message(b []byte, i, seq int) []byte {
	for j := range b {
		b[j] = '.'
	}
	copy(b, fmt.Sprintf("client %04d seq %09d ", i, seq))
	return b
}

// exchange sends msg from client i and checks that its echo comes back
// within Timeout.
func (e *EchoClients) exchange(i int, msg []byte) error {
	c, r := e.conns[i], e.rs[i]
	_ = c.SetDeadline(time.Now().Add(e.cfg.Timeout))
	if _, err := c.Write(wstest.Text(string(msg)).Bytes()); err != nil {
		return err
	}
	got, err := readEcho(c, r)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("got %q, want %q", got, msg)
	}
	return nil
}

// Close sends each client's close frame and closes its connection.
func (e *EchoClients) Close() {
	bye := wstest.Close(wstest.CloseNormal, "").Bytes()
	for _, c := range e.conns {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(bye)
		c.Close()
	}
}

// maxErrors bounds EchoReport.Errors.
const maxErrors = 10

// Run runs the clients for d, or until stop is closed, and reports. A
// client stops at its first error (and stays stopped in later runs); the
// connections stay open until Close.
func (e *EchoClients) Run(d time.Duration, stop <-chan struct{}) EchoReport {
	rtts := make([][]time.Duration, len(e.conns))
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for i := range e.conns {
		if e.failed[i] == nil {
			wg.Go(func() { rtts[i], e.failed[i] = e.client(i, end, stop) })
		}
	}
	wg.Wait()
	rep := EchoReport{Conns: len(e.conns), MinPerConn: -1}
	var all []time.Duration
	for i, rs := range rtts {
		all = append(all, rs...)
		rep.RoundTrips += int64(len(rs))
		if n := int64(len(rs)); rep.MinPerConn < 0 || n < rep.MinPerConn {
			rep.MinPerConn = n
		}
		if err := e.failed[i]; err != nil {
			rep.ErrorCount++
			if len(rep.Errors) < maxErrors {
				rep.Errors = append(rep.Errors, fmt.Sprintf("client %d: %v", i, err))
			}
		}
	}
	slices.Sort(all)
	if n := len(all); n > 0 {
		rep.P50, rep.P99, rep.P999, rep.Max = all[n/2], all[n*99/100], all[n*999/1000], all[n-1]
	}
	return rep
}

// client runs client i until end or stop and returns its round-trip
// times.
func (e *EchoClients) client(i int, end time.Time, stop <-chan struct{}) ([]time.Duration, error) {
	var rtts []time.Duration
	msg := make([]byte, e.cfg.Payload)
	var pace <-chan time.Time
	if e.cfg.Interval > 0 {
		tick := time.NewTicker(e.cfg.Interval)
		defer tick.Stop()
		pace = tick.C
	}
	for seq := 0; time.Now().Before(end); seq++ {
		if pace != nil && seq > 0 {
			select {
			case <-pace:
			case <-stop:
				return rtts, nil
			}
		}
		select {
		case <-stop:
			return rtts, nil
		default:
		}
		sent := time.Now()
		if err := e.exchange(i, message(msg, i, seq)); err != nil {
			return rtts, fmt.Errorf("message %d: %w", seq, err)
		}
		rtts = append(rtts, time.Since(sent))
	}
	return rtts, nil
}

// readEcho reads server frames until a data frame, answering pings, and
// returns the payload of a final text frame; anything else is an error.
func readEcho(c net.Conn, r *bufio.Reader) ([]byte, error) {
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil, err
		}
		if h[1]&0x80 != 0 {
			return nil, errors.New("masked server frame")
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(r, ext[:]); err != nil {
				return nil, err
			}
			n = int(binary.BigEndian.Uint16(ext[:]))
		case 127:
			return nil, errors.New("server frame over 64 KiB")
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, err
		}
		switch op := h[0] & 0x0f; {
		case op == wstest.OpPing:
			if _, err := c.Write(wstest.Pong(p).Bytes()); err != nil {
				return nil, err
			}
		case op == wstest.OpClose:
			f := wstest.ServerFrame{Opcode: op, Payload: p}
			return nil, fmt.Errorf("closed by the server: %d %q", f.CloseCode(), f.CloseReason())
		case h[0] != 0x80|wstest.OpText:
			return nil, fmt.Errorf("frame %#x %q, want a final text frame", h[0], p)
		default:
			return p, nil
		}
	}
}
