package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/internal/wstest"
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
		{"curve", append([]string{"-tls-curves", "X25519,P-256"}, pair...), nil, "",
			[]string{`-tls-curves: invalid key exchange "P-256": want X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, CurveP256, CurveP384 or CurveP521 (in any case)`}},
		{"curve from env", pair, []string{"WSD_TLS_CURVES=x448"}, "", []string{`-tls-curves: invalid key exchange "x448" (from WSD_TLS_CURVES): want X25519MLKEM768, `}},
		{"curve from the file", nil, nil, "tls_cert: cert.pem\ntls_key: key.pem\ntls_curves: [X25519, secp256r1]\n",
			[]string{`c.yaml:3: tls_curves: invalid key exchange "secp256r1": want X25519MLKEM768, `}},
		{"curves without a certificate", nil, nil, "tls_curves: [X25519, CurveP256]\n",
			[]string{`-tls-curves X25519,CurveP256 (from c.yaml:1: tls_curves) needs -tls-cert and -tls-key: without them wsd serves no TLS`}},
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
	if opts.TLS.CurvePreferences != nil {
		t.Errorf("CurvePreferences %v without -tls-curves, want nil (crypto/tls's defaults)", opts.TLS.CurvePreferences)
	}

	// -tls-curves from each source, in any case, in its order.
	writeFile(t, dir, "curves.yaml", []byte("tls_curves: [x25519, CURVEP256, X25519MLKEM768]\n"))
	for _, src := range []struct {
		name      string
		args, env []string
	}{
		{"flag", []string{"-tls-curves", "x25519, CURVEP256,X25519MLKEM768"}, nil},
		{"env", nil, []string{"WSD_TLS_CURVES=x25519,CURVEP256,X25519MLKEM768"}},
		{"file", []string{"-config", "curves.yaml"}, nil},
	} {
		cfg, _, err := loadConfig(append(src.args, pair...), src.env)
		if err != nil {
			t.Fatalf("%s: %v", src.name, err)
		}
		opts := engineOptions(cfg, nil)
		if err := setTLS(&opts, cfg, newCertStore(cfg)); err != nil {
			t.Fatal(err)
		}
		if want := []tls.CurveID{tls.X25519, tls.CurveP256, tls.X25519MLKEM768}; !slices.Equal(opts.TLS.CurvePreferences, want) {
			t.Errorf("%s: CurvePreferences %v, want %v", src.name, opts.TLS.CurvePreferences, want)
		}
	}
}

// clientCert is a tls.Certificate for cn from ca.
func (ca *testCA) clientCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, cn, true)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// dialWSS opens a wss connection to addr+path trusting ca, with cfg's
// client certificates and versions if cfg is not nil.
func dialWSS(t *testing.T, addr, path string, ca *testCA, cfg *tls.Config) (*websocket.Conn, error) {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs = ca.pool
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: cfg}
	c, _, err := d.Dial("wss://"+addr+path, nil)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// mustDialWSS is dialWSS that fails the test on an error.
func mustDialWSS(t *testing.T, addr, path string, ca *testCA, cfg *tls.Config) *websocket.Conn {
	t.Helper()
	c, err := dialWSS(t, addr, path, ca, cfg)
	if err != nil {
		t.Fatalf("wss://%s%s: %v", addr, path, err)
	}
	return c
}

// roundTrip sends msg on c and reads until a message of from that holds
// msg arrives.
func roundTrip(t *testing.T, c, from *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = from.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, got, err := from.ReadMessage()
		if err != nil {
			t.Fatalf("reading %q: %v", msg, err)
		}
		if strings.Contains(string(got), msg) {
			return
		}
	}
}

// tlsFiles writes a server certificate for localhost from a new test CA
// to a temporary directory.
func tlsFiles(t *testing.T) (ca *testCA, certFile, keyFile string) {
	ca = newTestCA(t, "wsd test CA")
	certFile, keyFile = serverFiles(t, ca, t.TempDir(), "localhost")
	return ca, certFile, keyFile
}

