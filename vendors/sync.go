package vendors

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// SyncState is the progress of a resource's delta sync. Sync updates it and
// hands it to SyncOptions.Save after every page; a caller that restarts Sync
// with the last saved state resumes where it stopped. The zero SyncState
// starts a new pass.
type SyncState struct {
	// Pass identifies the pass in progress (random, non-zero); 0 when none.
	Pass uint64 `json:"pass,omitempty"`
	// Since is the lower bound of the pass in progress: the cursor minus
	// the list overlap, or zero for a backfill.
	Since time.Time `json:"since,omitempty"`
	// Page is the next page to fetch; 0 when no pass is in progress.
	Page int `json:"page,omitempty"`
	// HighWater is the latest UpdatedAt seen in the pass (starting at the
	// cursor); it becomes the cursor when the pass completes.
	HighWater time.Time `json:"high_water,omitempty"`
	// Rewind, if set, is the earliest UpdatedAt of a record that moved to
	// the end of the list during the pass: offset paging may then have
	// skipped one record after it, so the cursor is held back to it.
	Rewind time.Time `json:"rewind,omitempty"`
	// Backfill is true when the pass started without a cursor, or was
	// asked to list everything (SyncOptions.Full).
	Backfill bool `json:"backfill,omitempty"`
	// Total is the size of the list the vendor last reported (0 when it
	// reports none): with Seen, the pass's progress.
	Total int `json:"total,omitempty"`
	// StartedAt is when the pass started.
	StartedAt time.Time `json:"started_at,omitempty"`
	// Pages, Seen and Changed count the pass's pages, records listed and
	// records changed.
	Pages   int `json:"pages,omitempty"`
	Seen    int `json:"seen,omitempty"`
	Changed int `json:"changed,omitempty"`
	// LastCompleted is when the last pass completed, and LastCursor the
	// cursor it set.
	LastCompleted time.Time `json:"last_completed,omitempty"`
	LastCursor    time.Time `json:"last_cursor,omitempty"`
	// LastPages, LastSeen and LastChanged are the counts of the last
	// completed pass, and LastBackfill whether it listed everything.
	LastPages    int  `json:"last_pages,omitempty"`
	LastSeen     int  `json:"last_seen,omitempty"`
	LastChanged  int  `json:"last_changed,omitempty"`
	LastBackfill bool `json:"last_backfill,omitempty"`
}

// InProgress reports whether a pass has started and not completed: after
// Sync returns nil with BatchPages reached, the caller runs it again.
func (s SyncState) InProgress() bool { return s.Page > 0 }

// SyncOptions are Sync's collaborators.
type SyncOptions struct {
	// Save persists the state after every page and at the end of a pass
	// (a durable job saves it in its context). nil saves it in the Records
	// store (Records.SaveSyncState). An error stops Sync.
	Save func(SyncState) error
	// Purge, if set, is called after every page with the cache tags of the
	// records that changed (old and new tags), deduplicated and sorted. An
	// error stops Sync before the page's progress is saved, so a resumed
	// pass fetches the page again and purges all its records.
	Purge func(tags []string) error
	// Stored, if set, is called after every page with the page's records
	// (changed or not: a resumed pass may have stored them before a crash),
	// after Purge. An error stops Sync like Purge's. craftedge enqueues the
	// downloads of the records' media files here.
	Stored func(recs []Record) error
	// RepurgeFirstPage makes the first page this call fetches purge the
	// tags of all its records, changed or not: set it on a retry, whose
	// failed attempt may have stored records without purging them (as a
	// resumed pass always does).
	RepurgeFirstPage bool
	// BatchPages, if positive, is the most pages one Sync call fetches;
	// Sync then returns nil with the pass still InProgress.
	BatchPages int
	// Now is the clock for SyncedAt and the pass times; nil uses the
	// Client's.
	Now func() time.Time
	// Full starts a new pass from the beginning of the list (a backfill)
	// even when a cursor exists. A pass in progress is resumed either way.
	Full bool
	// Cause is recorded in the lineage of every record the pass changes;
	// an empty Source means SourceSync.
	Cause Cause
}

