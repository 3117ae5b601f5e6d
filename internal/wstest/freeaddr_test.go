package wstest

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeAddr: the addresses are loopback ports below the ephemeral
// range, never the same twice, and free to bind.
func TestFreeAddr(t *testing.T) {
	lo := ephemeralLow()
	seen := map[string]bool{}
	for range 200 {
		addr := FreeAddr(t)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("FreeAddr: %q (%v)", addr, err)
		}
		if p, _ := strconv.Atoi(port); p < freeLow || p >= lo {
			t.Fatalf("FreeAddr: port %d, want %d to %d", p, freeLow, lo-1)
		}
		if seen[addr] {
			t.Fatalf("FreeAddr returned %s twice", addr)
		}
		seen[addr] = true
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("binding %s: %v", addr, err)
		}
		l.Close()
	}
}
