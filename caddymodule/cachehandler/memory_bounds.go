package cachehandler

import (
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/caddymodule"
)

// effectiveMaxEntrySize is the largest response body a handler buffers to
// store: its max_entry_size, but never more than the memory tier can store
// (its max entry size, from the tier's bound), so a response that
// could never be stored streams through instead of being buffered whole.
// A clamp is logged once per handler at provision.
func effectiveMaxEntrySize(a *caddymodule.App, configured int64, logger *zap.Logger) int64 {
	storable := int64(a.MemoryTier().MaxEntryBytes())
	if storable <= 0 || configured <= storable {
		return configured
	}
	logger.Info("max_entry_size is more than the memory tier can store; responses larger than what it can store stream through uncached",
		zap.Int64("max_entry_size", configured), zap.Int64("effective_max_entry_size", storable),
		zap.Int64("memory", a.Memory))
	return storable
}
