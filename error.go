package verity

import (
	"errors"
	"fmt"
	"time"
)

// Error codes. httpapi/error.go is the only place that maps them to statuses.
const (
	EINVALID      = "invalid"      // bad input: 422
	ENOTFOUND     = "not_found"    // unknown resource or nothing to check: 404
	ECONFLICT     = "conflict"     // duplicate or still referenced: 409
	EUNAUTHORIZED = "unauthorized" // missing or wrong credentials: 401
	EFORBIDDEN    = "forbidden"    // belongs to another account: 403
	ERATELIMIT    = "rate_limited" // a limit refused the request: 429
	EUPSTREAM     = "upstream"     // a provider answered with an error: 502
	EUNAVAILABLE  = "unavailable"  // a dependency cannot be reached: 503
	EINTERNAL     = "internal"     // anything else: 500, cause logged not shown
)

// Error is Verity's application error. Message is safe to show to API callers;
// Err is the underlying cause, for logs only.
type Error struct {
	Code       string
	Message    string
	Op         string
	Err        error
	RetryAfter time.Duration // with ERATELIMIT: when the caller may try again
}

// Error implements the error interface.
func (e *Error) Error() string {
	s := e.Code
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err: the *Error's message,
// or a generic text for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "internal error"
}
