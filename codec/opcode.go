package codec

import "github.com/gobwas/ws"

// OpCode is a frame opcode (RFC 6455 §5.2). It is gobwas/ws's type, so values
// pass to ws functions unchanged.
type OpCode = ws.OpCode

// Opcodes defined by RFC 6455 §5.2.
const (
	OpContinuation OpCode = ws.OpContinuation
	OpText         OpCode = ws.OpText
	OpBinary       OpCode = ws.OpBinary
	OpClose        OpCode = ws.OpClose
	OpPing         OpCode = ws.OpPing
	OpPong         OpCode = ws.OpPong
)

// Header is a decoded frame header. It is gobwas/ws's type.
type Header = ws.Header

// Frame size limits of RFC 6455 §5.2 and §5.5.
const (
	// MaxHeaderSize is the largest frame header: 2 + 8 bytes of length + 4 of mask.
	MaxHeaderSize = ws.MaxHeaderSize
	// MaxControlPayload is the largest payload a control frame may carry.
	MaxControlPayload = ws.MaxControlFramePayloadSize
)
