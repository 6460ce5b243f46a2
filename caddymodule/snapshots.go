package caddymodule

import (
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
)

// saveSnapshot queues the entry for the snapshot store (write-behind). The
// snapshot keeps the compressed body only, when there is one.
func (a *App) saveSnapshot(key string, e *pagecache.Entry, now time.Time) {
	snap := *e
	if len(snap.Zstd) > 0 {
		snap.Body = nil
		snap.Gzip = nil
		snap.Flags |= pagecache.FlagBodyInZstd
	}
	if a.store.Damaged() != nil {
		return // snapshots are off; the damage was logged once
	}
	tags := make([]string, 0, len(e.Tags)+2)
	tags = append(tags, pagecache.URLTag(pagecache.PathKeyOf(key)), pagecache.HostTag(pagecache.HostOf(key)))
	tags = append(tags, e.Tags...)
	rec := snapshot.Record{Key: key, StoredAt: now, Tags: tags, Value: snap.Encode()}
	if !a.store.Put(rec) {
		a.logger.Warn("snapshot queue full; snapshot dropped", zap.String("key", key))
		return
	}
	a.shareSnapshot(rec) // with the other nodes of a cluster (never blocks)
}
