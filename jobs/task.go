package jobs

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Task is one claimed job handed to a Handler.
type Task struct {
	// Job is the job as claimed: State is running and Attempts counts this
	// attempt. SaveContext updates Job.Context.
	Job Job

	q     *Queue
	id    uint64
	claim uint64
}

// IdempotencyKey returns the key to send with the job's side effect (the
// outbox's Idempotency-Key header): the job's Key, or for a job enqueued
// without one, "<kind>:<id>", stable across the job's retries.
func (t *Task) IdempotencyKey() string {
	if t.Job.Key != "" {
		return t.Job.Key
	}
	return t.Job.Kind + ":" + t.Job.ID
}

// SaveContext durably stores b as the job's context (a cursor, a page
// number) before returning, so that an attempt after a crash or a retry
// starts from it. It returns an error wrapping ErrLeaseLost if this claim is
// no longer the job's (the task should stop). Each call is one (possibly
// shared) commit; save every page, not every record.
func (t *Task) SaveContext(b []byte) error {
	if t.q == nil {
		return fmt.Errorf("jobs: saving context of job %s: %w", t.Job.ID, ErrNoQueue)
	}
	b = append([]byte(nil), b...)
	err := t.q.commit.do(func(tx *bolt.Tx) error {
		bk, err := buckets(tx)
		if err != nil {
			return err
		}
		r, err := t.q.claimed(bk, t.id, t.claim)
		if err != nil {
			return err
		}
		n := r.clone()
		n.Context = b
		n.UpdatedAt = t.q.now().UTC()
		return bk.save(r, n)
	})
	if err != nil {
		return fmt.Errorf("jobs: saving context of job %s: %w", t.Job.ID, err)
	}
	t.Job.Context = b
	return nil
}

// claimed loads the job id if it is still running under claim.
func (q *Queue) claimed(b *txBuckets, id, claim uint64) (*record, error) {
	r, err := b.load(id)
	if err != nil {
		return nil, err
	}
	if r == nil || r.State != StateRunning || r.Claim != claim {
		return nil, ErrLeaseLost
	}
	return r, nil
}

// Handler runs a batch of claimed jobs of one kind (one job unless the kind's
// BatchSize is above 1) and returns one error per task, in order; a nil slice
// means every task succeeded. A slice of another length fails the whole
// batch. ctx is cancelled when the kind's Timeout elapses, when Run's context
// is done, or when the claims' lease is lost; handlers must honour it.
// A panic fails every task of the batch.
type Handler func(ctx context.Context, tasks []*Task) []error

// Single adapts a function handling one task to a Handler; with BatchSize
// above 1 it handles the tasks one after another.
func Single(fn func(ctx context.Context, t *Task) error) Handler {
	return func(ctx context.Context, tasks []*Task) []error {
		errs := make([]error, len(tasks))
		for i, t := range tasks {
			errs[i] = fn(withRef(ctx, t.ref()), t)
		}
		return errs
	}
}
