package caddymodule

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/craftedge/craftedge/vendors"
)

// Vendor metrics are fed by the vendor clients' hooks
// (vendors.ClientOptions.OnRequest and OnBreakerChange). Like the other
// collectors they are created once per process and registered with each
// config's registry, so they survive `caddy reload` and even a vendor
// client replaced by a changed config. Labels: the vendor's configured
// name, vendors' fixed outcome set, status class; never ids or paths.
var vendorMetrics = struct {
	once sync.Once

	requests           *prometheus.CounterVec
	duration           *prometheus.HistogramVec
	rateLimitHits      *prometheus.CounterVec
	tokenWaits         *prometheus.CounterVec
	tokenWaitSeconds   *prometheus.CounterVec
	retries            *prometheus.CounterVec
	hedges             *prometheus.CounterVec
	canaryRequests     *prometheus.CounterVec
	breakerTransitions *prometheus.CounterVec
}{}

func initVendorMetrics() {
	vendorMetrics.once.Do(func() {
		m := &vendorMetrics
		counter := func(name, help string, labels ...string) *prometheus.CounterVec {
			return prometheus.NewCounterVec(prometheus.CounterOpts{
				Namespace: metricsNamespace, Subsystem: "vendor", Name: name, Help: help,
			}, labels)
		}
		m.requests = counter("requests_total",
			"Requests to vendor APIs (and calls refused before sending) by vendor, outcome (ok, redirect, not_found, client_error, rate_limited, server_error, timeout, transport_error, body_too_large, canceled, throttled, breaker_open, disabled) and status class (2xx..5xx, none when no response).",
			"vendor", "outcome", "code_class")
		m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "vendor", Name: "request_duration_seconds",
			Help:    "Duration of requests sent to a vendor, until the whole body is read or the request fails.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"vendor"})
		m.rateLimitHits = counter("rate_limit_hits_total",
			"Responses with status 429 received from the vendor.", "vendor")
		m.tokenWaits = counter("token_waits_total",
			"Requests that waited for a token of the vendor's local token bucket (its configured rate) before being sent.", "vendor")
		m.tokenWaitSeconds = counter("token_wait_seconds_total",
			"Total time requests waited for a token of the vendor's local token bucket.", "vendor")
		m.retries = counter("retries_total",
			"Retried attempts of idempotent vendor calls (GETs), after a failure or a 429.", "vendor")
		m.hedges = counter("hedges_total",
			"Requests sent to a further regional base URL, because an earlier region was slow (hedge) or failed (failover).", "vendor")
		m.canaryRequests = counter("canary_requests_total",
			"Requests that used the vendor's canary configuration; divide by craftedge_vendor_requests_total for the canary's share.", "vendor")
		m.breakerTransitions = counter("breaker_transitions_total",
			"Vendor circuit breaker state changes by vendor and the state entered (closed, open, half-open).", "vendor", "state")
	})
}

func vendorCollectors() []prometheus.Collector {
	initVendorMetrics()
	m := &vendorMetrics
	return []prometheus.Collector{m.requests, m.duration, m.rateLimitHits, m.tokenWaits, m.tokenWaitSeconds,
		m.retries, m.hedges, m.canaryRequests, m.breakerTransitions, vendorStateCollector{}}
}

// observeVendorRequest is every vendor client's ClientOptions.OnRequest.
// Clients are pooled across configs, so it must not capture an App.
func observeVendorRequest(info vendors.RequestInfo) {
	initVendorMetrics()
	m := &vendorMetrics
	m.requests.WithLabelValues(info.Vendor, info.Outcome, codeClass(info.StatusCode)).Inc()
	if info.Sent {
		m.duration.WithLabelValues(info.Vendor).Observe(info.Duration.Seconds())
	}
	if info.Outcome == vendors.OutcomeRateLimited {
		m.rateLimitHits.WithLabelValues(info.Vendor).Inc()
	}
	if info.TokenWait > 0 {
		m.tokenWaits.WithLabelValues(info.Vendor).Inc()
		m.tokenWaitSeconds.WithLabelValues(info.Vendor).Add(info.TokenWait.Seconds())
	}
	// Each retry attempt reports exactly one request to the first region
	// (sent, or refused by the breaker or the Retry-After window); further
	// regions of the attempt are hedges.
	if info.Attempt > 0 && !info.Hedge {
		m.retries.WithLabelValues(info.Vendor).Inc()
	}
	if info.Hedge {
		m.hedges.WithLabelValues(info.Vendor).Inc()
	}
	if info.Canary {
		m.canaryRequests.WithLabelValues(info.Vendor).Inc()
	}
}

// observeVendorBreaker is every vendor client's
// ClientOptions.OnBreakerChange.
func observeVendorBreaker(vendor, _, to string) {
	initVendorMetrics()
	vendorMetrics.breakerTransitions.WithLabelValues(vendor, to).Inc()
}

// vendorStateCollector reports the running config's vendors at scrape
// time: breaker state and whether live calls are enabled.
type vendorStateCollector struct{}

var (
	descVendorBreaker = prometheus.NewDesc("craftedge_vendor_breaker_state",
		"Vendor circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"vendor"}, nil)
	descVendorEnabled = prometheus.NewDesc("craftedge_vendor_enabled",
		"1 when live calls to the vendor are enabled, 0 when only stored records are served.", []string{"vendor"}, nil)
)

func (vendorStateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descVendorBreaker
	ch <- descVendorEnabled
}

func (vendorStateCollector) Collect(ch chan<- prometheus.Metric) {
	a := currentApp.Load()
	if a == nil {
		return
	}
	for name, c := range a.vendorClients {
		ch <- prometheus.MustNewConstMetric(descVendorBreaker, prometheus.GaugeValue, breakerGauge(c.BreakerState()), name)
		on := 0.0
		if c.Enabled() {
			on = 1
		}
		ch <- prometheus.MustNewConstMetric(descVendorEnabled, prometheus.GaugeValue, on, name)
	}
}

// breakerGauge maps a breaker state name to the gauge value shared by
// craftedge_breaker_state and craftedge_vendor_breaker_state.
func breakerGauge(state string) float64 {
	switch state {
	case "half-open":
		return 1
	case "open":
		return 2
	}
	return 0
}
