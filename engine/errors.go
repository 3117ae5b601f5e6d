package engine

import (
	"errors"
	"fmt"

	"github.com/wsdproject/wsd/codec"
)

var (
	// ErrClosed is returned by Conn methods once the connection is closing
	// or closed.
	ErrClosed = errors.New("engine: connection closed")
	// ErrEngineClosed is returned by Run after Shutdown, and by Shutdown
	// when called twice.
	ErrEngineClosed = errors.New("engine: engine closed")
	// ErrNotOpen is returned by Write before the upgrade completes.
	ErrNotOpen = errors.New("engine: connection not open")
	// ErrBackpressure is returned by a write that found the connection's
	// Options.MaxBuffered reached; the connection is being closed with
	// Options.BackpressureCode. Conn.Full tells beforehand.
	ErrBackpressure = errors.New("engine: connection's send buffer is full")
)

// CloseError tells Handler.OnClose how a connection ended. Code is the close
// code of the close handshake: the peer's when the peer closed first, wsd's
// own otherwise (1002, 1007, 1009 for protocol errors, 1001 for shutdown
// and idle timeout). Code is codec.StatusAbnormalClosure (1006) when the TCP
// connection ended without a close handshake; Err then holds the cause when
// one is known.
type CloseError struct {
	Code   codec.StatusCode
	Reason string
	Remote bool  // the peer sent the first close frame
	Err    error // the transport error, if any
}

func (e *CloseError) Error() string {
	side := "local"
	if e.Remote {
		side = "remote"
	}
	if e.Err != nil {
		return fmt.Sprintf("engine: connection closed (%s, %d %q): %v", side, e.Code, e.Reason, e.Err)
	}
	return fmt.Sprintf("engine: connection closed (%s, %d %q)", side, e.Code, e.Reason)
}

func (e *CloseError) Unwrap() error { return e.Err }
