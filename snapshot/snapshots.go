package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Record is one snapshot: the caller's encoded response plus what is needed
// to decide whether a purge made it stale.
type Record struct {
	// Key identifies the snapshot (the cache key).
	Key string
	// StoredAt is when the response was produced; it orders eviction and
	// is compared with purge marks. Zero means "now" at Put.
	StoredAt time.Time
	// Tags are every tag staleness is checked against, including implicit
	// ones such as "url:https://h/p" and "host:h".
	Tags []string
	// Value is opaque to this package (the caller's encoded, already
	// compressed response).
	Value []byte
}

// recordVersion is the first byte of every encoded record.
const recordVersion = 1

// headerSize is the version byte plus the 8-byte StoredAt.
const headerSize = 1 + 8

// maxKeyLen keeps the time-index key (8 bytes + key) within bbolt's limit.
const maxKeyLen = bolt.MaxKeySize - 8

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("corrupt snapshot record")

// encodeRecord encodes rec in the versioned layout:
//
//	byte     version (1)
//	[8]byte  StoredAt, unix nanoseconds, big-endian int64
//	uvarint  number of tags, then per tag: uvarint length, bytes
//	uvarint  value length, then the value
//
// There are no trailing bytes; decodeRecord rejects any.
func encodeRecord(storedAt int64, tags []string, value []byte) []byte {
	n := headerSize + binary.MaxVarintLen64*(2+len(tags)) + len(value)
	for _, t := range tags {
		n += len(t)
	}
	b := make([]byte, headerSize, n)
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(storedAt))
	b = binary.AppendUvarint(b, uint64(len(tags)))
	for _, t := range tags {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	b = binary.AppendUvarint(b, uint64(len(value)))
	b = append(b, value...)
	return b
}

// decodeStoredAt reads only the header of an encoded record.
func decodeStoredAt(b []byte) (int64, error) {
	if len(b) < headerSize {
		return 0, fmt.Errorf("%w: %d bytes is shorter than the header", errCorrupt, len(b))
	}
	if b[0] != recordVersion {
		return 0, fmt.Errorf("%w: unknown version %d", errCorrupt, b[0])
	}
	return int64(binary.BigEndian.Uint64(b[1:9])), nil
}

// decodeRecord decodes b into a Record whose strings and bytes are copies,
// so b may point into a bbolt transaction.
func decodeRecord(key string, b []byte) (Record, error) {
	at, err := decodeStoredAt(b)
	if err != nil {
		return Record{}, err
	}
	rest := b[headerSize:]
	next := func(what string) ([]byte, error) {
		n, w := binary.Uvarint(rest)
		if w <= 0 {
			return nil, fmt.Errorf("%w: bad %s length", errCorrupt, what)
		}
		rest = rest[w:]
		if n > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: %s length %d exceeds the %d bytes left", errCorrupt, what, n, len(rest))
		}
		v := rest[:n]
		rest = rest[n:]
		return v, nil
	}
	nTags, w := binary.Uvarint(rest)
	if w <= 0 {
		return Record{}, fmt.Errorf("%w: bad tag count", errCorrupt)
	}
	rest = rest[w:]
	// Every tag takes at least one byte (its length), which bounds the
	// allocation below by the record size.
	if nTags > uint64(len(rest)) {
		return Record{}, fmt.Errorf("%w: tag count %d exceeds the %d bytes left", errCorrupt, nTags, len(rest))
	}
	rec := Record{Key: key, StoredAt: time.Unix(0, at)}
	if nTags > 0 {
		rec.Tags = make([]string, nTags)
		for i := range rec.Tags {
			t, err := next("tag")
			if err != nil {
				return Record{}, err
			}
			rec.Tags[i] = string(t)
		}
	}
	v, err := next("value")
	if err != nil {
		return Record{}, err
	}
	if len(rest) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(rest))
	}
	rec.Value = append([]byte(nil), v...)
	return rec, nil
}

// Get returns the snapshot for key. A queued record that has not been
// committed yet wins over the one on disk. A record that cannot be decoded
// is an error for that key (found is then true).
func (s *Store) Get(key string) (rec Record, found bool, err error) {
	s.mu.RLock()
	p, ok := s.pending[key]
	if !ok {
		p, ok = s.inflight[key]
	}
	closed := s.closed
	s.mu.RUnlock()
	if ok {
		rec, err = decodeRecord(key, p.enc)
		if err != nil {
			return Record{}, true, fmt.Errorf("snapshot: decoding queued %q: %w", key, err)
		}
		return rec, true, nil
	}
	if closed {
		return Record{}, false, ErrClosed
	}
	if s.damaged.Load() != nil {
		return Record{}, false, nil
	}
	err = s.guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketSnapshots).Get([]byte(key))
			if v == nil {
				return nil
			}
			found = true
			var err error
			rec, err = decodeRecord(key, v)
			return err
		})
	})
	if errors.Is(err, ErrDamaged) {
		return Record{}, false, err
	}
	if err != nil {
		return Record{}, found, fmt.Errorf("snapshot: reading %q from %s: %w", key, s.path, err)
	}
	return rec, found, nil
}

