package caddymodule

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Media metrics: downloads by outcome, bytes stored, how long a download
// waited in the queue, damaged and removed files, and the store's size.
var mediaMetrics = struct {
	once sync.Once

	fetches  *prometheus.CounterVec
	bytes    prometheus.Counter
	queueAge prometheus.Histogram
	damaged  prometheus.Counter
	removed  prometheus.Counter
	stored   prometheus.GaugeFunc
}{}

func initMediaMetrics() {
	mediaMetrics.once.Do(func() {
		mediaMetrics.fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "media", Name: "fetches_total",
			Help: "Media downloads (media.fetch attempts) by outcome: ok, cached, superseded, not_found, too_large, bad_type, refused, rejected, store_full, disk_full, error, unavailable.",
		}, []string{"outcome"})
		mediaMetrics.bytes = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "media", Name: "fetched_bytes_total",
			Help: "Bytes of media files downloaded and stored.",
		})
		mediaMetrics.queueAge = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "media", Name: "fetch_queue_age_seconds",
			Help:    "Time from a media download's enqueue to its first attempt.",
			Buckets: []float64{.1, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		})
		mediaMetrics.damaged = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "media", Name: "damaged_total",
			Help: "Stored media files found damaged (content hash differs from the name), removed and downloaded again.",
		})
		mediaMetrics.removed = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "media", Name: "removed_total",
			Help: "Stored media files removed by the maintenance job (no record names them).",
		})
		mediaMetrics.stored = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: "media", Name: "stored_bytes",
			Help: "Bytes of the stored media files of the running config.",
		}, func() float64 {
			if a := currentApp.Load(); a != nil && a.media != nil {
				return float64(a.media.store.Total())
			}
			return 0
		})
	})
}

func mediaCollectors() []prometheus.Collector {
	initMediaMetrics()
	return []prometheus.Collector{mediaMetrics.fetches, mediaMetrics.bytes, mediaMetrics.queueAge,
		mediaMetrics.damaged, mediaMetrics.removed, mediaMetrics.stored}
}

// initMediaSeries starts every outcome's series at 0.
func initMediaSeries() {
	initMediaMetrics()
	for _, o := range mediaOutcomes {
		mediaMetrics.fetches.WithLabelValues(o)
	}
}

func observeMediaFetch(outcome string, bytes int64) {
	initMediaMetrics()
	mediaMetrics.fetches.WithLabelValues(outcome).Inc()
	if outcome == mediaOK && bytes > 0 {
		mediaMetrics.bytes.Add(float64(bytes))
	}
}

func observeMediaQueueAge(d time.Duration) {
	initMediaMetrics()
	mediaMetrics.queueAge.Observe(max(d, 0).Seconds())
}

func observeMediaDamaged() {
	initMediaMetrics()
	mediaMetrics.damaged.Inc()
}

func observeMediaRemoved() {
	initMediaMetrics()
	mediaMetrics.removed.Inc()
}
