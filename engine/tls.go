package engine

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsdproject/wsd/internal/bufpool"
)

// wss: WebSocket over TLS on the event loops, with the standard library's
// crypto/tls and no goroutine per connection once the handshake is done.
//
// crypto/tls reads and writes a net.Conn. A read that fails with a bare
// net.Error whose Temporary() is true leaves the Conn as it was, so it can
// be tried again when more bytes arrive: that is what a wss connection's
// transport (tlsConn) returns once gnet's inbound buffer holds no more
// ciphertext, and the loop decrypts whatever complete records gnet has
// read, whenever it has read some. The handshake cannot be resumed that way
// (crypto/tls keeps its first error), so it runs in a short-lived goroutine
// over the same transport in blocking mode (tls_handshake.go), and the
// connection comes back to its loop when it is done.
//
// A wss connection goes through these phases (tlsPhase), on its loop:
//
//	tlsHello    the first record, the ClientHello, is arriving: it stays in
//	            gnet's buffer until complete. A first byte that is not a
//	            handshake record is answered in clear text and closed.
//	tlsQueued   waiting for a handshake slot (Options.MaxTLSHandshakes) in
//	            the line of the engine's tlsGate: no goroutine.
//	tlsRunning  a goroutine runs tls.Conn.Handshake; the loop moves the
//	            ciphertext it receives into the handshake's inbox, and
//	            writes what the handshake posts back to it.
//	tlsOpen     the loop decrypts the records into plaintext for the
//	            upgrade parser and the frame decoder (io.go), and encrypts
//	            what the connection writes.
//	tlsFailed   the handshake failed; the connection is closing.
//
// HandshakeTimeout bounds all of it, from accept to the upgrade's 101; a
// wss connection has that deadline even when HandshakeTimeout is off
// (DefaultHandshakeTimeout then), since a stalled handshake holds a slot.
//
// Output: every write of a wss connection goes through tls.Conn.Write,
// whose records the transport gathers in the loop's tlsOut; they leave with
// one write to gnet when the write is done (one per 256 KiB for larger
// ones). Output corking works as for ws: the replies to one read are
// gathered in plaintext and encrypted together, so they leave in as few
// records as tls.Conn makes of them, with one write(2). WriteFrames (the
// broadcast path) encrypts the shared frames where they are, so a frame
// encoded once for many connections is not copied per connection;
// only frames under tlsCoalesce bytes are copied next to one another so
// that they share a record.

// recordLayer is what a wss connection needs of TLS once the handshake is
// done: decrypt the records its transport reads, encrypt into the records
// its transport writes, end with close_notify, and describe the session.
// *tls.Conn is the implementation; kernel TLS (not available here) would
// be another, behind the same methods.
type recordLayer interface {
	// Read returns decrypted bytes, or errWouldBlock when no complete
	// record is buffered, io.EOF after the peer's close_notify, or a fatal
	// error. It may return n > 0 together with an error.
	Read(p []byte) (int, error)
	// Write encrypts p into records, written to the transport.
	Write(p []byte) (int, error)
	// CloseWrite sends close_notify.
	CloseWrite() error
	ConnectionState() tls.ConnectionState
}

type tlsPhase uint8

const (
	tlsHello   tlsPhase = iota // the first record is arriving
	tlsQueued                  // waiting in the gate's line for a handshake slot
	tlsRunning                 // a goroutine runs the handshake
	tlsOpen                    // the loop decrypts and encrypts
	tlsFailed                  // the handshake failed, or the peer does not speak TLS: closing
)

