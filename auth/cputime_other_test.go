//go:build !unix

package auth_test

import "testing"

// reportCPU runs the benchmark loop; CPU time is reported on Unix only.
func reportCPU(b *testing.B, op func()) {
	for b.Loop() {
		op()
	}
}
