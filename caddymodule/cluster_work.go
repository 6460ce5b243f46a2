package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/jobs"
)

// Vendor work in a cluster runs under leases (JetStream key-value keys
// with a TTL, package cluster), so it runs on one node at a time:
//
//   - sync:<vendor>: the node holding it runs the vendor's sync schedule
//     (enqueues each window's vendor.sync jobs); when it dies another
//     node takes the lease within lease_ttl and schedules from then on.
//     Without NATS no node can hold it, and scheduled syncs pause.
//   - vendor.sync:<vendor>:<resource>: a sync or backfill pass of one
//     resource runs on one node at a time; a node whose pass finds it
//     held waits for it (the job's timeout bounds the wait).
//   - vendor.refetch:<vendor>:<resource>:<id>: a refetch of one record
//     runs on one node at a time, the same way.
//
// A job whose lease cannot be asked for because NATS is unreachable runs
// locally: a webhook's refetch or a backfill an operator started must not
// wait for NATS (the vendor may be called by two nodes then).

// syncScheduleGroup is a set of schedules run under one lease ("" for
// none).
type syncScheduleGroup struct {
	lease  string
	scheds []syncSchedule
}

// syncScheduleGroups groups the schedules: one group without a cluster,
// one per vendor (lease sync:<vendor>) with one.
func (a *App) syncScheduleGroups(scheds []syncSchedule) []syncScheduleGroup {
	if a.cluster == nil {
		return []syncScheduleGroup{{scheds: scheds}}
	}
	var out []syncScheduleGroup
	for _, s := range scheds {
		lease := syncScheduleLease(s.vendor)
		if n := len(out); n > 0 && out[n-1].lease == lease {
			out[n-1].scheds = append(out[n-1].scheds, s)
			continue
		}
		out = append(out, syncScheduleGroup{lease: lease, scheds: []syncSchedule{s}})
	}
	return out
}

// syncScheduleLease is the lease of a vendor's sync schedule.
func syncScheduleLease(vendor string) string { return "sync:" + vendor }

// underLease runs fn until ctx ends: at once without a cluster (or for
// lease ""), else whenever this node holds the lease (Node.Lead), with a
// context cancelled when it loses it.
func (a *App) underLease(ctx context.Context, lease string, fn func(context.Context)) {
	if a.cluster == nil || lease == "" {
		fn(ctx)
		return
	}
	held := a.cluster.leaseGauge(lease)
	err := a.cluster.node.Lead(ctx, lease, func(ctx context.Context) {
		held.Set(1)
		defer held.Set(0)
		a.logger.Info("holding a lease: this node runs its work", zap.String("lease", lease))
		fn(ctx)
	})
	if err != nil && ctx.Err() == nil {
		a.logger.Error("lease campaign ended", zap.String("lease", lease), zap.Error(err))
	}
}

// leasedJob runs a job handler under the lease named by lease(task) in a
// cluster (see above); lease returning "" runs it as is.
func (a *App) leasedJob(lease func(*jobs.Task) string, fn func(context.Context, *jobs.Task) error) func(context.Context, *jobs.Task) error {
	return func(ctx context.Context, t *jobs.Task) error {
		c := a.cluster
		name := ""
		if c != nil {
			name = lease(t)
		}
		if name == "" {
			return fn(ctx, t)
		}
		wait := c.cfg.LeaseTTL / 4
		for {
			var ferr error
			ran := false
			err := c.node.TryLead(ctx, name, func(ctx context.Context) {
				ran = true
				ferr = fn(ctx, t)
			})
			switch {
			case err == nil:
				return ferr
			case cluster.ErrNotConnected(err) && !ran:
				a.logger.Info("NATS unreachable: running the job here without its lease",
					zap.String("job_id", t.Job.ID), zap.String("lease", name))
				return fn(ctx, t)
			case errors.Is(err, cluster.ErrLeaseHeld):
				select {
				case <-ctx.Done():
					return fmt.Errorf("waiting for lease %q: %w", name, err)
				case <-time.After(wait):
				}
			default:
				// Lost while running (its work was stopped), or a NATS
				// error: the queue retries the job.
				return errors.Join(err, ferr)
			}
		}
	}
}

// syncJobLease is a vendor.sync job's lease.
func syncJobLease(t *jobs.Task) string {
	var p vendorSyncPayload
	if json.Unmarshal(t.Job.Payload, &p) != nil || p.Vendor == "" {
		return "" // the handler reports the bad payload
	}
	return jobKindVendorSync + ":" + p.Vendor + ":" + p.Resource
}

// refetchJobLease is a vendor.refetch job's lease.
func refetchJobLease(t *jobs.Task) string {
	var p refetchPayload
	if json.Unmarshal(t.Job.Payload, &p) != nil || p.Vendor == "" {
		return ""
	}
	id := p.ID
	if len(id) > 64 { // a key-value key has a bounded length: a long id is hashed
		sum := sha256.Sum256([]byte(id))
		id = "sha256-" + hex.EncodeToString(sum[:])
	}
	return jobKindVendorRefetch + ":" + p.Vendor + ":" + p.Resource + ":" + id
}

// scheduleLeases are the leases of this config's sync schedules (for
// health).
func (a *App) scheduleLeases() []string {
	var out []string
	for _, vn := range sortedKeys(a.Vendors) {
		for _, rn := range sortedKeys(a.Vendors[vn].Resources) {
			if a.Vendors[vn].Resources[rn].SyncEvery > 0 {
				out = append(out, syncScheduleLease(vn))
				break
			}
		}
	}
	return out
}
