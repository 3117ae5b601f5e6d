package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// startWSS runs an engine that serves wss with a server certificate of a
// new test CA (unless o.TLS is set), and returns the CA with it.
func startWSS(t testing.TB, h engine.Handler, o engine.Options) (*engine.Engine, string, *engine.TestPKI) {
	t.Helper()
	pki := engine.NewTestPKI(t, "wsd test CA")
	if o.TLS == nil {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{pki.Server(t, "localhost")}}
	}
	e, addr := startEngine(t, h, o)
	return e, addr, pki
}

// clientTLS returns a client configuration that trusts pki, for TLS version
// v (0: any the client supports).
func clientTLS(pki *engine.TestPKI, v uint16) *tls.Config {
	return &tls.Config{RootCAs: pki.Pool, ServerName: "localhost", MinVersion: v, MaxVersion: v, NextProtos: []string{"http/1.1"}}
}

// wssClient is a raw WebSocket client over crypto/tls: it writes hand-built
// frames (wstest) and reads the server's frames one by one.
type wssClient struct {
	t   testing.TB
	tc  *tls.Conn
	raw net.Conn // the TCP connection under tc
	r   *bufio.Reader
}

// dialTLS connects to addr and completes the TLS handshake.
func dialTLS(t testing.TB, addr string, cfg *tls.Config) *wssClient {
	t.Helper()
	c, err := tryDialTLS(addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.raw.Close() })
	c.t = t
	return c
}

func tryDialTLS(addr string, cfg *tls.Config) (*wssClient, error) {
	raw, err := net.DialTimeout("tcp", addr, wstest.DefaultTimeout)
	if err != nil {
		return nil, err
	}
	return handshakeOver(raw, cfg)
}

// handshakeOver runs the client's TLS handshake over raw.
func handshakeOver(raw net.Conn, cfg *tls.Config) (*wssClient, error) {
	tc := tls.Client(raw, cfg)
	_ = tc.SetDeadline(time.Now().Add(wstest.DefaultTimeout))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return &wssClient{tc: tc, raw: raw, r: bufio.NewReaderSize(tc, 64<<10)}, nil
}

// connectWSS dials addr over TLS and upgrades on path "/".
func connectWSS(t testing.TB, addr string, cfg *tls.Config) *wssClient {
	t.Helper()
	c := dialTLS(t, addr, cfg)
	c.upgrade("/")
	return c
}

// upgrade sends an upgrade request for path and checks the 101.
func (c *wssClient) upgrade(path string) *http.Response {
	c.t.Helper()
	key := wstest.NewKey()
	c.write(wstest.BuildRequest("GET", path, wstest.UpgradeHeaders("localhost", key)))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatalf("reading the upgrade response: %v", err)
	}
	if err := wstest.CheckUpgradeResponse(resp, key); err != nil {
		c.t.Fatalf("upgrade: %v", err)
	}
	return resp
}

func (c *wssClient) write(b []byte) {
	c.t.Helper()
	_ = c.tc.SetWriteDeadline(time.Now().Add(wstest.DefaultTimeout))
	if _, err := c.tc.Write(b); err != nil {
		c.t.Fatalf("write of %d bytes: %v", len(b), err)
	}
}

// send writes frames with one tls.Conn.Write.
func (c *wssClient) send(frames ...wstest.Frame) {
	c.t.Helper()
	c.write(wstest.Concat(frames...))
}

// expect reads a frame and fails unless it is a final op frame with
// payload.
func (c *wssClient) expect(op byte, payload []byte) {
	c.t.Helper()
	_ = c.tc.SetReadDeadline(time.Now().Add(wstest.DefaultTimeout))
	h, p, err := engine.ReadServerFrame(c.r, 16<<20)
	if err != nil {
		c.t.Fatalf("expected a %s frame of %d bytes: %v", wstest.OpcodeName(op), len(payload), err)
	}
	if byte(h.OpCode) != op || !h.Fin || !bytes.Equal(p, payload) {
		c.t.Fatalf("got %s frame (fin %v) of %d bytes, want %s of %d bytes", wstest.OpcodeName(byte(h.OpCode)), h.Fin,
			len(p), wstest.OpcodeName(op), len(payload))
	}
}

