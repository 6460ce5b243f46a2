package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// adminChunk bounds the jobs changed in one transaction by ReplayDead and
// FlushDead.
const adminChunk = 500

// ListFilter selects jobs for List. Zero fields do not filter.
type ListFilter struct {
	// Kind keeps jobs of this kind.
	Kind string
	// State keeps jobs in this state; an unknown state is ErrUnknownState.
	State State
	// After is a job ID: only jobs accepted after it are listed (pass the
	// last ID of a page to get the next one). A malformed ID is
	// ErrInvalidID.
	After string
	// Limit is the most jobs returned; default 100, at most 1000.
	Limit int
}

// Get returns the job with the given ID. Errors wrap ErrInvalidID,
// ErrNotFound or ErrCorrupt.
func (q *Queue) Get(id string) (Job, error) {
	var r *record
	err := q.view(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		n, err := b.lookup(id)
		if err != nil {
			return err
		}
		r, err = b.load(n)
		return err
	})
	switch {
	case errors.Is(err, ErrInvalidID), errors.Is(err, ErrNotFound):
		return Job{}, err
	case err != nil:
		return Job{}, fmt.Errorf("jobs: getting job %s: %w", id, err)
	case r == nil:
		return Job{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return r.Job, nil
}

// List returns the jobs matching f in acceptance (ID) order. Unreadable
// records are logged and skipped. With a kind or a state it reads only the
// matching index entries; with neither it walks all jobs from f.After.
func (q *Queue) List(f ListFilter) ([]Job, error) {
	if f.State != "" {
		if _, err := ParseState(string(f.State)); err != nil {
			return nil, err
		}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)

	var out []Job
	err := q.view(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		var after uint64
		if f.After != "" {
			if after, err = b.lookup(f.After); err != nil {
				return err
			}
		}
		var ids []uint64
		if f.Kind == "" && f.State == "" {
			c := b.records.Cursor()
			for k, _ := c.Seek(u64(after + 1)); k != nil && len(ids) < limit; k, _ = c.Next() {
				if len(k) == 8 {
					ids = append(ids, uint64FromBytes(k))
				}
			}
		} else {
			kinds := []string{f.Kind}
			if f.Kind == "" {
				kinds = countedKinds(b)
			}
			sts := states
			if f.State != "" {
				sts = []State{f.State}
			}
			for _, kind := range kinds {
				for _, st := range sts {
					ids = append(ids, scanState(b, kind, st, after, limit)...)
				}
			}
			slices.Sort(ids)
			ids = ids[:min(len(ids), limit)]
		}
		out = make([]Job, 0, len(ids))
		for _, id := range ids {
			r, err := b.load(id)
			if err != nil || r == nil {
				q.log.Warn("skipping unreadable job in list", zap.String("id", formatID(id)), zap.Error(err))
				continue
			}
			out = append(out, r.Job)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: listing jobs: %w", err)
	}
	return out, nil
}

// scanState returns up to limit ids above after from the kind × state index.
func scanState(b *txBuckets, kind string, st State, after uint64, limit int) []uint64 {
	prefix := statePrefix(kind, st)
	var ids []uint64
	c := b.states.Cursor()
	for k, _ := c.Seek(join(prefix, u64(after+1))); k != nil && bytes.HasPrefix(k, prefix) && len(ids) < limit; k, _ = c.Next() {
		if len(k) == len(prefix)+8 {
			ids = append(ids, uint64FromBytes(k[len(prefix):]))
		}
	}
	return ids
}

// countedKinds returns every kind that has (or had) jobs, from the counters.
func countedKinds(b *txBuckets) []string {
	var kinds []string
	_ = b.cnt.ForEach(func(k, _ []byte) error {
		if i := bytes.IndexByte(k, 0); i > 0 {
			if kind := string(k[:i]); len(kinds) == 0 || kinds[len(kinds)-1] != kind {
				kinds = append(kinds, kind)
			}
		}
		return nil
	})
	return kinds
}

// RetryNow makes a ready job due now, or a dead job ready again now with
// its attempts reset (its history is kept). A job with an entity rejoins the
// back of its entity queue and may wait behind later jobs (Job.Blocked).
// Errors wrap ErrInvalidID, ErrNotFound, or ErrBadState for a running or
// done job.
func (q *Queue) RetryNow(id string) error {
	var kind string
	err := q.commit.do(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		n, err := b.lookup(id)
		if err != nil {
			return err
		}
		r, err := b.load(n)
		switch {
		case err != nil:
			return err
		case r == nil:
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		kind = r.Kind
		now := q.now().UTC()
		switch r.State {
		case StateReady:
			c := r.clone()
			c.RunAt, c.UpdatedAt = now, now
			return b.save(r, c)
		case StateDead:
			return q.revive(b, r, now)
		default:
			return fmt.Errorf("%w: job %s is %s", ErrBadState, id, r.State)
		}
	})
	if err != nil {
		return fmt.Errorf("jobs: retrying job %s: %w", id, err)
	}
	q.hub.notify(kind)
	return nil
}

// revive makes a dead job ready now with its attempts reset.
func (q *Queue) revive(b *txBuckets, r *record, now time.Time) error {
	c := r.clone()
	c.State, c.RunAt, c.UpdatedAt, c.FinishedAt = StateReady, now, now, time.Time{}
	c.Attempts = 0
	if err := b.joinEntityQueue(c); err != nil {
		return err
	}
	return b.save(r, c)
}

// ReplayDead makes every dead job of kind ready again now (as RetryNow does)
// and returns how many it replayed. Jobs that die while it runs are not
// replayed twice.
func (q *Queue) ReplayDead(kind string) (int, error) {
	n, err := q.eachDead(kind, q.revive)
	if n > 0 {
		q.hub.notify(kind)
	}
	if err != nil {
		return n, fmt.Errorf("jobs: replaying dead %s jobs: %w", kind, err)
	}
	return n, nil
}

// FlushDead deletes every dead job of kind, releasing their idempotency
// keys, and returns how many it deleted.
func (q *Queue) FlushDead(kind string) (int, error) {
	n, err := q.eachDead(kind, func(b *txBuckets, r *record, _ time.Time) error { return b.save(r, nil) })
	if err != nil {
		return n, fmt.Errorf("jobs: flushing dead %s jobs: %w", kind, err)
	}
	return n, nil
}

// eachDead applies fn to the jobs of kind that are dead now, in chunks of
// adminChunk per commit, and returns how many it applied fn to.
func (q *Queue) eachDead(kind string, fn func(*txBuckets, *record, time.Time) error) (int, error) {
	if err := validName("kind", kind, maxKindLen, false); err != nil {
		return 0, err
	}
	var ids []uint64
	err := q.view(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		ids = scanState(b, kind, StateDead, 0, int(^uint(0)>>1))
		return nil
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for chunk := range slices.Chunk(ids, adminChunk) {
		n := 0
		err := q.commit.do(func(tx *bolt.Tx) error {
			n = 0
			b, err := buckets(tx)
			if err != nil {
				return err
			}
			now := q.now().UTC()
			for _, id := range chunk {
				r, err := b.load(id)
				if err != nil {
					if errors.Is(err, ErrCorrupt) {
						q.log.Warn("skipping unreadable dead job", zap.Error(err))
						continue
					}
					return err
				}
				if r == nil || r.State != StateDead || r.Kind != kind {
					continue
				}
				if err := fn(b, r, now); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// RewritePayloads calls fn with the payload of every job of kind, in every
// state, and stores the payload fn returns when it reports a change (its
// other fields, indexes and state untouched), in chunks of adminChunk jobs
// per commit. It returns how many payloads it rewrote. It is for moving
// payloads to a new format or encryption key; an error from fn stops it
// (what was committed stays). A running job keeps the payload it was
// handed.
func (q *Queue) RewritePayloads(kind string, fn func(payload []byte) ([]byte, bool, error)) (int, error) {
	if err := validName("kind", kind, maxKindLen, false); err != nil {
		return 0, err
	}
	var ids []uint64
	err := q.db.View(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		for _, st := range states {
			ids = append(ids, scanState(b, kind, st, 0, int(^uint(0)>>1))...)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("jobs: rewriting %s payloads: %w", kind, err)
	}
	total := 0
	for chunk := range slices.Chunk(ids, adminChunk) {
		n := 0
		err := q.commit.do(func(tx *bolt.Tx) error {
			n = 0
			b, err := buckets(tx)
			if err != nil {
				return err
			}
			for _, id := range chunk {
				r, err := b.load(id)
				if err != nil {
					return err
				}
				if r == nil || r.Kind != kind {
					continue
				}
				p, changed, err := fn(r.Payload)
				if err != nil {
					return fmt.Errorf("job %s: %w", r.ID, err)
				}
				if !changed {
					continue
				}
				c := r.clone()
				c.Payload = p
				v, err := json.Marshal(c)
				if err != nil {
					return fmt.Errorf("encoding job %s: %w", r.ID, err)
				}
				if err := b.records.Put(u64(id), v); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("jobs: rewriting %s payloads: %w", kind, err)
		}
		total += n
	}
	return total, nil
}
