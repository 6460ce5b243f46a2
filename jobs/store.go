package jobs

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names. All start with "jobs_" so that they cannot collide with the
// snapshot store's buckets in the shared file.
var (
	bucketMeta     = []byte("jobs_meta")     // metaFormat → format version
	bucketRecords  = []byte("jobs_records")  // id (8-byte BE) → JSON record; its sequence numbers jobs
	bucketKeys     = []byte("jobs_keys")     // kind 0 key → id
	bucketReady    = []byte("jobs_ready")    // kind 0 runAt(8) id(8) → empty; unblocked ready jobs
	bucketRunning  = []byte("jobs_running")  // id → owner(8) leaseUntil(8); its sequence numbers claims
	bucketEntities = []byte("jobs_entities") // kind 0 entity 0 seq(8) → id; ready and running jobs with an entity
	bucketStates   = []byte("jobs_states")   // kind 0 state 0 id → empty
	bucketDone     = []byte("jobs_done")     // finishedAt(8) id(8) → empty; done jobs by age
	bucketCounts   = []byte("jobs_counts")   // kind 0 state → 8-byte BE count
	bucketIDs      = []byte("jobs_ids")      // public id (16 random bytes) → id(8); see Job.ID
)

// allBuckets is every bucket Open creates.
var allBuckets = [][]byte{bucketMeta, bucketRecords, bucketKeys, bucketReady, bucketRunning,
	bucketEntities, bucketStates, bucketDone, bucketCounts, bucketIDs}

var metaFormat = []byte("format")

// formatVersion is the on-disk layout version kept in jobs_meta.
const formatVersion = 1

// txBuckets holds the buckets of one transaction.
type txBuckets struct {
	tx                                                              *bolt.Tx
	records, keys, ready, running, entities, states, done, cnt, ids *bolt.Bucket
}

// buckets returns the package's buckets in tx. Open created them, so they
// exist in every transaction after it.
func buckets(tx *bolt.Tx) (*txBuckets, error) {
	b := &txBuckets{
		tx:       tx,
		records:  tx.Bucket(bucketRecords),
		keys:     tx.Bucket(bucketKeys),
		ready:    tx.Bucket(bucketReady),
		running:  tx.Bucket(bucketRunning),
		entities: tx.Bucket(bucketEntities),
		states:   tx.Bucket(bucketStates),
		done:     tx.Bucket(bucketDone),
		cnt:      tx.Bucket(bucketCounts),
		ids:      tx.Bucket(bucketIDs),
	}
	if b.records == nil || b.keys == nil || b.ready == nil || b.running == nil ||
		b.entities == nil || b.states == nil || b.done == nil || b.cnt == nil || b.ids == nil {
		return nil, fmt.Errorf("jobs: buckets missing from the database (was it opened with jobs.Open?)")
	}
	return b, nil
}

// u64 encodes v big-endian.
func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// timeBits maps t to a uint64 that sorts like t; times before 1970 map to 0.
func timeBits(t time.Time) uint64 {
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}

// join concatenates parts into a fresh slice.
func join(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// sep separates the parts of composite index keys; kinds, keys and entities
// cannot contain it (see validName).
var sep = []byte{0}

// Index key builders; see the bucket list for each layout. Times are
// timeBits, ids 8-byte big-endian, so byte order is time and acceptance
// order.

func keyKey(kind, key string) []byte { return join([]byte(kind), sep, []byte(key)) }
func readyPrefix(kind string) []byte { return join([]byte(kind), sep) }
func readyKey(kind string, runAt time.Time, id uint64) []byte {
	return join([]byte(kind), sep, u64(timeBits(runAt)), u64(id))
}
func entityPrefix(kind, entity string) []byte {
	return join([]byte(kind), sep, []byte(entity), sep)
}
func entityKey(kind, entity string, seq uint64) []byte {
	return join(entityPrefix(kind, entity), u64(seq))
}
func statePrefix(kind string, st State) []byte { return join([]byte(kind), sep, []byte(st), sep) }
func stateKey(kind string, st State, id uint64) []byte {
	return join(statePrefix(kind, st), u64(id))
}
func countKey(kind string, st State) []byte  { return join([]byte(kind), sep, []byte(st)) }
func doneKey(at time.Time, id uint64) []byte { return join(u64(timeBits(at)), u64(id)) }

// splitReadyKey returns the run-at bits and id of a ready-index key under a
// known kind prefix.
func splitReadyKey(k []byte, prefixLen int) (runAt, id uint64, ok bool) {
	if len(k) != prefixLen+16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[prefixLen:]), binary.BigEndian.Uint64(k[prefixLen+8:]), true
}

// lastID returns the trailing 8-byte id of an index key.
func lastID(k []byte) (uint64, bool) {
	if len(k) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// lookup resolves a public job ID (Job.ID) to the record's sequence number.
// Errors wrap ErrInvalidID (malformed) or ErrNotFound.
func (b *txBuckets) lookup(s string) (uint64, error) {
	if pub, ok := randomID(s); ok {
		v := b.ids.Get(pub)
		if len(v) != 8 {
			return 0, fmt.Errorf("%w: %s", ErrNotFound, s)
		}
		return uint64FromBytes(v), nil
	}
	// A job accepted before IDs were random: its ID is its sequence number.
	n, err := parseID(s)
	if err != nil {
		return 0, err
	}
	if r, err := b.load(n); err == nil && r != nil && r.ID != s {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, s)
	}
	return n, nil
}

// load reads and decodes the record with the given id; nil, nil when absent.
func (b *txBuckets) load(id uint64) (*record, error) {
	v := b.records.Get(u64(id))
	if v == nil {
		return nil, nil
	}
	return decodeRecord(id, v)
}

