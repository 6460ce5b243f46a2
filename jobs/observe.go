package jobs

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Outcomes of an attempt, as reported in AttemptInfo.Outcome. The set is
// fixed and small, for metric labels.
const (
	// AttemptDone: the handler succeeded; the job is done.
	AttemptDone = "done"
	// AttemptRetry: the handler failed; the job is ready again after a
	// backoff.
	AttemptRetry = "retry"
	// AttemptDead: the handler failed permanently or the job ran out of
	// attempts; the job is a dead letter.
	AttemptDead = "dead"
	// AttemptInterrupted: Run stopped while the handler ran; the job got
	// its attempt back and is ready again.
	AttemptInterrupted = "interrupted"
)

// AttemptInfo describes one finished attempt, for Options.OnAttempt.
type AttemptInfo struct {
	Ref
	// Outcome is one of the Attempt constants.
	Outcome string
	// Duration is how long the handler call ran (for a batch, the whole
	// call).
	Duration time.Duration
	// Err is the attempt's error; nil when Outcome is AttemptDone.
	Err error
}

// Ref identifies one attempt of a job in logs and metrics.
type Ref struct {
	// ID, Kind and Correlation are the job's (see Job).
	ID, Kind, Correlation string
	// Attempt counts this attempt, from 1.
	Attempt int
}

// LogFields returns the zap fields that identify the attempt: job_id,
// kind, attempt, and request_id when the job has a correlation. Every log
// line about a job carries them, so one grep for a request id or job id
// follows the work from the request that caused it to its side effects.
func (r Ref) LogFields() []zap.Field {
	f := make([]zap.Field, 0, 4)
	f = append(f, zap.String("job_id", r.ID), zap.String("kind", r.Kind), zap.Int("attempt", r.Attempt))
	if r.Correlation != "" {
		f = append(f, zap.String("request_id", r.Correlation))
	}
	return f
}

func (t *Task) ref() Ref {
	return Ref{ID: t.Job.ID, Kind: t.Job.Kind, Correlation: t.Job.Correlation, Attempt: t.Job.Attempts}
}

type refKey struct{}

// withRef returns ctx carrying r, for RefFrom.
func withRef(ctx context.Context, r Ref) context.Context {
	return context.WithValue(ctx, refKey{}, r)
}

// RefFrom returns the job a handler's context belongs to: set for each
// task by Single, and for a handler call with a single task. Side effects
// of a job (purges, records written) log its LogFields.
func RefFrom(ctx context.Context) (Ref, bool) {
	r, ok := ctx.Value(refKey{}).(Ref)
	return r, ok
}
