// Package replay remembers the webhook deliveries craftedge has accepted,
// so that a delivery seen again (a vendor's retry, a replay from the
// vendor's dashboard, an attacker resending a captured request) is
// acknowledged without being processed twice. Entries live in two buckets
// of the shared bbolt file and expire after a time to live chosen by the
// caller (longer than the signature's timestamp window, so a replayed
// signature is either stale or remembered).
package replay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names: both start with "webhooks_" so they cannot collide with the
// snapshot, records or jobs buckets of the shared file.
var (
	bucketSeen   = []byte("webhooks_seen")        // source 0 id → expiry(8, BE unix nanos)
	bucketExpiry = []byte("webhooks_seen_expiry") // expiry(8) source 0 id → empty
)

// Limits of a key.
const (
	maxSourceLen = 256
	maxIDLen     = 1024
)

// ErrInvalidKey means a source or delivery id is empty, too long or holds a
// NUL byte.
var ErrInvalidKey = errors.New("replay: invalid source or delivery id")

// Store remembers delivery ids per source (a vendor name, or the remote
// purge endpoint). It is safe for concurrent use; bbolt serialises writers.
type Store struct {
	db *bolt.DB
}

// Open creates (if needed) the buckets in db and returns the store. db is
// shared; Store never closes it.
func Open(db *bolt.DB) (*Store, error) {
	if db == nil {
		return nil, errors.New("replay: Open: nil *bbolt.DB")
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSeen, bucketExpiry} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay: opening in %s: %w", db.Path(), err)
	}
	return &Store{db: db}, nil
}

func seenKey(source, id string) ([]byte, error) {
	if source == "" || id == "" || len(source) > maxSourceLen || len(id) > maxIDLen ||
		strings.IndexByte(source, 0) >= 0 || strings.IndexByte(id, 0) >= 0 {
		return nil, ErrInvalidKey
	}
	return []byte(source + "\x00" + id), nil
}

func nanos(t time.Time) uint64 {
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}

func expiryKey(exp uint64, key []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), exp)
	return append(k, key...)
}

// Claim records delivery id of source as seen until now+ttl and reports
// true, unless it is already remembered (and not expired), in which case it
// changes nothing and reports false. The claim is durable when Claim
// returns.
func (s *Store) Claim(source, id string, now time.Time, ttl time.Duration) (bool, error) {
	key, err := seenKey(source, id)
	if err != nil {
		return false, err
	}
	if ttl <= 0 {
		return false, fmt.Errorf("replay: ttl must be positive, got %v", ttl)
	}
	fresh := false
	err = s.db.Update(func(tx *bolt.Tx) error {
		seen, idx := tx.Bucket(bucketSeen), tx.Bucket(bucketExpiry)
		if v := seen.Get(key); len(v) == 8 {
			exp := binary.BigEndian.Uint64(v)
			if exp > nanos(now) {
				return nil
			}
			if err := idx.Delete(expiryKey(exp, key)); err != nil {
				return err
			}
		}
		exp := nanos(now.Add(ttl))
		if err := seen.Put(key, binary.BigEndian.AppendUint64(nil, exp)); err != nil {
			return err
		}
		fresh = true
		return idx.Put(expiryKey(exp, key), []byte{})
	})
	if err != nil {
		return false, fmt.Errorf("replay: claiming a delivery of %s: %w", source, err)
	}
	return fresh, nil
}

// Release forgets a claimed delivery (its processing failed before it was
// accepted, so the sender's retry must be processed).
func (s *Store) Release(source, id string) error {
	key, err := seenKey(source, id)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		seen := tx.Bucket(bucketSeen)
		v := seen.Get(key)
		if len(v) != 8 {
			return nil
		}
		if err := tx.Bucket(bucketExpiry).Delete(expiryKey(binary.BigEndian.Uint64(v), key)); err != nil {
			return err
		}
		return seen.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("replay: releasing a delivery of %s: %w", source, err)
	}
	return nil
}

// Seen reports whether a delivery is remembered (and not expired) at now.
func (s *Store) Seen(source, id string, now time.Time) (bool, error) {
	key, err := seenKey(source, id)
	if err != nil {
		return false, err
	}
	seen := false
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSeen).Get(key)
		seen = len(v) == 8 && binary.BigEndian.Uint64(v) > nanos(now)
		return nil
	})
	return seen, err
}

// Sweep deletes up to max entries expired at now (all of them if max ≤ 0)
// in one transaction and returns how many it deleted.
func (s *Store) Sweep(now time.Time, max int) (int, error) {
	n := 0
	limit := binary.BigEndian.AppendUint64(nil, nanos(now)+1)
	err := s.db.Update(func(tx *bolt.Tx) error {
		seen, idx := tx.Bucket(bucketSeen), tx.Bucket(bucketExpiry)
		// Collect first: deleting under a bbolt cursor can skip the
		// next key.
		var expired [][]byte
		c := idx.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0; k, _ = c.Next() {
			if max > 0 && len(expired) >= max {
				break
			}
			expired = append(expired, bytes.Clone(k))
		}
		for _, k := range expired {
			if err := idx.Delete(k); err != nil {
				return err
			}
			key := k[8:]
			// The seen entry may have been claimed again with a later
			// expiry; delete it only if it is this one.
			if v := seen.Get(key); len(v) == 8 && bytes.Equal(v, k[:8]) {
				if err := seen.Delete(key); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("replay: sweeping expired deliveries: %w", err)
	}
	return n, nil
}

// Len returns how many deliveries are stored (expired ones not yet swept
// included).
func (s *Store) Len() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketSeen).Stats().KeyN
		return nil
	})
	return n, err
}
