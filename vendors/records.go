package vendors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/sealed"
)

// Bucket names. All start with "records" so they cannot collide with the
// snapshot or jobs buckets in the shared file.
var (
	bucketRecordsMeta    = []byte("records_meta")       // "format" → one byte
	bucketRecords        = []byte("records")            // vendor 0 resource 0 id → JSON Record
	bucketRecordsUpdated = []byte("records_by_updated") // vendor 0 resource 0 updatedAt(8, BE nanos) id → empty
	bucketRecordsCursors = []byte("records_cursors")    // vendor 0 resource → JSON cursor
	bucketRecordsSync    = []byte("records_sync")       // vendor 0 resource → JSON SyncState
	bucketRecordsSeen    = []byte("records_seen")       // vendor 0 resource 0 id → pass(8) updatedAt(8); see Sync
	// bucketRecordsLineage: see lineage.go.
)

var recordsFormatKey = []byte("format")

// recordsFormat is the on-disk layout version kept in records_meta.
const recordsFormat = 1

// MaxPerPage bounds Records.List's perPage.
const MaxPerPage = 1000

// Records stores normalized vendor records in the shared bbolt file: the
// last good version of every record (never removed: a deleted item is
// marked), an (UpdatedAt, ID) index for the read-model API, and per
// vendor/resource sync cursors and sync progress. It is safe for concurrent
// use; bbolt serialises writers.
type Records struct {
	db  *bolt.DB
	now func() time.Time

	// keyring and sensitive seal sensitive fields; see UseSealing.
	keyring   *sealed.Keyring
	sensitive SensitiveFields

	// onChange is told of committed changes; see OnChange.
	onChange atomic.Pointer[ChangeFunc]
}

// NewRecords creates (if needed) the records buckets in db and returns the
// store. db is shared (snapshot.Store.DB()); Records never closes it.
func NewRecords(db *bolt.DB) (*Records, error) {
	if db == nil {
		return nil, errors.New("vendors: NewRecords: nil *bbolt.DB")
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRecordsMeta, bucketRecords, bucketRecordsUpdated,
			bucketRecordsCursors, bucketRecordsSync, bucketRecordsSeen, bucketRecordsLineage} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %q: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketRecordsMeta)
		switch v := meta.Get(recordsFormatKey); {
		case v == nil:
			return meta.Put(recordsFormatKey, []byte{recordsFormat})
		case len(v) != 1 || v[0] != recordsFormat:
			return fmt.Errorf("unsupported records format %x (this build reads %d)", v, recordsFormat)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vendors: opening records in %s: %w", db.Path(), err)
	}
	return &Records{db: db, now: time.Now}, nil
}

// scope is the key prefix of one vendor's resource.
func scope(vendor, resource string) []byte {
	return []byte(vendor + "\x00" + resource + "\x00")
}

func checkScope(vendor, resource string) error {
	if vendor == "" || resource == "" || strings.ContainsRune(vendor, 0) || strings.ContainsRune(resource, 0) {
		return fmt.Errorf("vendors: records: vendor %q, resource %q: %w", vendor, resource, ErrInvalidRequest)
	}
	return nil
}

// timeBits maps t to a uint64 that sorts like t; times before 1970 map to 0.
func timeBits(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}

func indexKey(vendor, resource string, updated time.Time, id string) []byte {
	k := scope(vendor, resource)
	k = binary.BigEndian.AppendUint64(k, timeBits(updated))
	return append(k, id...)
}

func recordKey(vendor, resource, id string) []byte {
	return append(scope(vendor, resource), id...)
}

// Put stores rec unless the same version (with the same Deleted flag) is
// already stored, or the stored record was updated later than rec (a stale
// write, e.g. a sync page fetched before a webhook refetch but stored after
// it; a stored deletion marker never counts as later). It reports whether the
// record changed. A zero SyncedAt is set to now.
func (s *Records) Put(rec Record) (changed bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		changed, _, err = s.putTx(tx, rec, nil)
		return err
	})
	return changed, err
}

