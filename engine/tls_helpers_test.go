package engine

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// ReadServerFrame reads one frame of the server's from r, whose payload may
// be at most max bytes, for the TLS tests' clients.
func ReadServerFrame(r io.Reader, max int64) (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return h, nil, err
	}
	if h.Length > max {
		return h, nil, fmt.Errorf("a frame of %d bytes, over %d", h.Length, max)
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(r, p)
	return h, p, err
}

// TestPKI is a certificate authority made for one test: ECDSA P-256 keys,
// a CA certificate, and server and client certificates it signs. It is
// exported (to this package's tests only) for the external tests.
type TestPKI struct {
	CA   *x509.Certificate
	Pool *x509.CertPool // trusts CA
	key  *ecdsa.PrivateKey
}

var pkiSerial atomic.Int64

// NewTestPKI makes a CA named name.
func NewTestPKI(tb testing.TB, name string) *TestPKI {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(pkiSerial.Add(1)),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"wsd tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &TestPKI{CA: ca, Pool: pool, key: key}
}

// CAPEM returns the CA certificate in PEM.
func (p *TestPKI) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.CA.Raw})
}

// Server returns a server certificate for localhost and 127.0.0.1, with
// commonName as its subject.
func (p *TestPKI) Server(tb testing.TB, commonName string) tls.Certificate {
	tb.Helper()
	return p.issue(tb, &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// Client returns a client certificate whose subject is commonName.
func (p *TestPKI) Client(tb testing.TB, commonName string) tls.Certificate {
	tb.Helper()
	return p.issue(tb, &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{"wsd clients"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (p *TestPKI) issue(tb testing.TB, tmpl *x509.Certificate) tls.Certificate {
	key := newKey(tb)
	tmpl.SerialNumber = big.NewInt(pkiSerial.Add(1))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, p.CA.Raw}, PrivateKey: key, Leaf: leaf}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// TLSQuietPending returns how many wss connections keep crypto/tls buffers
// that their loops have yet to let go (tls_quiet.go).
func TLSQuietPending(e *Engine) int64 {
	var n int64
	if list := e.list.Load(); list != nil {
		for _, l := range *list {
			n += l.tlsListed.Load()
		}
	}
	return n
}
