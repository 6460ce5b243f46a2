package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// jobKindVendorRefetch pulls one record after a verified webhook.
const jobKindVendorRefetch = "vendor.refetch"

func init() {
	registerJobKind(jobKindVendorRefetch, jobs.KindConfig{
		Concurrency: 4, BaseBackoff: time.Second, MaxBackoff: 5 * time.Minute,
		MaxAttempts: 10, Timeout: time.Minute,
	}, func(a *App) jobs.Handler { return jobs.Single(a.leasedJob(refetchJobLease, a.runRefetch)) })
}

// refetchPayload is the payload of a vendor.refetch job: what a verified
// delivery named, never the delivery's data.
type refetchPayload struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	ID       string `json:"id"`
	// Version is the version the delivery announced, if it carried one.
	Version string `json:"version,omitempty"`
	// Delivery is the replay key of the (first) delivery that asked for
	// the refetch; Event its event type.
	Delivery string `json:"delivery"`
	Event    string `json:"event,omitempty"`
}

// refetchKey is the job's idempotency key, vendor:resource:id:version
// ("latest" when the delivery named no version): deliveries announcing the
// same version of a record coalesce into one refetch.
func refetchKey(p refetchPayload) string {
	v := p.Version
	if v == "" {
		v = "latest"
	}
	return p.Vendor + ":" + p.Resource + ":" + p.ID + ":" + v
}

// enqueueRefetch enqueues (or joins) the refetch of a record. A delivery
// joins a refetch that has not started yet. Once one has started or is
// done, it may have read the record before the change this delivery
// announces (a vendor's delete usually carries the record's last version,
// the one the update's refetch already read), so a new refetch is
// enqueued, keyed by the delivery id too (a retry of the same delivery
// joins it) or unkeyed when the delivery has no id. A delivery whose
// refetch is a dead letter revives it.
// correlation is the delivery's request id, kept on the job for its logs.
func (a *App) enqueueRefetch(ctx context.Context, p refetchPayload, correlation string) (jobs.Job, bool, error) {
	payload, err := json.Marshal(p)
	if err != nil {
		return jobs.Job{}, false, err
	}
	req := jobs.EnqueueRequest{Kind: jobKindVendorRefetch, Key: refetchKey(p), Payload: payload, Correlation: correlation}
	job, created, err := a.jobs.Enqueue(ctx, req)
	if err != nil || created {
		return job, created, err
	}
	switch job.State {
	case jobs.StateReady:
		return job, false, nil
	case jobs.StateDead:
		if err := a.jobs.RetryNow(job.ID); err != nil {
			return job, false, fmt.Errorf("reviving dead refetch %s: %w", job.ID, err)
		}
		job.State = jobs.StateReady
		return job, false, nil
	default: // running or done
		if p.Delivery == "" {
			req.Key = ""
		} else {
			req.Key += ":" + p.Delivery
		}
		return a.jobs.Enqueue(ctx, req)
	}
}

// runRefetch pulls the record through the vendor client (fresh: not
// coalesced with a read that started before the change), stores it with
// its lineage and purges its tags. A 404 marks the record deleted and
// purges it. An older version than the delivery announced (a lagging
// vendor replica) is stored if newer than ours and retried.
func (a *App) runRefetch(ctx context.Context, t *jobs.Task) error {
	var p refetchPayload
	if err := json.Unmarshal(t.Job.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("vendor.refetch: bad payload: %w", err))
	}
	client, _, ok := a.vendorClient(p.Vendor)
	if !ok {
		return jobs.Permanent(fmt.Errorf("vendor.refetch: unknown vendor %q", p.Vendor))
	}
	log := a.logger.With(zap.String("vendor", p.Vendor), zap.String("resource", p.Resource),
		zap.String("id", p.ID), zap.String("job", t.Job.ID), zap.String("delivery", p.Delivery))
	if !client.Enabled() {
		log.Info("vendor disabled: refetch skipped (delta sync catches up once enabled)")
		return nil
	}
	cause := vendors.Cause{Source: vendors.SourceWebhook, Job: t.Job.ID, Delivery: p.Delivery}
	rec, err := client.Get(vendors.WithFresh(ctx), p.Resource, p.ID)
	if errors.Is(err, vendors.ErrNotFound) {
		changed, stored, err := a.records.MarkDeletedCaused(p.Vendor, p.Resource, p.ID, nowFunc().UTC(), cause)
		if err != nil {
			return err
		}
		if changed || retried(t) {
			if err := a.purgeRecordTags(ctx, p, stored.Tags, nil); err != nil {
				return err
			}
			if err := a.pushChanged(ctx, []vendors.Record{stored}); err != nil {
				return err
			}
		}
		log.Info("webhook refetch: gone at the vendor", zap.Bool("marked_deleted", changed))
		return nil
	}
	if err != nil {
		log.Warn("webhook refetch failed", zap.Error(err))
		return vendorJobError(err)
	}
	changed, prev, err := a.records.PutCaused(rec, cause)
	if err != nil {
		return err
	}
	if err := a.recordsChanged(ctx, []vendors.Record{rec}); err != nil {
		return err
	}
	if changed || retried(t) {
		var old []string
		if prev != nil {
			old = prev.Tags
		}
		if err := a.purgeRecordTags(ctx, p, rec.Tags, old); err != nil {
			return err
		}
	}
	log.Debug("webhook refetch stored", zap.String("version", rec.Version), zap.Bool("changed", changed))
	if older(rec.Version, p.Version) {
		return fmt.Errorf("vendor.refetch: the vendor returned version %s, older than the %s the webhook announced", rec.Version, p.Version)
	}
	return nil
}

// purgeRecordTags purges a changed record's tags (new and old) and its
// collection's tag. An error (snapshots not marked stale, the CDN purge
// not queued) fails the job: its retry purges again.
func (a *App) purgeRecordTags(ctx context.Context, p refetchPayload, tags, old []string) error {
	all := append(append(append([]string(nil), tags...), old...), collectionTag(p.Vendor, p.Resource))
	if _, err := a.purgeFor(ctx, &PurgeRequest{Tags: all}, "webhook"); err != nil {
		return fmt.Errorf("vendor.refetch: purging the record's tags: %w", err)
	}
	return nil
}

// retried reports whether t is a retry: an earlier attempt may have stored
// the record and then failed (or crashed) before its purge was done, so
// the record's tags are purged even if it is unchanged now.
func retried(t *jobs.Task) bool { return t.Job.Attempts > 1 }

// older reports whether got is an integer version below the integer want.
// Other versions (hashes, dates) are not compared.
func older(got, want string) bool {
	g, err1 := strconv.ParseInt(got, 10, 64)
	w, err2 := strconv.ParseInt(want, 10, 64)
	return err1 == nil && err2 == nil && g < w
}
