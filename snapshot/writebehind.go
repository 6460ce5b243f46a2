package snapshot

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// pendingRecord is a queued record, already encoded so that the caller may
// reuse its buffers as soon as Put returns.
type pendingRecord struct {
	storedAt int64
	enc      []byte
}

// maxEvictInFlush bounds how many snapshots a flush evicts inside its own
// transaction to get back under MaxBytes; the evictor does the rest.
const maxEvictInFlush = 1000

// Put queues rec to be written by the background writer and reports whether
// it was accepted. It never waits on the disk or on a full queue: it copies
// rec (Value and Tags may be reused by the caller afterwards) and returns.
// A later Put for a key that is still queued replaces the earlier record, so
// only the last one is written.
//
// Put returns false, and counts the record in Stats.Dropped, when the queue
// already holds Options.QueueSize records or the record would take it over
// Options.QueueBytes. It returns false, and counts it
// in Stats.Rejected, when the record can never be stored: an empty key or
// one longer than bbolt allows, a StoredAt before 1970 or past 2262, a
// StoredAt already older than MaxAge, or an encoded size above MaxBytes. It
// returns false after Close.
func (s *Store) Put(rec Record) bool {
	if s.damaged.Load() != nil {
		return false
	}
	if rec.StoredAt.IsZero() {
		rec.StoredAt = s.now()
	}
	if !s.acceptable(rec) {
		s.rejected.Add(1)
		return false
	}
	p := pendingRecord{storedAt: rec.StoredAt.UnixNano()}
	p.enc = encodeRecord(p.storedAt, rec.Tags, rec.Value)
	if s.maxBytes.Load() > 0 && int64(len(p.enc)) > s.maxBytes.Load() {
		s.rejected.Add(1)
		return false
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	old, queued := s.pending[rec.Key]
	if !queued && len(s.pending)+len(s.inflight) >= s.opts.QueueSize ||
		s.queuedBytes > 0 && s.queuedBytes-int64(len(old.enc))+int64(len(p.enc)) > s.opts.QueueBytes {
		s.mu.Unlock()
		s.dropped.Add(1)
		return false
	}
	if !queued {
		s.pendingN.Add(1)
	}
	s.queuedBytes += int64(len(p.enc)) - int64(len(old.enc))
	s.pending[rec.Key] = p
	s.mu.Unlock()

	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

var (
	minStoredAt = time.Unix(0, 0)
	maxStoredAt = time.Unix(0, math.MaxInt64)
)

// acceptable reports whether rec can be stored at all.
func (s *Store) acceptable(rec Record) bool {
	if rec.Key == "" || len(rec.Key) > maxKeyLen {
		return false
	}
	if rec.StoredAt.Before(minStoredAt) || rec.StoredAt.After(maxStoredAt) {
		return false
	}
	// Evict prunes purge marks older than MaxAge, so a record that old
	// could not be checked for staleness; it would be evicted anyway.
	if time.Duration(s.maxAge.Load()) > 0 && rec.StoredAt.Before(s.now().Add(-time.Duration(s.maxAge.Load()))) {
		return false
	}
	return true
}

// Flush synchronously commits every queued record. The whole queue is
// written in a single bbolt transaction; on Linux a commit costs two
// fdatasync calls (data pages, then the meta page), plus one fsync when the
// file has to grow, however many records the batch holds. If the
// transaction fails the batch is dropped (the snapshots are a best-effort
// copy of responses that will be stored again), counted in
// Stats.WriteErrors, and the error is returned.
//
// Get keeps returning the records being committed until the commit is
// done. When a batch pushes Bytes over MaxBytes, the oldest snapshots are
// evicted in the same transaction (at most 1000; the evictor is woken for
// the rest).
func (s *Store) Flush() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()

	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	batch := s.pending
	s.pending = make(map[string]pendingRecord, len(batch))
	s.inflight = batch
	s.mu.Unlock()

	keys := make([]string, 0, len(batch))
	for k := range batch {
		keys = append(keys, k)
	}
	slices.Sort(keys) // sequential bbolt inserts touch fewer pages

	var (
		t       totals
		evicted int
		over    bool
	)
	start := time.Now()
	err := s.guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			t = readTotals(tx)
			for _, k := range keys {
				p := batch[k]
				if err := putRecordTx(tx, []byte(k), p.storedAt, p.enc, &t); err != nil {
					return fmt.Errorf("writing %q: %w", k, err)
				}
			}
			if s.maxBytes.Load() > 0 && t.bytes > s.maxBytes.Load() {
				var err error
				evicted, _, _, err = evictTx(tx, &t, maxEvictInFlush, func(_ int64, t *totals) bool {
					return t.bytes > s.maxBytes.Load()
				})
				if err != nil {
					return err
				}
				over = t.bytes > s.maxBytes.Load()
			}
			return putTotals(tx, t.count, t.bytes)
		})
	})
	took := time.Since(start)
	s.lastWriteNanos.Store(int64(took))
	if s.opts.OnFlush != nil {
		s.opts.OnFlush(len(batch), took, err)
	}

	s.mu.Lock()
	s.inflight = nil
	s.pendingN.Add(-int64(len(batch)))
	for _, p := range batch {
		s.queuedBytes -= int64(len(p.enc))
	}
	s.mu.Unlock()

	if err != nil {
		s.writeErrors.Add(uint64(len(batch)))
		return fmt.Errorf("snapshot: writing %d records to %s: %w", len(batch), s.path, err)
	}
	s.publishTotals(t)
	s.written.Add(uint64(len(batch)))
	s.evicted.Add(uint64(evicted))
	s.updateFileBytes()
	if over {
		select {
		case s.evictKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// writeLoop commits queued records: after the first Put it waits
// FlushInterval so that later Puts join the same batch (and the same
// fsyncs), then flushes. Close stops it and flushes what is left.
func (s *Store) writeLoop() {
	defer s.done.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		timer.Reset(s.opts.FlushInterval)
		select {
		case <-s.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		if err := s.Flush(); err != nil && !errors.Is(err, ErrDamaged) {
			s.log.Error("snapshot write failed", zap.Error(err))
		}
	}
}
