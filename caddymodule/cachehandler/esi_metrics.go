package cachehandler

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/esi"
)

// maxESIPageGroups bounds the page label of the fragment metrics: the
// first groups met get their own series, the rest count as "other".
const maxESIPageGroups = 32

// esiOutcomes are the outcome label's values (esi.Outcome names).
var esiOutcomes = []esi.Outcome{esi.OutcomeMiss, esi.OutcomeHit, esi.OutcomeStale, esi.OutcomeAlt,
	esi.OutcomePlaceholder, esi.OutcomeFailed, esi.OutcomePending}

// esiMetrics count an upstream's fragments per page group and outcome.
type esiMetrics struct {
	upstream string
	mu       sync.RWMutex
	groups   map[string][]prometheus.Counter // indexed by esi.Outcome
}

func newESIMetrics(upstream string) *esiMetrics {
	m := &esiMetrics{upstream: upstream, groups: make(map[string][]prometheus.Counter)}
	m.counters("other") // the overflow series exists from the start
	return m
}

// pageGroup is a page's first path segment ("/" for the home page): the
// label that stands for its template family.
func pageGroup(path string) string {
	if len(path) < 2 || path[0] != '/' {
		return "/"
	}
	end := len(path)
	if i := strings.IndexByte(path[1:], '/'); i >= 0 {
		end = i + 1
	}
	if end == 1 || end > 65 {
		return "/"
	}
	return path[:end] // no allocation: a hit counts without one
}

func (m *esiMetrics) counters(group string) []prometheus.Counter {
	m.mu.RLock()
	c, ok := m.groups[group]
	n := len(m.groups)
	m.mu.RUnlock()
	if ok {
		return c
	}
	if n >= maxESIPageGroups {
		group = "other"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.groups[group]; ok {
		return c
	}
	c = make([]prometheus.Counter, len(esiOutcomes)+1)
	for _, o := range esiOutcomes {
		c[o] = caddymodule.ESIFragments(m.upstream, group, o.String())
	}
	m.groups[group] = c
	return c
}

// observe counts the fragments of one assembled page.
func (m *esiMetrics) observe(pagePath string, reports []esi.Report) {
	c := m.counters(pageGroup(pagePath))
	for _, r := range reports {
		if int(r.Outcome) < len(c) && c[r.Outcome] != nil {
			c[r.Outcome].Inc()
		}
	}
}