// closeHandshake sends close 1000, expects the server's close 1000 and then
// the end of TLS (close_notify, read as EOF).
func (c *wssClient) closeHandshake() {
	c.t.Helper()
	c.send(wstest.Close(wstest.CloseNormal, ""))
	c.expect(wstest.OpClose, wstest.ClosePayload(wstest.CloseNormal, ""))
	c.expectEOF()
}

// expectEOF fails unless the server ends the connection: close_notify (EOF)
// or a TCP close.
func (c *wssClient) expectEOF() {
	c.t.Helper()
	_ = c.tc.SetReadDeadline(time.Now().Add(wstest.DefaultTimeout))
	n, err := c.r.Read(make([]byte, 1))
	if n != 0 || !wstest.IsClosedErr(err) {
		c.t.Fatalf("expected the server to close, got %d bytes, %v", n, err)
	}
}

// payloadOf returns n bytes of printable ASCII (valid text).
func payloadOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

var tlsVersions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// echoSizes cross every boundary that matters: frame length encodings
// (125/126, 65535/65536), the cork's small frames (4 KiB), TLS records
// (16 KiB of plaintext) and gnet's 64 KiB reads.
var echoSizes = []int{0, 1, 125, 126, 4095, 4096, 4097, 16383, 16384, 16385, 65535, 65536, 200_000, 1 << 20}

func TestTLSEcho(t *testing.T) {
	var seen sync.Map // version -> *tls.ConnectionState seen on the server
	h := &tlsRecorder{seen: &seen}
	_, addr, pki := startWSS(t, h, engine.Options{})
	for _, ver := range tlsVersions {
		t.Run(ver.name, func(t *testing.T) {
			c := connectWSS(t, addr, clientTLS(pki, ver.v))
			if got := c.tc.ConnectionState().Version; got != ver.v {
				t.Fatalf("negotiated version %x, want %x", got, ver.v)
			}
			for _, op := range []byte{wstest.OpText, wstest.OpBinary} {
				for _, n := range echoSizes {
					p := payloadOf(n)
					c.send(wstest.Msg(op, p))
					c.expect(op, p)
				}
			}
			// Pipelined: the replies to one read leave together.
			var frames []wstest.Frame
			for i := range 50 {
				frames = append(frames, wstest.Text(fmt.Sprint("pipelined ", i)))
			}
			c.send(frames...)
			for i := range 50 {
				c.expect(wstest.OpText, []byte(fmt.Sprint("pipelined ", i)))
			}
			c.send(wstest.Ping([]byte("are you there")))
			c.expect(wstest.OpPong, []byte("are you there"))
			c.closeHandshake()
			cs, ok := seen.Load(ver.v)
			if !ok {
				t.Fatal("the server's Conn.TLS did not report this version")
			}
			if st := cs.(*tls.ConnectionState); st.NegotiatedProtocol != "http/1.1" || st.ServerName != "localhost" || !st.HandshakeComplete {
				t.Fatalf("server's view: ALPN %q, SNI %q, complete %v", st.NegotiatedProtocol, st.ServerName, st.HandshakeComplete)
			}
		})
	}
}

// tlsRecorder echoes and records what Conn.TLS says at OnOpen, by version.
type tlsRecorder struct {
	echo
	seen *sync.Map
}

func (h *tlsRecorder) OnOpen(c *engine.Conn) {
	if st := c.TLS(); st != nil {
		h.seen.Store(st.Version, st)
	}
}

// TestTLSCorking: 50 messages in one read get their 50 replies in one
// write, in as few records as TLS makes of them.
func TestTLSCorking(t *testing.T) {
	e, addr, pki := startWSS(t, echo{}, engine.Options{})
	rec := &recordCounter{}
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rec.Conn = raw
	c, err := handshakeOver(rec, clientTLS(pki, tls.VersionTLS13))
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	defer raw.Close()
	c.upgrade("/")
	var frames []wstest.Frame
	var want [][]byte
	for i := range 50 {
		p := []byte(fmt.Sprint("message ", i))
		frames = append(frames, wstest.Text(string(p)))
		want = append(want, p)
	}
	// Warm up past dynamic record sizing (crypto/tls keeps records near
	// one TCP segment for the first 128 KiB of a connection).
	big := payloadOf(200_000)
	c.send(wstest.Binary(big))
	c.expect(wstest.OpBinary, big)
	w0 := e.Stats().Writes
	rec.reset()
	c.send(frames...)
	for _, p := range want {
		c.expect(wstest.OpText, p)
	}
	if w := e.Stats().Writes - w0; w != 1 {
		t.Errorf("50 replies to one read took %d writes, want 1", w)
	}
	if n := rec.records(); n != 1 {
		t.Errorf("50 replies (%d bytes) came in %d records, want 1", 50*12, n)
	}
}

