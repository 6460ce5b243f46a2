package caddymodule

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics live in Caddy's registry (ctx.GetMetricsRegistry()): collectors
// are created once per process and registered on every config load, so
// counters survive `caddy reload`. Labels are low-cardinality: upstream
// names from the config, fixed outcome sets.
var metrics = struct {
	once sync.Once

	cacheRequests      *prometheus.CounterVec
	upstreamRequests   *prometheus.CounterVec
	upstreamDuration   *prometheus.HistogramVec
	breakerTransitions *prometheus.CounterVec
	purges             *prometheus.CounterVec
	bypassResponses    *prometheus.CounterVec
	purgedEntries      prometheus.Counter
	snapshotWrites     prometheus.Histogram
	state              *stateCollector
}{}

const metricsNamespace = "craftedge"

func initMetrics() {
	metrics.once.Do(func() {
		metrics.cacheRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "cache", Name: "requests_total",
			Help: "Requests through the craftedge handler by upstream and outcome (hit, miss, revalidated, stale, stale_on_error, snapshot, fallback, error, bypass, uncacheable).",
		}, []string{"upstream", "outcome"})
		metrics.upstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "upstream", Name: "requests_total",
			Help: "Calls to an upstream for cacheable requests by outcome (success, failure, timeout, breaker_open) and status class (2xx..5xx, none).",
		}, []string{"upstream", "outcome", "code_class"})
		metrics.upstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "upstream", Name: "request_duration_seconds",
			Help:    "Duration of upstream calls for cacheable requests, until the response is buffered or starts streaming.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"upstream"})
		metrics.breakerTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "breaker", Name: "transitions_total",
			Help: "Circuit breaker state changes by upstream and the state entered.",
		}, []string{"upstream", "state"})
		metrics.purges = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "cache", Name: "purges_total",
			Help: "Purge requests by source (admin, upstream_header, remote, vendor_sync, outbox, webhook, unsafe_method).",
		}, []string{"source"})
		metrics.bypassResponses = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "bypass", Name: "responses_total",
			Help: "Responses to bypassed requests by upstream, area (cp for the control panel and actions, site otherwise), method (GET, POST, other) and status class; 5xx on cp POSTs are failed publishes.",
		}, []string{"upstream", "area", "method", "code_class"})
		metrics.purgedEntries = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "cache", Name: "purged_entries_total",
			Help: "Memory tier entries removed by purges.",
		})
		metrics.snapshotWrites = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "snapshot", Name: "write_duration_seconds",
			Help:    "Duration of write-behind snapshot transactions (one bbolt commit per batch, fsyncs included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		})
		metrics.state = &stateCollector{}
	})
}

// registerMetrics registers the collectors with a config's registry.
func registerMetrics(reg *prometheus.Registry) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	collectors := []prometheus.Collector{
		metrics.cacheRequests, metrics.upstreamRequests, metrics.upstreamDuration,
		metrics.breakerTransitions, metrics.purges, metrics.purgedEntries, metrics.bypassResponses,
		metrics.snapshotWrites, metrics.state, buildInfo,
	}
	collectors = append(collectors, vendorCollectors()...)
	collectors = append(collectors, jobCollectors()...)
	return registerCollectors(reg, collectors...)
}

