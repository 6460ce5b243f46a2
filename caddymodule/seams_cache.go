package caddymodule

import (
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
)

// NewDetachedApp returns an app holding only the given memory tier and
// snapshot store, neither provisioned by Caddy nor started: the cache
// handler's benchmarks and unit tests call a handler's ServeHTTP on it
// without a Caddy context. Its upstream breakers are pooled as a loaded
// app's are: call Cleanup to release them.
func NewDetachedApp(store *snapshot.Store, memory *pagecache.Cache) *App {
	return &App{
		store:       store,
		memory:      memory,
		logger:      zap.NewNop(),
		counters:    &processCounters,
		overrides:   new(atomic.Pointer[map[string]bool]),
		upstreamsMu: new(sync.Mutex),
		upstreams:   make(map[string]*upstreamState),
	}
}

// SnapshotStale reports whether a purge or an invalidation marked a
// snapshot (read with Snapshot) stale after it was stored.
func (a *App) SnapshotStale(rec snapshot.Record) bool { return a.store.Stale(rec) }