// recordCounter is a net.Conn that keeps the bytes read, to count the TLS
// records in them.
type recordCounter struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (r *recordCounter) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.buf = append(r.buf, p[:n]...)
	r.mu.Unlock()
	return n, err
}

func (r *recordCounter) reset() {
	r.mu.Lock()
	r.buf = nil
	r.mu.Unlock()
}

// records counts the complete records read since reset.
func (r *recordCounter) records() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for b := r.buf; len(b) >= 5; n++ {
		size := 5 + int(b[3])<<8 | int(b[4])
		if len(b) < size {
			break
		}
		b = b[size:]
	}
	return n
}

// splitConn is a net.Conn whose writes go out in pieces: one byte at a time
// when cuts is nil, else in pieces of sizes drawn from cuts.
type splitConn struct {
	net.Conn
	rng    *rand.Rand
	maxCut int
}

func (s *splitConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := 1
		if s.rng != nil {
			k = 1 + s.rng.IntN(s.maxCut)
		}
		k = min(k, len(p))
		m, err := s.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// TestTLSSplitWrites sends the whole client side (handshake, upgrade,
// frames) one byte per write, and in random pieces: the loop decrypts
// whatever whole records it has and keeps the rest.
func TestTLSSplitWrites(t *testing.T) {
	_, addr, pki := startWSS(t, echo{}, engine.Options{})
	for _, tc := range []struct {
		name   string
		maxCut int
	}{{"byte at a time", 0}, {"random pieces up to 7", 7}, {"random pieces up to 300", 300}, {"random pieces up to 5000", 5000}} {
		for _, ver := range tlsVersions {
			t.Run(tc.name+"/"+ver.name, func(t *testing.T) {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				sc := &splitConn{Conn: raw, maxCut: tc.maxCut}
				if tc.maxCut > 0 {
					sc.rng = rand.New(rand.NewPCG(uint64(tc.maxCut), uint64(ver.v)))
				}
				c, err := handshakeOver(sc, clientTLS(pki, ver.v))
				if err != nil {
					t.Fatal(err)
				}
				c.t = t
				c.upgrade("/")
				sizes := []int{0, 5, 126, 3000, 20_000}
				if tc.maxCut == 0 {
					sizes = sizes[:4] // a byte per write is slow
				}
				var frames []wstest.Frame
				for _, n := range sizes {
					frames = append(frames, wstest.Binary(payloadOf(n)))
				}
				c.send(frames...)
				for _, n := range sizes {
					c.expect(wstest.OpBinary, payloadOf(n))
				}
				c.closeHandshake()
			})
		}
	}
}

func TestTLSSessionResumption(t *testing.T) {
	_, addr, pki := startWSS(t, echo{}, engine.Options{})
	for _, ver := range tlsVersions {
		t.Run(ver.name, func(t *testing.T) {
			cfg := clientTLS(pki, ver.v)
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i, wantResume := range []bool{false, true, true} {
				c := connectWSS(t, addr, cfg)
				if got := c.tc.ConnectionState().DidResume; got != wantResume {
					t.Fatalf("connection %d: DidResume %v, want %v", i, got, wantResume)
				}
				c.send(wstest.Text("hello"))
				c.expect(wstest.OpText, []byte("hello")) // and the TLS 1.3 ticket, read before it
				c.closeHandshake()
			}
		})
	}
}

// TestTLSALPN: a client that prefers h2 still gets http/1.1, the only
// protocol the engine offers; one that offers no ALPN is served too.
func TestTLSALPN(t *testing.T) {
	_, addr, pki := startWSS(t, echo{}, engine.Options{})
	cfg := clientTLS(pki, 0)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	c := connectWSS(t, addr, cfg)
	if p := c.tc.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("ALPN chose %q, want http/1.1", p)
	}
	c.closeHandshake()
	cfg.NextProtos = nil
	c = connectWSS(t, addr, cfg)
	c.send(wstest.Text("no ALPN"))
	c.expect(wstest.OpText, []byte("no ALPN"))

	cfg.NextProtos = []string{"h2"}
	if _, err := tryDialTLS(addr, cfg); err == nil || !strings.Contains(err.Error(), "no application protocol") {
		t.Fatalf("a client that offers only h2: %v, want no_application_protocol", err)
	}
}