// TestDaemonWSS: echo and chat over wss through the daemon, and the demo
// page over https on the same port.
func TestDaemonWSS(t *testing.T) {
	ca, cert, key := tlsFiles(t)
	t.Run("echo", func(t *testing.T) {
		d := wstest.StartDaemon(t, "-mode", "echo", "-tls-cert", cert, "-tls-key", key)
		c := mustDialWSS(t, d.Addr, "/", ca, nil)
		roundTrip(t, c, c, "hello over TLS")
		big := strings.Repeat("x", 100<<10) // several records each way
		roundTrip(t, c, c, big)
	})
	t.Run("chat", func(t *testing.T) {
		d := wstest.StartDaemon(t, "-mode", "chat", "-tls-cert", cert, "-tls-key", key)
		a := mustDialWSS(t, d.Addr, "/room", ca, nil)
		b := mustDialWSS(t, d.Addr, "/room", ca, nil)
		roundTrip(t, a, b, "from a to b")
		roundTrip(t, b, a, "from b to a")

		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
		defer client.CloseIdleConnections()
		resp, err := client.Get("https://" + d.Addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "<html") || resp.TLS == nil {
			t.Errorf("GET / over TLS: %d, TLS %v, body %.80q", resp.StatusCode, resp.TLS != nil, body)
		}
	})
}

// TestDaemonTLSAddr: -tls-addr serves wss next to the plain -addr.
func TestDaemonTLSAddr(t *testing.T) {
	ca, cert, key := tlsFiles(t)
	tlsAddr := wstest.FreeAddr(t)
	d := wstest.StartDaemon(t, "-mode", "echo", "-tls-cert", cert, "-tls-key", key, "-tls-addr", tlsAddr)
	plain, _, err := (&websocket.Dialer{HandshakeTimeout: 5 * time.Second}).Dial("ws://"+d.Addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	roundTrip(t, plain, plain, "plain")
	c := mustDialWSS(t, tlsAddr, "/", ca, nil)
	roundTrip(t, c, c, "over TLS")
	if _, err := dialWSS(t, d.Addr, "/", ca, nil); err == nil {
		t.Error("wss on the plain -addr: no error")
	}
}

// TestDaemonMutualTLS: with -tls-client-ca a client with a certificate of
// that CA is served (its subject logged at debug level); one without a
// certificate, or with one of another CA, is refused.
func TestDaemonMutualTLS(t *testing.T) {
	ca, cert, key := tlsFiles(t)
	clients := newTestCA(t, "client CA")
	caFile := writeFile(t, t.TempDir(), "clients.pem", clients.pem)
	d := wstest.StartDaemon(t, "-mode", "echo", "-tls-cert", cert, "-tls-key", key, "-tls-client-ca", caFile, "-log-level", "debug")

	c := mustDialWSS(t, d.Addr, "/", ca, &tls.Config{Certificates: []tls.Certificate{clients.clientCert(t, "alice")}})
	roundTrip(t, c, c, "mutual")
	// The output reaches the test through a pipe: it may lag.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(d.Output(), "CN=alice"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client's subject is not logged")
		}
	}
	if _, err := dialWSS(t, d.Addr, "/", ca, nil); err == nil {
		t.Error("no client certificate: no error")
	}
	if _, err := dialWSS(t, d.Addr, "/", ca, &tls.Config{Certificates: []tls.Certificate{ca.clientCert(t, "mallory")}}); err == nil {
		t.Error("a client certificate of another CA: no error")
	}
}

