package peer

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
)

// TLSFiles are -tls-cert and -tls-key: PEM files of a certificate and its
// key. With both, the server serves wss:// instead of ws:// on -addr.
type TLSFiles struct {
	Cert, Key string
}

// On reports whether the server serves wss.
func (f TLSFiles) On() bool { return f.Cert != "" }

func addTLSFlags(fs *flag.FlagSet, f *TLSFiles) {
	fs.StringVar(&f.Cert, "tls-cert", "", "PEM certificate file: with -tls-key, serve wss:// (crypto/tls; nbio: its own TLS) instead of ws://")
	fs.StringVar(&f.Key, "tls-key", "", "PEM private key file of -tls-cert")
}

// checkTLS exits with status 2 unless both files or neither are given.
func checkTLS(name string, f TLSFiles) {
	if (f.Cert == "") != (f.Key == "") {
		fmt.Fprintf(os.Stderr, "%s: -tls-cert and -tls-key go together\n", name)
		os.Exit(2)
	}
}

// TLSConfig is the crypto/tls configuration of a server with cfg's
// certificate: TLS 1.2 or later, ALPN http/1.1, crypto/tls's defaults
// otherwise (session tickets on). A certificate that does not load is
// fatal.
func TLSConfig(name string, cfg Config) *tls.Config {
	cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		Fatal(name, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

// Listen listens on cfg.Addr, through crypto/tls when cfg.TLS is on (the
// handshake runs in the goroutine that first reads or writes the
// connection). An error is fatal.
func Listen(name string, cfg Config) net.Listener {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		Fatal(name, err)
	}
	if cfg.TLS.On() {
		return tls.NewListener(ln, TLSConfig(name, cfg))
	}
	return ln
}

// errorLog is net/http's error log for cfg: nil (the standard logger) for
// ws; for wss a logger that drops everything, because net/http logs each
// failed TLS handshake (a client that gives up, a plain request) and a
// server prints nothing after its readiness line.
func errorLog(cfg Config) *log.Logger {
	if cfg.TLS.On() {
		return log.New(io.Discard, "", 0)
	}
	return nil
}
