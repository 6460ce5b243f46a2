package jobs

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// EnqueueRequest describes a job to accept.
type EnqueueRequest struct {
	// Kind selects the handler; it must be registered on the Queue.
	Kind string
	// Key is the idempotency key (for example "shop:product:123:v42"),
	// unique per kind; see the package doc for how long it dedupes. Empty
	// means no deduplication. At most 1024 bytes, no NUL bytes.
	Key string
	// Entity, if set, orders this job after every earlier-accepted job of
	// the same kind and entity (the outbox's per-entity order). At most
	// 1024 bytes, no NUL bytes.
	Entity string
	// Correlation is stored as Job.Correlation and logged with every
	// attempt: the request id of the HTTP request that caused the job (see
	// Job.Correlation). At most 128 bytes of printable ASCII.
	Correlation string
	// Payload is handed to the handler unchanged.
	Payload []byte
	// Context is the initial context (see Task.SaveContext); usually nil.
	Context []byte
	// RunAt delays the first attempt; zero means now.
	RunAt time.Time
}

// Enqueued is the outcome of one request of EnqueueBatch.
type Enqueued struct {
	// Job is the new job, or the existing job holding the request's key.
	Job Job
	// Created is false when the key was already held and no job was added.
	Created bool
}

// Enqueue accepts one job and returns it with created == true, or, if a job
// of the same kind already holds req.Key (see the package doc), returns that
// job with created == false and adds nothing. The job is durable (committed
// and fsynced) before Enqueue returns; concurrent calls share commits.
//
// ctx is only checked before the job is written: once the write has started,
// Enqueue waits for its outcome so that the caller always knows whether the
// job was accepted.
func (q *Queue) Enqueue(ctx context.Context, req EnqueueRequest) (Job, bool, error) {
	res, err := q.EnqueueBatch(ctx, []EnqueueRequest{req})
	if err != nil {
		return Job{}, false, err
	}
	return res[0].Job, res[0].Created, nil
}

// EnqueueBatch accepts several jobs in one transaction: either all requests
// are accepted (or deduplicated) or none is. Results are in request order; a
// key repeated within reqs yields one job. Use it for backfills: one commit
// (two fdatasyncs) covers the whole batch.
func (q *Queue) EnqueueBatch(ctx context.Context, reqs []EnqueueRequest) ([]Enqueued, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	for i := range reqs {
		if err := q.checkRequest(&reqs[i]); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("jobs: enqueue: %w", err)
	}
	var out []Enqueued
	err := q.commit.do(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		out = make([]Enqueued, len(reqs)) // assigned afresh: the function may run twice
		now := q.now().UTC()
		for i := range reqs {
			r, created, err := q.enqueueTx(b, &reqs[i], now)
			if err != nil {
				return err
			}
			out[i] = Enqueued{Job: r.Job, Created: created}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: enqueue: %w", err)
	}
	kinds := make([]string, 0, 1)
	for _, e := range out {
		if e.Created && (len(kinds) == 0 || kinds[len(kinds)-1] != e.Job.Kind) {
			kinds = append(kinds, e.Job.Kind)
		}
	}
	q.hub.notify(kinds...)
	return out, nil
}

// checkRequest validates a request.
func (q *Queue) checkRequest(req *EnqueueRequest) error {
	if err := validName("kind", req.Kind, maxKindLen, false); err != nil {
		return fmt.Errorf("jobs: enqueue: %w", err)
	}
	if q.kind(req.Kind) == nil {
		return fmt.Errorf("jobs: enqueue: %w: %q", ErrUnknownKind, req.Kind)
	}
	if err := validName("key", req.Key, maxKeyLen, true); err != nil {
		return fmt.Errorf("jobs: enqueue %s: %w", req.Kind, err)
	}
	if err := validName("entity", req.Entity, maxKeyLen, true); err != nil {
		return fmt.Errorf("jobs: enqueue %s: %w", req.Kind, err)
	}
	if err := validCorrelation(req.Correlation); err != nil {
		return fmt.Errorf("jobs: enqueue %s: %w", req.Kind, err)
	}
	return nil
}

// enqueueTx accepts one request in b's transaction.
func (q *Queue) enqueueTx(b *txBuckets, req *EnqueueRequest, now time.Time) (*record, bool, error) {
	if req.Key != "" {
		if v := b.keys.Get(keyKey(req.Kind, req.Key)); len(v) == 8 {
			id := uint64FromBytes(v)
			old, err := b.load(id)
			if err != nil {
				return nil, false, fmt.Errorf("key %q held by unreadable job: %w", req.Key, err)
			}
			switch {
			case old == nil:
				// A dangling key entry; the new job takes the key over.
			case old.State == StateDone && !old.FinishedAt.Add(q.opts.Retention).After(now):
				// Past retention but not yet purged: purge it now.
				if err := b.save(old, nil); err != nil {
					return nil, false, err
				}
			default:
				return old, false, nil
			}
		}
	}
	id, err := b.records.NextSequence()
	if err != nil {
		return nil, false, err
	}
	pubID := newRandomID()
	pub, _ := randomID(pubID)
	if b.ids.Get(pub) != nil {
		return nil, false, fmt.Errorf("random job id %s already taken", pubID) // 2^-128: a broken random source
	}
	if err := b.ids.Put(pub, u64(id)); err != nil {
		return nil, false, err
	}
	runAt := req.RunAt.UTC()
	if runAt.IsZero() {
		runAt = now
	}
	r := &record{
		Job: Job{
			ID:          pubID,
			Kind:        req.Kind,
			Key:         req.Key,
			Entity:      req.Entity,
			Correlation: req.Correlation,
			Payload:     append([]byte(nil), req.Payload...),
			Context:     append([]byte(nil), req.Context...),
			State:       StateReady,
			RunAt:       runAt,
			CreatedAt:   now,
			UpdatedAt:   now,
		},
		id: id,
	}
	if len(r.Payload) == 0 {
		r.Payload = nil
	}
	if len(r.Context) == 0 {
		r.Context = nil
	}
	if err := b.joinEntityQueue(r); err != nil {
		return nil, false, err
	}
	if err := b.save(nil, r); err != nil {
		return nil, false, err
	}
	return r, true, nil
}

// maxCorrelationLen bounds Job.Correlation (a UUID is 36 bytes).
const maxCorrelationLen = 128

// validCorrelation accepts printable ASCII only, so that a correlation id
// copied from a request can never forge log lines or carry personal data
// in another script.
func validCorrelation(s string) error {
	if len(s) > maxCorrelationLen {
		return fmt.Errorf("%w: correlation longer than %d bytes", ErrInvalid, maxCorrelationLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: correlation contains byte %#x (want printable ASCII)", ErrInvalid, c)
		}
	}
	return nil
}