// PutBatch is Put for many records in one transaction (one fsync); it
// reports per record whether it changed. On error nothing is stored.
func (s *Records) PutBatch(recs []Record) ([]bool, error) {
	changed := make([]bool, len(recs))
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, r := range recs {
			c, _, err := s.putTx(tx, r, nil)
			if err != nil {
				return err
			}
			changed[i] = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

// putTx stores rec in tx and returns the record it replaced (nil if none).
// A change is recorded in the record's lineage with cause (nil: an unknown
// cause).
func (s *Records) putTx(tx *bolt.Tx, rec Record, cause *Cause) (bool, *Record, error) {
	if err := checkScope(rec.Vendor, rec.Resource); err != nil {
		return false, nil, err
	}
	if rec.ID == "" {
		return false, nil, fmt.Errorf("vendors: records: %s/%s: empty id: %w", rec.Vendor, rec.Resource, ErrInvalidRequest)
	}
	b, idx := tx.Bucket(bucketRecords), tx.Bucket(bucketRecordsUpdated)
	key := recordKey(rec.Vendor, rec.Resource, rec.ID)
	var prev *Record
	if old := b.Get(key); old != nil {
		// The replaced record's sealed values stay sealed: callers use
		// its version and tags only, and a key gone must not block writes.
		st, err := decodeStored(old)
		if err != nil {
			return false, nil, fmt.Errorf("%s/%s id %q: %w", rec.Vendor, rec.Resource, rec.ID, err)
		}
		p := st.Record
		prev = &p
		if p.Version == rec.Version && p.Deleted == rec.Deleted {
			return false, prev, nil
		}
		if !p.Deleted && !rec.UpdatedAt.IsZero() && rec.UpdatedAt.Before(p.UpdatedAt) {
			return false, prev, nil
		}
		if err := idx.Delete(indexKey(p.Vendor, p.Resource, p.UpdatedAt, p.ID)); err != nil {
			return false, nil, err
		}
	}
	if rec.SyncedAt.IsZero() {
		rec.SyncedAt = s.now().UTC()
	}
	rec.UpdatedAt = rec.UpdatedAt.UTC()
	data, err := s.encode(rec)
	if err != nil {
		return false, nil, fmt.Errorf("vendors: records: encoding %s/%s id %q: %w", rec.Vendor, rec.Resource, rec.ID, err)
	}
	if err := b.Put(key, data); err != nil {
		return false, nil, err
	}
	if err := idx.Put(indexKey(rec.Vendor, rec.Resource, rec.UpdatedAt, rec.ID), []byte{}); err != nil {
		return false, nil, err
	}
	if err := appendLineage(tx, rec, prev, cause); err != nil {
		return false, nil, fmt.Errorf("vendors: records: lineage of %s/%s id %q: %w", rec.Vendor, rec.Resource, rec.ID, err)
	}
	if fn := s.onChange.Load(); fn != nil {
		c := Cause{}
		if cause != nil {
			c = *cause
		}
		tx.OnCommit(func() { (*fn)(rec, c) })
	}
	return true, prev, nil
}

// Get returns the stored record, deleted or not; a missing one is an error
// matching ErrNotFound.
func (s *Records) Get(vendor, resource, id string) (Record, error) {
	if err := checkScope(vendor, resource); err != nil {
		return Record{}, err
	}
	var rec Record
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketRecords).Get(recordKey(vendor, resource, id))
		if data == nil {
			return fmt.Errorf("vendors: records: %s/%s id %q: %w", vendor, resource, id, ErrNotFound)
		}
		var err error
		rec, err = s.decode(data)
		return err
	})
	return rec, err
}

// List returns page (1-based) of perPage (1..MaxPerPage) records of a
// vendor's resource updated at or after updatedSince (all when zero),
// ordered by (UpdatedAt, ID). The bound is inclusive so that a reader
// resuming from the last UpdatedAt it saw misses nothing (it may see that
// record again). Deleted records are included, marked, so readers learn of
// deletions.
func (s *Records) List(vendor, resource string, updatedSince time.Time, page, perPage int) (Page, error) {
	if err := checkScope(vendor, resource); err != nil {
		return Page{}, err
	}
	if page < 1 || perPage < 1 || perPage > MaxPerPage {
		return Page{}, fmt.Errorf("vendors: records: list page %d per_page %d (want page ≥ 1, per_page 1..%d): %w",
			page, perPage, MaxPerPage, ErrInvalidRequest)
	}
	out := Page{Records: []Record{}}
	prefix := scope(vendor, resource)
	err := s.db.View(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		c := tx.Bucket(bucketRecordsUpdated).Cursor()
		skip := (page - 1) * perPage
		start := binary.BigEndian.AppendUint64(bytes.Clone(prefix), timeBits(updatedSince))
		for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if skip > 0 {
				skip--
				continue
			}
			if len(out.Records) == perPage {
				out.HasMore, out.NextPage = true, page+1
				return nil
			}
			id := k[len(prefix)+8:]
			data := recs.Get(append(bytes.Clone(prefix), id...))
			if data == nil {
				return fmt.Errorf("vendors: records: index entry for %s/%s id %q has no record", vendor, resource, id)
			}
			rec, err := s.decode(data)
			if err != nil {
				return err
			}
			out.Records = append(out.Records, rec)
		}
		return nil
	})
	if err != nil {
		return Page{}, err
	}
	return out, nil
}