// closes records how connections ended.
type closes struct {
	echo
	mu   sync.Mutex
	errs []*engine.CloseError
}

func (h *closes) OnClose(_ *engine.Conn, err error) {
	h.mu.Lock()
	h.errs = append(h.errs, err.(*engine.CloseError))
	h.mu.Unlock()
}

func (h *closes) list() []*engine.CloseError {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*engine.CloseError(nil), h.errs...)
}

// TestTLSCloseNotify: a client that ends TLS without a closing handshake
// gets close_notify back, and the connection ends as abnormal (1006).
func TestTLSCloseNotify(t *testing.T) {
	h := &closes{}
	e, addr, pki := startWSS(t, h, engine.Options{})
	c := connectWSS(t, addr, clientTLS(pki, 0))
	c.send(wstest.Text("before"))
	c.expect(wstest.OpText, []byte("before"))
	if err := c.tc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.tc.SetReadDeadline(time.Now().Add(wstest.DefaultTimeout))
	if n, err := c.r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after close_notify: %d bytes, %v; want the server's close_notify (EOF)", n, err)
	}
	waitFor(t, 5*time.Second, "the connection to end", func() bool { return len(h.list()) == 1 })
	if errs := h.list(); errs[0].Code != codec.StatusAbnormalClosure {
		t.Fatalf("OnClose got %v, want one 1006", errs)
	}

	// The closing handshake, then close_notify: a clean 1000.
	c = connectWSS(t, addr, clientTLS(pki, 0))
	c.send(wstest.Close(wstest.CloseNormal, "bye"))
	c.expect(wstest.OpClose, wstest.ClosePayload(wstest.CloseNormal, ""))
	c.expectEOF()
	waitFor(t, 5*time.Second, "the second connection to end", func() bool { return len(h.list()) == 2 })
	if ce := h.list()[1]; ce.Code != codec.StatusNormalClosure || !ce.Remote {
		t.Fatalf("OnClose got %v, want a remote 1000", ce)
	}

	// The server closes first: its close frame, then close_notify.
	c = connectWSS(t, addr, clientTLS(pki, 0))
	waitFor(t, 5*time.Second, "the third connection", func() bool { return e.Stats().Upgrades == 3 })
	ctx := shutdownSoon(t, e)
	c.expect(wstest.OpClose, wstest.ClosePayload(wstest.CloseGoingAway, "server shutting down"))
	c.send(wstest.Close(wstest.CloseGoingAway, ""))
	c.expectEOF()
	<-ctx
}

// shutdownSoon shuts e down in the background; the channel closes when
// Shutdown returns.
func shutdownSoon(t *testing.T, e *engine.Engine) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	return done
}

// subjects echoes and records the verified client certificate's subject
// that each connection reports, at the upgrade and at OnOpen.
type subjects struct {
	echo
	mu    sync.Mutex
	names []string
}

func (h *subjects) OnOpen(c *engine.Conn) {
	name := "none"
	if cert := c.ClientCertificate(); cert != nil {
		name = cert.Subject.CommonName
	}
	h.mu.Lock()
	h.names = append(h.names, name)
	h.mu.Unlock()
}

func (h *subjects) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.names...)
}

