package main

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
	"testing"
	"time"
)

// testCA is a certificate authority made for a test: ECDSA P-256.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

var serial int64

// newKeyCert makes a key and a certificate from tmpl for it, signed by
// parent's key (nil: self-signed), valid for an hour either side of now.
func newKeyCert(t testing.TB, tmpl *x509.Certificate, parent *testCA) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, der := newKeyCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// issue makes a certificate for cn signed by ca: a server certificate for
// localhost and 127.0.0.1, or a client certificate. It returns the PEM of
// the certificate and of its key.
func (ca *testCA) issue(t testing.TB, cn string, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage, tmpl.DNSNames, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil
	}
	key, der := newKeyCert(t, tmpl, ca)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// serverFiles writes a server certificate from ca and its key to dir as
// cert.pem and key.pem and returns their paths.
func serverFiles(t testing.TB, ca *testCA, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	c, k := ca.issue(t, cn, false)
	return writeFile(t, dir, "cert.pem", c), writeFile(t, dir, "key.pem", k)
}

// TestConfigTLS checks the errors of the TLS settings, from each source.
func TestConfigTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "wsd test CA")
	serverFiles(t, ca, dir, "localhost")
	other, otherKey := ca.issue(t, "other", false)
	writeFile(t, dir, "other.pem", other)
	writeFile(t, dir, "other-key.pem", otherKey)
	writeFile(t, dir, "ca.pem", ca.pem)
	writeFile(t, dir, "empty.pem", []byte("no PEM here\n"))
	writeFile(t, dir, "unreadable.pem", ca.pem)
	if err := os.Chmod(filepath.Join(dir, "unreadable.pem"), 0); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	pair := []string{"-tls-cert", "cert.pem", "-tls-key", "key.pem"}
	cases := []struct {
		name string
		args []string
		env  []string
		file string
		want []string
	}{
		{"cert without key", []string{"-tls-cert", "cert.pem"}, nil, "", []string{`-tls-cert cert.pem needs -tls-key, its private key`}},
		{"key without cert, from env", nil, []string{"WSD_TLS_KEY=key.pem"}, "", []string{`-tls-key key.pem (from WSD_TLS_KEY) needs -tls-cert, its certificate`}},
		{"missing cert", []string{"-tls-cert", "nope.pem", "-tls-key", "key.pem"}, nil, "",
			[]string{`-tls-cert: invalid file "nope.pem": want a readable PEM certificate file (no such file or directory)`}},
		{"unreadable key, from the file", nil, nil, "tls_cert: cert.pem\ntls_key: empty.pem\n",
			[]string{`c.yaml:2: tls_key: invalid file "empty.pem": want a readable PEM private key file (it holds no PRIVATE KEY block)`}},
		{"key for cert", []string{"-tls-cert", "key.pem", "-tls-key", "key.pem"}, nil, "",
			[]string{`-tls-cert: invalid file "key.pem": want a readable PEM certificate file (it holds no CERTIFICATE block)`}},
		{"mismatch", []string{"-tls-cert", "cert.pem", "-tls-key", "other-key.pem"}, nil, "",
			[]string{`-tls-cert cert.pem and -tls-key other-key.pem do not go together: tls: private key does not match public key`}},
		{"version", append([]string{"-tls-min-version", "1.1"}, pair...), nil, "", []string{`-tls-min-version: invalid TLS version "1.1": want 1.2 or 1.3`}},
		{"version from env", pair, []string{"WSD_TLS_MIN_VERSION=tls1.3"}, "", []string{`-tls-min-version: invalid TLS version "tls1.3" (from WSD_TLS_MIN_VERSION): want 1.2 or 1.3`}},
		{"client ca", append([]string{"-tls-client-ca", "empty.pem"}, pair...), nil, "",
			[]string{`-tls-client-ca: invalid file "empty.pem": want a readable file of PEM CA certificates (it holds none)`}},
		{"tls addr", append([]string{"-tls-addr", "8443"}, pair...), nil, "", []string{`-tls-addr: invalid address "8443": want host:port`}},
		{"handshakes", append([]string{"-max-tls-handshakes", "-1"}, pair...), nil, "", []string{`-max-tls-handshakes: invalid count "-1": want 0 (4 per CPU) or more`}},
		{"tls settings without a certificate", []string{"-tls-addr", "127.0.0.1:8443", "-admin-tls"}, []string{"WSD_TLS_MIN_VERSION=1.3"}, "",
			[]string{`-tls-addr 127.0.0.1:8443 needs -tls-cert and -tls-key: without them wsd serves no TLS`,
				`-tls-min-version 1.3 (from WSD_TLS_MIN_VERSION) needs -tls-cert and -tls-key`,
				`-admin-tls true needs -tls-cert and -tls-key`}},
		{"admin tls without admin", append([]string{"-admin-tls", "-admin-addr="}, pair...), nil, "", []string{`-admin-tls true needs -admin-addr: the admin listener is off`}},
	}
	if os.Geteuid() != 0 { // root reads any file
		cases = append(cases, struct {
			name string
			args []string
			env  []string
			file string
			want []string
		}{"unreadable cert", []string{"-tls-cert", "unreadable.pem", "-tls-key", "key.pem"}, nil, "",
			[]string{`-tls-cert: invalid file "unreadable.pem": want a readable PEM certificate file (permission denied)`}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				writeFile(t, dir, "c.yaml", []byte(tc.file))
				args = append([]string{"-config", "c.yaml"}, args...)
			}
			_, _, err := loadConfig(args, tc.env)
			wantConfigErrors(t, err, tc.want)
		})
	}

	// A good configuration loads the pair.
	cfg, _, err := loadConfig(append([]string{"-tls-client-ca", "ca.pem", "-tls-min-version", "1.3", "-tls-addr", "127.0.0.1:8443", "-max-tls-handshakes", "3"}, pair...), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.cert == nil || cfg.cert.Leaf.Subject.CommonName != "localhost" {
		t.Fatalf("certificate not loaded: %+v", cfg.cert)
	}
	opts := engineOptions(cfg, nil)
	if err := setTLS(&opts, cfg, newCertStore(cfg)); err != nil {
		t.Fatal(err)
	}
	if opts.TLS.MinVersion != tls.VersionTLS13 || opts.TLS.ClientAuth != tls.RequireAndVerifyClientCert || opts.MaxTLSHandshakes != 3 ||
		len(opts.TLSAddrs) != 1 || opts.TLSAddrs[0] != "127.0.0.1:8443" {
		t.Errorf("engine options: TLS %+v, MaxTLSHandshakes %d, TLSAddrs %q", opts.TLS, opts.MaxTLSHandshakes, opts.TLSAddrs)
	}
}
