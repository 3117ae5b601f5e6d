package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/engine"
)

// wss: the TLS settings (flags, their checks, engine.Options.TLS), the
// certificate that SIGHUP reloads, and the admin listener over https.

// addTLSFlags adds the TLS flags to fs, bound to c's fields.
func addTLSFlags(fs *flag.FlagSet, c *config) {
	text := func(p *string, name, def string, list bool, check func(string) *valueError, usage string) {
		*p = def
		fs.Var(&textValue{p: p, list: list, check: check}, name, usage)
	}
	text(&c.TLSCert, "tls-cert", "", false, checkPEMFile("certificate", "CERTIFICATE"),
		"PEM certificate (chain) file: with -tls-key, serve wss:// (and https:// for the demo page) on every -addr, or on -tls-addr; SIGHUP reloads it")
	text(&c.TLSKey, "tls-key", "", false, checkPEMFile("private key", "PRIVATE KEY"), "PEM private key file of -tls-cert")
	text(&c.TLSAddr, "tls-addr", "", true, checkTLSAddrs,
		"with -tls-cert: listen addresses, comma-separated, that serve wss:// next to the plain ws:// of -addr (empty: every -addr serves wss://)")
	text(&c.TLSMinVersion, "tls-min-version", "1.2", false, oneOf("TLS version", "1.2", "1.3"), "with -tls-cert: oldest TLS version accepted, 1.2 or 1.3")
	text(&c.TLSCurves, "tls-curves", "", true, eachItem(checkCurve),
		"with -tls-cert: key exchanges accepted, comma-separated: "+strings.Join(curveNames, ", ")+
			" (any case; crypto/tls chooses among them in its own order, not the list's; empty: crypto/tls's defaults, all of these)")
	text(&c.TLSClientCA, "tls-client-ca", "", false, checkCAFile,
		"with -tls-cert: PEM CA certificates; clients must present a certificate they verify (mutual TLS)")
	c.MaxTLSHandshakes = 0
	fs.Var(&intValue{p: &c.MaxTLSHandshakes, kind: "count", want: "want 0 (4 per CPU) or more", ok: func(n int) bool { return n >= 0 }},
		"max-tls-handshakes", "with -tls-cert: TLS handshakes running at once, each in a goroutine; more wait their turn (0: 4 per CPU)")
	c.AdminTLS = false
	fs.Var(&boolValue{&c.AdminTLS}, "admin-tls", "with -tls-cert: serve the admin listener over https with the same certificate")
}

// checkTLSAddrs vets -tls-addr: empty (none) or -addr's form.
func checkTLSAddrs(s string) *valueError {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return checkListenAddrs(s)
}

// checkPEMFile returns a check of a file setting: empty, or a readable
// file with a PEM block whose type ends with block.
func checkPEMFile(what, block string) func(string) *valueError {
	return func(s string) *valueError {
		if s == "" {
			return nil
		}
		want := "want a readable PEM " + what + " file"
		data, err := os.ReadFile(s)
		if err != nil {
			return &valueError{"file", s, want + " (" + fileProblem(err) + ")"}
		}
		for {
			var b *pem.Block
			if b, data = pem.Decode(data); b == nil {
				return &valueError{"file", s, want + " (it holds no " + block + " block)"}
			}
			if strings.HasSuffix(b.Type, block) {
				return nil
			}
		}
	}
}

// tlsCurves are the key exchanges -tls-curves takes, by the names
// tls.CurveID.String gives them: Go 1.26's defaults, in the order it
// prefers them. crypto/tls ignores the order of CurvePreferences: among the
// key exchanges of the list that the client offers it takes a post-quantum
// hybrid first, then one the client sent a key share for, then the first
// in its own order.
var tlsCurves = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

// curveNames are the names of tlsCurves.
var curveNames = func() []string {
	names := make([]string, len(tlsCurves))
	for i, id := range tlsCurves {
		names[i] = id.String()
	}
	return names
}()

// parseCurve returns the key exchange of a -tls-curves name, in any case.
func parseCurve(name string) (tls.CurveID, bool) {
	for _, id := range tlsCurves {
		if strings.EqualFold(name, id.String()) {
			return id, true
		}
	}
	return 0, false
}

// checkCurve vets one -tls-curves name.
func checkCurve(name string) *valueError {
	if _, ok := parseCurve(name); ok {
		return nil
	}
	err := oneOf("key exchange", curveNames...)(name)
	err.want += " (in any case)"
	return err
}

// curvesLogged is -tls-curves for the log: "default" when empty.
func curvesLogged(list string) string {
	if strings.TrimSpace(list) == "" {
		return "default"
	}
	return list
}

// curvePreferences is tls.Config.CurvePreferences for -tls-curves, the
// key exchanges accepted: nil (crypto/tls's defaults) when it is empty.
func curvePreferences(list string) []tls.CurveID {
	var ids []tls.CurveID
	for _, name := range splitList(list) {
		id, _ := parseCurve(name) // checked when set
		ids = append(ids, id)
	}
	return ids
}

// tlsOn reports whether c serves wss.
func (c *config) tlsOn() bool { return c.TLSCert != "" }

