package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// noMark is the purge-all time when there has been no purge-all.
const noMark = math.MinInt64

// purgeMarks is the in-memory copy of the purge buckets. Marks only move
// forward: a purge older than the existing mark changes nothing.
type purgeMarks struct {
	mu       sync.RWMutex
	tags     map[string]int64 // tag → purge time (unix nanos)
	prefixes map[string]int64 // key prefix → purge time
	all      int64            // purge-all time, or noMark
}

func (p *purgeMarks) init() {
	p.tags = make(map[string]int64)
	p.prefixes = make(map[string]int64)
	p.all = noMark
}

// load reads the purge buckets. A malformed mark is logged and skipped: it
// can only come from outside this package, and failing to open would take
// every snapshot away with it.
func (p *purgeMarks) load(tx *bolt.Tx, log *zap.Logger) error {
	read := func(bucket []byte, into map[string]int64) error {
		b := tx.Bucket(bucket)
		return b.ForEach(func(k, v []byte) error {
			at, ok := getUint64(b, k)
			if !ok {
				log.Warn("skipping malformed purge mark", zap.ByteString("bucket", bucket),
					zap.ByteString("key", k), zap.Int("value_len", len(v)))
				return nil
			}
			into[string(k)] = int64(at)
			return nil
		})
	}
	if err := read(bucketPurges, p.tags); err != nil {
		return fmt.Errorf("reading %s: %w", bucketPurges, err)
	}
	if err := read(bucketPurgePrefixes, p.prefixes); err != nil {
		return fmt.Errorf("reading %s: %w", bucketPurgePrefixes, err)
	}
	if at, ok := getUint64(tx.Bucket(bucketMeta), metaPurgeAll); ok {
		p.all = int64(at)
	}
	return nil
}

// stale reports whether a mark newer than at applies to key or tags.
func (p *purgeMarks) stale(key string, tags []string, at int64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.all > at {
		return true
	}
	for _, t := range tags {
		if m, ok := p.tags[t]; ok && m > at {
			return true
		}
	}
	for prefix, m := range p.prefixes {
		if m > at && strings.HasPrefix(key, prefix) {
			return true
		}
	}
	return false
}

// len returns the number of tag and prefix marks.
func (p *purgeMarks) len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.tags) + len(p.prefixes)
}

// Stale reports whether rec was purged after it was stored: a purge-all, a
// purge of any of rec.Tags, or a purge of a prefix of rec.Key happened
// strictly after rec.StoredAt. A record stored at the very instant of a
// purge is not stale. Stale only reads memory (a read lock, one map lookup
// per tag, and a scan of the purged prefixes, which are expected to be few).
//
// When MaxAge is set, Evict forgets marks older than MaxAge, so Stale is
// only exact for records younger than MaxAge, which is every snapshot this
// store still holds.
func (s *Store) Stale(rec Record) bool {
	return s.purges.stale(rec.Key, rec.Tags, nanos(rec.StoredAt))
}

// MarkPurged records that every snapshot carrying one of tags and stored
// before at is stale. The marks are committed (one transaction) before the
// in-memory state changes, so a purge that returned survives a crash.
func (s *Store) MarkPurged(tags []string, at time.Time) error {
	return s.mark(&s.tagMarks, bucketPurges, "tag", tags, at, func(p *purgeMarks) map[string]int64 { return p.tags })
}

// MarkPurgedPrefixes records that every snapshot whose key starts with one
// of prefixes and stored before at is stale. Use MarkPurgedAll rather than
// an empty prefix.
func (s *Store) MarkPurgedPrefixes(prefixes []string, at time.Time) error {
	return s.mark(&s.prefixMarks, bucketPurgePrefixes, "prefix", prefixes, at, func(p *purgeMarks) map[string]int64 { return p.prefixes })
}

// MarkPurgedAll records that every snapshot stored before at is stale.
func (s *Store) MarkPurgedAll(at time.Time) error {
	atN := nanos(at)
	err := s.guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if old, ok := getUint64(meta, metaPurgeAll); ok && int64(old) >= atN {
				return nil
			}
			return meta.Put(metaPurgeAll, uint64Bytes(uint64(atN)))
		})
	})
	// The mark holds in this process even when it could not be written
	// (a full disk; a damaged store serves no snapshots): the purge
	// happened, and the warm start's refill and the fallback read the
	// marks in memory. Only its surviving a restart is lost, which the
	// error says.
	s.purges.mu.Lock()
	s.purges.all = max(s.purges.all, atN)
	s.purges.mu.Unlock()
	if err != nil && !errors.Is(err, ErrDamaged) {
		return fmt.Errorf("snapshot: recording purge-all in %s: %w", s.path, err)
	}
	return nil
}

// mark is MarkPurged and MarkPurgedPrefixes. Marks of one bucket
// arriving while another transaction of marks commits are coalesced (a
// group commit, see markQueue): an RFC 9111 invalidation per unsafe
// request costs one transaction, hence its fsyncs, per batch of concurrent
// requests instead of one per request. Every caller still returns only
// once its marks are committed and applied in memory.
func (s *Store) mark(q *markQueue, bucket []byte, what string, names []string, at time.Time, marks func(*purgeMarks) map[string]int64) error {
	if len(names) == 0 {
		return nil
	}
	for _, n := range names {
		if n == "" {
			return fmt.Errorf("snapshot: purging: empty %s", what)
		}
		if len(n) > bolt.MaxKeySize {
			return fmt.Errorf("snapshot: purging: %s of %d bytes is too long", what, len(n))
		}
	}
	return q.add(names, nanos(at), func(batch map[string]int64) error {
		return s.commitMarks(bucket, what, batch, marks)
	})
}

