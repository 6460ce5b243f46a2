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
	var raw []byte
	err := a.store.DB().View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket(bucketCluster); bk != nil {
			raw = append(raw, bk.Get(clusterStoreKey(b.c.cfg, "cursor"))...)
		}
		return nil
	})
	if err != nil || raw == nil {
		if err != nil {
			b.c.log.Warn("reading the purge cursor: treated as none", zap.Error(err))
		}
		return cur, false, nil
	}
	if err := json.Unmarshal(raw, &cur); err != nil {
		b.c.log.Warn("unreadable purge cursor: treated as none", zap.Error(err))
		return cur, false, nil
	}
	return cur, true, nil
}

// StoreCursor stores the cursor.
func (b *boltCursors) StoreCursor(_ context.Context, cur cluster.Cursor) error {
	<-b.c.started
	raw, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	return putClusterValue(b.c.app.Load().store, clusterStoreKey(b.c.cfg, "cursor"), raw)
}

func putClusterValue(store *snapshot.Store, key, value []byte) error {
	err := store.DB().Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketCluster)
		if err != nil {
			return err
		}
		if value == nil {
			return bk.Delete(key)
		}
		return bk.Put(key, value)
	})
	if err != nil {
		return fmt.Errorf("storing %s in %s: %w", key, store.Path(), err)
	}
	return nil
}

// loadKillPending reads the kill-switch changes not yet shared.
func loadKillPending(store *snapshot.Store, cfg cluster.Config) map[string]bool {
	out := map[string]bool{}
	var raw []byte
	_ = store.DB().View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket(bucketCluster); bk != nil {
			raw = append(raw, bk.Get(clusterStoreKey(cfg, "killswitch_pending"))...)
		}
		return nil
	})
	if raw != nil && json.Unmarshal(raw, &out) != nil {
		return map[string]bool{}
	}
	return out
}

// saveKillPending stores the pending changes (under pendingMu).
func (c *clusterNode) saveKillPendingLocked() error {
	var raw []byte
	if len(c.pending) > 0 {
		var err error
		if raw, err = json.Marshal(c.pending); err != nil {
			return err
		}
	}
	err := putClusterValue(c.app.Load().store, clusterStoreKey(c.cfg, "killswitch_pending"), raw)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return nil
	}
	return err
}
