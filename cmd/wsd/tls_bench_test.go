package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/internal/wstest"
)

// BenchmarkTLSHandshake measures the CPU time wsd spends per wss upgrade
// (a full TLS 1.3 handshake with an ECDSA P-256 certificate, then the
// WebSocket upgrade) with crypto/tls's default key exchanges and with
// -tls-curves X25519, for clients that offer what Go's client and browsers
// offer (X25519MLKEM768 and X25519 key shares). As BenchmarkAuthHandshake
// does, the daemon is its own process, its CPU time read from /proc, and
// 4 clients connect, handshake, read the 101 and close, b.N times in all;
// no session is resumed.
//
//	go test ./cmd/wsd -run '^$' -bench TLSHandshake -benchtime 2000x -count 3
func BenchmarkTLSHandshake(b *testing.B) {
	ca := newTestCA(b, "wsd bench CA")
	cert, key := serverFiles(b, ca, b.TempDir(), "localhost")
	for _, tc := range []struct {
		name string
		args []string
		want tls.CurveID
	}{
		{"default", nil, tls.X25519MLKEM768},
		{"curves=X25519", []string{"-tls-curves", "X25519"}, tls.X25519},
	} {
		b.Run(tc.name, func(b *testing.B) {
			args := append([]string{"-mode", "push", "-log-level", "error", "-event-loops", "1", "-ping-interval", "0", "-idle-timeout", "0",
				"-close-timeout", "0", "-tls-cert", cert, "-tls-key", key}, tc.args...)
			d := wstest.StartDaemon(b, args...)
			cfg := &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
			req := upgradeRequest(d.Addr, "")
			if got := tlsHandshake(b, d.Addr, cfg, req); got != tc.want { // and a warm-up
				b.Fatalf("key exchange %v, want %v", got, tc.want)
			}
			serverCPUPerOp(b, d.PID(), func() { tlsHandshake(b, d.Addr, cfg, req) })
		})
	}
}

// tlsHandshake connects over TLS, upgrades, closes, and returns the key
// exchange the handshake used.
func tlsHandshake(b *testing.B, addr string, cfg *tls.Config, req []byte) tls.CurveID {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		b.Error(err)
		return 0
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		b.Error(err)
		return 0
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		b.Errorf("upgrade: %q %v", line, err)
	}
	return c.ConnectionState().CurveID
}
