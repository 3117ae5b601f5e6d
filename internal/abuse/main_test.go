package abuse_test

import (
	"os"
	"testing"

	"github.com/wsdproject/wsd/internal/wstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wstest.CleanupBinary()
	if clientDir != "" {
		os.RemoveAll(clientDir)
	}
	os.Exit(code)
}
