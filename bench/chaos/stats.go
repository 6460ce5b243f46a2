package main

import (
	"math"
	"slices"
	"strings"
	"time"
)

// Class is a kind of request the load generator sends.
type Class string

// The request classes.
const (
	ClassPage      Class = "page"      // anonymous page view (Craft, cacheable)
	ClassCP        Class = "cp"        // editor's control-panel GET (bypass, session cookie)
	ClassSave      Class = "save"      // editor's save: CP POST, Craft answers with Cache-Purge-Tag
	ClassReadModel Class = "readmodel" // GET /vendors/v1/shop/product/{id}
	ClassLive      Class = "live"      // live vendor read-through, GET /shop-api/products/{id}
	ClassOutbox    Class = "outbox"    // PUT /vendors/v1/shop/product/{id}: acknowledged 202
)

// visitorClasses are the anonymous, cacheable GETs the zero-5xx target is about.
var visitorClasses = []Class{ClassPage, ClassReadModel, ClassLive}

// Serve is how a response was served, from its Cache-Status.
type Serve string

// The serve categories.
const (
	ServeHit      Serve = "hit"      // fresh memory copy
	ServeMiss     Serve = "miss"     // fetched (and usually stored)
	ServeStale    Serve = "stale"    // stale memory copy (upstream failing or slow, breaker open, revalidating)
	ServeSnapshot Serve = "snapshot" // bbolt snapshot
	ServeFallback Serve = "fallback" // configured fallback page
	ServeBypass   Serve = "bypass"   // passed through untouched
	ServeOther    Serve = "other"    // anything else (no Cache-Status, upstream error passed on, ...)
)

var serveOrder = []Serve{ServeHit, ServeMiss, ServeStale, ServeSnapshot, ServeFallback, ServeBypass, ServeOther}

// classifyCacheStatus maps a craftedge Cache-Status value to a Serve, and
// reports whether the answer proves a stored copy exists (a hit of any kind,
// or a fetch that was stored).
func classifyCacheStatus(v string) (Serve, bool) {
	v = strings.ToLower(v)
	if !strings.HasPrefix(v, "craftedge") {
		return ServeOther, false
	}
	has := func(p string) bool {
		for part := range strings.SplitSeq(v, ";") {
			if strings.TrimSpace(part) == p {
				return true
			}
		}
		return false
	}
	switch {
	case has("fwd=bypass"):
		return ServeBypass, false
	case has("detail=snapshot") || has("detail=stale-after-snapshot"):
		return ServeSnapshot, true
	case has("detail=stale") || has("detail=stale-after") || has("detail=stale-after-purged"):
		return ServeStale, true
	case has("detail=fallback"):
		return ServeFallback, false
	case has("detail=upstream-error") || has("detail=no-copy"):
		return ServeOther, false
	case has("hit"):
		return ServeHit, true
	case has("stored"):
		return ServeMiss, true
	case has("fwd=miss") || has("fwd=stale"):
		return ServeMiss, false
	}
	return ServeOther, false
}

// Sample is one request's outcome.
type Sample struct {
	Class   Class
	Start   time.Time
	Latency time.Duration
	// Status is the HTTP status, 0 on a transport error (refused, reset,
	// timeout).
	Status int
	Serve  Serve
	// EverCached reports that this URL had been served from, or stored in,
	// craftedge's cache before this request started.
	EverCached bool
	// Key is the cached resource ("p:/blog", "l:3", "r:3"; empty for
	// editors' requests and writes), CacheStatus the response's
	// Cache-Status (for the Craft-slow breakdown, slowcraft.go).
	Key, CacheStatus string
}

// statusClass is "2xx".."5xx" or "transport".
func (s Sample) statusClass() string {
	if s.Status == 0 {
		return "transport"
	}
	return string(rune('0'+s.Status/100)) + "xx"
}

// percentile returns the p-th percentile (0..100) of sorted by the
// nearest-rank method; 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Summary is the statistics of a set of samples.
type Summary struct {
	N             int
	P50, P95, P99 time.Duration
	Max           time.Duration
	ByClass       map[string]int // 2xx..5xx, transport
	ByServe       map[Serve]int
}

