package snapshot

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// overrideSet is the in-memory copy of the overrides bucket.
type overrideSet struct {
	mu sync.RWMutex
	on map[string]bool
}

func (o *overrideSet) init() { o.on = make(map[string]bool) }

// load reads the overrides bucket; the presence of a key enables it.
func (o *overrideSet) load(tx *bolt.Tx) error {
	return tx.Bucket(bucketOverrides).ForEach(func(k, _ []byte) error {
		o.on[string(k)] = true
		return nil
	})
}

// allUpstreams is the override key meaning "every upstream". bbolt keys
// cannot be empty, so the empty upstream name is stored as this byte.
const allUpstreams = "\x00"

// overrideKey maps an upstream name to its bucket key.
func overrideKey(upstream string) []byte {
	if upstream == "" {
		return []byte(allUpstreams)
	}
	return []byte(upstream)
}

// SnapshotOnlyOverrides returns a copy of the kill-switch overrides that
// are on, keyed by upstream; the key "" means all upstreams.
func (s *Store) SnapshotOnlyOverrides() map[string]bool {
	s.overrides.mu.RLock()
	defer s.overrides.mu.RUnlock()
	out := make(map[string]bool, len(s.overrides.on))
	for k := range s.overrides.on {
		if k == allUpstreams {
			k = ""
		}
		out[k] = true
	}
	return out
}

// SnapshotOnly reports whether upstream must be served from snapshots only:
// an override is on for it or for all upstreams. It reads memory only.
func (s *Store) SnapshotOnly(upstream string) bool {
	s.overrides.mu.RLock()
	defer s.overrides.mu.RUnlock()
	return s.overrides.on[allUpstreams] || (upstream != "" && s.overrides.on[upstream])
}

// SetSnapshotOnlyOverride turns the kill-switch override for upstream ("" =
// all upstreams) on or off. Turning it off deletes the override. The change
// is committed before the in-memory state changes, so it survives restarts
// once this returns nil.
func (s *Store) SetSnapshotOnlyOverride(upstream string, enabled bool) error {
	key := overrideKey(upstream)
	if len(key) > bolt.MaxKeySize {
		return fmt.Errorf("snapshot: setting override: upstream name of %d bytes is too long", len(key))
	}
	err := s.guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketOverrides)
			if enabled {
				return b.Put(key, []byte{1})
			}
			return b.Delete(key)
		})
	})
	if errors.Is(err, ErrDamaged) {
		// The kill switch must work on a damaged file: in memory only.
		s.log.Warn("kill-switch override kept in memory only: the storage file is damaged",
			zap.String("upstream", upstream), zap.Bool("enabled", enabled))
		err = nil
	}
	if err != nil {
		return fmt.Errorf("snapshot: setting override for upstream %q in %s: %w", upstream, s.path, err)
	}
	s.overrides.mu.Lock()
	if enabled {
		s.overrides.on[string(key)] = true
	} else {
		delete(s.overrides.on, string(key))
	}
	s.overrides.mu.Unlock()
	return nil
}