// MarkDeleted marks a stored record deleted (the item is gone at the
// vendor), keeping its last good fields, and moves its UpdatedAt to at (if
// later) so read-model deltas report it. It reports whether anything
// changed; a missing or already deleted record is left alone.
func (s *Records) MarkDeleted(vendor, resource, id string, at time.Time) (bool, error) {
	changed, _, err := s.markDeleted(vendor, resource, id, at, nil)
	return changed, err
}

func (s *Records) markDeleted(vendor, resource, id string, at time.Time, cause *Cause) (bool, Record, error) {
	if err := checkScope(vendor, resource); err != nil {
		return false, Record{}, err
	}
	changed := false
	var stored Record
	err := s.db.Update(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketRecords).Get(recordKey(vendor, resource, id))
		if data == nil {
			return nil
		}
		rec, err := s.decode(data)
		if err != nil {
			return err
		}
		stored = rec
		if rec.Deleted {
			return nil
		}
		rec.Deleted = true
		if at.After(rec.UpdatedAt) {
			rec.UpdatedAt = at
		}
		rec.SyncedAt = s.now().UTC()
		changed, _, err = s.putTx(tx, rec, cause)
		if changed {
			stored = rec
		}
		return err
	})
	return changed, stored, err
}

// cursorValue is the stored form of a sync cursor.
type cursorValue struct {
	Cursor time.Time `json:"cursor"`
}

// Cursor returns the high-water mark of the last completed sync pass of a
// vendor's resource: the zero time if none has completed (the next pass is a
// backfill).
func (s *Records) Cursor(vendor, resource string) (time.Time, error) {
	if err := checkScope(vendor, resource); err != nil {
		return time.Time{}, err
	}
	var cv cursorValue
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketRecordsCursors).Get(scope(vendor, resource))
		if data == nil {
			return nil
		}
		return json.Unmarshal(data, &cv)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("vendors: records: cursor of %s/%s: %w", vendor, resource, err)
	}
	return cv.Cursor, nil
}

// SetCursor durably sets the cursor of a vendor's resource; the zero time
// clears it (the next pass is a backfill).
func (s *Records) SetCursor(vendor, resource string, t time.Time) error {
	if err := checkScope(vendor, resource); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecordsCursors)
		if t.IsZero() {
			return b.Delete(scope(vendor, resource))
		}
		data, err := json.Marshal(cursorValue{Cursor: t.UTC()})
		if err != nil {
			return err
		}
		return b.Put(scope(vendor, resource), data)
	})
	if err != nil {
		return fmt.Errorf("vendors: records: setting cursor of %s/%s: %w", vendor, resource, err)
	}
	return nil
}

// LoadSyncState returns the saved progress of a vendor's resource sync (the
// zero SyncState if none), for callers that keep it here rather than in a
// job's context; see SyncOptions.Save.
func (s *Records) LoadSyncState(vendor, resource string) (SyncState, error) {
	if err := checkScope(vendor, resource); err != nil {
		return SyncState{}, err
	}
	var st SyncState
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketRecordsSync).Get(scope(vendor, resource))
		if data == nil {
			return nil
		}
		return json.Unmarshal(data, &st)
	})
	if err != nil {
		return SyncState{}, fmt.Errorf("vendors: records: sync state of %s/%s: %w", vendor, resource, err)
	}
	return st, nil
}

// SaveSyncState durably stores the progress of a vendor's resource sync.
func (s *Records) SaveSyncState(vendor, resource string, st SyncState) error {
	if err := checkScope(vendor, resource); err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecordsSync).Put(scope(vendor, resource), data)
	})
	if err != nil {
		return fmt.Errorf("vendors: records: saving sync state of %s/%s: %w", vendor, resource, err)
	}
	return nil
}