// summarize computes a Summary. Latency percentiles cover requests that got
// an HTTP response (transport errors are counted in ByClass only).
func summarize(samples []Sample) Summary {
	s := Summary{N: len(samples), ByClass: map[string]int{}, ByServe: map[Serve]int{}}
	lat := make([]time.Duration, 0, len(samples))
	for _, x := range samples {
		s.ByClass[x.statusClass()]++
		if x.Status != 0 {
			s.ByServe[x.Serve]++
			lat = append(lat, x.Latency)
		}
	}
	slices.Sort(lat)
	s.P50, s.P95, s.P99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	if len(lat) > 0 {
		s.Max = lat[len(lat)-1]
	}
	return s
}

// Rate is the share of n among the summary's samples (0 when empty).
func (s Summary) Rate(n int) float64 {
	if s.N == 0 {
		return 0
	}
	return float64(n) / float64(s.N)
}

// ServeShare is the share of a serve category among responses.
func (s Summary) ServeShare(c Serve) float64 {
	total := 0
	for _, n := range s.ByServe {
		total += n
	}
	if total == 0 {
		return 0
	}
	return float64(s.ByServe[c]) / float64(total)
}

// filter returns the samples for which keep is true.
func filter(samples []Sample, keep func(Sample) bool) []Sample {
	var out []Sample
	for _, s := range samples {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// Bucket is the latency of the samples started in one time slot.
type Bucket struct {
	At       time.Duration // slot start, from the run's start
	P50, P99 time.Duration
	Max      time.Duration
	N        int
}

// buckets groups samples by start time into slots of width and returns
// each non-empty slot's percentiles, in time order.
func buckets(samples []Sample, start time.Time, width time.Duration) []Bucket {
	groups := map[int][]time.Duration{}
	for _, s := range samples {
		if s.Status == 0 {
			continue
		}
		i := int(s.Start.Sub(start) / width)
		groups[i] = append(groups[i], s.Latency)
	}
	keys := make([]int, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]Bucket, 0, len(keys))
	for _, k := range keys {
		lat := groups[k]
		slices.Sort(lat)
		out = append(out, Bucket{
			At: time.Duration(k) * width, N: len(lat),
			P50: percentile(lat, 50), P99: percentile(lat, 99), Max: lat[len(lat)-1],
		})
	}
	return out
}

// HitPoint is the memory hits among the page responses started in one
// time slot.
type HitPoint struct {
	At   time.Duration // slot start, from the series' origin
	Hits int           // responses served from a fresh memory copy (ServeHit)
	N    int           // responses (transport errors not counted)
	P95  time.Duration // of the responses
}

// Ratio is Hits/N, 0 for an empty slot.
func (h HitPoint) Ratio() float64 {
	if h.N == 0 {
		return 0
	}
	return float64(h.Hits) / float64(h.N)
}

// hitSeries groups the samples started in [from, to) into slots of width
// from `from` and returns every slot, empty ones included, in time order.
func hitSeries(samples []Sample, from, to time.Time, width time.Duration) []HitPoint {
	if !to.After(from) || width <= 0 {
		return nil
	}
	n := int((to.Sub(from) + width - 1) / width)
	out := make([]HitPoint, n)
	for i := range out {
		out[i].At = time.Duration(i) * width
	}
	lat := make([][]time.Duration, n)
	for _, s := range samples {
		if s.Status == 0 || s.Start.Before(from) || !s.Start.Before(to) {
			continue
		}
		i := int(s.Start.Sub(from) / width)
		out[i].N++
		lat[i] = append(lat[i], s.Latency)
		if s.Serve == ServeHit {
			out[i].Hits++
		}
	}
	for i := range out {
		slices.Sort(lat[i])
		out[i].P95 = percentile(lat[i], 95)
	}
	return out
}

// hitRatio is the share of memory hits among the samples' responses.
func hitRatio(samples []Sample) float64 {
	s := summarize(samples)
	return s.ServeShare(ServeHit)
}

// recovered returns the end of the first non-empty slot whose ratio is at
// least want (the time from the series' origin by which the ratio was
// back), and false when no slot reaches it.
func recovered(series []HitPoint, want float64, width time.Duration) (time.Duration, bool) {
	for _, h := range series {
		if h.N > 0 && h.Ratio() >= want {
			return h.At + width, true
		}
	}
	return 0, false
}
