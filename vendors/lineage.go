package vendors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketRecordsLineage holds the change history of every record:
// vendor 0 resource 0 len(id)(2, BE) id seq(8, BE) → JSON Change. The
// length prefix keeps one record's entries from being a prefix of
// another's.
var bucketRecordsLineage = []byte("records_lineage")

// MaxLineage bounds the changes kept per record; older ones are dropped.
const MaxLineage = 50

// Change sources.
const (
	SourceSync    = "sync"    // a delta sync pass (vendor.sync job)
	SourceWebhook = "webhook" // a refetch after a verified webhook
	SourceOutbox  = "outbox"  // the vendor's answer to an outbound write
)

// Cause says what made a record change: the source, the job that stored
// it and, for webhook refetches, the delivery that asked for it.
type Cause struct {
	// Source is SourceSync, SourceWebhook, SourceOutbox or another short
	// name of the writer.
	Source string `json:"source"`
	// Job is the id of the job that stored the change, if any.
	Job string `json:"job,omitempty"`
	// Delivery is the webhook delivery id (the replay key) that caused the
	// refetch, if any.
	Delivery string `json:"delivery,omitempty"`
}

// Change is one entry of a record's lineage.
type Change struct {
	Cause
	// Seq orders changes (increasing across the store).
	Seq uint64 `json:"seq"`
	// At is when the change was stored (the record's SyncedAt).
	At time.Time `json:"at"`
	// Version is the record's version after the change, and
	// PreviousVersion before it (empty for a new record).
	Version         string `json:"version"`
	PreviousVersion string `json:"previous_version,omitempty"`
	// Deleted reports that the change marked the record deleted.
	Deleted bool `json:"deleted,omitempty"`
}

func lineagePrefix(vendor, resource, id string) []byte {
	k := scope(vendor, resource)
	k = binary.BigEndian.AppendUint16(k, uint16(min(len(id), 0xffff)))
	return append(k, id...)
}

// appendLineage records that rec replaced prev (nil for a new record) in
// tx, and drops the record's oldest changes beyond MaxLineage.
func appendLineage(tx *bolt.Tx, rec Record, prev *Record, cause *Cause) error {
	b := tx.Bucket(bucketRecordsLineage)
	if b == nil {
		return fmt.Errorf("vendors: records: lineage bucket missing")
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	c := Change{Seq: seq, At: rec.SyncedAt, Version: rec.Version, Deleted: rec.Deleted}
	if cause != nil {
		c.Cause = *cause
	}
	if prev != nil {
		c.PreviousVersion = prev.Version
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	prefix := lineagePrefix(rec.Vendor, rec.Resource, rec.ID)
	if err := b.Put(binary.BigEndian.AppendUint64(bytes.Clone(prefix), seq), data); err != nil {
		return err
	}
	var keys [][]byte
	cur := b.Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = cur.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for len(keys) > MaxLineage {
		if err := b.Delete(keys[0]); err != nil {
			return err
		}
		keys = keys[1:]
	}
	return nil
}

// Lineage returns the stored changes of a record, newest first (at most
// MaxLineage).
func (s *Records) Lineage(vendor, resource, id string) ([]Change, error) {
	if err := checkScope(vendor, resource); err != nil {
		return nil, err
	}
	out := []Change{}
	prefix := lineagePrefix(vendor, resource, id)
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketRecordsLineage).Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			var c Change
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("vendors: records: corrupt lineage of %s/%s id %q: %w", vendor, resource, id, err)
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// PutCaused is Put recording cause in the record's lineage when it
// changes. It also returns the record it replaced (nil if none), whose tags
// a caller purges along with the new ones; its sensitive fields are left
// out (not decrypted).
func (s *Records) PutCaused(rec Record, cause Cause) (changed bool, prev *Record, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		changed, prev, err = s.putTx(tx, rec, &cause)
		return err
	})
	return changed, prev, err
}

// MarkDeletedCaused is MarkDeleted recording cause in the record's lineage.
// It returns the record as stored after the call (the zero Record if there
// is none), so a caller can purge its tags.
func (s *Records) MarkDeletedCaused(vendor, resource, id string, at time.Time, cause Cause) (bool, Record, error) {
	return s.markDeleted(vendor, resource, id, at, &cause)
}

// LastDeletions returns, for each record of recs, the Seq of the latest
// change in its kept lineage that marked it deleted (0 if none): what tells
// a record seen again after a deletion, in the same version as before it,
// from that earlier state. One read transaction for all of recs.
func (s *Records) LastDeletions(recs []Record) ([]uint64, error) {
	out := make([]uint64, len(recs))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecordsLineage)
		if b == nil {
			return fmt.Errorf("vendors: records: lineage bucket missing")
		}
		cur := b.Cursor()
		for i, rec := range recs {
			if err := checkScope(rec.Vendor, rec.Resource); err != nil {
				return err
			}
			prefix := lineagePrefix(rec.Vendor, rec.Resource, rec.ID)
			for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
				if len(k) != len(prefix)+8 {
					continue
				}
				var c struct {
					Seq     uint64 `json:"seq"`
					Deleted bool   `json:"deleted"`
				}
				if err := json.Unmarshal(v, &c); err != nil {
					return fmt.Errorf("vendors: records: corrupt lineage of %s/%s id %q: %w", rec.Vendor, rec.Resource, rec.ID, err)
				}
				if c.Deleted {
					out[i] = c.Seq
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
