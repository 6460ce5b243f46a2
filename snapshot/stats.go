package snapshot

import "time"

// Stats are the store's counters. Count and Bytes describe committed
// snapshots and survive restarts; the other counters start at zero with
// each Open.
type Stats struct {
	// Count is the number of stored snapshots.
	Count int64
	// Bytes is the sum of the encoded sizes of stored snapshots, the
	// quantity bounded by Options.MaxBytes.
	Bytes int64
	// Pending is the number of records queued or being committed.
	Pending int
	// Dropped counts Puts refused because the queue was full.
	Dropped uint64
	// Rejected counts Puts refused because the record could never be
	// stored (see Put).
	Rejected uint64
	// Written counts records committed by flushes.
	Written uint64
	// WriteErrors counts records lost because their batch failed to
	// commit.
	WriteErrors uint64
	// Evicted counts snapshots removed by age or size.
	Evicted uint64
	// LastWriteDuration is how long the last flush transaction took,
	// fsyncs included.
	LastWriteDuration time.Duration
	// FileBytes is the size of the bbolt file after the last write or
	// eviction (bbolt grows the file ahead of its data and never shrinks
	// it, so it is at least the space the data needs).
	FileBytes int64
	// PurgeMarks is the number of tag and prefix purge marks held.
	PurgeMarks int
}

// Stats returns the current counters. It is cheap: atomics and cached
// totals, no scan and no transaction.
func (s *Store) Stats() Stats {
	return Stats{
		Count:             s.count.Load(),
		Bytes:             s.bytes.Load(),
		Pending:           int(s.pendingN.Load()),
		Dropped:           s.dropped.Load(),
		Rejected:          s.rejected.Load(),
		Written:           s.written.Load(),
		WriteErrors:       s.writeErrors.Load(),
		Evicted:           s.evicted.Load(),
		LastWriteDuration: time.Duration(s.lastWriteNanos.Load()),
		FileBytes:         s.fileBytes.Load(),
		PurgeMarks:        s.purges.len(),
	}
}
