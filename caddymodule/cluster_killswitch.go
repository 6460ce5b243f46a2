package caddymodule

import (
	"context"
	"maps"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/cluster"
)

// The kill switch in a cluster. The rule:
//
//   - A change made on a node (PUT /craftedge/snapshot-only, the status
//     page) applies there at once and is stored in its bbolt file, as
//     without a cluster; then it is written to the cluster's key-value
//     bucket, which every node watches.
//   - When NATS cannot take it, the change stays pending, in the bbolt
//     file too (it survives a restart), and is written to the cluster as
//     soon as the node connects again: the last change written wins.
//   - The cluster's set of overrides, received on every (re)connection
//     and on each change, replaces the node's own, pending changes kept
//     on top; it is written to the bbolt file, so a node restarted while
//     NATS is unreachable keeps the last set it knew.

// shareOverride writes a change made on this node to the cluster, or
// keeps it pending when NATS is unreachable.
func (a *App) shareOverride(upstream string, on bool) {
	c := a.cluster
	if c == nil {
		return
	}
	c.pendingMu.Lock()
	c.pending[upstream] = on
	if err := c.saveKillPendingLocked(); err != nil {
		a.logger.Error("storing a pending kill-switch change", zap.Error(err))
	}
	c.pendingMu.Unlock()
	c.pushPending(a.ctx)
}

// pushPending writes the pending changes to the cluster, one at a time,
// forgetting each once stored (unless changed again meanwhile). It stops
// at the first failure; the next connection tries again.
func (c *clusterNode) pushPending(ctx context.Context) {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	c.pendingMu.Lock()
	todo := maps.Clone(c.pending)
	c.pendingMu.Unlock()
	for _, up := range sortedKeys(todo) {
		on := todo[up]
		if err := c.node.SetSnapshotOnly(ctx, up, on); err != nil {
			if cluster.ErrNotConnected(err) {
				c.log.Info("kill-switch change kept here until NATS is back", zap.String("upstream", up), zap.Bool("enabled", on))
			} else {
				c.log.Warn("sharing a kill-switch change; kept pending", zap.String("upstream", up), zap.Bool("enabled", on), zap.Error(err))
			}
			return
		}
		c.pendingMu.Lock()
		if v, ok := c.pending[up]; ok && v == on {
			delete(c.pending, up)
			if err := c.saveKillPendingLocked(); err != nil {
				c.log.Error("storing the pending kill-switch changes", zap.Error(err))
			}
		}
		c.pendingMu.Unlock()
	}
}

// onKillSwitch applies the cluster's overrides (the whole set), with this
// node's pending changes on top, to the local store, and writes the
// pending changes to the cluster.
func (c *clusterNode) onKillSwitch(set map[string]bool) {
	<-c.started
	a := c.app.Load()
	c.pendingMu.Lock()
	want := maps.Clone(set)
	for up, on := range c.pending {
		if on {
			want[up] = true
		} else {
			delete(want, up)
		}
	}
	pending := len(c.pending) > 0
	c.pendingMu.Unlock()

	have := a.store.SnapshotOnlyOverrides()
	changed := false
	for _, up := range sortedKeys(mergeKeys(have, want)) {
		if have[up] == want[up] {
			continue
		}
		if err := a.store.SetSnapshotOnlyOverride(up, want[up]); err != nil {
			a.logger.Error("applying the cluster's kill switch", zap.String("upstream", up), zap.Error(err))
			continue
		}
		changed = true
		a.logger.Warn("snapshot-only override changed by the cluster",
			zap.String("upstream", up), zap.Bool("enabled", want[up]))
	}
	if changed {
		a.loadOverrides()
	}
	if pending {
		go c.pushPending(context.Background())
	}
}

// pendingOverrides are the changes not yet shared (nil without a
// cluster).
func (a *App) pendingOverrides() map[string]bool {
	c := a.cluster
	if c == nil {
		return nil
	}
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	return maps.Clone(c.pending)
}

func mergeKeys(a, b map[string]bool) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
