package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/snapshot"
)

// The node's own state in the bbolt file, beside the snapshots and purge
// marks it is about: the cursor of the last purge applied (so a restore
// of the file from a backup replays from the backup's position) and the
// kill-switch changes not yet stored by the cluster. Keys are
// <namespace>/<node>/<what> in the bucket "cluster".

var bucketCluster = []byte("cluster")

func clusterStoreKey(cfg cluster.Config, what string) []byte {
	ns := cfg.Namespace
	if ns == "" {
		ns = cluster.DefaultNamespace
	}
	return []byte(ns + "/" + cfg.NodeName + "/" + what)
}

// boltCursors is the node's cluster.CursorStore in the app's bbolt file.
type boltCursors struct{ c *clusterNode }

// LoadCursor returns the stored cursor. An unreadable file or value is
// no cursor (the node then reports a gap and starts afresh), never an
// error that would keep the node from following purges.
func (b *boltCursors) LoadCursor(context.Context) (cluster.Cursor, bool, error) {
	<-b.c.started
	a := b.c.app.Load()
	var cur cluster.Cursor
	raw, err := a.getClusterValue(clusterStoreKey(b.c.cfg, "cursor"))
	if err != nil || raw == nil {
		if err != nil {
			b.c.log.Warn("reading the purge cursor: treated as none", zap.Error(err))
		}
		return cur, false, nil
	}
	if err := json.Unmarshal(raw, &cur); err != nil {
		b.c.log.Warn("unreadable purge cursor: treated as none", zap.String("storage", a.store.Path()), zap.Error(err))
		return cur, false, nil
	}
	return cur, true, nil
}

// StoreCursor stores the cursor. On a damaged file it stores nothing and
// succeeds: the file's marks are gone with it, a node restarted on a
// fresh file has no cursor (a gap, as it should), and failing would keep
// the node catching up (its memory tier off) for as long as the file is
// damaged.
func (b *boltCursors) StoreCursor(_ context.Context, cur cluster.Cursor) error {
	<-b.c.started
	raw, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	err = b.c.app.Load().putClusterValue(clusterStoreKey(b.c.cfg, "cursor"), raw)
	if errors.Is(err, snapshot.ErrDamaged) || errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return nil
	}
	return err
}

// getClusterValue reads key of the bucket "cluster" (nil if absent). A
// panic of bbolt (a damaged file) marks the file damaged instead of
// ending the process; a damaged file has no values.
func (a *App) getClusterValue(key []byte) ([]byte, error) {
	if d := a.store.Damaged(); d != nil {
		return nil, d
	}
	var raw []byte
	err := a.guardStorage(func() error {
		return a.store.DB().View(func(tx *bolt.Tx) error {
			if bk := tx.Bucket(bucketCluster); bk != nil {
				raw = append(raw, bk.Get(key)...)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s in %s: %w", key, a.store.Path(), err)
	}
	return raw, nil
}

// putClusterValue stores (or, value nil, deletes) key of the bucket
// "cluster", guarded as getClusterValue.
func (a *App) putClusterValue(key, value []byte) error {
	if d := a.store.Damaged(); d != nil {
		return d
	}
	err := a.guardStorage(func() error {
		return a.store.DB().Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(bucketCluster)
			if err != nil {
				return err
			}
			if value == nil {
				return bk.Delete(key)
			}
			return bk.Put(key, value)
		})
	})
	if err != nil {
		return fmt.Errorf("storing %s in %s: %w", key, a.store.Path(), err)
	}
	return nil
}

// loadKillPending reads the kill-switch changes not yet shared (none from
// an unreadable file or value).
func loadKillPending(a *App, cfg cluster.Config) map[string]bool {
	out := map[string]bool{}
	raw, err := a.getClusterValue(clusterStoreKey(cfg, "killswitch_pending"))
	if err != nil {
		a.logger.Warn("reading the pending kill-switch changes: treated as none", zap.Error(err))
		return out
	}
	if raw != nil && json.Unmarshal(raw, &out) != nil {
		a.logger.Warn("unreadable pending kill-switch changes: treated as none", zap.String("storage", a.store.Path()))
		return map[string]bool{}
	}
	return out
}

// saveKillPending stores the pending changes (under pendingMu). On a
// damaged file they stay in memory only (and are shared when NATS is
// back), as the kill switch's own overrides do.
func (c *clusterNode) saveKillPendingLocked() error {
	var raw []byte
	if len(c.pending) > 0 {
		var err error
		if raw, err = json.Marshal(c.pending); err != nil {
			return err
		}
	}
	err := c.app.Load().putClusterValue(clusterStoreKey(c.cfg, "killswitch_pending"), raw)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) || errors.Is(err, snapshot.ErrDamaged) {
		c.log.Warn("pending kill-switch changes kept in memory only: the storage file is damaged", zap.Error(err))
		return nil
	}
	return err
}
