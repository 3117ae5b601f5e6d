package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// An in-process engine that serves wss for the clients of other languages
// and browsers: a test CA written to a file they can be told to trust, a
// server certificate for localhost, 127.0.0.1 and ::1 that it signed, and
// an echo handler that notes each connection's TLS version and whether it
// negotiated permessage-deflate.

// WSSEcho is an engine serving wss:// that echoes every message.
type WSSEcho struct {
	Addr   string // 127.0.0.1:port
	CAFile string // PEM file of the CA that signed the server certificate
	// LeafSPKI is the base64 SHA-256 hash of the server certificate's
	// public key, as Chromium's --ignore-certificate-errors-spki-list
	// takes it.
	LeafSPKI string
	Engine   *engine.Engine

	h *wssEchoHandler
}

// WSSConn is what the server saw of one connection.
type WSSConn struct {
	TLSVersion  uint16
	Compression bool
}

// wssEchoHandler echoes and records the connections it opened.
type wssEchoHandler struct {
	engine.NopHandler
	mu    sync.Mutex
	conns []WSSConn
}

func (h *wssEchoHandler) OnOpen(c *engine.Conn) {
	var v uint16
	if cs := c.TLS(); cs != nil {
		v = cs.Version
	}
	h.mu.Lock()
	h.conns = append(h.conns, WSSConn{TLSVersion: v, Compression: c.Compression().On})
	h.mu.Unlock()
}

func (h *wssEchoHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) { _ = c.Write(op, p) }

// Conns returns the connections the engine opened so far, in order.
func (w *WSSEcho) Conns() []WSSConn {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	return append([]WSSConn(nil), w.h.conns...)
}

// StartWSSEcho starts the engine with o (o.TLS is set here) on a free
// loopback port; it stops when the test ends.
func StartWSSEcho(t testing.TB, o engine.Options) *WSSEcho {
	t.Helper()
	caPEM, leaf := newTestCert(t)
	dir := t.TempDir()
	w := &WSSEcho{CAFile: filepath.Join(dir, "ca.pem"), h: &wssEchoHandler{}}
	if err := os.WriteFile(w.CAFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.Leaf.RawSubjectPublicKeyInfo)
	w.LeafSPKI = base64.StdEncoding.EncodeToString(sum[:])
	o.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	w.Engine, w.Addr = wstest.StartEngine(t, w.h, o)
	return w
}

// newTestCert makes a CA and a server certificate it signs for localhost,
// 127.0.0.1 and ::1, valid for a day; it returns the CA in PEM.
func newTestCert(t testing.TB) (caPEM []byte, leaf tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wsd interop test CA", Organization: []string{"wsd tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	leaf = tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key, Leaf: parsed}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), leaf
}