// tlsConn is a wss connection's TLS state, reached through Conn.extra, and
// the net.Conn under its tls.Conn. Loop only, except where noted.
type tlsConn struct {
	c     *Conn
	rec   recordLayer  // set when the handshake starts, then never changed
	hs    *handshakeIO // while the handshake runs, and after it while its inbox holds bytes it did not read
	local net.Addr     // the listener's address, for the handshake's ClientHelloInfo.Conn

	in   *[]byte // plaintext received and not parsed yet, kept between reads (pooled); nil when none
	view []byte  // while input is parsed: the plaintext (the loop's scratch, or *in)
	off  int     // bytes of view consumed

	next, prev *tlsConn // the gate's line; guarded by the gate's mutex
	queued     bool     // in the gate's line; guarded by the gate's mutex

	cut recordCut // the goroutine's during the handshake, the loop's after it

	phase tlsPhase
	// blocking: the transport serves the handshake goroutine (a blocking
	// Read on the inbox, writes posted to the loop). Set before the
	// goroutine starts and cleared by the task it posts when done, so the
	// goroutine and the loop never write it at the same time.
	blocking bool
	eof      bool // the peer sent close_notify
	busy     bool // read since the loop's last tick (tls_quiet.go)
	listed   bool // in the loop's tlsQuiet list
}

// tlsConn returns c's TLS state, or nil for a ws connection. A wss
// connection gets it at accept, before anything reads it, and keeps it.
func (c *Conn) tlsConn() *tlsConn {
	if x := c.extra.Load(); x != nil {
		return x.tls
	}
	return nil
}

const (
	// recordHeaderLen is the length of a TLS record header.
	recordHeaderLen = 5
	// maxPlaintext is the largest plaintext a record carries (RFC 8446
	// section 5.1), and the largest first record (a ClientHello) waited for.
	maxPlaintext = 1 << 14
	// tlsCoalesce: WriteFrames copies frames shorter than this next to one
	// another so that they share a record (a record costs 22 bytes and a
	// seal, more than copying a short frame); longer frames are encrypted
	// where they are.
	tlsCoalesce = 1 << 10
	// maxKeptPlain is the largest decryption scratch a loop keeps between
	// reads.
	maxKeptPlain = 256 << 10
)

// wouldBlock is the transport's answer when gnet holds no more ciphertext:
// crypto/tls keeps its state after a bare net.Error whose Temporary() is
// true, and the read is tried again when more bytes arrive.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "engine: no more TLS input buffered" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// Read is the transport's: the handshake goroutine's blocking read of the
// inbox, then, on the loop, what the handshake left in the inbox and
// gnet's inbound buffer, with errWouldBlock when they are empty. It hands
// over at most the rest of one record (see recordCut).
func (t *tlsConn) Read(p []byte) (int, error) {
	if t.blocking {
		return t.hs.read(&t.cut, p)
	}
	if n := t.cut.fill(p, t); n > 0 {
		return n, nil
	}
	return 0, errWouldBlock
}

// pull copies ciphertext for Read on the loop: what the handshake left in
// its inbox, then gnet's inbound buffer.
func (t *tlsConn) pull(p []byte) int {
	n := 0
	if hs := t.hs; hs != nil {
		if n = hs.pull(p); n == len(p) {
			return n
		}
		t.dropInbox()
	}
	m, _ := t.c.gc.Read(p[n:]) // io.ErrShortBuffer when empty: crypto/tls would take it as fatal
	return n + m
}

// recordCut follows the record boundaries of the ciphertext handed to
// crypto/tls, so that each read hands it at most the rest of one record.
// crypto/tls keeps what it reads ahead in its input buffer, which grows to
// hold it and never shrinks (the loop lets it go when the connection is
// quiet, tls_quiet.go): fed all that gnet holds, it would keep as much per
// connection. One record at a time it holds one record at most,
// and the loop knows when a whole record is buffered (recordReady), so it
// asks crypto/tls to read only then: each of crypto/tls's reads costs it
// an allocation. A record's header is read into hdr before it is handed
// over, which tells the loop the record's length without peeking.
type recordCut struct {
	hdr  [recordHeaderLen]byte
	got  uint8  // header bytes of the current record read from the source
	gave uint8  // header bytes handed to crypto/tls
	left uint16 // body bytes not handed over yet, once the header is complete
}

// ciphertextSource is where a recordCut reads from.
type ciphertextSource interface{ pull(p []byte) int }

// readHeader reads the rest of the current record's header from src, and
// reports whether it is complete.
func (r *recordCut) readHeader(src ciphertextSource) bool {
	if r.got < recordHeaderLen {
		r.got += uint8(src.pull(r.hdr[r.got:]))
		if r.got < recordHeaderLen {
			return false
		}
		r.left = uint16(r.hdr[3])<<8 | uint16(r.hdr[4])
	}
	return true
}

