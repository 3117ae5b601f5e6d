package engine_test

import (
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// echo writes every message back, like wsd -mode echo.
type echo struct{ engine.NopHandler }

func (echo) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) { _ = c.Write(op, p) }

// startEngine and waitFor are wstest's, named short for these tests.
var (
	startEngine = wstest.StartEngine
	waitFor     = wstest.WaitFor
)
