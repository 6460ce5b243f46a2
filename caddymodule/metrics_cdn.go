package caddymodule

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a request to the CDN's purge API (a fixed set, for labels).
const (
	// cdnOutcomeOK: the CDN accepted the purge.
	cdnOutcomeOK = "ok"
	// cdnOutcomeRetry: 429, 408, 5xx or no answer; the job retries.
	cdnOutcomeRetry = "retry"
	// cdnOutcomeFailed: refused (another 4xx); the job is dead-lettered.
	cdnOutcomeFailed = "failed"
)

// cdnMetrics count requests to the CDN's API by provider and outcome. The
// cdn.purge queue's depth and age are in the job metrics.
var cdnMetrics = struct {
	once     sync.Once
	requests *prometheus.CounterVec
	// enqueueFailures counts purges done locally whose cdn.purge job
	// could not be enqueued, by purge source.
	enqueueFailures *prometheus.CounterVec
}{}

func initCDNMetrics() {
	cdnMetrics.once.Do(func() {
		cdnMetrics.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "cdn", Name: "purge_requests_total",
			Help: "Requests to the downstream CDN's purge API by provider and outcome (ok, retry, failed).",
		}, []string{"provider", "outcome"})
		cdnMetrics.enqueueFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "cdn", Name: "purge_enqueue_failures_total",
			Help: "Purges done in craftedge that could not be queued for the CDN (the CDN keeps its copies), by purge source.",
		}, []string{"source"})
	})
}

// registerCDNMetrics adds the CDN collectors to Caddy's registry (once
// per process: counters survive reloads).
func registerCDNMetrics(reg *prometheus.Registry) error {
	initCDNMetrics()
	if reg == nil {
		return nil
	}
	return registerCollectors(reg, cdnMetrics.requests, cdnMetrics.enqueueFailures)
}

func observeCDNRequest(provider, outcome string) {
	initCDNMetrics()
	cdnMetrics.requests.WithLabelValues(provider, outcome).Inc()
}

func observeCDNEnqueueFailure(source string) {
	initCDNMetrics()
	cdnMetrics.enqueueFailures.WithLabelValues(source).Inc()
}