// fill copies into p, from hdr and src, up to the end of the current
// record, and returns the number of bytes copied.
func (r *recordCut) fill(p []byte, src ciphertextSource) int {
	n := 0
	for n < len(p) {
		if r.gave < recordHeaderLen {
			if r.gave == r.got && !r.readHeader(src) && r.gave == r.got {
				return n // src is empty
			}
			m := copy(p[n:], r.hdr[r.gave:r.got])
			r.gave += uint8(m)
			n += m
			if r.gave == recordHeaderLen && r.left == 0 {
				*r = recordCut{}
				return n
			}
			continue
		}
		k := min(len(p)-n, int(r.left))
		m := src.pull(p[n : n+k])
		n += m
		r.left -= uint16(m)
		if r.left == 0 {
			*r = recordCut{}
			return n // a record ends here
		}
		if m < k {
			return n // src is empty
		}
	}
	return n
}

// recordReady reports whether the rest of the current record is buffered,
// so that crypto/tls can decrypt it without waiting. Loop only.
func (t *tlsConn) recordReady() bool {
	if t.hs != nil {
		return true // what the handshake left: just try
	}
	r := &t.cut
	if !r.readHeader(t) {
		return false
	}
	size := int(r.left)
	return t.c.gc.InboundBuffered() >= size || size > maxPlaintext+2048 // too long for a record: crypto/tls says so at once
}

// Write is the transport's: the handshake's flights are posted to the loop;
// on the loop, records are gathered in tlsOut for one write to gnet.
func (t *tlsConn) Write(p []byte) (int, error) {
	if t.blocking {
		return t.hs.write(t, p)
	}
	l := t.c.loop
	l.tlsOut = append(l.tlsOut, p...)
	return len(p), nil
}

// Close is the transport's. The loop owns the socket; a handshake that is
// interrupted stops reading.
func (t *tlsConn) Close() error {
	if t.blocking {
		t.hs.close()
	}
	return nil
}

// LocalAddr is the transport's. Any goroutine.
func (t *tlsConn) LocalAddr() net.Addr { return t.local }

// RemoteAddr is the transport's. Any goroutine.
func (t *tlsConn) RemoteAddr() net.Addr { return t.c.remote }

