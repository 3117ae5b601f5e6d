package servers_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// tlsFiles writes a self-signed certificate for 127.0.0.1 and its key, and
// returns their paths and a client configuration that trusts it.
func tlsFiles(t *testing.T) (cert, key string, client *tls.Config) {
	t.Helper()
	c, k, err := loadgen.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c)
	return cert, key, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// TestTLS: with -tls-cert and -tls-key every peer serves wss on -addr
// (crypto/tls, nbio its fork of it), TLS 1.3 by default and 1.2 when the
// client asks, echoing and broadcasting as over ws; a plain ws client is
// refused.
func TestTLS(t *testing.T) {
	cert, key, client := tlsFiles(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, mode := range []string{"echo", "broadcast"} {
				s := start(t, name, mode, "-tls-cert", cert, "-tls-key", key)
				for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
					cfg := client.Clone()
					cfg.MaxVersion = v
					d := websocket.Dialer{TLSClientConfig: cfg, HandshakeTimeout: ioTimeout}
					c, resp, err := d.Dial("wss://"+s.addr+"/ws", nil)
					if err != nil {
						t.Fatalf("%s: wss dial (TLS %x): %v", mode, v, err)
					}
					_ = resp.Body.Close()
					if got := c.NetConn().(*tls.Conn).ConnectionState().Version; got != v {
						t.Errorf("%s: TLS version %x, want %x", mode, got, v)
					}
					for _, n := range []int{32, 100 << 10} {
						data := randomBytes(t, n)
						write(t, name, c, websocket.BinaryMessage, data)
						if got := read(t, name, c); !same(got, websocket.BinaryMessage, data) {
							t.Fatalf("%s over TLS %x: %d bytes: got %v", mode, v, n, got)
						}
					}
					_ = c.Close()
				}
				d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
				if c, _, err := d.Dial("ws://"+s.addr+"/ws", nil); err == nil {
					c.Close()
					t.Errorf("%s: a plain ws client was upgraded by a wss server", mode)
				}
				s.stop(t)
			}
		})
	}
}
