package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// Job kinds of the vendors integration.
const (
	jobKindVendorSync = "vendor.sync"
	jobKindOutbox     = "outbox"
)

func init() {
	registerJobKind(jobKindVendorSync, jobs.KindConfig{
		Concurrency: 2, BaseBackoff: 5 * time.Second, MaxBackoff: 10 * time.Minute,
		MaxAttempts: 8, Timeout: 10 * time.Minute,
	}, func(a *App) jobs.Handler { return jobs.Single(a.leasedJob(syncJobLease, a.runVendorSync)) })
	registerJobKind(jobKindOutbox, jobs.KindConfig{
		Concurrency: 4, BaseBackoff: time.Second, MaxBackoff: 15 * time.Minute,
		MaxAttempts: 12, Timeout: time.Minute,
	}, func(a *App) jobs.Handler { return jobs.Single(a.runOutbox) })
}

// vendorSyncPayload is the payload of a vendor.sync job.
type vendorSyncPayload struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	// Full makes the pass a backfill: everything is listed again.
	Full bool `json:"full,omitempty"`
}

// outboxPayload is the payload of an outbox job.
type outboxPayload struct {
	Vendor   string          `json:"vendor"`
	Resource string          `json:"resource"`
	ID       string          `json:"id,omitempty"`
	Body     json.RawMessage `json:"body,omitempty"`
	// Sealed is Body sealed at rest, instead of Body, when the resource
	// has sensitive fields (see encryption.go).
	Sealed string `json:"sealed,omitempty"`
}

// collectionTag is the cache tag of a resource's list responses, purged
// whenever a sync or write changes one of its records.
func collectionTag(vendor, resource string) string {
	return "craftedge:vendor:" + vendor + ":" + resource
}

// vendorJobError maps a vendors error to the queue's retry policy.
func vendorJobError(err error) error {
	if err == nil {
		return nil
	}
	if d, ok := vendors.RetryAfter(err); ok {
		return jobs.RetryAfter(err, d)
	}
	if vendors.IsPermanent(err) {
		return jobs.Permanent(err)
	}
	return err
}

// runVendorSync runs (or resumes, from the job's saved context) one delta
// sync pass of a vendor resource.
func (a *App) runVendorSync(ctx context.Context, t *jobs.Task) error {
	var p vendorSyncPayload
	if err := json.Unmarshal(t.Job.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("vendor.sync: bad payload: %w", err))
	}
	client, _, ok := a.vendorClient(p.Vendor)
	if !ok {
		return jobs.Permanent(fmt.Errorf("vendor.sync: unknown vendor %q", p.Vendor))
	}
	if !client.Enabled() {
		a.logger.Debug("vendor disabled: sync skipped", zap.String("vendor", p.Vendor), zap.String("resource", p.Resource))
		return nil
	}
	var state vendors.SyncState
	if len(t.Job.Context) > 0 {
		if err := json.Unmarshal(t.Job.Context, &state); err != nil {
			a.logger.Warn("vendor.sync: ignoring unreadable job context", zap.String("job", t.Job.ID), zap.Error(err))
			state = vendors.SyncState{}
		}
	}
	err := vendors.Sync(ctx, client, a.records, p.Resource, &state, vendors.SyncOptions{
		Full:  p.Full,
		Cause: vendors.Cause{Source: vendors.SourceSync, Job: t.Job.ID},
		Save: func(st vendors.SyncState) error {
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if err := t.SaveContext(b); err != nil {
				return err
			}
			// Also in the records store, for health.
			return a.records.SaveSyncState(p.Vendor, p.Resource, st)
		},
		Purge: func(tags []string) error {
			tags = append(tags, collectionTag(p.Vendor, p.Resource))
			_, err := a.purgeFor(ctx, &PurgeRequest{Tags: tags}, "vendor_sync")
			return err
		},
		Stored: func(recs []vendors.Record) error { return a.recordsChanged(ctx, recs) },
		// A retry's first page purges all its records: the failed attempt
		// may have stored them without purging.
		RepurgeFirstPage: retried(t),
	})
	if errors.Is(err, vendors.ErrDisabled) {
		return nil
	}
	if err != nil {
		a.logger.Warn("vendor sync failed", zap.String("vendor", p.Vendor), zap.String("resource", p.Resource),
			zap.Int("page", state.Page), zap.Error(err))
	}
	return vendorJobError(err)
}