// TestDaemonTLSMinVersion: -tls-min-version 1.3 refuses a TLS 1.2 client.
func TestDaemonTLSMinVersion(t *testing.T) {
	ca, cert, key := tlsFiles(t)
	d := wstest.StartDaemon(t, "-mode", "echo", "-tls-cert", cert, "-tls-key", key, "-tls-min-version", "1.3")
	if _, err := dialWSS(t, d.Addr, "/", ca, &tls.Config{MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("a TLS 1.2 client: no error")
	}
	c := mustDialWSS(t, d.Addr, "/", ca, nil)
	roundTrip(t, c, c, "1.3")
}

// TestDaemonTLSCurves: -tls-curves sets the key exchanges the daemon
// accepts, not their order: crypto/tls (Go 1.26) chooses among those the
// client offers a post-quantum hybrid first, then one the client sent a
// key share for, then the first in its own order (X25519MLKEM768,
// SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, CurveP256, CurveP384,
// CurveP521); a client without a share for the one chosen is sent a
// HelloRetryRequest. A Go client offering its defaults sends X25519MLKEM768
// and X25519 shares; one offering others sends a share for the first of
// them in that order.
func TestDaemonTLSCurves(t *testing.T) {
	ca, cert, key := tlsFiles(t)
	x25519Only := []tls.CurveID{tls.X25519}
	type dial struct {
		client []tls.CurveID // nil: Go's defaults
		want   tls.CurveID   // 0: the handshake fails
		retry  bool          // a HelloRetryRequest
	}
	for _, tc := range []struct {
		curves string // "": the default
		dials  []dial
	}{
		{"", []dial{{nil, tls.X25519MLKEM768, false}, {x25519Only, tls.X25519, false}}},
		{"X25519", []dial{{nil, tls.X25519, false}, {[]tls.CurveID{tls.CurveP256}, 0, false}}},
		// The list's order does not put X25519 before a hybrid...
		{"X25519,X25519MLKEM768", []dial{{nil, tls.X25519MLKEM768, false}, {x25519Only, tls.X25519, false}}},
		// ...nor CurveP384 before CurveP256, when the client sent a
		// share for neither.
		{"curvep384,CURVEP256", []dial{{nil, tls.CurveP256, true}, {[]tls.CurveID{tls.CurveP384}, tls.CurveP384, false}}},
		{"CurveP256", []dial{{nil, tls.CurveP256, true}, {x25519Only, 0, false}}},
	} {
		t.Run("curves="+tc.curves, func(t *testing.T) {
			args := []string{"-mode", "echo", "-tls-cert", cert, "-tls-key", key}
			if tc.curves != "" {
				args = append(args, "-tls-curves", tc.curves)
			}
			d := wstest.StartDaemon(t, args...)
			for _, dl := range tc.dials {
				c, err := dialWSS(t, d.Addr, "/", ca, &tls.Config{CurvePreferences: dl.client})
				if dl.want == 0 {
					if err == nil {
						t.Errorf("client %v: connected with %v, want a failed handshake", dl.client, c.NetConn().(*tls.Conn).ConnectionState().CurveID)
					}
					continue
				}
				if err != nil {
					t.Fatalf("client %v: %v", dl.client, err)
				}
				if cs := c.NetConn().(*tls.Conn).ConnectionState(); cs.CurveID != dl.want || cs.HelloRetryRequest != dl.retry {
					t.Errorf("client %v: key exchange %v, HelloRetryRequest %v; want %v, %v", dl.client, cs.CurveID, cs.HelloRetryRequest, dl.want, dl.retry)
				}
				roundTrip(t, c, c, "over "+dl.want.String())
			}
		})
	}
}

// TestDaemonTLSConfigErrors: the TLS configuration errors exit 2, naming
// the flag, before anything starts.
func TestDaemonTLSConfigErrors(t *testing.T) {
	_, cert, key := tlsFiles(t)
	dir := t.TempDir()
	_, otherKey := newTestCA(t, "other").issue(t, "other", false)
	otherKeyFile := writeFile(t, dir, "other-key.pem", otherKey)
	cases := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"missing key", []string{"-tls-cert", cert}, "wsd: -tls-cert " + cert + " needs -tls-key, its private key\n"},
		{"unreadable file", []string{"-tls-cert", cert, "-tls-key", filepath.Join(dir, "nope.pem")},
			`wsd: -tls-key: invalid file "` + filepath.Join(dir, "nope.pem") + `": want a readable PEM private key file (no such file or directory)` + "\n"},
		{"mismatch", []string{"-tls-cert", cert, "-tls-key", otherKeyFile},
			"wsd: -tls-cert " + cert + " and -tls-key " + otherKeyFile + " do not go together: tls: private key does not match public key\n"},
		{"version", []string{"-tls-cert", cert, "-tls-key", key, "-tls-min-version", "1.0"}, `wsd: -tls-min-version: invalid TLS version "1.0": want 1.2 or 1.3` + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, stderr := runDaemon(t, append([]string{"-addr", wstest.FreeAddr(t), "-admin-addr="}, tc.args...), nil)
			if status != exitConfig || stderr != tc.stderr {
				t.Errorf("exit status %d, stderr:\n%s\nwant 2 and:\n%s", status, stderr, tc.stderr)
			}
		})
	}
}

