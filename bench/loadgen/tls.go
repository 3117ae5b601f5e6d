package loadgen

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// wss clients. The raw-socket poller has no TLS, so a job over wss runs one
// goroutine per connection with crypto/tls instead (TLSWorker). What is
// measured is the server; the client's CPU and memory are not figures, only
// the bounds of the machine (a worker holds a few thousand connections).

// TLSJob is the TLS part of a Job: the server's certificate to trust. With
// it every connection of the job is wss: a full TLS handshake (no session
// resumption: the client keeps no session cache), then the upgrade.
type TLSJob struct {
	RootPEM string `json:"root_pem"` // PEM certificate(s) the server's chain must end in
	// ServerName is checked against the server's certificate (default
	// "127.0.0.1").
	ServerName string `json:"server_name,omitempty"`
	// X25519 offers X25519 alone for the key exchange, instead of
	// crypto/tls's default X25519MLKEM768 first: what a server without
	// ML-KEM (nbio's fork) does anyway, so that handshakes compare alike.
	X25519 bool `json:"x25519,omitempty"`
}

// Config is the client's tls.Config for j: TLS 1.2 or 1.3 as the server
// picks, crypto/tls's default key exchanges (or X25519 alone), no session
// cache.
func (j *TLSJob) Config() (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(j.RootPEM)) {
		return nil, errors.New("tls job: no certificate in root_pem")
	}
	name := j.ServerName
	if name == "" {
		name = "127.0.0.1"
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if j.X25519 {
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	return cfg, nil
}

// TLSConn is one wss client connection, used by one goroutine at a time.
type TLSConn struct {
	tc *tls.Conn
	r  *bufio.Reader
}

// DialTLS connects from source address src ("" for any) to dst, completes
// the TLS handshake with cfg and the WebSocket upgrade on path, all within
// timeout.
func DialTLS(src, dst, path string, cfg *tls.Config, timeout time.Duration) (*TLSConn, error) {
	d := net.Dialer{Timeout: timeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.Dial("tcp", dst)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(nc, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	c := &TLSConn{tc: tc, r: bufio.NewReaderSize(tc, 4096)}
	if _, err := tc.Write(upgradeRequest(dst, path)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("write upgrade: %w", err)
	}
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("read upgrade answer: %w", err)
		}
		head = append(head, line...)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
		nc.Close()
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return nil, fmt.Errorf("upgrade refused: %s", line)
	}
	_ = tc.SetDeadline(time.Time{})
	return c, nil
}

// State returns the TLS connection's state.
func (c *TLSConn) State() tls.ConnectionState { return c.tc.ConnectionState() }

// WriteBlocking writes b (client frames) as one TLS write.
func (c *TLSConn) WriteBlocking(b []byte) error {
	_, err := c.tc.Write(b)
	return err
}

// Close closes the connection without a close handshake.
func (c *TLSConn) Close() error { return c.tc.Close() }

// ReadFrame reads one server frame into buf (grown as needed) and returns
// its opcode and payload, which is valid until the next call.
func (c *TLSConn) ReadFrame(buf []byte) (op byte, payload, newBuf []byte, err error) {
	var h [10]byte
	if _, err = io.ReadFull(c.r, h[:2]); err != nil {
		return 0, nil, buf, err
	}
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err = io.ReadFull(c.r, h[2:4]); err != nil {
			return 0, nil, buf, err
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err = io.ReadFull(c.r, h[2:10]); err != nil {
			return 0, nil, buf, err
		}
		n = binary.BigEndian.Uint64(h[2:10])
	}
	if h[1]&0x80 != 0 || n > 64<<20 {
		return 0, nil, buf, fmt.Errorf("bad server frame header %x", h[:2])
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	payload = buf[:n]
	_, err = io.ReadFull(c.r, payload)
	return op, payload, buf, err
}

// tlsWorker runs a Job over wss with one goroutine per connection.
type tlsWorker struct {
	job   Job
	conns []*TLSConn

	messages, lost, reordered, badSize atomic.Uint64
	closed                             atomic.Int64

	histMu sync.Mutex
	hist   Hist
}

// runTLSWorker is RunWorker for a job with TLS set: connect, report ready,
// wait for "go", run the scenario, report, and close once in ends.
func runTLSWorker(job Job, sc *bufio.Scanner, enc *json.Encoder) error {
	if job.Deflate || job.JSON || job.Soak != nil {
		return errors.New("tls job: compression, JSON payloads and the soak do not run over wss")
	}
	w := &tlsWorker{job: job}
	cfg, err := job.TLS.Config()
	if err != nil {
		return err
	}
	res := w.connect(cfg)
	if err := enc.Encode(map[string]any{"ready": true, "connected": res.Connected, "dial_errors": res.DialErrs, "first_error": res.FirstErr}); err != nil {
		return err
	}
	if !sc.Scan() || sc.Text() != "go" {
		return fmt.Errorf("expected go")
	}
	switch job.Scenario {
	case "connect", "idle", "echo", "broadcast":
	default:
		return fmt.Errorf("scenario %q does not run over wss", job.Scenario)
	}
	w.run(&res)
	if err := enc.Encode(res); err != nil {
		return err
	}
	for sc.Scan() { // until the runner closes our input
	}
	for _, c := range w.conns {
		c.Close()
	}
	return nil
}

// connect opens job.Conns wss connections with DialConcurrency dialers.
func (w *tlsWorker) connect(cfg *tls.Config) Result {
	var res Result
	conns := make([]*TLSConn, w.job.Conns)
	start := time.Now()
	dialAll(w.job, &res, func(i int, src string) error {
		c, err := DialTLS(src, w.job.Addr, w.job.Path, cfg, 10*time.Second)
		conns[i] = c // each index is dialled once; nil on an error
		return err
	})
	res.ConnectNs = time.Since(start).Nanoseconds()
	for _, c := range conns {
		if c != nil {
			w.conns = append(w.conns, c)
		}
	}
	res.Connected = len(w.conns)
	return res
}

// run runs the scenario on every connection, each in its goroutine, until
// the job's duration is over (echo, idle) or every message arrived or the
// longest wait passed (broadcast).
func (w *tlsWorker) run(res *Result) {
	start := time.Now()
	deadline := start.Add(w.job.Duration)
	var wg sync.WaitGroup
	for _, c := range w.conns {
		wg.Add(1)
		switch w.job.Scenario {
		case "echo":
			go func() { defer wg.Done(); w.echo(c, deadline) }()
		case "broadcast":
			go func() { defer wg.Done(); w.broadcast(c, deadline) }()
		default: // connect, idle: the connections stay open, unread
			wg.Done()
		}
	}
	if w.job.Scenario == "echo" || w.job.Scenario == "broadcast" {
		wg.Wait()
	} else {
		time.Sleep(w.job.Duration)
	}
	res.RunNs = time.Since(start).Nanoseconds()
	res.Messages, res.Lost, res.Reordered, res.BadSize = w.messages.Load(), w.lost.Load(), w.reordered.Load(), w.badSize.Load()
	res.Closed = int(w.closed.Load())
	res.Hist, res.HistN, res.HistMax, res.HistSum = w.hist.Sparse(), w.hist.N, w.hist.Max, w.hist.Sum
}

// record merges a connection's latencies into the worker's.
func (w *tlsWorker) record(h *Hist) {
	w.histMu.Lock()
	w.hist.Merge(h)
	w.histMu.Unlock()
}

// echo writes Depth messages of Size bytes in one write, reads their
// echoes, and again until deadline.
func (w *tlsWorker) echo(c *TLSConn, deadline time.Time) {
	depth := max(1, w.job.Depth)
	frame := bytes.Repeat(ClientFrame(0x2, make([]byte, w.job.Size)), depth)
	h := new(Hist)
	defer w.record(h)
	var buf []byte
	_ = c.tc.SetReadDeadline(deadline.Add(5 * time.Second))
	for time.Now().Before(deadline) {
		sent := time.Now()
		if err := c.WriteBlocking(frame); err != nil {
			w.closed.Add(1)
			return
		}
		for range depth {
			op, p, b, err := c.ReadFrame(buf)
			buf = b
			if err != nil || op == 0x8 {
				w.closed.Add(1)
				return
			}
			w.messages.Add(1)
			if len(p) != w.job.Size {
				w.badSize.Add(1)
			}
			h.Record(time.Since(sent)) // from the burst's write
		}
	}
}

// broadcast reads messages until the last one (Expect) or deadline,
// checking their order by the sequence number in their first 8 bytes.
func (w *tlsWorker) broadcast(c *TLSConn, deadline time.Time) {
	h := new(Hist)
	defer w.record(h)
	var (
		buf  []byte
		last uint64
	)
	_ = c.tc.SetReadDeadline(deadline)
	for last < w.job.Expect {
		op, p, b, err := c.ReadFrame(buf)
		buf = b
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				w.closed.Add(1)
			}
			break
		}
		if op == 0x8 {
			w.closed.Add(1)
			break
		}
		if len(p) < 16 {
			continue
		}
		seq, ts := binary.BigEndian.Uint64(p), int64(binary.BigEndian.Uint64(p[8:]))
		w.messages.Add(1)
		switch {
		case seq == last+1:
			last = seq
		case seq <= last:
			w.reordered.Add(1)
		default: // a gap: the messages between were lost
			w.lost.Add(seq - last - 1)
			last = seq
		}
		h.Record(time.Duration(Now() - ts))
	}
	if last < w.job.Expect {
		w.lost.Add(w.job.Expect - last)
	}
}

