package codec

// StatusCode is a close status code (RFC 6455 §7.4).
type StatusCode uint16

// Close codes from RFC 6455 §7.4.1 and the IANA registry.
const (
	StatusNormalClosure      StatusCode = 1000
	StatusGoingAway          StatusCode = 1001
	StatusProtocolError      StatusCode = 1002
	StatusUnsupportedData    StatusCode = 1003
	StatusNoStatusRcvd       StatusCode = 1005 // never sent on the wire
	StatusAbnormalClosure    StatusCode = 1006 // never sent on the wire
	StatusInvalidPayload     StatusCode = 1007
	StatusPolicyViolation    StatusCode = 1008
	StatusMessageTooBig      StatusCode = 1009
	StatusMandatoryExtension StatusCode = 1010
	StatusInternalError      StatusCode = 1011
	StatusServiceRestart     StatusCode = 1012
	StatusTryAgainLater      StatusCode = 1013
	StatusBadGateway         StatusCode = 1014
	StatusTLSHandshake       StatusCode = 1015 // never sent on the wire
)

// ValidOnWire reports whether a peer may send code in a close frame:
// 1000-1003, 1007-1014 (defined or registered), and 3000-4999 (libraries
// and applications). 1004-1006 and 1015 are reserved, everything below 1000
// and 1016-2999 is unassigned, and 5000 and above is out of range.
func (s StatusCode) ValidOnWire() bool {
	switch {
	case s >= 1000 && s <= 1003:
		return true
	case s >= 1007 && s <= 1014:
		return true
	case s >= 3000 && s <= 4999:
		return true
	}
	return false
}