// decodeRecord decodes a stored record, never panicking on bad input.
func decodeRecord(id uint64, v []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("%w: job %s: %v", ErrCorrupt, formatID(id), err)
	}
	if !r.idMatches(id) || r.Kind == "" {
		return nil, fmt.Errorf("%w: job %s: id %q, kind %q", ErrCorrupt, formatID(id), r.ID, r.Kind)
	}
	if _, err := ParseState(string(r.State)); err != nil {
		return nil, fmt.Errorf("%w: job %s: %v", ErrCorrupt, formatID(id), err)
	}
	r.id = id
	return &r, nil
}

// save replaces old with new (either may be nil: nil old creates, nil new
// deletes) and brings every index and counter in line, all in b's
// transaction. When new leaves its entity queue (or old left it), the next
// job of that queue is unblocked.
func (b *txBuckets) save(old, new *record) error {
	if old != nil {
		if err := b.unindex(old); err != nil {
			return err
		}
	}
	if new == nil {
		if err := b.records.Delete(u64(old.id)); err != nil {
			return err
		}
		if pub, ok := randomID(old.ID); ok {
			if err := b.ids.Delete(pub); err != nil {
				return err
			}
		}
	} else {
		v, err := json.Marshal(new)
		if err != nil {
			return fmt.Errorf("encoding job %s: %w", new.ID, err)
		}
		if err := b.records.Put(u64(new.id), v); err != nil {
			return err
		}
		if err := b.index(new); err != nil {
			return err
		}
	}
	if old != nil && inEntityQueue(old) && (new == nil || !inEntityQueue(new) || new.EntitySeq != old.EntitySeq) {
		return b.promote(old.Kind, old.Entity)
	}
	return nil
}

// inEntityQueue reports whether r occupies a place in its entity queue.
func inEntityQueue(r *record) bool {
	return r.Entity != "" && (r.State == StateReady || r.State == StateRunning)
}

// index adds r's index entries and counts it.
func (b *txBuckets) index(r *record) error {
	id := u64(r.id)
	if r.Key != "" {
		if err := b.keys.Put(keyKey(r.Kind, r.Key), id); err != nil {
			return err
		}
	}
	if r.State == StateReady && !r.Blocked {
		if err := b.ready.Put(readyKey(r.Kind, r.RunAt, r.id), nil); err != nil {
			return err
		}
	}
	if r.State == StateRunning {
		if err := b.running.Put(id, join(u64(r.Owner), u64(timeBits(r.LeaseUntil)))); err != nil {
			return err
		}
	}
	if inEntityQueue(r) {
		if err := b.entities.Put(entityKey(r.Kind, r.Entity, r.EntitySeq), id); err != nil {
			return err
		}
	}
	if r.State == StateDone {
		if err := b.done.Put(doneKey(r.FinishedAt, r.id), nil); err != nil {
			return err
		}
	}
	if err := b.states.Put(stateKey(r.Kind, r.State, r.id), nil); err != nil {
		return err
	}
	return b.count(r.Kind, r.State, 1)
}

// unindex removes r's index entries and uncounts it.
func (b *txBuckets) unindex(r *record) error {
	id := u64(r.id)
	if r.Key != "" {
		k := keyKey(r.Kind, r.Key)
		if bytes.Equal(b.keys.Get(k), id) {
			if err := b.keys.Delete(k); err != nil {
				return err
			}
		}
	}
	if err := b.ready.Delete(readyKey(r.Kind, r.RunAt, r.id)); err != nil {
		return err
	}
	if err := b.running.Delete(id); err != nil {
		return err
	}
	if r.Entity != "" {
		if err := b.entities.Delete(entityKey(r.Kind, r.Entity, r.EntitySeq)); err != nil {
			return err
		}
	}
	if r.State == StateDone {
		if err := b.done.Delete(doneKey(r.FinishedAt, r.id)); err != nil {
			return err
		}
	}
	if err := b.states.Delete(stateKey(r.Kind, r.State, r.id)); err != nil {
		return err
	}
	return b.count(r.Kind, r.State, -1)
}

// count adds delta to the kind × state counter.
func (b *txBuckets) count(kind string, st State, delta int64) error {
	k := countKey(kind, st)
	var n int64
	if v := b.cnt.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n = max(n+delta, 0)
	return b.cnt.Put(k, u64(uint64(n)))
}

// entityHead returns the id of the first job in the kind × entity queue.
func (b *txBuckets) entityHead(kind, entity string) (uint64, bool) {
	prefix := entityPrefix(kind, entity)
	k, v := b.entities.Cursor().Seek(prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) || len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// promote unblocks the job now at the head of the kind × entity queue, if it
// is a blocked ready job.
func (b *txBuckets) promote(kind, entity string) error {
	id, ok := b.entityHead(kind, entity)
	if !ok {
		return nil
	}
	r, err := b.load(id)
	if err != nil || r == nil {
		return err // a corrupt head stays blocking; Get reports it
	}
	if r.State != StateReady || !r.Blocked {
		return nil
	}
	n := r.clone()
	n.Blocked = false
	return b.save(r, n)
}

// joinEntityQueue gives r (about to become ready) a place at the back of its
// entity queue and sets Blocked if jobs are ahead of it.
func (b *txBuckets) joinEntityQueue(r *record) error {
	if r.Entity == "" {
		r.EntitySeq, r.Blocked = 0, false
		return nil
	}
	seq, err := b.entities.NextSequence()
	if err != nil {
		return err
	}
	r.EntitySeq = seq
	_, ahead := b.entityHead(r.Kind, r.Entity)
	r.Blocked = ahead
	return nil
}

// uint64FromBytes decodes an 8-byte big-endian value.
func uint64FromBytes(v []byte) uint64 { return binary.BigEndian.Uint64(v) }