// registerCollectors registers each collector with reg. A collector already
// registered there (a config reload reuses the process-wide collectors, so
// counters survive reloads) is not an error; any other failure (a clashing
// descriptor) is returned for the caller to wrap. It is the one registration loop for every
// craftedge metric family (cache, vendors, jobs, CDN, webhooks).
func registerCollectors(reg *prometheus.Registry, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

func codeClass(status int) string {
	switch {
	case status >= 500:
		return "5xx"
	case status >= 400:
		return "4xx"
	case status >= 300:
		return "3xx"
	case status >= 200:
		return "2xx"
	default:
		return "none"
	}
}

// stateCollector reports the running app's state at scrape time: memory
// tier and snapshot store sizes, breaker states, kill switches.
type stateCollector struct{}

var (
	descMemoryEntries     = prometheus.NewDesc("craftedge_memory_entries", "Entries in the memory tier.", nil, nil)
	descMemoryBytes       = prometheus.NewDesc("craftedge_memory_bytes", "Bytes in use under the memory bound: the entries the memory tier may serve (keys and encoded entries) and the tag index.", nil, nil)
	descMemoryAlloc       = prometheus.NewDesc("craftedge_memory_allocated_bytes", "Bytes the memory tier's store holds for its entries, as it weighs them (kept within the entries' share of the bound).", nil, nil)
	descMemoryMax         = prometheus.NewDesc("craftedge_memory_max_bytes", "Configured bound of the memory tier.", nil, nil)
	descMemoryEvicted     = prometheus.NewDesc("craftedge_memory_evictions_total", "Entries evicted from the memory tier for space or age.", nil, nil)
	descMemoryHits        = prometheus.NewDesc("craftedge_memory_hits_total", "Memory tier lookups that found a fresh entry.", nil, nil)
	descMemoryMisses      = prometheus.NewDesc("craftedge_memory_misses_total", "Memory tier lookups without a fresh entry.", nil, nil)
	descMemoryStoredStale = prometheus.NewDesc("craftedge_memory_stored_stale_after_purge_total", "Responses stored stale because a purge that could select them ran while they were fetched.", nil, nil)
	descMemoryNotStored   = prometheus.NewDesc("craftedge_memory_not_stored_after_hard_purge_total", "Responses not stored (nor snapshotted) because a hard purge selecting them ran while they were fetched.", nil, nil)
	descSnapEntries       = prometheus.NewDesc("craftedge_snapshot_entries", "Snapshots stored in bbolt.", nil, nil)
	descSnapBytes         = prometheus.NewDesc("craftedge_snapshot_bytes", "Bytes of stored snapshots.", nil, nil)
	descSnapMax           = prometheus.NewDesc("craftedge_snapshot_max_bytes", "Configured bound of snapshot bytes (0 = unbounded).", nil, nil)
	descSnapFile          = prometheus.NewDesc("craftedge_snapshot_file_bytes", "Size of the bbolt file.", nil, nil)
	descSnapPending       = prometheus.NewDesc("craftedge_snapshot_pending_writes", "Snapshots queued for the write-behind writer.", nil, nil)
	descSnapDropped       = prometheus.NewDesc("craftedge_snapshot_dropped_total", "Snapshots dropped because the write queue was full.", nil, nil)
	descSnapWriteErrs     = prometheus.NewDesc("craftedge_snapshot_write_errors_total", "Snapshots lost to write errors.", nil, nil)
	descSnapWriteSecs     = prometheus.NewDesc("craftedge_snapshot_last_write_seconds", "Duration of the last write-behind batch (one bbolt transaction).", nil, nil)
	descStorageDamage     = prometheus.NewDesc("craftedge_storage_damaged", "1 when the bbolt file was found damaged and moved aside: snapshots are off and durable jobs are refused until a reload or restart.", nil, nil)
	descBreakerState      = prometheus.NewDesc("craftedge_breaker_state", "Circuit breaker state by upstream: 0 closed, 1 half-open, 2 open.", []string{"upstream"}, nil)
	descSnapshotOnly      = prometheus.NewDesc("craftedge_snapshot_only", "1 when the kill switch is on for the upstream.", []string{"upstream"}, nil)
	descJobs              = prometheus.NewDesc("craftedge_jobs", "Jobs in the durable queue by kind and state (ready, running, done, dead).", []string{"kind", "state"}, nil)
	descJobsAge           = prometheus.NewDesc("craftedge_jobs_queue_age_seconds", "How long the oldest ready job of a kind has been due (the queue's lag).", []string{"kind"}, nil)
	descWarmRunning       = prometheus.NewDesc("craftedge_warm_start_running", "1 while the warm start refills the memory tier from snapshots.", nil, nil)
	descWarmEntries       = prometheus.NewDesc("craftedge_warm_start_entries_total", "Entries the warm start put in the memory tier, by source (refill: the background refill; request: for a request that missed before the refill reached its page). Starts again at 0 when a reload creates a new memory tier.", []string{"source"}, nil)
	descWarmSkipped       = prometheus.NewDesc("craftedge_warm_start_skipped_total", "Snapshots the warm start did not put in the memory tier, by reason (purged, present, damaged, other).", []string{"reason"}, nil)
	descJobsPending       = prometheus.NewDesc("craftedge_jobs_oldest_pending_age_seconds", "Age of the oldest ready or running job of a kind since it was accepted, backoffs included (for kind outbox: the oldest write not yet sent).", []string{"kind"}, nil)
)

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMemoryEntries, descMemoryBytes, descMemoryAlloc, descMemoryMax, descMemoryEvicted,
		descMemoryHits, descMemoryMisses, descMemoryStoredStale, descMemoryNotStored, descSnapEntries, descSnapBytes, descSnapMax, descSnapFile, descSnapPending,
		descSnapDropped, descSnapWriteErrs, descSnapWriteSecs, descStorageDamage, descBreakerState, descSnapshotOnly, descJobs, descJobsAge,
		descJobsPending, descWarmRunning, descWarmEntries, descWarmSkipped} {
		ch <- d
	}
}