// servedCN is the common name of the certificate a new TLS connection to
// addr gets.
func servedCN(t *testing.T, addr string, ca *testCA) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestDaemonCertificateReload: SIGHUP makes new connections get the new
// certificate while open ones keep going; a pair that does not load is
// logged and the certificate in use kept.
func TestDaemonCertificateReload(t *testing.T) {
	ca := newTestCA(t, "wsd test CA")
	dir := t.TempDir()
	cert, key := serverFiles(t, ca, dir, "A")
	addr := wstest.FreeAddr(t)
	// The daemon is started here rather than by wstest.StartDaemon, for
	// its process to signal; its output goes to a file.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "wsd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	output := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd := exec.Command(wstest.DaemonBinary(t), "-addr", addr, "-admin-addr=", "-reuse-port=false", "-mode", "echo", "-tls-cert", cert, "-tls-key", key)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("wsd output:\n%s", output())
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsd did not start:\n%s", output())
		}
	}

	if cn := servedCN(t, addr, ca); cn != "A" {
		t.Fatalf("served %q, want A", cn)
	}
	old := mustDialWSS(t, addr, "/", ca, nil)
	roundTrip(t, old, old, "before")

	// hup sends SIGHUP and waits for the log line logged.
	hup := func(logged string) {
		t.Helper()
		n := strings.Count(output(), logged)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); strings.Count(output(), logged) == n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q after SIGHUP", logged)
			}
		}
	}
	serverFiles(t, ca, dir, "B")
	hup("certificate reloaded")
	if cn := servedCN(t, addr, ca); cn != "B" {
		t.Errorf("after the reload: served %q, want B", cn)
	}
	roundTrip(t, old, old, "after")
	c := mustDialWSS(t, addr, "/", ca, nil)
	roundTrip(t, c, c, "new")

	// A key that does not go with the certificate: B stays.
	_, otherKey := ca.issue(t, "C", false)
	writeFile(t, dir, "key.pem", otherKey)
	hup("certificate reload failed")
	if cn := servedCN(t, addr, ca); cn != "B" {
		t.Errorf("after a failed reload: served %q, want B", cn)
	}
	roundTrip(t, old, old, "still")
}

