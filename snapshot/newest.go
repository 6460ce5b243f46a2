package snapshot

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// newestChunk is how many records Newest reads per read transaction, so
// a walk of a large file neither holds one transaction open for long (which
// keeps bbolt from reusing freed pages) nor reads everything at once.
const newestChunk = 256

// keysChunk is how many keys NewestKeys reads per read transaction.
const keysChunk = 4096

// newestItem is one record Newest read: decoded, or the decoding error.
type newestItem struct {
	key string
	rec Record
	err error
}

// Newest calls fn with the committed snapshots, most recently stored
// first (by StoredAt), until fn returns false, the store is closed or
// every snapshot was visited. A record that cannot be decoded is passed to
// bad (its key and the error) and skipped. Records are read in chunks, a
// read transaction each; fn and bad run outside any transaction, so they
// may call the store. Snapshots stored or deleted during the walk may or
// may not be visited. Queued records not yet committed are not visited.
func (s *Store) Newest(fn func(Record) bool, bad func(key string, err error)) error {
	return walkNewest(s, newestChunk, func(tx *bolt.Tx, key []byte) (newestItem, bool) {
		v := tx.Bucket(bucketSnapshots).Get(key)
		if v == nil {
			return newestItem{}, false // deleted since it was indexed
		}
		rec, err := decodeRecord(string(key), v)
		return newestItem{key: string(key), rec: rec, err: err}, true
	}, func(it newestItem) bool {
		if it.err != nil {
			if bad != nil {
				bad(it.key, it.err)
			}
			return true
		}
		return fn(it.rec)
	})
}

// NewestKeys calls fn with the keys of the committed snapshots, most
// recently stored first (by StoredAt), until fn returns false, the store
// is closed or every key was visited. It reads the time index only, never
// a record, so it costs a small fraction of Newest: for finding a few
// keys among many (the warm start looks up the pages served most with
// Get). Keys are read in chunks, a read transaction each; fn runs outside
// any transaction. Snapshots stored or deleted during the walk may or may
// not be visited; queued records not yet committed are not.
func (s *Store) NewestKeys(fn func(key string) bool) error {
	return walkNewest(s, keysChunk, func(_ *bolt.Tx, key []byte) (string, bool) {
		return string(key), true
	}, fn)
}

// walkNewest walks the time index newest first, chunk entries per read
// transaction: inside it, take turns each record key into an item (false:
// none), and outside it, emit is called with each item until it returns
// false. It stops when the store is closed (ErrClosed) or found damaged
// (nil).
func walkNewest[T any](s *Store, chunk int, take func(tx *bolt.Tx, key []byte) (T, bool), emit func(T) bool) error {
	var next []byte // time-index key to resume before; nil = the newest
	for {
		s.mu.RLock()
		closed := s.closed
		s.mu.RUnlock()
		if closed {
			return ErrClosed
		}
		if s.damaged.Load() != nil {
			return nil
		}
		var items []T
		last, done := next, false
		err := s.guard(func() error {
			return s.db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketSnapshotsTime).Cursor()
				var k []byte
				if next == nil {
					k, _ = c.Last()
				} else {
					// next was visited: start at the key before it.
					if k, _ = c.Seek(next); k == nil {
						k, _ = c.Last()
					}
					for k != nil && bytes.Compare(k, next) >= 0 {
						k, _ = c.Prev()
					}
				}
				for ; k != nil && len(items) < chunk; k, _ = c.Prev() {
					last = bytes.Clone(k)
					if len(k) <= 8 {
						continue
					}
					if it, ok := take(tx, k[8:]); ok {
						items = append(items, it)
					}
				}
				done = k == nil
				return nil
			})
		})
		if errors.Is(err, ErrDamaged) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("snapshot: reading snapshots newest first from %s: %w", s.path, err)
		}
		for _, it := range items {
			if !emit(it) {
				return nil
			}
		}
		if done || bytes.Equal(last, next) {
			return nil
		}
		next = last
	}
}
