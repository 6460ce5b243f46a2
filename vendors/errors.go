package vendors

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Sentinel errors. Errors returned by this package wrap them with the vendor,
// the call and, where there is one, the resource; test with errors.Is.
var (
	// ErrNotFound: the vendor answered 404 for the item, or the record is
	// not in the Records store. A *StatusError with Code 404 matches it.
	ErrNotFound = errors.New("vendors: not found")

	// ErrDisabled: the vendor's Enabled flag is off; no live call was made.
	ErrDisabled = errors.New("vendors: vendor disabled")

	// ErrBreakerOpen: the vendor's circuit breaker is open; no call was made.
	ErrBreakerOpen = errors.New("vendors: circuit breaker open")

	// ErrTimeout: a request to the vendor did not complete within
	// Config.Timeout.
	ErrTimeout = errors.New("vendors: request timed out")

	// ErrInvalidConfig: a Config failed validation. Validate's errors wrap
	// it and name the offending field.
	ErrInvalidConfig = errors.New("vendors: invalid config")

	// ErrUnknownResource: the resource is not configured for the vendor, or
	// does not support the operation (no get, list or upsert section).
	ErrUnknownResource = errors.New("vendors: unknown resource")

	// ErrBodyTooLarge: the vendor's response body exceeded
	// Config.MaxBodyBytes.
	ErrBodyTooLarge = errors.New("vendors: response body too large")

	// ErrInvalidRequest: a Do request or a call's arguments are malformed
	// (a method other than GET/HEAD, a path escaping the API, an empty id).
	ErrInvalidRequest = errors.New("vendors: invalid request")
)

// StatusError is an HTTP status the vendor answered that is neither success
// nor one of the statuses with their own error (429 is *RateLimitedError).
type StatusError struct {
	Vendor string // the vendor's Config.Name
	Method string // the request's method
	Path   string // the request's path and query (never headers)
	Code   int    // the HTTP status code
	// Body is the start of the response body (at most 256 bytes) with any
	// configured header value redacted, for diagnosis.
	Body string
}

// Error describes the status; it contains no header values.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("vendors: %s: %s %s: status %d %s", e.Vendor, e.Method, e.Path, e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Permanent reports whether retrying the same request cannot succeed: any
// 4xx other than 408 (request timeout) and 429 (too many requests).
func (e *StatusError) Permanent() bool {
	return e.Code >= 400 && e.Code < 500 && e.Code != http.StatusRequestTimeout && e.Code != http.StatusTooManyRequests
}

// Is makes a 404 match ErrNotFound.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.Code == http.StatusNotFound
}

// RateLimitedError reports that the vendor answered 429 Too Many Requests,
// or that the Client refused the call locally because an earlier 429's
// Retry-After has not yet passed.
type RateLimitedError struct {
	Vendor string
	// RetryAfter is how long to wait before calling the vendor again: the
	// Retry-After the vendor sent (seconds or an HTTP date), what is left of
	// it, or Retry.BaseDelay when the vendor sent none.
	RetryAfter time.Duration
	// Local is true when the Client refused the call without sending it.
	Local bool
}

// Error describes the rate limit.
func (e *RateLimitedError) Error() string {
	how := "rate limited by the vendor (429)"
	if e.Local {
		how = "rate limited: waiting out an earlier 429"
	}
	return fmt.Sprintf("vendors: %s: %s, retry after %v", e.Vendor, how, e.RetryAfter)
}

// MappingError reports a vendor payload that does not fit the configured
// mapping: a required field is missing or null, or a value has the wrong
// type. It is permanent: the same payload will never map.
type MappingError struct {
	Vendor   string
	Resource string
	ID       string // the item's id when it could be read, else ""
	Field    string // the normalized field name ("id", "version", "updated_at", or a Fields key)
	Path     string // the JSON dot path in the vendor payload
	Reason   string // what is wrong, e.g. "missing", "expected string, got number"
}

// Error names the field and the path.
func (e *MappingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vendors: %s/%s", e.Vendor, e.Resource)
	if e.ID != "" {
		fmt.Fprintf(&b, " id %q", e.ID)
	}
	fmt.Fprintf(&b, ": mapping field %q from path %q: %s", e.Field, e.Path, e.Reason)
	return b.String()
}

// Permanent always reports true: a payload that does not map will not map on
// a retry; the mapping (or the vendor) must change.
func (e *MappingError) Permanent() bool { return true }

// IsPermanent reports whether err (or an error it wraps) will not succeed on
// a retry: a *MappingError, a permanent *StatusError (4xx other than 408 and
// 429, including 404), ErrInvalidRequest or ErrUnknownResource. Job handlers
// use it to dead-letter at once.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && p.Permanent() {
		return true
	}
	return errors.Is(err, ErrInvalidRequest) || errors.Is(err, ErrUnknownResource)
}

// RetryAfter returns the delay carried by a *RateLimitedError in err, so a
// job can be rescheduled after exactly that long.
func RetryAfter(err error) (time.Duration, bool) {
	var rl *RateLimitedError
	if errors.As(err, &rl) {
		return rl.RetryAfter, true
	}
	return 0, false
}