// checkTLS checks the TLS flags against each other and loads the
// certificate, so that a pair that does not go together is a
// configuration error.
func (c *config) checkTLS() []error {
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return []error{fmt.Errorf("%s needs -tls-key, its private key", c.describe("tls-cert", c.TLSCert))}
	case c.TLSKey != "" && c.TLSCert == "":
		return []error{fmt.Errorf("%s needs -tls-cert, its certificate", c.describe("tls-key", c.TLSKey))}
	case c.TLSCert == "":
		// A TLS setting other than its default would have no effect.
		var errs []error
		for _, f := range []struct {
			name string
			set  bool
		}{{"tls-addr", len(splitList(c.TLSAddr)) > 0}, {"tls-min-version", c.TLSMinVersion != "1.2"}, {"tls-curves", len(splitList(c.TLSCurves)) > 0},
			{"tls-client-ca", c.TLSClientCA != ""},
			{"max-tls-handshakes", c.MaxTLSHandshakes != 0}, {"admin-tls", c.AdminTLS}} {
			if f.set {
				errs = append(errs, fmt.Errorf("%s needs -tls-cert and -tls-key: without them wsd serves no TLS", c.describe(f.name, c.tlsSetting(f.name))))
			}
		}
		return errs
	}
	var errs []error
	if c.AdminTLS && c.AdminAddr == "" {
		errs = append(errs, fmt.Errorf("%s needs -admin-addr: the admin listener is off", c.describe("admin-tls", c.AdminTLS)))
	}
	cert, err := loadCertificate(c.TLSCert, c.TLSKey)
	if err != nil {
		return append(errs, fmt.Errorf("%s and %s do not go together: %v", c.describe("tls-cert", c.TLSCert), c.describe("tls-key", c.TLSKey), err))
	}
	c.cert = cert
	return errs
}

// tlsSetting returns the value of c's TLS setting name, for describe.
func (c *config) tlsSetting(name string) any {
	switch name {
	case "tls-addr":
		return c.TLSAddr
	case "tls-min-version":
		return c.TLSMinVersion
	case "tls-curves":
		return c.TLSCurves
	case "tls-client-ca":
		return c.TLSClientCA
	case "max-tls-handshakes":
		return c.MaxTLSHandshakes
	}
	return c.AdminTLS
}

// loadCertificate reads a certificate and its key and checks that they go
// together and that the certificate parses.
func loadCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &cert, nil // LoadX509KeyPair sets Leaf
}

// certStore holds the certificate every new TLS handshake gets; reload
// swaps it, and open connections keep the session they have.
type certStore struct {
	cert              atomic.Pointer[tls.Certificate]
	certFile, keyFile string
}

func newCertStore(c *config) *certStore {
	s := &certStore{certFile: c.TLSCert, keyFile: c.TLSKey}
	s.cert.Store(c.cert)
	return s
}

func (s *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil }

// reload reads the certificate files again; a pair that does not load is
// logged and the old certificate kept.
func (s *certStore) reload(log *zap.Logger) {
	cert, err := loadCertificate(s.certFile, s.keyFile)
	if err != nil {
		log.Error("certificate reload failed, keeping the old certificate", zap.String("cert", s.certFile), zap.String("key", s.keyFile), zap.Error(err))
		return
	}
	s.cert.Store(cert)
	log.Info("certificate reloaded", certFields(cert)...)
}

// certFields describe a certificate in the log.
func certFields(cert *tls.Certificate) []zap.Field {
	if cert.Leaf == nil {
		return nil
	}
	return []zap.Field{zap.String("subject", cert.Leaf.Subject.String()), zap.Strings("dns", cert.Leaf.DNSNames), zap.Time("not_after", cert.Leaf.NotAfter)}
}

// serverTLS is what the WebSocket and admin listeners' TLS share: the
// certificate from s, the minimum version and the key exchanges accepted
// (-tls-curves).
func serverTLS(c *config, s *certStore) *tls.Config {
	t := &tls.Config{GetCertificate: s.get, MinVersion: tls.VersionTLS12, CurvePreferences: curvePreferences(c.TLSCurves)}
	if c.TLSMinVersion == "1.3" {
		t.MinVersion = tls.VersionTLS13
	}
	return t
}

// tlsConfig is the engine's TLS configuration: serverTLS and, with
// -tls-client-ca, mutual TLS. ALPN (http/1.1) and session tickets are the
// engine's defaults.
func tlsConfig(c *config, s *certStore) (*tls.Config, error) {
	t := serverTLS(c, s)
	if c.TLSClientCA != "" {
		data, err := os.ReadFile(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("-tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, errors.New("-tls-client-ca: " + c.TLSClientCA + " holds no PEM certificate")
		}
		t.ClientCAs, t.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return t, nil
}

// setTLS sets the TLS fields of opts from c.
func setTLS(opts *engine.Options, c *config, s *certStore) error {
	t, err := tlsConfig(c, s)
	if err != nil {
		return err
	}
	opts.TLS, opts.MaxTLSHandshakes = t, c.MaxTLSHandshakes
	opts.TLSAddrs = splitList(c.TLSAddr)
	return nil
}

// logClientCert wraps onUpgrade (nil: none) so that the verified subject
// of a mutual TLS client is logged at debug level.
func logClientCert(onUpgrade func(*engine.Request) *engine.Response, log *zap.Logger) func(*engine.Request) *engine.Response {
	return func(r *engine.Request) *engine.Response {
		if cs := r.TLS(); cs != nil && len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 {
			log.Debug("client certificate", zap.String("subject", cs.VerifiedChains[0][0].Subject.String()), zap.String("path", r.Path()))
		}
		if onUpgrade == nil {
			return nil
		}
		return onUpgrade(r)
	}
}

// engineTLSAddrs are the addresses that serve wss.
func (d *daemon) engineTLSAddrs() []string {
	if a := splitList(d.cfg.TLSAddr); len(a) > 0 {
		return a
	}
	return splitList(d.cfg.Addr)
}
