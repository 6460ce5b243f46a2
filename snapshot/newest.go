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

// Newest calls fn with the committed snapshots, most recently stored
// first (by StoredAt), until fn returns false, the store is closed or
// every snapshot was visited. A record that cannot be decoded is passed to
// bad (its key and the error) and skipped. Records are read in chunks, a
// read transaction each; fn and bad run outside any transaction, so they
// may call the store. Snapshots stored or deleted during the walk may or
// may not be visited. Queued records not yet committed are not visited.
func (s *Store) Newest(fn func(Record) bool, bad func(key string, err error)) error {
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
		type item struct {
			key string
			rec Record
			err error
		}
		var items []item
		last, done := next, false
		err := s.guard(func() error {
			return s.db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketSnapshotsTime).Cursor()
				snaps := tx.Bucket(bucketSnapshots)
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
				for ; k != nil && len(items) < newestChunk; k, _ = c.Prev() {
					last = bytes.Clone(k)
					if len(k) < 8 {
						continue
					}
					key := string(k[8:])
					v := snaps.Get(k[8:])
					if v == nil {
						continue // deleted since it was indexed
					}
					rec, err := decodeRecord(key, v)
					items = append(items, item{key: key, rec: rec, err: err})
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
			if it.err != nil {
				if bad != nil {
					bad(it.key, it.err)
				}
				continue
			}
			if !fn(it.rec) {
				return nil
			}
		}
		if done || bytes.Equal(last, next) {
			return nil
		}
		next = last
	}
}
