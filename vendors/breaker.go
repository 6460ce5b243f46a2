package vendors

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/circuit"
)

// Breaker states as reported in Stats.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half-open"
)

// newBreaker returns the vendor's circuit breaker (package circuit, the
// same as the Craft upstreams'): transitions are logged on log (which
// carries the vendor's name) and reported to onChange.
func newBreaker(cfg circuit.Config, log *zap.Logger, now func() time.Time, onChange func(from, to string)) *circuit.Breaker {
	opts := circuit.Options{Logger: log, Now: now}
	if onChange != nil {
		opts.OnChange = func(from, to circuit.State, _ string) { onChange(from.String(), to.String()) }
	}
	return circuit.New(cfg, opts)
}

// breakerOutcome classifies a call to path that ended with err for the
// breaker. A network error (errTransport: connection refused or reset,
// TLS, a malformed answer) fails whatever the path; a timeout, a 5xx or a
// 408 may be one item's bug and counts for its path. A call given up by
// its caller counts for nothing; any other answer (2xx-4xx, 429, a mapping
// error) is a success.
func breakerOutcome(ctx context.Context, path string, err error) circuit.Outcome {
	switch {
	case err == nil:
		return circuit.Outcome{Kind: circuit.Success, Path: path}
	case ctx.Err() != nil:
		return circuit.Outcome{Kind: circuit.Ignore, Path: path}
	case !isVendorFailure(err):
		return circuit.Outcome{Kind: circuit.Success, Path: path}
	case errors.Is(err, errTransport):
		return circuit.Outcome{Kind: circuit.ConnFailure, Path: path, Reason: err.Error()}
	}
	o := circuit.Outcome{Kind: circuit.Failure, Path: path, Reason: err.Error()}
	var se *StatusError
	switch {
	case errors.Is(err, ErrTimeout):
		o.Reason = "timeout"
	case errors.As(err, &se):
		o.Reason = "status " + strconv.Itoa(se.Code) + " " + http.StatusText(se.Code)
	}
	return o
}

// breakerStatus returns the state, since when, and the transition counts.
func breakerStatus(b *circuit.Breaker) (string, time.Time, map[string]uint64) {
	st := b.Status()
	tr := make(map[string]uint64, 3)
	for _, s := range []circuit.State{circuit.Closed, circuit.Open, circuit.HalfOpen} {
		tr[s.String()] = st.Transitions[s]
	}
	return st.State.String(), st.Since, tr
}
