package caddymodule

import (
	"context"
	"time"

	"github.com/craftedge/craftedge/cluster"
)

// ClusterHealth is the cluster part of GET /craftedge/health: this node's
// view (no NATS involved) and, when NATS answers within the cluster's
// timeout, the members and lease holders (JetStream's view).
type ClusterHealth struct {
	// Node is this node's name; Namespace the cluster's.
	Node      string `json:"node"`
	Namespace string `json:"namespace"`
	// State is connecting, catching_up, ready, disconnected or closed.
	State string `json:"state"`
	// Connected is true while NATS is reachable; LastError says why it
	// is not (refused, TLS, authorization).
	Connected bool   `json:"connected"`
	LastError string `json:"last_error,omitempty"`
	// MemoryServes is false while the node catches up on missed purges:
	// the memory tier does not serve then.
	MemoryServes bool `json:"memory_serves"`
	// Embedded is the embedded NATS server's client URL, if any.
	Embedded string `json:"embedded,omitempty"`
	// Queued purges wait to be published; Published were stored by
	// JetStream; Applied are other nodes' purges applied here
	// (ApplyFailures could not be recorded in the storage file, a full
	// disk: each applied again, the node catching up meanwhile); Gaps
	// counts the times purges may have been missed, storage_replaced
	// included (this node now runs on another storage file than its
	// purges were recorded in); Overflows the times the queue collapsed
	// into a purge-all.
	Queued        int    `json:"queued"`
	Published     uint64 `json:"published"`
	Applied       uint64 `json:"applied"`
	ApplyFailures uint64 `json:"apply_failures"`
	Gaps          uint64 `json:"gaps"`
	Overflows     uint64 `json:"overflows"`
	// GapFailures counts the attempts to record a gap (mark every
	// snapshot stale) that failed, a full disk; PendingGap is the reason
	// of the gap not recorded yet ("" if none), retried until it is (the
	// node catches up meanwhile, except for storage_replaced, whose
	// memory tier saw every purge).
	GapFailures uint64 `json:"gap_failures"`
	PendingGap  string `json:"pending_gap,omitempty"`
	// Cursor is the stream sequence of the last purge applied here;
	// StreamLastSeq the stream's last and Lag the difference (known only
	// when NATS answered: Members set).
	Cursor        uint64  `json:"cursor"`
	StreamLastSeq *uint64 `json:"stream_last_seq,omitempty"`
	Lag           *uint64 `json:"lag,omitempty"`
	// Members are the nodes following the purge stream.
	Members []cluster.Member `json:"members,omitempty"`
	// Leases are the holders of this config's scheduled work.
	Leases []LeaseHealth `json:"leases,omitempty"`
	// Error is why Members and Leases are missing, if they are.
	Error string `json:"error,omitempty"`
	// Data is the data-sharing parts (outbox, records, snapshots, vendor
	// quotas) this node runs.
	Data *ClusterDataHealth `json:"data,omitempty"`
}

// LeaseHealth is the holder of one lease.
type LeaseHealth struct {
	Name string `json:"name"`
	// Holder is the node holding it ("" if none).
	Holder string `json:"holder"`
	// Here is true if this node holds it.
	Here bool `json:"here"`
}

// clusterHealth reports the cluster, or nil without one.
func (a *App) clusterHealth() *ClusterHealth {
	c := a.cluster
	if c == nil {
		return nil
	}
	st := c.node.Stats()
	h := &ClusterHealth{
		Node: c.cfg.NodeName, Namespace: c.cfg.Namespace,
		State: st.State.String(), Connected: st.Connected, LastError: st.LastError,
		MemoryServes: c.serving.Load(), Embedded: c.node.ClientURL(),
		Queued: st.Queued, Published: st.Published, Applied: st.Applied, ApplyFailures: st.ApplyFailures,
		Gaps: st.Gaps + c.storageGaps.Load(), Overflows: st.Overflows,
		GapFailures: st.GapFailures + c.storageGapFailures.Load(), PendingGap: st.PendingGap,
		Cursor: st.Cursor, Data: a.clusterDataHealth(),
	}
	if h.PendingGap == "" && c.storageGap.Load() != nil {
		h.PendingGap = gapStorageReplaced
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(c.cfg.Timeout, 2*time.Second))
	defer cancel()
	m, err := c.node.Members(ctx)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	last := m.LastSeq
	lag := uint64(0)
	if last > st.Cursor {
		lag = last - st.Cursor
	}
	h.StreamLastSeq, h.Lag, h.Members = &last, &lag, m.Members
	for _, name := range a.scheduleLeases() {
		holder, err := c.node.LeaseHolder(ctx, name)
		if err != nil {
			h.Error = err.Error()
			break
		}
		h.Leases = append(h.Leases, LeaseHealth{Name: name, Holder: holder, Here: holder == c.cfg.NodeName})
	}
	return h
}
