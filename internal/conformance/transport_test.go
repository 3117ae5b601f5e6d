package conformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

// Every case runs twice, once per transport: "ws" over plain TCP and "wss"
// over TLS (crypto/tls's defaults: TLS 1.3, X25519MLKEM768, AES-GCM) to the
// same daemon's -tls-addr listener. A case's name says which one it used:
// TestConformanceFraming/wss/1.1.8. Over wss every byte the cases write
// goes through the daemon's TLS layer first, so the chopped writes (one TLS
// record per chop) also split the plaintext at every place the ws run
// splits it.

// transport is one way of reaching a daemon.
type transport struct {
	name string // the subtest level every case runs under: "ws" or "wss"
	tls  bool
}

// transports are the ways every case runs, in order.
var transports = []*transport{{name: "ws"}, {name: "wss", tls: true}}

// eachTransport runs body once per transport, as a subtest named by it.
// The parallel cases of one transport end before the next one starts.
func eachTransport(t *testing.T, body func(t *testing.T, tr *transport)) {
	t.Helper()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { body(t, tr) })
	}
}

// server is a wsd daemon serving ws on Addr and wss on TLSAddr.
type server struct {
	*wstest.Daemon
	TLSAddr string
}

// addr returns the address of s for tr.
func (s *server) addr(tr *transport) string {
	if tr.tls {
		return s.TLSAddr
	}
	return s.Addr
}

// startServer runs wsd with args plus a wss listener (-tls-addr) with the
// package's certificate, and waits until both listeners accept.
func startServer(t testing.TB, args ...string) *server {
	t.Helper()
	cert, key := certFiles(t)
	tlsAddr := wstest.FreeAddr(t)
	d := wstest.StartDaemon(t, append([]string{"-tls-cert", cert, "-tls-key", key, "-tls-addr", tlsAddr}, args...)...)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", tlsAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if d.Exited() || time.Now().After(deadline) {
			t.Fatalf("wsd did not start listening on -tls-addr %s: %v\n%s", tlsAddr, err, d.Output())
		}
	}
	return &server{Daemon: d, TLSAddr: tlsAddr}
}

// dialAddr opens a connection to addr over tr without the WebSocket
// handshake; over wss the TLS handshake is complete when it returns.
func (tr *transport) dialAddr(t testing.TB, addr string) *wstest.Client {
	t.Helper()
	if !tr.tls {
		return wstest.Dial(t, addr)
	}
	conn, err := net.DialTimeout("tcp", addr, wstest.DefaultTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	tc := tls.Client(conn, clientConfig(t))
	_ = tc.SetDeadline(time.Now().Add(wstest.DefaultTimeout))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return wstest.NewClient(t, tc)
}

// dial opens a connection over tr to the shared daemon (no WebSocket
// handshake).
func (tr *transport) dial(t testing.TB) *wstest.Client {
	t.Helper()
	s := sharedServer(t)
	checkDaemonAlive(t)
	return tr.dialAddr(t, s.addr(tr))
}

// open opens a connection over tr to the shared daemon and completes the
// WebSocket handshake.
func (tr *transport) open(t testing.TB) *wstest.Client {
	t.Helper()
	c := tr.dial(t)
	c.Handshake("/")
	return c
}

// The package's certificate: one self-signed ECDSA P-256 certificate for
// 127.0.0.1, made on first use and written to a directory that TestMain
// removes.
var (
	certOnce sync.Once
	certDir  string
	certErr  error
	certPool *x509.CertPool
)

// certFiles returns the paths of the certificate and of its key.
func certFiles(t testing.TB) (cert, key string) {
	t.Helper()
	certOnce.Do(makeCert)
	if certErr != nil {
		t.Fatalf("making the test certificate: %v", certErr)
	}
	return filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem")
}

// clientConfig trusts the package's certificate only.
func clientConfig(t testing.TB) *tls.Config {
	t.Helper()
	certFiles(t)
	return &tls.Config{RootCAs: certPool, ServerName: "127.0.0.1"}
}

func makeCert() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		certErr = err
		return
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wsd conformance"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		certErr = err
		return
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		certErr = err
		return
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		certErr = err
		return
	}
	if certDir, certErr = os.MkdirTemp("", "wsd-conformance-"); certErr != nil {
		return
	}
	if certErr = os.WriteFile(filepath.Join(certDir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); certErr != nil {
		return
	}
	certErr = os.WriteFile(filepath.Join(certDir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	certPool = x509.NewCertPool()
	certPool.AddCert(cert)
}

// removeCert removes the certificate's directory, if one was made.
func removeCert() {
	if certDir != "" {
		os.RemoveAll(certDir)
	}
}

// TestConformanceTransports checks that the wss transport is TLS and the
// ws one is not, so that a wss run cannot pass over plain TCP.
func TestConformanceTransports(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		c := tr.open(t)
		tc, isTLS := c.Conn.(*tls.Conn)
		if isTLS != tr.tls {
			t.Fatalf("transport %s: connection is TLS: %v", tr.name, isTLS)
		}
		if isTLS {
			if cs := tc.ConnectionState(); !cs.HandshakeComplete || cs.Version != tls.VersionTLS13 {
				t.Fatalf("TLS state: complete %v, version %x", cs.HandshakeComplete, cs.Version)
			}
		}
		c.WriteFrames(wstest.Text("over " + tr.name))
		c.ExpectText("over " + tr.name)
		c.CloseHandshake()
	})
}
