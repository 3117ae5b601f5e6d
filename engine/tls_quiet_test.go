package engine

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
)

// TestTLSInternals checks that crypto/tls still has the buffers the engine
// lets go when a connection is quiet (tls_quiet.go), and that a tls.Conn
// whose buffers were let go reads on as before: after a release, records
// of any size, and a record that arrives in two pieces around a release.
func TestTLSInternals(t *testing.T) {
	if !tlsBufs.ok {
		t.Fatal("crypto/tls.Conn has no rawInput, input and hand buffers of the known types: the engine cannot let them go")
	}
	pki := NewTestPKI(t, "internals CA")
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cs, cc := tcpPair(t)
		server := tls.Server(cs, &tls.Config{Certificates: []tls.Certificate{pki.Server(t, "localhost")}})
		client := tls.Client(cc, &tls.Config{RootCAs: pki.Pool, ServerName: "localhost", MinVersion: v, MaxVersion: v, DynamicRecordSizingDisabled: true})
		// The client sends each message once the server has let its
		// buffers go: a plain TCP connection lets crypto/tls read ahead,
		// which the engine's transport does not.
		sent, next := make(chan error, 1), make(chan bool)
		go func() {
			if err := client.Handshake(); err != nil {
				sent <- err
				return
			}
			for _, n := range []int{16 << 10, 100, 64 << 10, 10} {
				if !<-next {
					break
				}
				if _, err := client.Write(bytes.Repeat([]byte{byte(n)}, n)); err != nil {
					sent <- err
					return
				}
			}
			sent <- nil
		}()
		if err := server.Handshake(); err != nil {
			t.Fatal(err)
		}
		for i, n := range []int{16 << 10, 100, 64 << 10, 10} {
			next <- true
			got := make([]byte, n)
			if _, err := io.ReadFull(server, got); err != nil {
				t.Fatalf("TLS %x, message %d: %v", v, i, err)
			}
			if !bytes.Equal(got, bytes.Repeat([]byte{byte(n)}, n)) {
				t.Fatalf("TLS %x, message %d: wrong bytes", v, i)
			}
			if i == 0 && tlsHeld(server) < 16<<10 {
				t.Fatalf("TLS %x: crypto/tls holds %d bytes after a 16 KiB record, want its input buffer counted", v, tlsHeld(server))
			}
			if !tlsRelease(server) || tlsHeld(server) != 0 {
				t.Fatalf("TLS %x, message %d: %d bytes kept after the release", v, i, tlsHeld(server))
			}
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		cs.Close()
		cc.Close()
	}

	// A record in two pieces: the first one stays in crypto/tls's input
	// buffer (a read that would block), which is kept until it is read.
	cs, cc := tcpPair(t)
	defer cc.Close()
	defer cs.Close()
	server := tls.Server(&halfConn{Conn: cs, limit: -1}, &tls.Config{Certificates: []tls.Certificate{pki.Server(t, "localhost")}})
	client := tls.Client(cc, &tls.Config{RootCAs: pki.Pool, ServerName: "localhost"})
	write := make(chan bool)
	go func() {
		if client.Handshake() == nil && <-write {
			_, _ = client.Write([]byte("one record"))
		}
	}()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	server.NetConn().(*halfConn).limit = 8 // the header and 3 bytes of the record, then "would block"
	write <- true
	if n, err := server.Read(make([]byte, 64)); n != 0 || err == nil {
		t.Fatalf("read %d bytes, %v: want a read that would block", n, err)
	}
	if tlsRelease(server) || tlsHeld(server) == 0 {
		t.Fatal("the start of a record was let go")
	}
	server.NetConn().(*halfConn).limit = -1
	got := make([]byte, 64)
	n, err := server.Read(got)
	if err != nil || string(got[:n]) != "one record" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
}

// halfConn reads at most limit bytes (unless limit < 0), then answers as
// the engine's transport does when gnet holds nothing more.
type halfConn struct {
	net.Conn
	limit int
}

func (h *halfConn) Read(p []byte) (int, error) {
	if h.limit == 0 {
		return 0, errWouldBlock
	}
	if h.limit > 0 && len(p) > h.limit {
		p = p[:h.limit]
	}
	n, err := h.Conn.Read(p)
	if h.limit > 0 {
		h.limit -= n
	}
	return n, err
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	return server, client
}
