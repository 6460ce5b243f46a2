package vendors

import (
	"fmt"
)

// SourceCluster is the cause of a record version applied from another
// craftedge node (cluster mode's replicated read model).
const SourceCluster = "cluster"

// ChangeFunc is told of a committed record change: the record as stored
// (sensitive fields open: never log it) and its cause (Source "" when the
// writer gave none).
type ChangeFunc func(rec Record, cause Cause)

// OnChange makes s call fn after every transaction that changed a record
// (Put, PutBatch, PutCaused, MarkDeleted, sync pages), once per changed
// record, after the commit and outside bbolt's writer lock; nil stops it.
// fn must not block (cluster mode queues the version for the other
// nodes). Records applied with ApplyReplica are reported with
// SourceCluster, which a publisher skips.
func (s *Records) OnChange(fn ChangeFunc) {
	if fn == nil {
		s.onChange.Store(nil)
		return
	}
	s.onChange.Store(&fn)
}

// MarshalReplica returns rec in its stored form, sensitive fields sealed
// with the current key, for another node (the nodes of a cluster share
// their keyring).
func (s *Records) MarshalReplica(rec Record) ([]byte, error) {
	data, err := s.encode(rec)
	if err != nil {
		return nil, fmt.Errorf("vendors: records: encoding %s/%s id %q for the cluster: %w", rec.Vendor, rec.Resource, rec.ID, err)
	}
	return data, nil
}

// ApplyReplica stores a version another node published (MarshalReplica's
// form) with Put's rule, so an older or equal version changes nothing; it
// is recorded in the lineage with SourceCluster. It returns the record as
// decoded, whether it changed, and the record it replaced.
func (s *Records) ApplyReplica(data []byte) (rec Record, changed bool, prev *Record, err error) {
	rec, err = s.decode(data)
	if err != nil {
		return Record{}, false, nil, fmt.Errorf("vendors: records: a replicated record: %w", err)
	}
	changed, prev, err = s.PutCaused(rec, Cause{Source: SourceCluster})
	return rec, changed, prev, err
}
