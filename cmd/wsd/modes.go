package main

import (
	"fmt"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

func newHandler(mode string) (engine.Handler, error) {
	switch mode {
	case "echo":
		return echoHandler{}, nil
	}
	return nil, fmt.Errorf("unknown mode %q (want echo)", mode)
}

// echoHandler sends every message back to its sender with its opcode.
type echoHandler struct{ engine.NopHandler }

func (echoHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	_ = c.Write(op, p)
}