// Sync runs (or resumes) one delta pass of resource: it lists the pages of
// items changed since the stored cursor (all items, a backfill, when there is
// none), stores the changed records, purges their cache tags, and saves its
// progress after each page. When the last page is done it advances the
// cursor to the pass's high-water mark and saves the completed state.
//
// Any error stops the pass where it is, with the state of the last completed
// page saved: a *MappingError (the vendor's schema changed) fails loudly and
// keeps every record's last good version; a *RateLimitedError carries the
// delay for rescheduling. Sync never advances the cursor past a page it has
// not stored.
//
// Each page's records are committed in one bbolt transaction. If the process
// stops between that commit and Save, the page is fetched again on resume;
// its records are then unchanged, so the first page after a resume purges
// the tags of all its records to make up for a purge that may have been
// lost.
func Sync(ctx context.Context, client *Client, records *Records, resource string, state *SyncState, opts SyncOptions) error {
	if client == nil || records == nil || state == nil {
		return errors.New("vendors: Sync: client, records and state are required")
	}
	vendor := client.Name()
	res, err := client.cfg.Resource(resource)
	if err == nil && res.List == nil {
		err = fmt.Errorf("vendor %q: resource %q has no list: %w", vendor, resource, ErrUnknownResource)
	}
	if err != nil {
		return fmt.Errorf("vendors: sync: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = client.now
	}
	save := opts.Save
	if save == nil {
		save = func(st SyncState) error { return records.SaveSyncState(vendor, resource, st) }
	}
	log := client.log.With(zap.String("resource", resource))
	cause := opts.Cause
	if cause.Source == "" {
		cause.Source = SourceSync
	}

	resumed := state.InProgress()
	if !resumed {
		cursor, err := records.Cursor(vendor, resource)
		if err != nil {
			return err
		}
		since := cursor
		if opts.Full {
			since = time.Time{}
		} else if !since.IsZero() {
			since = since.Add(-res.List.Overlap)
		}
		*state = SyncState{
			Pass: rand.Uint64() | 1, Since: since, Page: 1, HighWater: cursor, Backfill: since.IsZero(),
			StartedAt: now().UTC(), LastCompleted: state.LastCompleted, LastCursor: state.LastCursor,
		}
		log.Debug("vendor sync pass starting", zap.Time("since", since), zap.Bool("backfill", state.Backfill))
	}

	for fetched := 0; opts.BatchPages <= 0 || fetched < opts.BatchPages; fetched++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("vendors: sync %s/%s: %w", vendor, resource, err)
		}
		page, err := client.List(ctx, resource, state.Since, state.Page)
		if err != nil {
			return fmt.Errorf("vendors: sync %s/%s page %d: %w", vendor, resource, state.Page, err)
		}
		if page.HasMore && len(page.Records) == 0 {
			return fmt.Errorf("vendors: sync %s/%s page %d: the vendor reports more pages after an empty one", vendor, resource, state.Page)
		}
		synced := now().UTC()
		for i := range page.Records {
			page.Records[i].SyncedAt = synced
		}
		tags, changed, rewind, err := records.storePage(vendor, resource, state.Pass, page.Records, (resumed || opts.RepurgeFirstPage) && fetched == 0, &cause)
		if err != nil {
			return fmt.Errorf("vendors: sync %s/%s page %d: %w", vendor, resource, state.Page, err)
		}
		if opts.Purge != nil && len(tags) > 0 {
			if err := opts.Purge(tags); err != nil {
				return fmt.Errorf("vendors: sync %s/%s page %d: purging: %w", vendor, resource, state.Page, err)
			}
		}
		if opts.Stored != nil && len(page.Records) > 0 {
			if err := opts.Stored(page.Records); err != nil {
				return fmt.Errorf("vendors: sync %s/%s page %d: %w", vendor, resource, state.Page, err)
			}
		}
		for _, r := range page.Records {
			if r.UpdatedAt.After(state.HighWater) {
				state.HighWater = r.UpdatedAt
			}
		}
		if !rewind.IsZero() && (state.Rewind.IsZero() || rewind.Before(state.Rewind)) {
			state.Rewind = rewind
		}
		state.Pages++
		state.Seen += len(page.Records)
		if page.Total > 0 {
			state.Total = page.Total
		}
		state.Changed += changed

		if !page.HasMore {
			cursor := state.HighWater
			if !state.Rewind.IsZero() && state.Rewind.Before(cursor) {
				cursor = state.Rewind
			}
			if err := records.SetCursor(vendor, resource, cursor); err != nil {
				return err
			}
			log.Info("vendor sync pass completed", zap.Int("pages", state.Pages), zap.Int("seen", state.Seen),
				zap.Int("changed", state.Changed), zap.Time("cursor", cursor), zap.Bool("backfill", state.Backfill))
			*state = SyncState{LastCompleted: now().UTC(), LastCursor: cursor,
				LastPages: state.Pages, LastSeen: state.Seen, LastChanged: state.Changed, LastBackfill: state.Backfill}
			if err := save(*state); err != nil {
				return fmt.Errorf("vendors: sync %s/%s: saving state: %w", vendor, resource, err)
			}
			return nil
		}
		state.Page = page.NextPage
		if err := save(*state); err != nil {
			return fmt.Errorf("vendors: sync %s/%s: saving state: %w", vendor, resource, err)
		}
	}
	return nil
}

// storePage stores one sync page in one transaction. It returns the tags to
// purge (old and new tags of changed records, and all tags when purgeAll),
// the number of changed records, and the earliest earlier UpdatedAt of a
// record already listed in this pass that is listed again, newer: the record
// moved to the end of the vendor's list while the pass ran.
func (s *Records) storePage(vendor, resource string, pass uint64, recs []Record, purgeAll bool, cause *Cause) (tags []string, changed int, rewind time.Time, err error) {
	tagSet := map[string]bool{}
	err = s.db.Update(func(tx *bolt.Tx) error {
		seen := tx.Bucket(bucketRecordsSeen)
		for _, rec := range recs {
			key := recordKey(vendor, resource, rec.ID)
			if v := seen.Get(key); len(v) == 16 && binary.BigEndian.Uint64(v[:8]) == pass {
				before := time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))).UTC()
				if rec.UpdatedAt.After(before) && (rewind.IsZero() || before.Before(rewind)) {
					rewind = before
				}
			}
			c, prev, err := s.putTx(tx, rec, cause)
			if err != nil {
				return err
			}
			if c {
				changed++
			}
			if c || purgeAll {
				for _, t := range rec.Tags {
					tagSet[t] = true
				}
				if prev != nil {
					for _, t := range prev.Tags {
						tagSet[t] = true
					}
				}
			}
			mark := binary.BigEndian.AppendUint64(make([]byte, 0, 16), pass)
			mark = binary.BigEndian.AppendUint64(mark, timeBits(rec.UpdatedAt))
			if old := seen.Get(key); !bytes.Equal(old, mark) {
				if err := seen.Put(key, mark); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	for t := range tagSet {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	return tags, changed, rewind, nil
}