// TestDaemonAdminTLS: with -admin-tls the admin listener serves the API and
// /metrics over https with the WebSocket listener's certificate, and a
// plain http request there gets no admin answer (only net/http's 400 for
// http sent to an https port); without it the admin listener is plain http
// and a TLS client is refused.
func TestDaemonAdminTLS(t *testing.T) {
	ca, cert, key := tlsFiles(t)
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	httpsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	httpClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer httpsClient.CloseIdleConnections()
	defer httpClient.CloseIdleConnections()
	for _, tc := range []struct {
		name     string
		adminTLS bool
	}{
		{"admin over https", true},
		{"admin over http", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin := wstest.FreeAddr(t)
			args := []string{"-mode", "push", "-tls-cert", cert, "-tls-key", key, "-admin-addr", admin, "-api-token", "s3cret"}
			if tc.adminTLS {
				args = append(args, "-admin-tls")
			}
			d := wstest.StartDaemon(t, args...)
			served, refused := httpsClient, httpClient
			scheme, otherScheme := "https://", "http://"
			if !tc.adminTLS {
				served, refused = httpClient, httpsClient
				scheme, otherScheme = "http://", "https://"
			}
			// get does a request to the admin listener with client c.
			get := func(c *http.Client, method, url, body string) (*http.Response, string, error) {
				t.Helper()
				req, err := http.NewRequest(method, url, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer s3cret")
				resp, err := c.Do(req)
				if err != nil {
					return nil, "", err
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s %s: reading the body: %v", method, url, err)
				}
				return resp, string(b), nil
			}

			// The admin listener opens before the WebSocket one, which
			// StartDaemon waited for.
			for _, r := range []struct{ method, path, body, has string }{
				{"GET", "/healthz", "", `"status":"ok"`},
				{"GET", "/metrics", "", "wsd_upgrades_total"},
				{"GET", "/api/topics", "", "["},
			} {
				resp, body, err := get(served, r.method, scheme+admin+r.path, r.body)
				if err != nil {
					t.Fatalf("%s %s: %v", r.method, scheme+admin+r.path, err)
				}
				if resp.StatusCode != http.StatusOK || !strings.Contains(body, r.has) {
					t.Errorf("%s %s: %s, body %.200q (want 200 with %q)", r.method, scheme+admin+r.path, resp.Status, body, r.has)
				}
				if (resp.TLS != nil) != tc.adminTLS {
					t.Errorf("%s %s: TLS %v", r.method, scheme+admin+r.path, resp.TLS != nil)
				}
				if resp.TLS != nil && !bytes.Equal(resp.TLS.PeerCertificates[0].Raw, block.Bytes) {
					t.Errorf("%s: the admin listener's certificate is not -tls-cert's", r.path)
				}

				// The other scheme gets no admin answer: a plain request to
				// the https listener is answered 400 by net/http, a TLS
				// ClientHello to the http one fails the handshake.
				resp, body, err = get(refused, r.method, otherScheme+admin+r.path, r.body)
				if err == nil && (resp.StatusCode != http.StatusBadRequest || strings.Contains(body, r.has)) {
					t.Errorf("%s %s: %s, body %.200q (want no admin answer)", r.method, otherScheme+admin+r.path, resp.Status, body)
				}
				if err == nil && !tc.adminTLS {
					t.Errorf("%s %s: a TLS client got an answer from the http listener", r.method, otherScheme+admin+r.path)
				}
			}

			// A publish through the admin API reaches a wss subscriber.
			sub := mustDialWSS(t, d.Addr, "/?topics=news&welcome=1", ca, nil)
			_ = sub.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, welcome, err := sub.ReadMessage(); err != nil || !strings.Contains(string(welcome), `"welcome"`) {
				t.Fatalf("welcome: %q, %v", welcome, err)
			}
			resp, body, err := get(served, "POST", scheme+admin+"/api/publish", `{"topic":"news","data":"published over `+tc.name+`"}`)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("POST %s/api/publish: %v %v %q", scheme+admin, resp, err, body)
			}
			if _, got, err := sub.ReadMessage(); err != nil || !strings.Contains(string(got), "published over "+tc.name) {
				t.Fatalf("the subscriber got %q, %v", got, err)
			}
			if resp, body, err := get(refused, "POST", otherScheme+admin+"/api/publish", `{"topic":"news","data":"refused"}`); err == nil && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("POST %s/api/publish: %s %q (want no admin answer)", otherScheme+admin, resp.Status, body)
			}
		})
	}
}

// TestDaemonAdminTLSCurves: the admin listener of -admin-tls accepts the
// key exchanges of -tls-curves and the versions of -tls-min-version, as
// the WebSocket listener does.
func TestDaemonAdminTLSCurves(t *testing.T) {
	ca, cert, key := tlsFiles(t)
	admin := wstest.FreeAddr(t)
	wstest.StartDaemon(t, "-mode", "push", "-tls-cert", cert, "-tls-key", key, "-admin-addr", admin, "-admin-tls", "-tls-curves", "X25519", "-tls-min-version", "1.3")
	dialWith := func(cfg *tls.Config) (tls.ConnectionState, error) {
		cfg.RootCAs = ca.pool
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
		c, err := d.Dial("tcp", admin)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.(*tls.Conn).ConnectionState(), nil
	}
	dial := func(curves []tls.CurveID) (tls.ConnectionState, error) {
		return dialWith(&tls.Config{CurvePreferences: curves})
	}
	if cs, err := dialWith(&tls.Config{MaxVersion: tls.VersionTLS12}); err == nil {
		t.Errorf("a TLS 1.2 client connected (version %x), want a failed handshake", cs.Version)
	}
	if cs, err := dial(nil); err != nil || cs.CurveID != tls.X25519 {
		t.Errorf("a default client: %v, %v; want X25519", cs.CurveID, err)
	}
	if cs, err := dial([]tls.CurveID{tls.CurveP256}); err == nil {
		t.Errorf("a client offering P-256 alone connected with %v, want a failed handshake", cs.CurveID)
	}
}
