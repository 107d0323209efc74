// Package errs holds the coded errors every layer returns and the one table that maps a
// code to an HTTP status.
package errs

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Code says what kind of failure an error is.
type Code string

// The codes. Each has exactly one HTTP status in Status (several codes may share one).
const (
	Invalid       Code = "invalid"        // malformed or missing input
	Unauthorized  Code = "unauthorized"   // no or bad credentials
	Forbidden     Code = "forbidden"      // authenticated but not allowed
	NotFound      Code = "not_found"      // no such thing
	Conflict      Code = "conflict"       // seat taken, duplicate, already decided
	Gone          Code = "gone"           // expired
	PaymentFailed Code = "payment_failed" // payment refused (400, as the original answered)
	Unprocessable Code = "unprocessable"  // well-formed but semantically invalid
	TooLarge      Code = "too_large"      // body too large
	Unsupported   Code = "unsupported"    // a Content-Encoding (compressed body) the server refuses
	RateLimited   Code = "rate_limited"   // slow down
	Unavailable   Code = "unavailable"    // a dependency is down
	Internal      Code = "internal"       // a bug; never for bad input
)

var statuses = map[Code]int{
	Invalid:       http.StatusBadRequest,
	Unauthorized:  http.StatusUnauthorized,
	Forbidden:     http.StatusForbidden,
	NotFound:      http.StatusNotFound,
	Conflict:      http.StatusConflict,
	Gone:          http.StatusGone,
	PaymentFailed: http.StatusBadRequest,
	Unprocessable: http.StatusUnprocessableEntity,
	TooLarge:      http.StatusRequestEntityTooLarge,
	Unsupported:   http.StatusUnsupportedMediaType,
	RateLimited:   http.StatusTooManyRequests,
	Unavailable:   http.StatusServiceUnavailable,
	Internal:      http.StatusInternalServerError,
}

// Status is the HTTP status of a code (500 for an unknown one).
func Status(c Code) int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// byStatus is the reverse of statuses where two codes share a status: the general code wins.
var byStatus = map[int]Code{http.StatusBadRequest: Invalid}

// CodeForStatus is the reverse of Status, for errors raised by the HTTP framework itself.
func CodeForStatus(status int) Code {
	if c, ok := byStatus[status]; ok {
		return c
	}
	for c, s := range statuses {
		if s == status {
			return c
		}
	}
	if status >= 400 && status < 500 {
		return Invalid
	}
	return Internal
}

// Error is a coded error. Message is safe to show to a client; Fields, when set, maps a
// request field to what is wrong with it.
type Error struct {
	Code Code
	// Reason, when set, is a stable machine-readable code more precise than Code (e.g.
	// "seat_taken" for a Conflict), answered as the envelope's code; snake_case.
	Reason     string
	Message    string
	Fields     map[string]string
	RetryAfter time.Duration // for RateLimited and Unavailable, when known
	Data       any           // optional payload for the envelope's data (e.g. the seats still free)
	Err        error         // the cause, for logs only
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// E makes a coded error with a client-safe message.
func E(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap makes a coded error that keeps err as its cause (never shown to clients).
func Wrap(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// Fields makes an Invalid error for field validation failures.
func Fields(fields map[string]string) *Error {
	return &Error{Code: Invalid, Message: "validation failed", Fields: fields}
}

// Reasons shared by both services (each service declares its own beside its domain).
const (
	ReasonKeyInProgress = "key_in_progress" // 409: a request with this Idempotency-Key is still running
	ReasonKeyExhausted  = "key_exhausted"   // 409: requests with this Idempotency-Key failed too often
	ReasonKeyReused     = "key_reused"      // 422: the Idempotency-Key was used with another request
)

// Because sets e's Reason and returns e.
func (e *Error) Because(reason string) *Error {
	e.Reason = reason
	return e
}

// After sets e's RetryAfter and returns e.
func (e *Error) After(d time.Duration) *Error {
	e.RetryAfter = d
	return e
}

// Answer is the machine-readable code a client gets for err: its Reason when set, else its
// Code.
func Answer(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Reason != "" {
			return e.Reason
		}
		return string(e.Code)
	}
	return string(Internal)
}

// CodeOf is the code of err: the code of the first *Error in its chain, else Internal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries the code c.
func Is(err error, c Code) bool { return err != nil && CodeOf(err) == c }