// SelfSigned makes a self-signed ECDSA P-256 certificate for 127.0.0.1 and
// localhost, valid for a day, and returns it and its key in PEM (the key
// as "EC PRIVATE KEY", which crypto/tls and nbio's fork both load).
func SelfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "wsbench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// DialTLSBridge is DialTLS for code written against a raw socket (Conn):
// the Conn it returns is one end of a local socket pair whose other end
// two goroutines copy to and from the TLS connection. Closing or shutting
// down the Conn closes the TLS connection. The copying costs the caller's
// CPU, never the server's.
func DialTLSBridge(src, dst, path string, cfg *tls.Config, timeout time.Duration) (*Conn, error) {
	tc, err := DialTLS(src, dst, path, cfg, timeout)
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tc.Close()
		return nil, err
	}
	f := os.NewFile(uintptr(fds[1]), "tls-bridge")
	local, err := net.FileConn(f) // a dup: f is closed below
	f.Close()
	if err != nil {
		unix.Close(fds[0])
		tc.Close()
		return nil, err
	}
	go func() { // what the caller writes -> the server
		_, _ = io.Copy(tc.tc, local)
		tc.Close()
		local.Close()
	}()
	go func() { // the server -> the caller, the buffered bytes first
		_, _ = io.Copy(local, tc.r)
		local.Close()
	}()
	return newConn(fds[0], nil)
}
