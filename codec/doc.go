// Package codec holds wsd's RFC 6455 wire format: pure functions and small
// state machines over []byte, with no I/O and no knowledge of event loops.
//
// The pieces:
//
//   - ParseHeader reads a frame header from whatever bytes are buffered and
//     says how many more it needs; CheckHeader applies the RFC 6455 §5.2
//     rules (reserved bits and opcodes, masking, control-frame limits,
//     continuation order).
//   - Decoder is an incremental, push-style frame decoder for the server side:
//     feed it the buffered bytes, it reports complete messages and control
//     frames through a Receiver and tells how many bytes it consumed. It
//     unmasks in place, validates UTF-8 as bytes arrive and enforces the
//     message size limit as soon as a header announces a length.
//   - HeaderEncoder and AppendFrame build server frames without allocating.
//   - UTF8 is an incremental UTF-8 validator that fails at the first bad byte.
//   - ParseClose and AppendClose read and build close payloads (§5.5.1, §7.4).
//
// Every protocol violation is reported as a preallocated *Error that carries
// the close code the connection must be failed with (1002, 1007, 1009).
//
// The frame header type, masking (ws.Cipher) and header encoding
// (ws.WriteHeaderBuffer) come from github.com/gobwas/ws.
package codec
