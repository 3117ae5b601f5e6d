package broadcast_test

import (
	"testing"

	"github.com/wsdproject/wsd/internal/wstest"
)

// TestMain fails the package when its tests leave goroutines running: a
// connection's reader, a publisher, or an engine that was never shut down.
func TestMain(m *testing.M) { wstest.VerifyNoLeaks(m) }
