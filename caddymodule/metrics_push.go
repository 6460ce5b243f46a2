package caddymodule

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Push metrics: pushes of records to their targets by outcome, and how
// long a push waited in the queue before its first attempt (the index's
// lag behind the records).
var pushMetrics = struct {
	once sync.Once

	pushes   *prometheus.CounterVec
	queueAge *prometheus.HistogramVec
}{}

func initPushMetrics() {
	pushMetrics.once.Do(func() {
		pushMetrics.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "push", Name: "total",
			Help: "Pushes of records to a push target (vendor.push jobs and rebuilds) by target vendor and outcome: ok, deleted, superseded, error, breaker_open, rejected, unconfigured.",
		}, []string{"target", "outcome"})
		pushMetrics.queueAge = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "push", Name: "queue_age_seconds",
			Help:    "Time from a record change's push being enqueued to its first attempt, by target vendor.",
			Buckets: []float64{.1, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}, []string{"target"})
	})
}

func pushCollectors() []prometheus.Collector {
	initPushMetrics()
	return []prometheus.Collector{pushMetrics.pushes, pushMetrics.queueAge}
}

// initPushSeries starts every outcome's series of the targets at 0.
func (s *pushState) initSeries() {
	initPushMetrics()
	for _, byRes := range s.targets {
		for _, byTarget := range byRes {
			for tn := range byTarget {
				for _, o := range pushOutcomes {
					pushMetrics.pushes.WithLabelValues(tn, o)
				}
			}
		}
	}
}

func observePush(target, outcome string) {
	initPushMetrics()
	pushMetrics.pushes.WithLabelValues(target, outcome).Inc()
}

func observePushQueueAge(target string, d time.Duration) {
	initPushMetrics()
	pushMetrics.queueAge.WithLabelValues(target).Observe(max(d, 0).Seconds())
}