func TestTLSMutual(t *testing.T) {
	pki := engine.NewTestPKI(t, "wsd test CA")
	clients := engine.NewTestPKI(t, "client CA")
	rogue := engine.NewTestPKI(t, "rogue CA")
	h := &subjects{}
	var atUpgrade atomic.Value
	_, addr, _ := startWSS(t, h, engine.Options{
		TLS: &tls.Config{
			Certificates: []tls.Certificate{pki.Server(t, "localhost")},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clients.Pool,
		},
		OnUpgrade: func(r *engine.Request) *engine.Response {
			if st := r.TLS(); st != nil && len(st.VerifiedChains) > 0 {
				atUpgrade.Store(st.VerifiedChains[0][0].Subject.CommonName)
			}
			return nil
		},
	})
	for _, ver := range tlsVersions {
		t.Run(ver.name+"/accepted", func(t *testing.T) {
			cfg := clientTLS(pki, ver.v)
			cfg.Certificates = []tls.Certificate{clients.Client(t, "alice")}
			c := connectWSS(t, addr, cfg)
			c.send(wstest.Text("hi"))
			c.expect(wstest.OpText, []byte("hi"))
			if names := h.list(); len(names) == 0 || names[len(names)-1] != "alice" {
				t.Fatalf("Conn.ClientCertificate named %v, want alice", names)
			}
			if got := atUpgrade.Load(); got != "alice" {
				t.Fatalf("Request.TLS at the upgrade named %v, want alice", got)
			}
			c.closeHandshake()
		})
		for _, tc := range []struct {
			name string
			cert []tls.Certificate
			want string
		}{
			{"no certificate", nil, "certificate required"},
			{"untrusted certificate", []tls.Certificate{rogue.Client(t, "mallory")}, "unknown certificate authority"},
		} {
			t.Run(ver.name+"/"+tc.name, func(t *testing.T) {
				if ver.v == tls.VersionTLS12 && tc.cert == nil {
					tc.want = "handshake failure" // TLS 1.2 has no certificate_required alert
				}
				cfg := clientTLS(pki, ver.v)
				if tc.cert != nil { // sent even though the server did not name its CA
					cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc.cert[0], nil }
				}
				err := refusedDial(addr, cfg)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error with %q", err, tc.want)
				}
			})
		}
	}
	if names := h.list(); len(names) != 2 {
		t.Fatalf("%d connections opened (%v), want the 2 accepted ones", len(names), names)
	}
}

// refusedDial dials, and for TLS 1.3 (where the client's handshake ends
// before the server has checked its certificate) tries an upgrade, and
// returns the error the client sees.
func refusedDial(addr string, cfg *tls.Config) error {
	c, err := tryDialTLS(addr, cfg)
	if err != nil {
		return err
	}
	defer c.raw.Close()
	req := wstest.BuildRequest("GET", "/", wstest.UpgradeHeaders("localhost", wstest.NewKey()))
	if _, err := c.tc.Write(req); err != nil {
		return err
	}
	_ = c.tc.SetReadDeadline(time.Now().Add(wstest.DefaultTimeout))
	_, err = c.r.ReadByte()
	if err == nil {
		return errors.New("the server answered")
	}
	return err
}

// TestTLSCertificateReload: with GetCertificate reading an atomic pointer,
// swapping the certificate serves new handshakes with the new one, while
// connections opened before keep working.
func TestTLSCertificateReload(t *testing.T) {
	pki := engine.NewTestPKI(t, "wsd test CA")
	var current atomic.Pointer[tls.Certificate]
	one := pki.Server(t, "one")
	current.Store(&one)
	_, addr, _ := startWSS(t, echo{}, engine.Options{TLS: &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil },
	}})
	served := func(c *wssClient) string { return c.tc.ConnectionState().PeerCertificates[0].Subject.CommonName }
	old := connectWSS(t, addr, clientTLS(pki, 0))
	if got := served(old); got != "one" {
		t.Fatalf("served %q, want one", got)
	}
	two := pki.Server(t, "two")
	current.Store(&two)
	fresh := connectWSS(t, addr, clientTLS(pki, 0))
	if got := served(fresh); got != "two" {
		t.Fatalf("after the reload a new connection was served %q, want two", got)
	}
	for i, c := range []*wssClient{old, fresh, old} {
		msg := []byte(fmt.Sprint("after reload ", i))
		c.send(wstest.Text(string(msg)))
		c.expect(wstest.OpText, msg)
	}
	old.closeHandshake()
	fresh.closeHandshake()
}

// TestTLSMixedListeners: Addrs serve ws and TLSAddrs wss, side by side.
func TestTLSMixedListeners(t *testing.T) {
	plain, secure := wstest.FreeAddr(t), wstest.FreeAddr(t)
	_, _, pki := startWSS(t, echo{}, engine.Options{Addrs: []string{plain}, TLSAddrs: []string{secure}})
	ws := wstest.Connect(t, plain)
	ws.WriteFrames(wstest.Text("plain"))
	ws.ExpectText("plain")
	c := connectWSS(t, secure, clientTLS(pki, 0))
	c.send(wstest.Text("secure"))
	c.expect(wstest.OpText, []byte("secure"))
	ws.CloseHandshake()
	c.closeHandshake()
}

