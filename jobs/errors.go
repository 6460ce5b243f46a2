package jobs

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Errors returned by this package wrap them with context;
// test with errors.Is. The admin API should map ErrInvalidID, ErrUnknownState,
// ErrUnknownKind and ErrInvalid to 400, ErrNotFound to 404 and ErrBadState to
// 409.
var (
	// ErrNotFound: no job has the given ID.
	ErrNotFound = errors.New("jobs: job not found")
	// ErrInvalidID: the string is not a job ID (32 hex digits, or 16 for a
	// job accepted before IDs were random).
	ErrInvalidID = errors.New("jobs: invalid job id")
	// ErrUnknownState: the string is not one of ready, running, done, dead.
	ErrUnknownState = errors.New("jobs: unknown state")
	// ErrBadState: the operation is not allowed in the job's current state
	// (for example RetryNow on a running or done job).
	ErrBadState = errors.New("jobs: operation not allowed in the job's state")
	// ErrUnknownKind: no handler is registered for the kind on this Queue.
	ErrUnknownKind = errors.New("jobs: unknown kind")
	// ErrInvalid: a request or configuration is malformed.
	ErrInvalid = errors.New("jobs: invalid argument")
	// ErrLeaseLost: the task's claim expired and the job was claimed again
	// (or finished) elsewhere; the task must stop.
	ErrLeaseLost = errors.New("jobs: lease lost")
	// ErrCorrupt: a stored record cannot be decoded.
	ErrCorrupt = errors.New("jobs: corrupt record")
	// ErrUnavailable: the storage file is damaged (or was found damaged by
	// its owner, see Options.Available): nothing was read or written. The
	// API should map it to 503.
	ErrUnavailable = errors.New("jobs: storage unavailable")
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: a job whose handler returns it (possibly
// wrapped) is dead-lettered at once, whatever attempts remain. Use it for
// failures that will never succeed, such as a vendor's 4xx. Permanent(nil)
// returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError carries the delay a handler asked for.
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.err, e.delay)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter asks for the job to be retried after exactly d (a negative d
// means now) instead of the kind's backoff — for example a vendor's
// Retry-After. The attempt still counts towards MaxAttempts, and Permanent
// wins if both are applied. RetryAfter(nil, d) returns nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, delay: max(d, 0)}
}

// retryDelay returns the delay requested with RetryAfter, if any.
func retryDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}
