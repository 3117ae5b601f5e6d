package engine

import (
	"testing"
	"unsafe"
)

// TestConnSize keeps a Conn in the 256-byte size class: a million idle
// connections pay for every byte over it (the next class is 288).
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 256 {
		t.Fatalf("Conn is %d bytes, over the 256-byte size class: move rarely used fields into connExtra", n)
	}
}