func TestTLSOptionErrors(t *testing.T) {
	pki := engine.NewTestPKI(t, "wsd test CA")
	cert := []tls.Certificate{pki.Server(t, "localhost")}
	for _, tc := range []struct {
		name string
		o    engine.Options
		want string
	}{
		{"no certificate", engine.Options{TLS: &tls.Config{}}, "no certificate"},
		{"h2", engine.Options{TLS: &tls.Config{Certificates: cert, NextProtos: []string{"h2", "http/1.1"}}}, "h2"},
		{"TLSAddrs without TLS", engine.Options{TLSAddrs: []string{"127.0.0.1:8443"}}, "needs TLS"},
		{"same port", engine.Options{TLS: &tls.Config{Certificates: cert}, Addrs: []string{"127.0.0.1:8080"}, TLSAddrs: []string{"0.0.0.0:8080"}}, "port"},
		{"port 0", engine.Options{TLS: &tls.Config{Certificates: cert}, Addrs: []string{"127.0.0.1:8080"}, TLSAddrs: []string{"127.0.0.1:0"}}, "port 0"},
		{"bad address", engine.Options{TLS: &tls.Config{Certificates: cert}, TLSAddrs: []string{"udp://:1"}}, "scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := engine.New(echo{}, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
	cfg := &tls.Config{Certificates: cert}
	if _, err := engine.New(echo{}, engine.Options{TLS: cfg}); err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != 0 || cfg.NextProtos != nil {
		t.Fatal("New changed the caller's tls.Config: the defaults belong on a clone")
	}
}

// framesOnMessage answers every message with WriteFrames of shared encoded
// frames: small ones that share a record, and a large one encrypted where
// it is.
type framesOnMessage struct {
	engine.NopHandler
	frames [][]byte
}

func (h *framesOnMessage) OnMessage(c *engine.Conn, _ codec.OpCode, _ []byte) {
	fs := append([][]byte(nil), h.frames...) // WriteFrames may modify the slice
	_ = c.WriteFrames(fs)
}

func TestTLSWriteFrames(t *testing.T) {
	var payloads [][]byte
	h := &framesOnMessage{}
	for _, n := range []int{3, 700, 1023, 1024, 40_000, 10, 20, 16 << 10, 5} {
		p := payloadOf(n)
		payloads = append(payloads, p)
		h.frames = append(h.frames, codec.AppendFrame(nil, codec.OpBinary, p))
	}
	for range 30 { // more than 8 small frames, more than a record of them
		p := payloadOf(900)
		payloads = append(payloads, p)
		h.frames = append(h.frames, codec.AppendFrame(nil, codec.OpBinary, p))
	}
	_, addr, pki := startWSS(t, h, engine.Options{})
	c := connectWSS(t, addr, clientTLS(pki, 0))
	for range 3 {
		c.send(wstest.Text("go"))
		for _, p := range payloads {
			c.expect(wstest.OpBinary, p)
		}
	}
	c.closeHandshake()
}

// TestTLSQuietRelease: once a wss connection that carried large messages
// (from Go's client, whose records grow to 16 KiB) has been quiet for a
// tick, its loop lets crypto/tls's buffers go; the connection then carries
// large and small messages as before, and its buffers go again.
func TestTLSQuietRelease(t *testing.T) {
	e, addr, pki := startWSS(t, &echo{}, engine.Options{PingInterval: -1, IdleTimeout: -1, CloseTimeout: 200 * time.Millisecond})
	for _, v := range tlsVersions {
		c := connectWSS(t, addr, clientTLS(pki, v.v))
		for round := range 3 {
			for _, n := range []int{256 << 10, 16 << 10, 10} {
				c.send(wstest.Binary(payloadOf(n)))
				c.expect(wstest.OpBinary, payloadOf(n))
			}
			waitFor(t, 10*time.Second, fmt.Sprintf("%s, round %d: crypto/tls's buffers let go", v.name, round), func() bool {
				return engine.TLSQuietPending(e) == 0
			})
		}
		c.closeHandshake()
	}
}
