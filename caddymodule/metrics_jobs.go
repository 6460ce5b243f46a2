package caddymodule

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/craftedge/craftedge/jobs"
)

// Job metrics are fed by the queue's Options.OnAttempt; the queue's depth
// and ages are read at scrape time by stateCollector. Labels: job kind
// (a fixed, registered set) and attempt outcome.
var jobMetrics = struct {
	once sync.Once

	attempts    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	duration    *prometheus.HistogramVec
}{}

func initJobMetrics() {
	jobMetrics.once.Do(func() {
		jobMetrics.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "jobs", Name: "attempts_total",
			Help: "Finished job attempts by kind and outcome (done, retry, dead, interrupted).",
		}, []string{"kind", "outcome"})
		jobMetrics.deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "jobs", Name: "dead_letters_total",
			Help: "Jobs dead-lettered (failed permanently or ran out of attempts) by kind.",
		}, []string{"kind"})
		jobMetrics.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "jobs", Name: "attempt_duration_seconds",
			Help:    "Duration of job handler calls by kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"kind"})
	})
}

func jobCollectors() []prometheus.Collector {
	initJobMetrics()
	return []prometheus.Collector{jobMetrics.attempts, jobMetrics.deadLetters, jobMetrics.duration}
}

// observeJobAttempt is the queue's jobs.Options.OnAttempt.
func observeJobAttempt(info jobs.AttemptInfo) {
	initJobMetrics()
	jobMetrics.attempts.WithLabelValues(info.Kind, info.Outcome).Inc()
	jobMetrics.duration.WithLabelValues(info.Kind).Observe(info.Duration.Seconds())
	if info.Outcome == jobs.AttemptDead {
		jobMetrics.deadLetters.WithLabelValues(info.Kind).Inc()
	}
}
