package main

import (
	"github.com/lesismal/llib/std/crypto/tls"

	"github.com/wsdproject/wsd/bench/servers/internal/peer"
)

// tlsConfig is nbio's TLS configuration for cfg's certificate. nbio runs
// TLS on its pollers with llib's fork of the standard library's crypto/tls
// (of Go 1.16's time: no post-quantum key exchange), which reads and
// writes records without blocking and frees a connection's buffers once
// they are drained. The same settings as the crypto/tls peers: TLS 1.2 or
// later, ALPN http/1.1.
func tlsConfig(cfg peer.Config) *tls.Config {
	cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		peer.Fatal("nbio", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}
