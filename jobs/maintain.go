package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// purgeChunk bounds the jobs deleted in one transaction by purgeDone.
const purgeChunk = 1000

// maintain reclaims orphaned leases and deletes expired done jobs, logging
// errors. Each part reads first and commits only when it has work.
func (q *Queue) maintain() {
	// An unavailable file is reported once by its owner, not once a poll.
	if _, err := q.reclaim(); err != nil && !errors.Is(err, ErrUnavailable) {
		q.log.Error("reclaiming expired leases", zap.Error(err))
	}
	if _, err := q.purgeDone(); err != nil && !errors.Is(err, ErrUnavailable) {
		q.log.Error("deleting expired done jobs", zap.Error(err))
	}
}

// orphaned reports whether a running job's claim is void: its lease expired,
// or the Run holding it is not alive in this process (and no other process
// can hold it, since bbolt locks the file).
func (q *Queue) orphaned(owner uint64, leaseUntil, now time.Time) bool {
	return !leaseUntil.After(now) || !q.hub.alive(owner)
}

// reclaim makes orphaned running jobs ready again (the lost attempt counts,
// so a job that kills its worker every time ends up dead) and returns how
// many it reclaimed. It reads only the running index (owner and lease are
// kept in its values) unless it finds work.
func (q *Queue) reclaim() (int, error) {
	var ids []uint64
	err := q.view(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		now := q.now()
		return b.running.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return nil
			}
			if len(v) != 16 || q.orphaned(uint64FromBytes(v[:8]), time.Unix(0, int64(uint64FromBytes(v[8:]))), now) {
				ids = append(ids, uint64FromBytes(k))
			}
			return nil
		})
	})
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	var kinds []string
	err = q.commit.do(func(tx *bolt.Tx) error {
		kinds = kinds[:0]
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		now := q.now().UTC()
		for _, id := range ids {
			r, err := b.load(id)
			if err != nil || r == nil || r.State != StateRunning || !q.orphaned(r.Owner, r.LeaseUntil, now) {
				if err != nil {
					q.log.Error("unreadable running job", zap.String("id", formatID(id)), zap.Error(err))
				}
				continue
			}
			n := r.clone()
			msg := "lease expired: the worker stopped without finishing (crash, kill or stall)"
			n.History = append(n.History, Attempt{At: r.StartedAt, Duration: max(now.Sub(r.StartedAt), 0), Error: msg})
			n.LastError = msg
			n.Owner, n.Claim, n.LeaseUntil, n.UpdatedAt = 0, 0, time.Time{}, now
			if n.Attempts >= q.kindConfig(n.Kind).MaxAttempts {
				n.State, n.FinishedAt = StateDead, now
			} else {
				n.State, n.RunAt = StateReady, now
			}
			if err := b.save(r, n); err != nil {
				return err
			}
			kinds = append(kinds, n.Kind)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("jobs: reclaiming leases: %w", err)
	}
	if len(kinds) > 0 {
		q.log.Info("reclaimed orphaned jobs", zap.Int("jobs", len(kinds)))
		q.hub.notify(kinds...)
	}
	return len(kinds), nil
}

// purgeDone deletes done jobs that finished Retention ago or more, releasing
// their idempotency keys, and returns how many it deleted.
func (q *Queue) purgeDone() (int, error) {
	total := 0
	for {
		var keys [][]byte
		cutoff := timeBits(q.now().Add(-q.opts.Retention))
		err := q.view(func(tx *bolt.Tx) error {
			b, err := buckets(tx)
			if err != nil {
				return err
			}
			c := b.done.Cursor()
			for k, _ := c.First(); k != nil && len(keys) < purgeChunk; k, _ = c.Next() {
				if len(k) == 16 && uint64FromBytes(k[:8]) > cutoff {
					break
				}
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return total, err
		}
		n := 0
		err = q.commit.do(func(tx *bolt.Tx) error {
			n = 0
			b, err := buckets(tx)
			if err != nil {
				return err
			}
			for _, k := range keys {
				var r *record
				if len(k) == 16 {
					r, err = b.load(uint64FromBytes(k[8:]))
				}
				if err != nil || r == nil || r.State != StateDone || !bytes.Equal(k, doneKey(r.FinishedAt, r.id)) {
					// Malformed or stale index entry: drop it.
					if err := b.done.Delete(k); err != nil {
						return err
					}
					continue
				}
				if err := b.save(r, nil); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("jobs: deleting expired done jobs: %w", err)
		}
		total += n
		if len(keys) < purgeChunk {
			return total, nil
		}
	}
}
