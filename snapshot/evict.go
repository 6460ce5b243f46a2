package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// maxEvictPerTx bounds the deletes in one eviction transaction so that a
// large eviction never holds bbolt's writer lock (and the snapshot writer)
// for long, and never builds a huge dirty-page set.
const maxEvictPerTx = 1000

// Evict enforces MaxAge and then MaxBytes, removing the oldest snapshots
// (by StoredAt) first, in transactions of at most 1000 deletes. Queued
// records are flushed first so they are subject to the same limits. When
// MaxAge is set it also prunes purge marks older than MaxAge: every
// snapshot stored before such a mark has been evicted, so the mark can no
// longer make anything stale. It returns the number of snapshots evicted.
//
// The background evictor calls Evict every EvictInterval; callers only need
// it to force a pass.
func (s *Store) Evict() (int, error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	if s.damaged.Load() != nil {
		return 0, nil
	}
	now := s.now()
	flushErr := s.Flush()

	total := 0
	run := func(what string, pred func(at int64, t *totals) bool) error {
		for {
			n, more, err := s.evictBatch(pred)
			total += n
			if err != nil {
				return fmt.Errorf("snapshot: evicting by %s in %s: %w", what, s.path, err)
			}
			if !more {
				return nil
			}
		}
	}

	if time.Duration(s.maxAge.Load()) > 0 {
		cutoff := now.Add(-time.Duration(s.maxAge.Load())).UnixNano()
		if err := run("age", func(at int64, _ *totals) bool { return at < cutoff }); err != nil {
			return total, errors.Join(flushErr, err)
		}
		if err := s.prunePurgeMarks(cutoff); err != nil {
			return total, errors.Join(flushErr, err)
		}
	}
	if s.maxBytes.Load() > 0 && s.bytes.Load() > s.maxBytes.Load() {
		if err := run("size", func(_ int64, t *totals) bool { return t.bytes > s.maxBytes.Load() }); err != nil {
			return total, errors.Join(flushErr, err)
		}
	}
	if total > 0 {
		s.updateFileBytes()
		s.log.Debug("evicted snapshots", zap.Int("count", total))
	}
	return total, flushErr
}

// evictBatch runs one bounded eviction transaction. A pass that finds
// nothing to delete is rolled back, so an idle evictor costs no fsync.
func (s *Store) evictBatch(pred func(at int64, t *totals) bool) (n int, more bool, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err = s.guard(func() error {
		var err error
		n, more, err = s.evictBatchLocked(pred)
		return err
	})
	return n, more, err
}

// evictBatchLocked is evictBatch's transaction; the caller holds writeMu.
func (s *Store) evictBatchLocked(pred func(at int64, t *totals) bool) (n int, more bool, err error) {
	tx, err := s.db.Begin(true)
	if err != nil {
		return 0, false, err
	}
	t := readTotals(tx)
	n, changed, more, err := evictTx(tx, &t, maxEvictPerTx, pred)
	if err != nil || !changed {
		_ = tx.Rollback()
		return 0, false, err
	}
	if err := putTotals(tx, t.count, t.bytes); err != nil {
		_ = tx.Rollback()
		return 0, false, err
	}
	if err := tx.Commit(); err != nil {
		return 0, false, err
	}
	s.publishTotals(t)
	s.evicted.Add(uint64(n))
	return n, more, nil
}

// evictTx walks snapshots_by_time from the oldest entry, deleting
// snapshots while pred (given the running totals) holds, and adjusting t.
// Index entries that point at nothing, or at a record with another StoredAt
// (left behind when an unreadable record was overwritten), are removed
// without consulting pred. An unreadable record that is indexed is evicted
// like any other. At most limit entries are removed; more reports that the
// limit stopped the walk.
func evictTx(tx *bolt.Tx, t *totals, limit int, pred func(at int64, t *totals) bool) (evicted int, changed, more bool, err error) {
	snaps := tx.Bucket(bucketSnapshots)
	idx := tx.Bucket(bucketSnapshotsTime)

	// Collect first, delete after: deleting through a cursor while
	// walking it can skip entries.
	type victim struct {
		idxKey, key []byte // key is nil for an orphaned index entry
	}
	var victims []victim
	c := idx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(victims) >= limit {
			more = true
			break
		}
		ik := append([]byte(nil), k...)
		if len(k) < 8 {
			victims = append(victims, victim{idxKey: ik})
			continue
		}
		at := int64(binary.BigEndian.Uint64(k[:8]))
		key := ik[8:]
		v := snaps.Get(key)
		if v == nil {
			victims = append(victims, victim{idxKey: ik})
			continue
		}
		if vAt, err := decodeStoredAt(v); err == nil && vAt != at {
			victims = append(victims, victim{idxKey: ik})
			continue
		}
		if !pred(at, t) {
			break
		}
		victims = append(victims, victim{idxKey: ik, key: key})
		t.count--
		t.bytes -= int64(len(v))
		evicted++
	}
	for _, v := range victims {
		if err := idx.Delete(v.idxKey); err != nil {
			return 0, false, false, err
		}
		if v.key != nil {
			if err := snaps.Delete(v.key); err != nil {
				return 0, false, false, err
			}
		}
	}
	return evicted, len(victims) > 0, more, nil
}

// evictLoop runs Evict every EvictInterval, and early when a flush could
// not get Bytes under MaxBytes on its own.
func (s *Store) evictLoop() {
	defer s.done.Done()
	ticker := time.NewTicker(s.opts.EvictInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
		case <-s.evictKick:
		}
		if _, err := s.Evict(); err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrDamaged) {
			s.log.Error("snapshot eviction failed", zap.Error(err))
		}
	}
}
