package caddymodule

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/vendors"
)

// Cluster mode's read model: every record version this node stores
// (syncs, refetches, outbox answers, deletions) is published through
// Records.OnChange, sensitive fields sealed (MarshalReplica: the nodes of
// a cluster share their keyring, see docs/guides/cluster.md), and every
// other node's version is applied here with Records.ApplyReplica.
//
// Applying a version is this node's own business, like a local change:
// its pages showing the record (its tags, new and previous, and its
// collection's tag) are purged here only, since every node applies the
// version itself, and its media files are fetched into this node's media
// store. Search pushes are not enqueued: the node where the change was
// made enqueued them (once for the cluster); a replica never does.

// startReadModel replicates this app's records on node.
func (a *App) startReadModel(node *cluster.Node) (*cluster.ReadModel, error) {
	if a.records == nil {
		return nil, nil
	}
	rm, err := cluster.NewReadModel(node, a.applyRecordReplica, cluster.ReadModelConfig{})
	if err != nil {
		return nil, fmt.Errorf("craftedge: cluster read model: %w", err)
	}
	a.records.OnChange(func(rec vendors.Record, cause vendors.Cause) {
		if cause.Source == vendors.SourceCluster {
			return // another node's version: published by that node
		}
		data, err := a.records.MarshalReplica(rec)
		if err != nil {
			a.logger.Error("cluster read model: a record version not published (the next change of the record publishes it)",
				zap.String("vendor", rec.Vendor), zap.String("resource", rec.Resource), zap.String("id", rec.ID), zap.Error(err))
			return
		}
		rm.Publish(cluster.RecordVersion{Vendor: rec.Vendor, Resource: rec.Resource, ID: rec.ID, Version: rec.Version,
			UpdatedAt: rec.UpdatedAt, Deleted: rec.Deleted, Data: data})
	})
	return rm, nil
}

// applyRecordReplica stores another node's record version (unless this
// node has it or a newer one) and, when it changed, purges its pages
// here and fetches its media files. A version this node would not store
// is refused (checkReplica); one the storage file cannot take now (a
// full disk, a damaged file) is applied again later
// (cluster.RetryLater): nothing is half-applied, since the record and its
// lineage are one bbolt transaction.
func (a *App) applyRecordReplica(v cluster.RecordVersion) error {
	if err := a.checkReplica(v, nowFunc()); err != nil {
		observeClusterData("records", "refused")
		return fmt.Errorf("refused: %w", err)
	}
	var rec vendors.Record
	var changed bool
	var prev *vendors.Record
	err := a.guardStorage(func() error {
		if d := a.store.Damaged(); d != nil {
			return d
		}
		var err error
		rec, changed, prev, err = a.records.ApplyReplica(v.Data)
		return err
	})
	if err != nil {
		if a.storageFailure(err) {
			observeClusterData("records", "retry")
			return cluster.RetryLater(fmt.Errorf("storing %s/%s %q in %s: %w", v.Vendor, v.Resource, v.ID, a.store.Path(), err))
		}
		observeClusterData("records", "refused")
		return err
	}
	observeClusterData("records", "ok")
	if !changed {
		return nil
	}
	tags := append(append([]string(nil), rec.Tags...), collectionTag(rec.Vendor, rec.Resource))
	if prev != nil {
		tags = append(tags, prev.Tags...)
	}
	req := &PurgeRequest{Tags: tags}
	if err := req.validate(); err != nil {
		return fmt.Errorf("purging %s/%s %q: %w", rec.Vendor, rec.Resource, rec.ID, err)
	}
	n, err := a.applyPurge(req, nowFunc())
	if err != nil {
		return fmt.Errorf("purging %s/%s %q: %w", rec.Vendor, rec.Resource, rec.ID, err)
	}
	initMetrics()
	metrics.purgedEntries.Add(float64(n))
	a.logger.Debug("applied another node's record version",
		zap.String("vendor", rec.Vendor), zap.String("resource", rec.Resource), zap.String("id", rec.ID),
		zap.String("version", rec.Version), zap.String("from", v.Node), zap.Int("purged", n))
	// Media only: the node where the change was made enqueued the pushes.
	return a.mediaChanged(a.ctx, []vendors.Record{rec})
}