func (stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := currentApp.Load()
	if a == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	ms := a.memory.Stats()
	gauge(descMemoryEntries, float64(ms.Entries))
	gauge(descMemoryBytes, float64(ms.Bytes))
	gauge(descMemoryAlloc, float64(ms.AllocatedBytes))
	gauge(descMemoryMax, float64(ms.MaxBytes))
	counter(descMemoryEvicted, float64(ms.Evicted))
	counter(descMemoryHits, float64(ms.Hits))
	counter(descMemoryMisses, float64(ms.Misses))
	counter(descMemoryStoredStale, float64(ms.StoredStale))
	counter(descMemoryNotStored, float64(ms.NotStoredPurged))
	ss := a.store.Stats()
	gauge(descSnapEntries, float64(ss.Count))
	gauge(descSnapBytes, float64(ss.Bytes))
	gauge(descSnapMax, float64(a.SnapshotMaxSize))
	gauge(descSnapFile, float64(ss.FileBytes))
	gauge(descSnapPending, float64(ss.Pending))
	counter(descSnapDropped, float64(ss.Dropped))
	counter(descSnapWriteErrs, float64(ss.WriteErrors))
	gauge(descSnapWriteSecs, ss.LastWriteDuration.Seconds())
	damaged := 0.0
	if a.store.Damaged() != nil {
		damaged = 1
	}
	gauge(descStorageDamage, damaged)
	if st, err := a.jobs.Stats(); err == nil {
		for kind, ks := range st.Kinds {
			gauge(descJobs, float64(ks.Ready), kind, "ready")
			gauge(descJobs, float64(ks.Running), kind, "running")
			gauge(descJobs, float64(ks.Done), kind, "done")
			gauge(descJobs, float64(ks.Dead), kind, "dead")
			gauge(descJobsAge, ks.QueueAgeSeconds, kind)
			gauge(descJobsPending, ks.PendingAgeSeconds, kind)
		}
	}
	if w := currentWarmStart.Load(); w != nil {
		running := 0.0
		if w.running.Load() {
			running = 1
		}
		gauge(descWarmRunning, running)
		counter(descWarmEntries, float64(w.refilled.Load()), "refill")
		counter(descWarmEntries, float64(w.onRequest.Load()), "request")
		counter(descWarmSkipped, float64(w.purged.Load()), "purged")
		counter(descWarmSkipped, float64(w.present.Load()), "present")
		counter(descWarmSkipped, float64(w.damaged.Load()), "damaged")
		counter(descWarmSkipped, float64(w.other.Load()), "other")
	}
	for _, u := range a.upstreamList() {
		state, _, _ := u.breaker.status()
		gauge(descBreakerState, breakerGauge(state), u.name)
		on := 0.0
		if a.SnapshotOnly || u.handlerSnapshotOnly || a.overrideOn(u.name) {
			on = 1
		}
		gauge(descSnapshotOnly, on, u.name)
	}
}

// observeSnapshotFlush is the snapshot store's Options.OnFlush. The store
// is pooled across configs, so it must not capture an App.
func observeSnapshotFlush(_ int, d time.Duration, _ error) {
	initMetrics()
	metrics.snapshotWrites.Observe(d.Seconds())
}