// Delete removes the snapshot for key, queued or stored. Deleting a missing
// key is not an error.
func (s *Store) Delete(key string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if p, ok := s.pending[key]; ok {
		delete(s.pending, key)
		s.pendingN.Add(-1)
		s.queuedBytes -= int64(len(p.enc))
	}
	s.mu.Unlock()
	if key == "" || len(key) > maxKeyLen {
		return nil
	}

	if s.damaged.Load() != nil {
		return nil
	}
	var t totals
	err := s.guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			t = readTotals(tx)
			deleted, err := deleteRecordTx(tx, []byte(key), &t)
			if err != nil || !deleted {
				return err
			}
			return putTotals(tx, t.count, t.bytes)
		})
	})
	if err != nil {
		return fmt.Errorf("snapshot: deleting %q from %s: %w", key, s.path, err)
	}
	s.publishTotals(t)
	return nil
}

// totals are the persisted snapshot count and byte sum.
type totals struct{ count, bytes int64 }

// readTotals reads the totals inside a transaction.
func readTotals(tx *bolt.Tx) totals {
	meta := tx.Bucket(bucketMeta)
	c, _ := getUint64(meta, metaCount)
	b, _ := getUint64(meta, metaBytes)
	return totals{count: int64(c), bytes: int64(b)}
}

// putTotals writes the totals inside a transaction, clamping at zero (a
// record written behind this package's back must not make them negative).
func putTotals(tx *bolt.Tx, count, bytes int64) error {
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(metaCount, uint64Bytes(uint64(max(count, 0)))); err != nil {
		return err
	}
	return meta.Put(metaBytes, uint64Bytes(uint64(max(bytes, 0))))
}

// publishTotals makes committed totals visible to Stats. Callers hold
// writeMu, so totals are published in commit order.
func (s *Store) publishTotals(t totals) {
	s.count.Store(max(t.count, 0))
	s.bytes.Store(max(t.bytes, 0))
}

// putRecordTx stores an encoded record, replacing (and un-indexing) any
// previous one for the key, and adjusts t.
func putRecordTx(tx *bolt.Tx, key []byte, storedAt int64, enc []byte, t *totals) error {
	if _, err := deleteRecordTx(tx, key, t); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSnapshots).Put(key, enc); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSnapshotsTime).Put(timeKey(storedAt, key), []byte{}); err != nil {
		return err
	}
	t.count++
	t.bytes += int64(len(enc))
	return nil
}

// deleteRecordTx removes the record for key and its time-index entry and
// adjusts t. If the stored record is unreadable its index entry cannot be
// found; the evictor removes such orphans when it reaches them.
func deleteRecordTx(tx *bolt.Tx, key []byte, t *totals) (bool, error) {
	snaps := tx.Bucket(bucketSnapshots)
	old := snaps.Get(key)
	if old == nil {
		return false, nil
	}
	size := int64(len(old))
	if at, err := decodeStoredAt(old); err == nil {
		if err := tx.Bucket(bucketSnapshotsTime).Delete(timeKey(at, key)); err != nil {
			return false, err
		}
	}
	if err := snaps.Delete(key); err != nil {
		return false, err
	}
	t.count--
	t.bytes -= size
	return true, nil
}

// timeKey is the snapshots_by_time key: StoredAt nanos (big-endian, so keys
// sort oldest first for non-negative times) followed by the record key.
func timeKey(storedAt int64, key []byte) []byte {
	k := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(storedAt))
	copy(k[8:], key)
	return k
}

// uint64Bytes encodes v as 8 big-endian bytes.
func uint64Bytes(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// getUint64 reads an 8-byte big-endian value; ok is false if the key is
// missing or malformed.
func getUint64(b *bolt.Bucket, key []byte) (uint64, bool) {
	v := b.Get(key)
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// DeleteTagged removes every snapshot carrying tag, queued or stored, and
// returns how many stored ones it deleted. It scans every stored snapshot
// (an administrative operation, not for the request path); records that do
// not decode are left to eviction.
func (s *Store) DeleteTagged(tag string) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	for key, p := range s.pending {
		if rec, err := decodeRecord(key, p.enc); err == nil && slices.Contains(rec.Tags, tag) {
			delete(s.pending, key)
			s.pendingN.Add(-1)
			s.queuedBytes -= int64(len(p.enc))
		}
	}
	s.mu.Unlock()

	var t totals
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		t = readTotals(tx)
		var keys [][]byte
		err := tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
			if rec, err := decodeRecord(string(k), v); err == nil && slices.Contains(rec.Tags, tag) {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			deleted, err := deleteRecordTx(tx, k, &t)
			if err != nil {
				return err
			}
			if deleted {
				n++
			}
		}
		return putTotals(tx, t.count, t.bytes)
	})
	if err != nil {
		return 0, fmt.Errorf("snapshot: deleting snapshots tagged %q from %s: %w", tag, s.path, err)
	}
	s.publishTotals(t)
	return n, nil
}
