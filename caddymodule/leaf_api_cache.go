package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
	"github.com/craftedge/craftedge/vendors"
)

// The App's API for the cache handler (caddymodule/cachehandler, the
// craftedge directive), which gets the app with ctx.App("craftedge"): the
// state every handler of a config shares (memory tier, snapshots, upstream
// breakers, kill switch, vendor clients), the counters and metrics it
// moves, and the Caddyfile helpers its directive shares with the global
// option. A hit calls MemoryTier alone (and its counters); the rest is
// the miss, store, bypass and fallback paths' and Provision's.

// MemoryTier is the memory tier shared by every cache handler of the config.
func (a *App) MemoryTier() *pagecache.Cache { return a.memory }

// MemoryServes reports whether lookups may use the memory tier now:
// always without a cluster; with one, not while the node catches up on
// purges it missed (cluster.go). One atomic load: the hit path never
// touches NATS.
func (a *App) MemoryServes() bool {
	return a.cluster == nil || a.cluster.serving.Load()
}

// Snapshot reads the last good copy stored under key (a cache key, or a
// Vary variant's key) from the snapshot store. A copy a purge or an
// invalidation marked stale (SnapshotStale) comes back marked so
// (pagecache.MarkPurgedSnapshot): it is never fresh, also for an origin
// that forbade serving it stale.
func (a *App) Snapshot(key string) (rec snapshot.Record, found bool, err error) {
	rec, found, err = a.store.Get(key)
	if found && err == nil && a.store.Stale(rec) {
		rec.Value = pagecache.MarkPurgedSnapshot(rec.Value)
	}
	return rec, found, err
}

// SaveSnapshot queues a stored entry for the snapshot store
// (write-behind), keeping only its compressed body when it has one. It
// does nothing while the bbolt file is damaged.
func (a *App) SaveSnapshot(key string, e *pagecache.Entry, now time.Time) {
	a.saveSnapshot(key, e, now)
}

// Invalidate removes the memory copies of the cache keys (each with every
// Vary variant) and marks the snapshots of their paths stale, as RFC 9111
// §4.4 asks after a successful unsafe request.
func (a *App) Invalidate(keys []string) { a.invalidate(keys) }

// PurgeTags purges the entries tagged with any of tags (an upstream's
// Cache-Purge-Tag instruction, in the app's purge_mode; hard for
// Cache-Purge-Tag-Hard) and returns how many memory entries went or were
// marked.
func (a *App) PurgeTags(tags []string, hard bool) int { return a.purgeTags(tags, hard) }

// KillSwitchOn reports whether cacheable requests of an upstream must not
// reach it: the global snapshot_only, the handler's own (handlerOn), or an
// admin override for all upstreams or this one.
func (a *App) KillSwitchOn(upstream string, handlerOn bool) bool {
	return a.snapshotOnly(upstream, handlerOn)
}

// UpstreamBreaker returns the circuit breaker of a named upstream of this
// config, creating it on first use; handlers naming the same upstream
// share it (and must agree on cfg), and it survives a reload that keeps
// its settings. snapshotOnly records that a handler of the upstream has
// snapshot_only on, for health output and metrics.
func (a *App) UpstreamBreaker(name string, cfg circuit.Config, snapshotOnly bool) (*circuit.Breaker, error) {
	u, err := a.upstream(name, cfg)
	if err != nil {
		return nil, err
	}
	if snapshotOnly {
		u.handlerSnapshotOnly = true
	}
	return u.breaker.Breaker, nil
}

// VendorClient returns the client and configuration of a vendor of the
// global craftedge block.
func (a *App) VendorClient(name string) (*vendors.Client, *VendorConfig, bool) {
	return a.vendorClient(name)
}

// CountBypassed counts a request passed through uncached (health output).
func (a *App) CountBypassed() { a.counters.bypassed.Add(1) }

// CountStaleServed counts a stale memory copy served because the upstream
// could not be used (health output).
func (a *App) CountStaleServed() { a.counters.staleServed.Add(1) }

// CountSnapshotServed counts a snapshot served (health output).
func (a *App) CountSnapshotServed() { a.counters.snapshotServed.Add(1) }

// CountFallbackServed counts a configured fallback served (health output).
func (a *App) CountFallbackServed() { a.counters.fallbackServed.Add(1) }

// VendorTag is the cache tag of every live read of a vendor.
func VendorTag(vendor string) string { return vendorTag(vendor) }

// Metrics of the cache handler (registered by the app).

// CacheRequests is the craftedge_cache_requests_total counter of an
// upstream and an outcome (hit, miss, stale, ...). Handlers resolve their
// counters once, at provision.
func CacheRequests(upstream, outcome string) prometheus.Counter {
	initMetrics()
	return metrics.cacheRequests.WithLabelValues(upstream, outcome)
}

// ObserveUpstreamCall records one call of an upstream for a cacheable
// request in craftedge_upstream_requests_total (outcome: success, failure,
// timeout, breaker_open; status: what the upstream wrote, 0 for nothing)
// and, for a call that was made (not breaker_open), its duration in
// craftedge_upstream_request_duration_seconds.
func ObserveUpstreamCall(upstream, outcome string, status int, took time.Duration) {
	initMetrics()
	if outcome != "breaker_open" {
		metrics.upstreamDuration.WithLabelValues(upstream).Observe(took.Seconds())
	}
	metrics.upstreamRequests.WithLabelValues(upstream, outcome, codeClass(status)).Inc()
}

// CountBypassResponse records the response to a bypassed request in
// craftedge_bypass_responses_total: area cp (control panel and actions)
// or site, method GET, POST or other, and the status sent.
func CountBypassResponse(upstream, area, method string, status int) {
	initMetrics()
	metrics.bypassResponses.WithLabelValues(upstream, area, method, codeClass(status)).Inc()
}

// Caddyfile helpers the craftedge directive shares with the global option.

// ParseOnOff reads an optional on|off (or true|false) argument of the
// subdirective the dispenser is on; none means on.
func ParseOnOff(d *caddyfile.Dispenser) (bool, error) { return parseOnOff(d) }

// ParseSize reads one Caddyfile size argument (e.g. 4MiB), positive and
// at most 1 PiB.
func ParseSize(d *caddyfile.Dispenser) (int64, error) { return parseSize(d) }

// ParseBreaker parses a breaker subdirective (the dispenser is on the
// "breaker" token): `breaker off` or a block of failures, min_paths,
// successes and cooldown, amending cfg. Errors name the Caddyfile line.
func ParseBreaker(d *caddyfile.Dispenser, cfg circuit.Config) (circuit.Config, error) {
	return parseBreaker(d, cfg)
}