// SetDeadline and the two below are the transport's; the engine's timer
// wheel keeps the time instead (crypto/tls sets a write deadline when it
// sends close_notify).
func (t *tlsConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing (see SetDeadline).
func (t *tlsConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing (see SetDeadline).
func (t *tlsConn) SetWriteDeadline(time.Time) error { return nil }

// dropInbox lets the handshake's inbox go once the handshake is over.
func (t *tlsConn) dropInbox() {
	if hs := t.hs; hs != nil {
		bufpool.Put(hs.in)
		hs.in = nil
		t.hs = nil
	}
}

// buffered returns the plaintext bytes not yet consumed.
func (t *tlsConn) buffered() int {
	if t.view != nil {
		return len(t.view) - t.off
	}
	if t.in != nil {
		return len(*t.in)
	}
	return 0
}

// peek returns the next n plaintext bytes; only while input is parsed.
func (t *tlsConn) peek(n int) []byte { return t.view[t.off : t.off+n] }

// discard consumes n plaintext bytes; only while input is parsed.
func (t *tlsConn) discard(n int) { t.off = min(t.off+n, len(t.view)) }

// discardAll drops the plaintext not yet consumed.
func (t *tlsConn) discardAll() {
	if t.view != nil {
		t.off = len(t.view)
		return
	}
	if t.in != nil {
		bufpool.Put(t.in)
		t.in = nil
	}
}

// decrypt reads the complete records gnet holds into plaintext, after the
// plaintext kept from earlier reads, and makes it the view the parsers
// read. It returns false when the connection must close: the peer sent a
// bad record (the alert crypto/tls sent is flushed, and nothing of this
// read is parsed). After the peer's close_notify eof is set, and what came
// before it is parsed. Loop only.
func (t *tlsConn) decrypt(l *Loop) bool {
	var buf []byte
	if t.in != nil {
		buf = *t.in
	} else {
		buf = l.plain[:0]
	}
	ok := true
	for t.recordReady() {
		if cap(buf)-len(buf) < maxPlaintext {
			buf = t.grow(l, buf)
		}
		n, err := t.rec.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == nil {
			continue
		}
		if err == io.EOF {
			t.eof = true
		} else if err != errWouldBlock { // would block: a record without data, and the next one is not all here
			ok = false
		}
		break
	}
	if t.in != nil {
		*t.in = buf
	} else {
		l.plain = buf[:0]
	}
	t.view, t.off = buf, 0
	_ = t.flushOut() // a KeyUpdate answer, or the alert for a bad record
	t.noteRead(l)
	if !ok {
		t.off = len(buf)
	}
	return ok
}

// grow returns buf (the loop's scratch or *t.in) with room for a record's
// plaintext more.
func (t *tlsConn) grow(l *Loop, buf []byte) []byte {
	if t.in != nil {
		*t.in = buf
		t.in = bufpool.Grow(t.in, maxPlaintext)
		return *t.in
	}
	buf = slices.Grow(buf, max(maxPlaintext, cap(buf)))
	l.plain = buf[:0]
	return buf
}

// settle ends the parsing of a read: the plaintext left (a partial frame
// header or control frame, or a partial upgrade request) moves into a
// buffer of the connection's own, sized to it; none is kept when none is
// left or the connection is gone. Loop only.
func (t *tlsConn) settle(l *Loop) {
	rest := t.view[t.off:]
	switch {
	case len(rest) == 0 || t.c.state == stateClosed:
		if t.in != nil {
			bufpool.Put(t.in)
			t.in = nil
		}
	case t.in == nil: // rest is in the loop's scratch
		t.in = bufpool.Get(len(rest))
		*t.in = append(*t.in, rest...)
	case cap(*t.in) > 4<<10 && cap(*t.in) > 4*len(rest): // a large read left a little: do not keep the large buffer
		small := bufpool.Get(len(rest))
		*small = append(*small, rest...)
		bufpool.Put(t.in)
		t.in = small
	default:
		*t.in = (*t.in)[:copy(*t.in, rest)]
	}
	t.view, t.off = nil, 0
	if cap(l.plain) > maxKeptPlain {
		l.plain = nil
	}
}

// write encrypts a, b and c2 (any may be empty) and sends their records
// with one write to gnet (one per 256 KiB for larger writes). Loop only.
func (t *tlsConn) write(a, b, c2 []byte) error {
	if t.c.state == stateClosed {
		return ErrClosed
	}
	for _, p := range [...][]byte{a, b, c2} {
		if err := t.encrypt(p); err != nil {
			return err
		}
	}
	return t.flushOut()
}

// writeFrames encrypts encoded frames for WriteFrames: frames shorter than
// tlsCoalesce are copied together into the loop's scratch to share
// records, longer ones are encrypted where they are. Loop only.
func (t *tlsConn) writeFrames(frames [][]byte) error {
	l := t.c.loop
	run := l.wbuf[:0]
	var err error
	for _, f := range frames {
		small := len(f) < tlsCoalesce
		if len(run) > 0 && (!small || len(run)+len(f) > maxPlaintext) {
			err = t.encrypt(run)
			run = run[:0]
		}
		if err != nil {
			break
		}
		if small {
			run = append(run, f...)
		} else if err = t.encrypt(f); err != nil {
			break
		}
	}
	if err == nil && len(run) > 0 {
		err = t.encrypt(run)
	}
	l.wbuf = run[:0]
	if err != nil {
		return err
	}
	return t.flushOut()
}

// encrypt passes p through tls.Conn.Write, at most 256 KiB at a time,
// gathering the records in the loop's tlsOut and handing them to gnet
// every 256 KiB. A failed encryption (crypto/tls's errors are permanent)
// closes the connection. Loop only.
func (t *tlsConn) encrypt(p []byte) error {
	l := t.c.loop
	for len(p) > 0 {
		n := min(len(p), maxGather)
		if _, err := t.rec.Write(p[:n]); err != nil {
			l.tlsOut = l.tlsOut[:0]
			if t.c.state != stateClosed {
				_ = l.el.Close(t.c.gc)
			}
			return err
		}
		p = p[n:]
		if len(l.tlsOut) >= maxGather {
			if err := t.flushOut(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushOut hands the records gathered in tlsOut to gnet with one write.
// Loop only.
func (t *tlsConn) flushOut() error {
	l := t.c.loop
	if len(l.tlsOut) == 0 {
		return nil
	}
	out := l.tlsOut
	l.tlsOut = out[:0]
	if t.c.state == stateClosed {
		return ErrClosed
	}
	l.stats.writes.Add(1)
	_, err := t.c.gc.Write(out)
	return err
}

// closeNotify sends close_notify, once the handshake is done: a wss
// connection ends its sending side with it before the TCP half-close.
// Loop only.
func (t *tlsConn) closeNotify() {
	if t.phase != tlsOpen || t.c.state == stateClosed {
		return
	}
	_ = t.rec.CloseWrite()
	_ = t.flushOut()
}

// tlsInput decrypts what gnet holds for a wss connection whose handshake
// is done and handles the plaintext as input handles a ws connection's
// bytes. Loop only.
func (l *Loop) tlsInput(c *Conn, t *tlsConn) gnet.Action {
	if c.discard {
		c.discardAll()
		return gnet.None
	}
	if c.state == stateOpen && l.holdInput(c) {
		return gnet.None // the ciphertext waits in gnet's buffer
	}
	if !t.decrypt(l) {
		t.settle(l)
		return gnet.Close
	}
	if c.state == stateClosed { // writing a KeyUpdate answer failed
		t.settle(l)
		return gnet.None
	}
	act := gnet.None
	if t.buffered() > 0 {
		act = l.input(c)
	} else if c.state == stateOpen {
		c.lastRead = l.e.clock() // a record without data (a KeyUpdate) is a sign of life too
	}
	t.settle(l)
	if act == gnet.None && t.eof && c.state != stateClosed {
		t.closeNotify() // the peer ended TLS without a closing handshake: answer it and close
		return gnet.Close
	}
	return act
}

// closed cleans up after OnClose. Loop only.
func (t *tlsConn) closed(e *Engine) {
	switch t.phase {
	case tlsQueued:
		e.gate.cancel(t)
	case tlsRunning:
		if t.blocking {
			t.hs.close() // the handshake fails and posts its end, which lets the inbox go
		}
	}
	if t.view == nil && t.in != nil { // while input is parsed, settle lets it go
		bufpool.Put(t.in)
		t.in = nil
	}
}

// TLS returns the TLS state of a wss connection: version, cipher suite,
// ALPN protocol, server name (SNI), whether the session was resumed, and
// under mutual TLS (Options.TLS.ClientAuth) the client's certificates. It
// returns nil for a plain ws connection. Any goroutine once OnOpen has run;
// it builds a new ConnectionState per call.
func (c *Conn) TLS() *tls.ConnectionState {
	if x := c.extra.Load(); x != nil && x.tls != nil && x.tls.rec != nil {
		cs := x.tls.rec.ConnectionState()
		return &cs
	}
	return nil
}

// ClientCertificate returns the certificate of a wss client that mutual
// TLS verified (the first of its first verified chain), whose Subject
// names the client; nil for a plain ws connection, or when no certificate
// was verified (Options.TLS.ClientAuth below VerifyClientCertIfGiven, or
// none given). Any goroutine once OnOpen has run.
func (c *Conn) ClientCertificate() *x509.Certificate {
	if x := c.extra.Load(); x != nil && x.tls != nil && x.tls.rec != nil {
		return verifiedLeaf(x.tls.rec)
	}
	return nil
}

func verifiedLeaf(rec recordLayer) *x509.Certificate {
	cs := rec.ConnectionState()
	if len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 {
		return cs.VerifiedChains[0][0]
	}
	return nil
}

// TLS returns the TLS state of the connection the request came on, as
// Conn.TLS does, or nil for plain ws.
func (r *Request) TLS() *tls.ConnectionState {
	if r.tls == nil {
		return nil
	}
	cs := r.tls.ConnectionState()
	return &cs
}

// tlsDefaults returns the engine's copy of Options.TLS with its defaults:
// TLS 1.2 at least unless MinVersion is set, and ALPN "http/1.1" unless
// NextProtos is set (a WebSocket upgrade is HTTP/1.1, so NextProtos may
// not offer h2). Session tickets stay as the config has them (on unless
// SessionTicketsDisabled).
func tlsDefaults(c *tls.Config) (*tls.Config, error) {
	if len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		return nil, errors.New("engine: Options.TLS has no certificate: set Certificates, GetCertificate or GetConfigForClient")
	}
	if slices.Contains(c.NextProtos, "h2") {
		return nil, errors.New(`engine: Options.TLS.NextProtos offers "h2": a WebSocket upgrade is HTTP/1.1`)
	}
	c = c.Clone()
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	if c.NextProtos == nil {
		c.NextProtos = []string{"http/1.1"}
	}
	return c, nil
}

// listenKind tells which listeners serve wss.
type listenKind uint8

const (
	listenPlain listenKind = iota // no TLS
	listenTLS                     // every listener serves wss
	listenMixed                   // the listeners of TLSAddrs serve wss, told by local port or path
)

// tlsListeners records which listeners serve wss: all of them when
// Options.TLS is set without TLSAddrs (or without Addrs), else those of
// TLSAddrs, by TCP port or unix socket path.
func (e *Engine) tlsListeners() {
	o := &e.opts
	switch {
	case o.TLS == nil:
		e.listen = listenPlain
	case len(o.TLSAddrs) == 0 || len(o.Addrs) == 0:
		e.listen = listenTLS
	default:
		e.listen = listenMixed
		for _, a := range o.TLSAddrs {
			if path, ok := strings.CutPrefix(a, "unix://"); ok {
				e.tlsPaths = append(e.tlsPaths, path)
			} else {
				e.tlsPorts = append(e.tlsPorts, addrPort(a))
			}
		}
	}
}

// servesTLS reports whether a connection came through a wss listener.
// Loop only (gnet's LocalAddr is).
func (e *Engine) servesTLS(gc gnet.Conn) bool {
	switch e.listen {
	case listenPlain:
		return false
	case listenTLS:
		return true
	}
	switch a := gc.LocalAddr().(type) {
	case *net.TCPAddr:
		return slices.Contains(e.tlsPorts, a.Port)
	case *net.UnixAddr:
		return slices.Contains(e.tlsPaths, a.Name)
	}
	return false
}

// addrPort returns the port of a normalized tcp address ("tcp://host:port").
func addrPort(a string) int {
	_, rest, _ := strings.Cut(a, "://")
	_, p, _ := net.SplitHostPort(rest)
	port, _ := strconv.Atoi(p)
	return port
}

// checkTLSAddrs checks that a connection's listener can be told by its
// local port or socket path: no port or path in both Addrs and TLSAddrs,
// and no TLSAddrs port 0 (its port is known only once bound) next to
// plain addresses.
func checkTLSAddrs(plain, secure []string) error {
	if len(plain) == 0 {
		return nil
	}
	seen := make(map[string]bool)
	key := func(a string) (string, bool) {
		if path, ok := strings.CutPrefix(a, "unix://"); ok {
			return "unix:" + path, true
		}
		p := addrPort(a)
		return "port:" + strconv.Itoa(p), p != 0
	}
	for _, a := range plain {
		k, _ := key(a)
		seen[k] = true
	}
	for _, a := range secure {
		k, ok := key(a)
		if !ok {
			return fmt.Errorf("engine: TLS address %q has port 0 next to plain Addrs: a connection's listener is told by its local port, so name the port", a)
		}
		if seen[k] {
			return fmt.Errorf("engine: TLS address %q has the port (or path) of a plain address: a connection's listener is told by its local port", a)
		}
		seen[k] = true
	}
	return nil
}
