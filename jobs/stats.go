package jobs

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// KindStats counts the jobs of one kind.
type KindStats struct {
	// Registered reports whether this Queue has a handler for the kind.
	Registered bool `json:"registered"`
	// Ready, Running, Done and Dead count jobs per state.
	Ready   int `json:"ready"`
	Running int `json:"running"`
	Done    int `json:"done"`
	Dead    int `json:"dead"`
	// OldestReadyAt is the run-at time of the oldest due job that could
	// start now (not blocked by its entity); zero if none is due.
	OldestReadyAt time.Time `json:"oldest_ready_at,omitzero"`
	// QueueAge is how long that job has been due: the queue's lag.
	QueueAge time.Duration `json:"-"`
	// QueueAgeSeconds is QueueAge in seconds, for JSON.
	QueueAgeSeconds float64 `json:"queue_age_seconds"`
	// OldestPendingAt is when the oldest job still ready or running
	// (backing off and blocked jobs included) was accepted; zero if none.
	// For the outbox this is the age of the oldest write not yet sent.
	OldestPendingAt time.Time `json:"oldest_pending_at,omitzero"`
	// PendingAge is how long ago that was.
	PendingAge time.Duration `json:"-"`
	// PendingAgeSeconds is PendingAge in seconds, for JSON.
	PendingAgeSeconds float64 `json:"pending_age_seconds"`
}

// Stats summarises the queue.
type Stats struct {
	// Kinds has an entry per kind that has jobs or is registered.
	Kinds map[string]KindStats `json:"kinds"`
	// Totals sums Kinds; its OldestReadyAt and QueueAge are the maximum
	// lag over all kinds, and Registered is false.
	Totals KindStats `json:"totals"`
}

// Stats returns job counts by kind and state and each kind's queue age,
// from counters kept in the same transactions as the jobs (no scan).
func (q *Queue) Stats() (Stats, error) {
	st := Stats{Kinds: make(map[string]KindStats)}
	now := q.now().UTC()
	err := q.view(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		for _, kind := range countedKinds(b) {
			var ks KindStats
			for _, s := range states {
				var n int
				if v := b.cnt.Get(countKey(kind, s)); len(v) == 8 {
					n = int(uint64FromBytes(v))
				}
				switch s {
				case StateReady:
					ks.Ready = n
				case StateRunning:
					ks.Running = n
				case StateDone:
					ks.Done = n
				case StateDead:
					ks.Dead = n
				}
			}
			prefix := readyPrefix(kind)
			if k, _ := b.ready.Cursor().Seek(prefix); k != nil {
				if runAt, _, ok := splitReadyKey(k, len(prefix)); ok && bytes.HasPrefix(k, prefix) && runAt <= timeBits(now) {
					ks.OldestReadyAt = time.Unix(0, int64(runAt)).UTC()
					ks.QueueAge = now.Sub(ks.OldestReadyAt)
				}
			}
			if created, ok := oldestPending(b, kind); ok {
				ks.OldestPendingAt = created
				ks.PendingAge = max(now.Sub(created), 0)
			}
			st.Kinds[kind] = ks
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("jobs: reading stats: %w", err)
	}
	q.mu.Lock()
	for name := range q.kinds {
		ks := st.Kinds[name]
		ks.Registered = true
		st.Kinds[name] = ks
	}
	q.mu.Unlock()
	for name, ks := range st.Kinds {
		if (ks == KindStats{Registered: ks.Registered}) && !ks.Registered {
			delete(st.Kinds, name) // a kind whose jobs are all gone
			continue
		}
		ks.QueueAgeSeconds = ks.QueueAge.Seconds()
		ks.PendingAgeSeconds = ks.PendingAge.Seconds()
		st.Kinds[name] = ks
		t := &st.Totals
		t.Ready += ks.Ready
		t.Running += ks.Running
		t.Done += ks.Done
		t.Dead += ks.Dead
		if ks.QueueAge > t.QueueAge {
			t.QueueAge, t.OldestReadyAt = ks.QueueAge, ks.OldestReadyAt
		}
		if ks.PendingAge > t.PendingAge {
			t.PendingAge, t.OldestPendingAt = ks.PendingAge, ks.OldestPendingAt
		}
	}
	st.Totals.QueueAgeSeconds = st.Totals.QueueAge.Seconds()
	st.Totals.PendingAgeSeconds = st.Totals.PendingAge.Seconds()
	return st, nil
}

// oldestPending returns the acceptance time of the oldest ready or running
// job of kind: the first entry of each state index is the lowest id, that
// is the earliest accepted (two seeks and one record read per kind).
func oldestPending(b *txBuckets, kind string) (time.Time, bool) {
	var oldest uint64
	for _, st := range []State{StateReady, StateRunning} {
		prefix := statePrefix(kind, st)
		k, _ := b.states.Cursor().Seek(prefix)
		if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
			continue
		}
		if id := uint64FromBytes(k[len(prefix):]); oldest == 0 || id < oldest {
			oldest = id
		}
	}
	if oldest == 0 {
		return time.Time{}, false
	}
	r, err := b.load(oldest)
	if err != nil || r == nil {
		return time.Time{}, false
	}
	return r.CreatedAt, true
}
