package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/verityhq/verity"
)

// statusOf is the only map from error codes to HTTP statuses.
var statusOf = map[string]int{
	verity.EINVALID:      http.StatusUnprocessableEntity,
	verity.ENOTFOUND:     http.StatusNotFound,
	verity.ECONFLICT:     http.StatusConflict,
	verity.EUNAUTHORIZED: http.StatusUnauthorized,
	verity.EFORBIDDEN:    http.StatusForbidden,
	verity.ERATELIMIT:    http.StatusTooManyRequests,
	verity.EUPSTREAM:     http.StatusBadGateway,
	verity.EUNAVAILABLE:  http.StatusServiceUnavailable,
	verity.EINTERNAL:     http.StatusInternalServerError,
}

// statusClientClosed is nginx's status for a request its client abandoned.
const statusClientClosed = 499

// errorBody is every error response: "message" is what Verigator clients
// read; "code" is for machines.
type errorBody struct {
	Message    string `json:"message"`
	Code       string `json:"code"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

// Error writes err as a JSON error response. Internal errors are logged with
// their cause and answered with a generic message.
func Error(w http.ResponseWriter, r *http.Request, err error) {
	code := verity.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
		// The client gave up (or the server is shutting down): nobody reads
		// this answer, and it is not a server fault worth an error log.
		loggerFor(w).Info("request abandoned by the client", "err", err)
		noteOutcome(w, verity.EUNAVAILABLE, "request abandoned")
		writeJSON(w, statusClientClosed, errorBody{Message: "request abandoned", Code: verity.EUNAVAILABLE})
		return
	}
	body := errorBody{Message: verity.ErrorMessage(err), Code: code}
	if status >= 500 {
		loggerFor(w).Error("request failed", "status", status, "err", err)
	}
	if status == http.StatusInternalServerError {
		body.Message, body.Code = "internal error", verity.EINTERNAL
	}
	noteOutcome(w, body.Code, body.Message)
	var verr *verity.Error
	if errors.As(err, &verr) && verr.RetryAfter > 0 {
		body.RetryAfter = int(verr.RetryAfter.Seconds())
		w.Header().Set("Retry-After", strconv.Itoa(body.RetryAfter))
	}
	writeJSON(w, status, body)
}
