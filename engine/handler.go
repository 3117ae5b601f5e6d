package engine

import "github.com/wsdproject/wsd/codec"

// Handler receives connection events. Every method runs on the
// connection's event loop, one at a time per loop: it must not block, and
// it may call the loop-only Conn methods (Write) directly.
type Handler interface {
	// OnOpen runs once the upgrade response has been written.
	OnOpen(c *Conn)
	// OnMessage gets each complete text or binary message (text is valid
	// UTF-8). payload is valid only until OnMessage returns: copy what must
	// outlive the call.
	OnMessage(c *Conn, op codec.OpCode, payload []byte)
	// OnClose runs once per opened connection when it is gone; err is a
	// *CloseError. The Conn must not be written to afterwards.
	OnClose(c *Conn, err error)
}

// NopHandler implements Handler with methods that do nothing; embed it to
// implement only what you need.
type NopHandler struct{}

// OnOpen does nothing.
func (NopHandler) OnOpen(*Conn) {}

// OnMessage does nothing.
func (NopHandler) OnMessage(*Conn, codec.OpCode, []byte) {}

// OnClose does nothing.
func (NopHandler) OnClose(*Conn, error) {}
