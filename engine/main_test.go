package engine_test

import (
	"testing"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestMain fails the package when its tests leave goroutines running: a
// connection's reader, a producer, or an engine that was never shut down.
func TestMain(m *testing.M) { wstest.VerifyNoLeaks(m) }

// echo writes every message back, like wsd -mode echo.
type echo struct{ engine.NopHandler }

func (echo) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) { _ = c.Write(op, p) }

// startEngine and waitFor are wstest's, named short for these tests.
var (
	startEngine = wstest.StartEngine
	waitFor     = wstest.WaitFor
)
