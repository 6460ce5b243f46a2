package cachehandler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/craftedge/craftedge/caddymodule"
)

// Cache outcomes (label "outcome" of craftedge_cache_requests_total).
const (
	outcomeHit          = "hit"
	outcomeMiss         = "miss"
	outcomeRevalidated  = "revalidated"
	outcomeStale        = "stale"
	outcomeStaleOnError = "stale_on_error"
	outcomeStaleAfter   = "stale_after"
	outcomeSnapshot     = "snapshot"
	outcomeFallback     = "fallback"
	outcomeError        = "error"
	outcomeBypass       = "bypass"
	outcomePassThrough  = "uncacheable"
)

var cacheOutcomes = []string{outcomeHit, outcomeMiss, outcomeRevalidated, outcomeStale, outcomeStaleOnError,
	outcomeStaleAfter, outcomeSnapshot, outcomeFallback, outcomeError, outcomeBypass, outcomePassThrough}

// handlerMetrics are a handler's counters, resolved once at provision so
// the hot path only does an atomic add.
type handlerMetrics struct {
	byOutcome map[string]prometheus.Counter
	hit       prometheus.Counter
}

func newHandlerMetrics(upstream string) handlerMetrics {
	m := handlerMetrics{byOutcome: make(map[string]prometheus.Counter, len(cacheOutcomes))}
	for _, o := range cacheOutcomes {
		m.byOutcome[o] = caddymodule.CacheRequests(upstream, o)
	}
	m.hit = m.byOutcome[outcomeHit]
	return m
}

func (m handlerMetrics) count(outcome string) {
	if c := m.byOutcome[outcome]; c != nil {
		c.Inc()
	}
}