// commitMarks writes one batch of marks (name → time) in one transaction,
// then applies them in memory (also when the write failed: see MarkPurgedAll).
func (s *Store) commitMarks(bucket []byte, what string, batch map[string]int64, marks func(*purgeMarks) map[string]int64) error {
	err := s.guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			for n, atN := range batch {
				if old, ok := getUint64(b, []byte(n)); ok && int64(old) >= atN {
					continue
				}
				if err := b.Put([]byte(n), uint64Bytes(uint64(atN))); err != nil {
					return fmt.Errorf("%s %q: %w", what, n, err)
				}
			}
			return nil
		})
	})
	s.markCommits.Add(1)
	// Applied in memory even when not written (see MarkPurgedAll).
	s.purges.mu.Lock()
	m := marks(&s.purges)
	for n, atN := range batch {
		if cur, ok := m[n]; !ok || cur < atN {
			m[n] = atN
		}
	}
	s.purges.mu.Unlock()
	if err != nil && !errors.Is(err, ErrDamaged) {
		return fmt.Errorf("snapshot: recording purge of %d %ss in %s: %w", len(batch), what, s.path, err)
	}
	return nil
}

// markQueue coalesces the marks of one bucket into group commits: one
// transaction at a time; marks arriving while it commits gather in the
// next batch, which the first of them commits as soon as the transaction
// before it is done. A lone mark commits at once (no delay, unlike
// bbolt's Batch); under a flood of concurrent marks there is at most one
// transaction in flight and each caller waits for at most two.
type markQueue struct {
	mu       sync.Mutex
	open     *markBatch // gathering marks; nil when none
	inflight *markBatch // the batch last closed (committing or done)
}

type markBatch struct {
	names map[string]int64 // name → newest mark time
	done  chan struct{}    // closed once committed (err set)
	err   error
}

// add puts names (marked at atN) into the open batch and waits until it
// is committed by commit; the caller that opened the batch commits it.
func (q *markQueue) add(names []string, atN int64, commit func(map[string]int64) error) error {
	q.mu.Lock()
	b, leader := q.open, false
	if b == nil {
		b = &markBatch{names: make(map[string]int64, len(names)), done: make(chan struct{})}
		q.open, leader = b, true
	}
	for _, n := range names {
		if cur, ok := b.names[n]; !ok || cur < atN {
			b.names[n] = atN
		}
	}
	prev := q.inflight
	q.mu.Unlock()
	if !leader {
		<-b.done
		return b.err
	}
	if prev != nil {
		<-prev.done // one transaction at a time: b gathers meanwhile
	}
	q.mu.Lock()
	q.open, q.inflight = nil, b // closed: later marks open the next batch
	q.mu.Unlock()
	// Should commit panic, the batch's other callers (and the next
	// batch) are still released, told their marks were not written.
	b.err = errMarksNotCommitted
	defer close(b.done)
	b.err = commit(b.names)
	return b.err
}

// errMarksNotCommitted is what the callers of a batch whose commit
// panicked get.
var errMarksNotCommitted = errors.New("snapshot: purge marks not committed")

// prunePurgeMarks deletes marks older than cutoff, in transactions of at
// most maxEvictPerTx deletes. Malformed marks are deleted too.
func (s *Store) prunePurgeMarks(cutoff int64) error {
	return s.guard(func() error { return s.prunePurgeMarksUnguarded(cutoff) })
}

func (s *Store) prunePurgeMarksUnguarded(cutoff int64) error {
	for {
		var tags, prefixes [][]byte
		var all bool
		tx, err := s.db.Begin(true)
		if err != nil {
			return fmt.Errorf("snapshot: pruning purge marks in %s: %w", s.path, err)
		}
		budget := maxEvictPerTx
		collect := func(bucket []byte) [][]byte {
			var out [][]byte
			c := tx.Bucket(bucket).Cursor()
			for k, v := c.First(); k != nil && budget > 0; k, v = c.Next() {
				if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < cutoff {
					out = append(out, append([]byte(nil), k...))
					budget--
				}
			}
			return out
		}
		tags = collect(bucketPurges)
		prefixes = collect(bucketPurgePrefixes)
		meta := tx.Bucket(bucketMeta)
		if at, ok := getUint64(meta, metaPurgeAll); ok && int64(at) < cutoff {
			all = true
		}
		if len(tags) == 0 && len(prefixes) == 0 && !all {
			_ = tx.Rollback()
			return nil
		}
		err = func() error {
			for _, k := range tags {
				if err := tx.Bucket(bucketPurges).Delete(k); err != nil {
					return err
				}
			}
			for _, k := range prefixes {
				if err := tx.Bucket(bucketPurgePrefixes).Delete(k); err != nil {
					return err
				}
			}
			if all {
				return meta.Delete(metaPurgeAll)
			}
			return nil
		}()
		if err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("snapshot: pruning purge marks in %s: %w", s.path, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("snapshot: pruning purge marks in %s: %w", s.path, err)
		}

		// Marks only move forward, so one that is still older than the
		// cutoff is the one that was deleted.
		s.purges.mu.Lock()
		for _, k := range tags {
			if m, ok := s.purges.tags[string(k)]; ok && m < cutoff {
				delete(s.purges.tags, string(k))
			}
		}
		for _, k := range prefixes {
			if m, ok := s.purges.prefixes[string(k)]; ok && m < cutoff {
				delete(s.purges.prefixes, string(k))
			}
		}
		if all && s.purges.all < cutoff {
			s.purges.all = noMark
		}
		s.purges.mu.Unlock()

		if budget > 0 {
			return nil
		}
	}
}

// nanos converts t to unix nanoseconds, saturating outside the int64 range.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(maxStoredAt):
		return math.MaxInt64
	}
	return t.UnixNano()
}
