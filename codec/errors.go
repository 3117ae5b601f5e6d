package codec

import "errors"

// Error is a protocol violation. Each one is a preallocated value that
// carries the close code the connection must be failed with, so reporting it
// costs no allocation.
type Error struct {
	Code StatusCode
	msg  string
}

func (e *Error) Error() string { return e.msg }

func newError(code StatusCode, msg string) *Error { return &Error{Code: code, msg: "codec: " + msg} }

// Protocol violations, each with its close code.
var (
	ErrReservedOpcode         = newError(StatusProtocolError, "reserved opcode")
	ErrReservedBits           = newError(StatusProtocolError, "reserved bits set without an extension")
	ErrUnmasked               = newError(StatusProtocolError, "client frame is not masked")
	ErrControlTooLong         = newError(StatusProtocolError, "control frame payload over 125 bytes")
	ErrControlFragmented      = newError(StatusProtocolError, "fragmented control frame")
	ErrContinuationExpected   = newError(StatusProtocolError, "new data frame while a fragmented message is in progress")
	ErrUnexpectedContinuation = newError(StatusProtocolError, "continuation frame with no message in progress")
	ErrLengthMSB              = newError(StatusProtocolError, "64-bit payload length with the most significant bit set")
	ErrCloseOneByte           = newError(StatusProtocolError, "close payload of one byte")
	ErrCloseCode              = newError(StatusProtocolError, "invalid close code")
	ErrInvalidUTF8            = newError(StatusInvalidPayload, "invalid UTF-8 in text message")
	ErrInvalidCloseUTF8       = newError(StatusInvalidPayload, "invalid UTF-8 in close reason")
	ErrMessageTooBig          = newError(StatusMessageTooBig, "message exceeds the size limit")
	ErrInflate                = newError(StatusInvalidPayload, "compressed message is not valid deflate data")
)

// CloseStatus returns the close code carried by err if it is (or wraps) an
// *Error, and 0 otherwise.
func CloseStatus(err error) StatusCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}
