package caddymodule

import (
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/pagecache"
)

// invalidate removes the memory copies of the cache keys (each query-exact,
// with every Vary variant) and marks the snapshots of their paths stale,
// as RFC 9111 §4.4 asks after an unsafe request (the cache handler's
// invalidateAfterUnsafe computes the keys).
func (a *App) invalidate(keys []string) {
	now := nowFunc()
	n := 0
	marks := make([]string, 0, len(keys))
	purgeRefillMu.RLock() // see purgeRefillMu
	defer purgeRefillMu.RUnlock()
	for _, fullKey := range keys {
		marks = append(marks, pagecache.URLTag(pagecache.PathKeyOf(fullKey)))
	}
	// Snapshots first, then memory, as applyPurge does (a snapshot
	// promoted between the two steps is then a purged one).
	if err := a.store.MarkPurged(marks, now); err != nil {
		a.logger.Error("invalidation: marking snapshots stale", zap.Strings("keys", keys), zap.Error(err))
	}
	for _, fullKey := range keys {
		n += a.memory.PurgeURL(pagecache.PathKeyOf(fullKey), fullKey)
	}
	if n > 0 {
		// Counted only when copies went: every form POST is not a purge.
		initMetrics()
		metrics.purges.WithLabelValues("unsafe_method").Inc()
		metrics.purgedEntries.Add(float64(n))
		a.logger.Debug("invalidated by an unsafe request (RFC 9111 §4.4)",
			zap.Strings("keys", keys), zap.Int("entries", n))
	}
}
