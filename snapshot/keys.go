package snapshot

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keysChunk is how many keys NewestKeys reads per read transaction.
const keysChunk = 4096

// NewestKeys calls fn with the keys of the committed snapshots, most
// recently stored first (by StoredAt), until fn returns false, the store
// is closed or every key was visited. It reads the time index only, never
// a record, so it costs a small fraction of Newest: for finding a few
// keys among many (the warm start looks up the pages served most with
// Get). Keys are read in chunks, a read transaction each; fn runs outside
// any transaction. Snapshots stored or deleted during the walk may or may
// not be visited; queued records not yet committed are not.
func (s *Store) NewestKeys(fn func(key string) bool) error {
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
		var keys []string
		last, done := next, false
		err := s.guard(func() error {
			return s.db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketSnapshotsTime).Cursor()
				var k []byte
				if next == nil {
					k, _ = c.Last()
				} else {
					if k, _ = c.Seek(next); k == nil {
						k, _ = c.Last()
					}
					for k != nil && bytes.Compare(k, next) >= 0 {
						k, _ = c.Prev()
					}
				}
				for ; k != nil && len(keys) < keysChunk; k, _ = c.Prev() {
					last = bytes.Clone(k)
					if len(k) > 8 {
						keys = append(keys, string(k[8:]))
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
			return fmt.Errorf("snapshot: reading snapshot keys newest first from %s: %w", s.path, err)
		}
		for _, k := range keys {
			if !fn(k) {
				return nil
			}
		}
		if done || bytes.Equal(last, next) {
			return nil
		}
		next = last
	}
}
