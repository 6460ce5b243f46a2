package jobs

import (
	"context"
	"errors"
	"time"
)

// OutboxBackend is where durable writes (the outbox) are accepted and
// looked up. The app chooses one: the local Queue (bbolt, the default of a
// single node), or a cluster's shared outbox (NATS JetStream), which
// delivers a write acknowledged by any node even if that node never comes
// back. Both keep the same contract:
//
//   - Enqueue returns only once the job is durable (fsynced locally, or
//     stored by the cluster's replicas); an error means it was not accepted.
//   - The same kind and Key within the retention return the first job with
//     created == false.
//   - Jobs of one kind and Entity run in acceptance order, one at a time.
//   - The handler sends Task.IdempotencyKey with the side effect, on every
//     attempt and from whichever node runs it.
//
// Errors a caller maps for its answer: ErrInvalid (400), ErrUnavailable
// (503, storage damaged or cluster unreachable), ErrNotFound and
// ErrInvalidID from Get.
type OutboxBackend interface {
	Enqueue(ctx context.Context, req EnqueueRequest) (job Job, created bool, err error)
	Get(id string) (Job, error)
}

var _ OutboxBackend = (*Queue)(nil)

// RetryDelay returns the delay err asked for with RetryAfter, for a
// backend that schedules retries itself.
func RetryDelay(err error) (time.Duration, bool) { return retryDelay(err) }

// ErrNoQueue is returned by SaveContext on a Task that no Queue holds.
var ErrNoQueue = errors.New("jobs: task not held by a queue (saving context is not supported)")

// ExternalTask wraps a job another backend delivers (a cluster outbox) as
// a Task, so one handler serves both backends. Its SaveContext fails with
// ErrNoQueue: outbox handlers do not save progress.
func ExternalTask(job Job) *Task { return &Task{Job: job} }