// runOutbox sends one outbound write with the job's idempotency key, then
// stores the record the vendor answered and purges its tags.
func (a *App) runOutbox(ctx context.Context, t *jobs.Task) error {
	var p outboxPayload
	if err := json.Unmarshal(t.Job.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("outbox: bad payload: %w", err))
	}
	client, _, ok := a.vendorClient(p.Vendor)
	if !ok {
		return jobs.Permanent(fmt.Errorf("outbox: unknown vendor %q", p.Vendor))
	}
	body, err := a.sealing.openOutbox(p)
	if err != nil {
		// Its key is not configured: re-add it and replay the dead job.
		return jobs.Permanent(err)
	}
	rec, err := client.Upsert(ctx, p.Resource, p.ID, body, t.IdempotencyKey())
	if err != nil {
		return vendorJobError(err)
	}
	changed, prev, err := a.records.PutCaused(rec, vendors.Cause{Source: vendors.SourceOutbox, Job: t.Job.ID})
	if err != nil {
		return err
	}
	if err := a.recordsChanged(ctx, []vendors.Record{rec}); err != nil {
		return err
	}
	if changed || retried(t) {
		tags := append(append([]string(nil), rec.Tags...), collectionTag(p.Vendor, p.Resource))
		if prev != nil {
			tags = append(tags, prev.Tags...)
		}
		if _, err := a.purgeFor(ctx, &PurgeRequest{Tags: tags}, "outbox"); err != nil {
			return fmt.Errorf("outbox: purging the record's tags: %w", err)
		}
	}
	return nil
}

// syncSchedule is one resource synced every Every.
type syncSchedule struct {
	vendor, resource string
	every            time.Duration
}

// startVendorScheduler enqueues a vendor.sync job per scheduled resource
// and window (idempotency key sync:<vendor>:<resource>:<window start>), so
// each window gets one pass however many configs or reloads run. In a
// cluster each vendor's schedule runs on the node holding the lease
// sync:<vendor> (cluster_work.go), so a window gets one pass cluster-wide.
func (a *App) startVendorScheduler() {
	var scheds []syncSchedule
	for _, vn := range sortedKeys(a.Vendors) {
		for _, rn := range sortedKeys(a.Vendors[vn].Resources) {
			if every := time.Duration(a.Vendors[vn].Resources[rn].SyncEvery); every > 0 {
				scheds = append(scheds, syncSchedule{vendor: vn, resource: rn, every: every})
			}
		}
	}
	if len(scheds) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	var wg sync.WaitGroup
	a.stopVendorScheduler = func() {
		cancel()
		wg.Wait()
	}
	for _, g := range a.syncScheduleGroups(scheds) {
		wg.Go(func() { a.underLease(ctx, g.lease, func(ctx context.Context) { a.runSyncSchedule(ctx, g.scheds) }) })
	}
}

// runSyncSchedule enqueues the schedules' passes, each window once, until
// ctx ends.
func (a *App) runSyncSchedule(ctx context.Context, scheds []syncSchedule) {
	last := make([]int64, len(scheds))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		now := nowFunc()
		for i, s := range scheds {
			window := now.Truncate(s.every).Unix()
			if window == last[i] {
				continue
			}
			if err := a.enqueueSync(ctx, s.vendor, s.resource, "sync:"+s.vendor+":"+s.resource+":"+strconv.FormatInt(window, 10)); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.logger.Error("scheduling vendor sync", zap.String("vendor", s.vendor),
					zap.String("resource", s.resource), zap.Error(err))
				continue
			}
			last[i] = window
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// enqueueSync enqueues a vendor.sync job with an idempotency key.
func (a *App) enqueueSync(ctx context.Context, vendor, resource, key string) error {
	payload, _ := json.Marshal(vendorSyncPayload{Vendor: vendor, Resource: resource})
	_, _, err := a.jobs.Enqueue(ctx, jobs.EnqueueRequest{Kind: jobKindVendorSync, Key: key, Entity: syncEntity(vendor, resource), Payload: payload})
	return err
}
