package vendors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/sealed"
)

// Sensitive fields are encrypted at rest: Records seals each value of a
// field its resource lists as sensitive (Resource.Sensitive) with the
// current key of a sealed.Keyring before the record reaches bbolt, and
// opens it again when the record is read. The stored JSON keeps those
// values apart from the clear fields:
//
//	{"vendor":…, "fields":{"title":"Teapot"}, "sealed":{"email":"enc:v1:k2:…"}}
//
// Each value is bound to its vendor, resource, record id and field name, so
// a sealed value copied into another record does not open. Lineage holds no
// field values (versions, causes and times only), so there is nothing to
// seal there.

// storedRecord is the form of a Record in bbolt: the clear fields, and the
// sealed values of its sensitive fields by field name.
type storedRecord struct {
	Record
	Sealed map[string]string `json:"sealed,omitempty"`
}

// SensitiveFields maps vendor → resource → the names of its sensitive
// fields.
type SensitiveFields map[string]map[string][]string

// Any reports whether any resource has a sensitive field.
func (f SensitiveFields) Any() bool {
	for _, res := range f {
		for _, names := range res {
			if len(names) > 0 {
				return true
			}
		}
	}
	return false
}

// ErrNoKeys is returned by UseSealing when fields are sensitive but there is
// no keyring to seal them with.
var ErrNoKeys = errors.New("vendors: records: sensitive fields need an encryption key")

// UseSealing makes s seal the sensitive fields on every write and open
// sealed values (of any field, with any key of kr) on every read. Call it
// before the store is used. kr may be nil only when no field is sensitive;
// values sealed earlier then fail to open with an error naming their key.
func (s *Records) UseSealing(kr *sealed.Keyring, sensitive SensitiveFields) error {
	if kr == nil && sensitive.Any() {
		return ErrNoKeys
	}
	s.keyring, s.sensitive = kr, sensitive
	return nil
}

// sealContext binds a sealed value to its place.
func sealContext(vendor, resource, id, field string) string {
	return vendor + "\x00" + resource + "\x00" + id + "\x00" + field
}

// encode returns the stored form of rec, its sensitive fields sealed with
// the current key.
func (s *Records) encode(rec Record) ([]byte, error) {
	names := s.sensitive[rec.Vendor][rec.Resource]
	st := storedRecord{Record: rec}
	for _, name := range names {
		v, ok := rec.Fields[name]
		if !ok {
			continue
		}
		if st.Sealed == nil {
			st.Sealed = make(map[string]string, len(names))
			st.Fields = maps.Clone(rec.Fields)
		}
		plain, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encoding sensitive field %q: %w", name, err)
		}
		if s.keyring == nil {
			return nil, ErrNoKeys
		}
		sv, err := s.keyring.Seal(plain, sealContext(rec.Vendor, rec.Resource, rec.ID, name))
		if err != nil {
			return nil, err
		}
		st.Sealed[name] = sv
		delete(st.Fields, name)
	}
	return json.Marshal(st)
}

// decodeStored decodes a stored record without opening its sealed values.
func decodeStored(data []byte) (storedRecord, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var r storedRecord
	if err := dec.Decode(&r); err != nil {
		return storedRecord{}, fmt.Errorf("vendors: records: corrupt record: %w", err)
	}
	return r, nil
}

// open returns the record with its sealed values opened into Fields. A
// value whose key is not configured, or that fails authentication, is an
// error naming the record, the field and the key; never a wrong value.
func (s *Records) open(st storedRecord) (Record, error) {
	rec := st.Record
	if len(st.Sealed) == 0 {
		return rec, nil
	}
	fields := make(map[string]any, len(rec.Fields)+len(st.Sealed))
	maps.Copy(fields, rec.Fields)
	for _, name := range slices.Sorted(maps.Keys(st.Sealed)) {
		plain, err := s.keyring.Open(st.Sealed[name], sealContext(rec.Vendor, rec.Resource, rec.ID, name))
		if err != nil {
			return Record{}, fmt.Errorf("vendors: records: %s/%s id %q: sensitive field %q: %w", rec.Vendor, rec.Resource, rec.ID, name, err)
		}
		v, err := decodeJSON(plain)
		if err != nil {
			return Record{}, fmt.Errorf("vendors: records: %s/%s id %q: sensitive field %q: %w", rec.Vendor, rec.Resource, rec.ID, name, err)
		}
		fields[name] = v
	}
	rec.Fields = fields
	return rec, nil
}

// decode decodes a stored record and opens its sealed values.
func (s *Records) decode(data []byte) (Record, error) {
	st, err := decodeStored(data)
	if err != nil {
		return Record{}, err
	}
	return s.open(st)
}

// needsReseal reports whether a stored record differs from what encode
// would store now: a value sealed with another key than the current one, a
// sensitive field stored in clear, or a sealed field no longer sensitive.
func (s *Records) needsReseal(st storedRecord) bool {
	names := s.sensitive[st.Vendor][st.Resource]
	for name, sv := range st.Sealed {
		if !slices.Contains(names, name) || s.keyring == nil || s.keyring.NeedsReseal(sv) {
			return true
		}
	}
	for _, name := range names {
		if _, clear := st.Fields[name]; clear {
			return true
		}
	}
	return false
}

// ResealReport is the result of Records.Reseal.
type ResealReport struct {
	// Scanned counts the stored records; Resealed those written again.
	Scanned  int `json:"scanned"`
	Resealed int `json:"resealed"`
	// Failed counts records that could not be opened (their key is not
	// configured, or they fail authentication); Errors has the first few
	// errors, naming record, field and key (never a value).
	Failed int      `json:"failed"`
	Errors []string `json:"errors,omitempty"`
}

// resealChunk is how many records one Reseal transaction rewrites.
const resealChunk = 256

// maxResealErrors bounds ResealReport.Errors.
const maxResealErrors = 10

// Reseal rewrites every stored record whose sealed values are not all
// under the current key, or whose sensitive fields changed (a field made
// sensitive is sealed, one no longer sensitive is stored in clear), in
// transactions of resealChunk records. Versions, times and lineage are
// unchanged. Records that cannot be opened are counted and left as they
// are; the returned error is only a storage error.
func (s *Records) Reseal() (ResealReport, error) {
	var rep ResealReport
	var after []byte
	for {
		var last []byte
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			c := b.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			type put struct{ k, v []byte }
			var puts []put
			for ; k != nil && n < resealChunk; k, v = c.Next() {
				n++
				last = bytes.Clone(k)
				rep.Scanned++
				st, err := decodeStored(v)
				if err == nil && !s.needsReseal(st) {
					continue
				}
				var rec Record
				if err == nil {
					rec, err = s.open(st)
				}
				if err != nil {
					rep.Failed++
					if len(rep.Errors) < maxResealErrors {
						rep.Errors = append(rep.Errors, err.Error())
					}
					continue
				}
				data, err := s.encode(rec)
				if err != nil {
					return fmt.Errorf("vendors: records: resealing %s/%s id %q: %w", rec.Vendor, rec.Resource, rec.ID, err)
				}
				puts = append(puts, put{bytes.Clone(k), data})
			}
			for _, p := range puts {
				if err := b.Put(p.k, p.v); err != nil {
					return err
				}
			}
			rep.Resealed += len(puts)
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("vendors: records: resealing: %w", err)
		}
		if n < resealChunk {
			sort.Strings(rep.Errors)
			return rep, nil
		}
		after = last
	}
}
