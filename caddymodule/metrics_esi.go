package caddymodule

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// esiMetrics count the fragments of assembled pages (edge-side includes,
// issue 19) by upstream, page group and outcome. The page group is a label
// of bounded cardinality chosen by the cache handler (the page's first path
// segment, folded into "other" past a fixed number), never a raw URL.
var esiMetrics = struct {
	once      sync.Once
	fragments *prometheus.CounterVec
}{}

func initESIMetrics() {
	esiMetrics.once.Do(func() {
		esiMetrics.fragments = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "esi", Name: "fragments_total",
			Help: "Fragments of assembled pages by upstream, page group (first path segment) and outcome (hit, miss, stale, alt, placeholder, failed, pending).",
		}, []string{"upstream", "page", "outcome"})
	})
}

// RegisterESIMetrics adds the ESI collectors to a config's registry (the
// cache handler calls it from Provision with ctx.GetMetricsRegistry();
// counters survive reloads).
func RegisterESIMetrics(reg *prometheus.Registry) error {
	initESIMetrics()
	if reg == nil {
		return nil
	}
	return registerCollectors(reg, esiMetrics.fragments)
}

// ESIFragments is the craftedge_esi_fragments_total counter of an
// upstream, page group and outcome.
func ESIFragments(upstream, page, outcome string) prometheus.Counter {
	initESIMetrics()
	return esiMetrics.fragments.WithLabelValues(upstream, page, outcome)
}
