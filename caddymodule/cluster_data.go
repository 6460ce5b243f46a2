package caddymodule

import (
	"sync/atomic"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/vendors"
)

// The data-sharing parts of cluster mode, started with the app that runs
// on a cluster node and stopped with it (a reload's new app starts its
// own before the old one stops; each stops only its own):
//   - the outbox (cluster_outbox.go): writes accepted into the cluster's
//     work queue, delivered by any node;
//   - the read model (cluster_readmodel.go): every record version a node
//     stores is published and applied by the other nodes;
//   - shared snapshots (cluster_snapshots.go): the copies a node stores
//     are published; a node imports them once its node is ready;
//   - vendor quotas (cluster_quota.go): each vendor's rate held by the
//     cluster as a whole.

// clusterLive is what the request paths read of the data-sharing parts
// (set while they run): the records API's outbox backend, saveSnapshot's
// shared store.
type clusterLive struct {
	outbox    atomic.Pointer[clusterOutbox]
	snapshots atomic.Pointer[clusterSnapshots]
}

// clusterData is what this app runs of the data-sharing parts.
type clusterData struct {
	rm     *cluster.ReadModel
	shared *clusterSnapshots
	quotas []*clusterQuota
}

// ClusterDataHealth is the data-sharing part of the cluster's health: this
// node's counters (no NATS involved).
type ClusterDataHealth struct {
	// Outbox counts the cluster outbox's jobs handled by this node.
	Outbox *ClusterOutboxHealth `json:"outbox,omitempty"`
	// Records is the replicated read model.
	Records *ClusterRecordsHealth `json:"records,omitempty"`
	// Snapshots are the shared snapshots this node published and imported.
	Snapshots *ClusterSnapshotsHealth `json:"snapshots,omitempty"`
	// Quotas are the vendors' cluster-wide rate limits, by vendor.
	Quotas map[string]ClusterQuotaHealth `json:"quotas,omitempty"`
}

// ClusterOutboxHealth counts this node's part of the cluster outbox
// (cluster.OutboxStats).
type ClusterOutboxHealth struct {
	// Accepted writes (Duplicates: the same key again); Delivered,
	// Retried and Dead attempts' outcomes; Blocked times a job waited for
	// an earlier job of its entity; Malformed messages; GivenBack jobs
	// this node could not run (its storage file damaged or full: the
	// attempt not counted, any node runs it); Running attempts now.
	Accepted   uint64 `json:"accepted"`
	Duplicates uint64 `json:"duplicates"`
	Delivered  uint64 `json:"delivered"`
	Retried    uint64 `json:"retried"`
	Dead       uint64 `json:"dead"`
	Blocked    uint64 `json:"blocked"`
	Malformed  uint64 `json:"malformed"`
	GivenBack  uint64 `json:"given_back"`
	Running    int64  `json:"running"`
}

// ClusterRecordsHealth is the replicated read model on this node
// (cluster.ReadModelStats).
type ClusterRecordsHealth struct {
	// Ready once every version the bucket held at (re)connection is
	// applied here.
	Ready bool `json:"ready"`
	// Published versions stored in the bucket (Superseded: it had a newer
	// one); Applied other nodes' versions (ApplyErrors refused: invalid,
	// of another record than their key, not configured here, updated far
	// in the future; Malformed bucket values; Retries could not be stored
	// then, a full disk or a damaged file, and are applied again); Pending
	// versions wait for NATS (Dropped overflowed); Revision is the bucket
	// revision last applied.
	Published   uint64 `json:"published"`
	Superseded  uint64 `json:"superseded"`
	Applied     uint64 `json:"applied"`
	ApplyErrors uint64 `json:"apply_errors"`
	Malformed   uint64 `json:"malformed"`
	Retries     uint64 `json:"retries"`
	Pending     int    `json:"pending"`
	Dropped     uint64 `json:"dropped"`
	Revision    uint64 `json:"revision"`
}

// startClusterData starts the data-sharing parts on this app's node.
func (a *App) startClusterData() error {
	c := a.cluster
	if c == nil {
		return nil
	}
	<-c.started
	co, err := a.startClusterOutbox(c.node)
	if err != nil {
		return err
	}
	d := &clusterData{}
	a.clusterData = d
	if d.rm, err = a.startReadModel(c.node); err != nil {
		co.Stop()
		a.clusterData = nil
		return err
	}
	if d.shared, err = a.startSharedSnapshots(c); err != nil {
		a.stopClusterData()
		return err
	}
	if d.quotas, err = a.startClusterQuotas(c.node); err != nil {
		a.stopClusterData()
		return err
	}
	return nil
}

// stopClusterData stops this app's data-sharing parts, before the node
// may be handed over or closed.
func (a *App) stopClusterData() {
	if co := a.clusterLive.outbox.Load(); co != nil {
		co.Stop()
	}
	d := a.clusterData
	if d == nil {
		return
	}
	a.stopClusterQuotas(d.quotas)
	if d.shared != nil {
		d.shared.stop()
	}
	if d.rm != nil {
		a.records.OnChange(nil)
		d.rm.Close()
	}
}

// clusterDataHealth reports the data-sharing parts, nil when none run.
func (a *App) clusterDataHealth() *ClusterDataHealth {
	d := a.clusterData
	if d == nil {
		return nil
	}
	h := &ClusterDataHealth{}
	if co := a.clusterLive.outbox.Load(); co != nil {
		st := co.o.Stats()
		h.Outbox = &ClusterOutboxHealth{Accepted: st.Accepted, Duplicates: st.Duplicates, Delivered: st.Delivered,
			Retried: st.Retried, Dead: st.Dead, Blocked: st.Blocked, Malformed: st.Malformed, GivenBack: st.GivenBack, Running: st.Running}
	}
	if d.rm != nil {
		st := d.rm.Stats()
		h.Records = &ClusterRecordsHealth{Ready: st.Ready, Published: st.Published, Superseded: st.Superseded,
			Applied: st.Applied, ApplyErrors: st.ApplyErrors, Malformed: st.Malformed, Retries: st.Retries, Pending: st.Pending,
			Dropped: st.Dropped, Revision: st.Revision}
	}
	if d.shared != nil {
		st := d.shared.health()
		h.Snapshots = &st
	}
	if len(d.quotas) > 0 {
		h.Quotas = make(map[string]ClusterQuotaHealth, len(d.quotas))
		for _, q := range d.quotas {
			h.Quotas[q.vendor] = q.health()
		}
	}
	return h
}

// quotaOf reports whether d gave client a quota.
func (d *clusterData) quotaOf(client *vendors.Client) bool {
	for _, q := range d.quotas {
		if q.client == client {
			return true
		}
	}
	return false
}
