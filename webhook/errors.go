package webhook

import (
	"errors"
	"fmt"
)

// Errors returned by Verify. Test for them with errors.Is; header-related
// errors are *HeaderError values that unwrap to ErrMissingHeader or
// ErrMalformedHeader and name the header.
var (
	// ErrMissingHeader means a header the scheme requires is absent.
	ErrMissingHeader = errors.New("webhook: missing header")
	// ErrMalformedHeader means a header is present but cannot be parsed
	// (empty, garbage, oversized, bad encoding, bad timestamp).
	ErrMalformedHeader = errors.New("webhook: malformed header")
	// ErrBadSignature means the headers were well formed but no signature
	// matched any configured secret.
	ErrBadSignature = errors.New("webhook: signature mismatch")
	// ErrTimestampTooOld means the signature is valid but the signed
	// timestamp is older than the tolerance window.
	ErrTimestampTooOld = errors.New("webhook: timestamp too old")
	// ErrTimestampInFuture means the signature is valid but the signed
	// timestamp is further in the future than the tolerance window.
	ErrTimestampInFuture = errors.New("webhook: timestamp in the future")
	// ErrIncompleteRequest means the Request lacks something the scheme
	// signs but that is not a header (HubSpot: Method and URL).
	ErrIncompleteRequest = errors.New("webhook: incomplete request")
	// ErrInvalidConfig wraps every error from Config.Validate.
	ErrInvalidConfig = errors.New("webhook: invalid config")
)

// HeaderError reports a missing or malformed header. Reason is a fixed
// description; it never quotes the header value.
type HeaderError struct {
	Header string
	Reason string // empty for missing headers
	Err    error  // ErrMissingHeader or ErrMalformedHeader
}

func (e *HeaderError) Error() string {
	if e.Err == ErrMissingHeader {
		return fmt.Sprintf("webhook: missing header %s", e.Header)
	}
	if e.Reason == "" {
		return fmt.Sprintf("webhook: malformed header %s", e.Header)
	}
	return fmt.Sprintf("webhook: malformed header %s: %s", e.Header, e.Reason)
}

func (e *HeaderError) Unwrap() error { return e.Err }

func missing(header string) error {
	return &HeaderError{Header: header, Err: ErrMissingHeader}
}

func malformed(header, reason string) error {
	return &HeaderError{Header: header, Reason: reason, Err: ErrMalformedHeader}
}

// configError names the offending Config field.
type configError struct {
	field string
	msg   string
}

func (e *configError) Error() string {
	return fmt.Sprintf("webhook: invalid config: %s: %s", e.field, e.msg)
}

func (e *configError) Unwrap() error { return ErrInvalidConfig }

func cfgErr(field, format string, args ...any) error {
	return &configError{field: field, msg: fmt.Sprintf(format, args...)}
}
