package auth

import (
	"errors"
	"net/http"
)

// Error is a refused authentication. Each one is a preallocated value that
// carries the HTTP status to answer and a short reason that is safe to show
// to the client and to log: it never contains the token, the password or
// any other part of the credentials.
type Error struct {
	// Status is the HTTP status of the refusal: 401 for credentials that
	// are missing, malformed or wrong, 503 when the checks are overloaded,
	// 500 when a check failed for a reason of the server's.
	Status int
	// Reason is a short phrase such as "token expired".
	Reason string
}

func (e *Error) Error() string { return "auth: " + e.Reason }

func newError(status int, reason string) *Error { return &Error{Status: status, Reason: reason} }

// Refused tokens, all with status 401.
var (
	ErrTokenTooLong   = newError(http.StatusUnauthorized, "token too long")
	ErrMalformed      = newError(http.StatusUnauthorized, "malformed token")
	ErrAlgorithm      = newError(http.StatusUnauthorized, "algorithm not allowed")
	ErrBadSignature   = newError(http.StatusUnauthorized, "bad signature")
	ErrExpired        = newError(http.StatusUnauthorized, "token expired")
	ErrNotYetValid    = newError(http.StatusUnauthorized, "token not yet valid")
	ErrIssuedInFuture = newError(http.StatusUnauthorized, "token issued in the future")
	ErrNoExpiry       = newError(http.StatusUnauthorized, "token has no expiry")
	ErrWrongIssuer    = newError(http.StatusUnauthorized, "wrong issuer")
	ErrWrongAudience  = newError(http.StatusUnauthorized, "wrong audience")
	ErrNoSubject      = newError(http.StatusUnauthorized, "token has no subject")
	ErrBadSubject     = newError(http.StatusUnauthorized, "subject is not a valid user id")
	ErrBadPattern     = newError(http.StatusUnauthorized, "bad topic pattern in token")
	ErrInfoTooLarge   = newError(http.StatusUnauthorized, "info too large")
	ErrBadInfo        = newError(http.StatusUnauthorized, "info is not a JSON object")
	ErrMalformedBasic = newError(http.StatusUnauthorized, "malformed basic credentials")
	ErrBadCredentials = newError(http.StatusUnauthorized, "bad user name or password")
	ErrNoCredentials  = newError(http.StatusUnauthorized, "credentials required")
)

// Refusals that are the server's: the client may retry later.
var (
	ErrBusy     = newError(http.StatusServiceUnavailable, "authentication busy")
	ErrClosed   = newError(http.StatusServiceUnavailable, "authentication shut down")
	ErrInternal = newError(http.StatusInternalServerError, "authentication failed")
)

// Status returns the HTTP status to answer for err: 200 for nil, the
// status an *Error carries (or wraps), 500 for any other error.
func Status(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return http.StatusInternalServerError
}
