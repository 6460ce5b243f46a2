package caddymodule

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// A labelled series exists only once a value is set; until then
// increase() alerts see nothing and miss the first burst. So the series
// whose label values a config determines (its upstreams, vendors, job
// kinds, CDN, webhook sources) start at 0 when the config is provisioned.

// purgeSources are the values of craftedge_cache_purges_total's source
// label (and craftedge_cdn_purge_enqueue_failures_total's).
var purgeSources = []string{"admin", "upstream_header", "remote", "vendor_sync", "outbox", "webhook", "unsafe_method", "media"}

// webhookRejectReasons are the values of craftedge_webhooks_rejected_total's
// reason label.
var webhookRejectReasons = []string{rejectMethod, rejectUnknownVendor, rejectContentType, rejectTooLarge,
	rejectMissingHeader, rejectMalformedHeader, rejectBadSignature, rejectStale, rejectFuture,
	rejectBadPayload, rejectReplay, rejectInternal}

var breakerStates = []string{circuit.Closed.String(), circuit.HalfOpen.String(), circuit.Open.String()}

// initSeries creates this config's labelled series at 0 (the ones already
// counting keep their values). Called at the end of App.Provision;
// upstreams are initialised as handlers name them (initUpstreamSeries).
func (a *App) initSeries() {
	initMetrics()
	for _, s := range purgeSources {
		metrics.purges.WithLabelValues(s)
	}
	initVendorMetrics()
	vm := &vendorMetrics
	for name := range a.vendorClients {
		for _, c := range []*prometheus.CounterVec{vm.rateLimitHits, vm.tokenWaits, vm.tokenWaitSeconds, vm.retries, vm.hedges, vm.canaryRequests} {
			c.WithLabelValues(name)
		}
		for _, st := range []string{vendors.BreakerClosed, vendors.BreakerHalfOpen, vendors.BreakerOpen} {
			vm.breakerTransitions.WithLabelValues(name, st)
		}
	}
	initMediaSeries()
	initJobMetrics()
	jobKindsMu.Lock()
	kinds := knownJobKindsLocked()
	jobKindsMu.Unlock()
	for _, k := range kinds {
		jobMetrics.deadLetters.WithLabelValues(k)
		for _, o := range []string{jobs.AttemptDone, jobs.AttemptRetry, jobs.AttemptDead, jobs.AttemptInterrupted} {
			jobMetrics.attempts.WithLabelValues(k, o)
		}
	}
	initWebhookSeries(webhookSourceUnknown)
	if a.cdn != nil {
		initCDNMetrics()
		for _, o := range []string{cdnOutcomeOK, cdnOutcomeRetry, cdnOutcomeFailed} {
			cdnMetrics.requests.WithLabelValues(a.cdn.name, o)
		}
		for _, s := range purgeSources {
			cdnMetrics.enqueueFailures.WithLabelValues(s)
		}
	}
}

// initUpstreamSeries creates an upstream's breaker transition series.
func initUpstreamSeries(upstream string) {
	initMetrics()
	for _, st := range breakerStates {
		metrics.breakerTransitions.WithLabelValues(upstream, st)
	}
}

// initWebhookSeries creates the series of a webhook source (a vendor name,
// webhookSourceUnknown or webhookSourcePurge).
func initWebhookSeries(source string) {
	initWebhookMetrics()
	webhookMetrics.received.WithLabelValues(source)
	webhookMetrics.verified.WithLabelValues(source)
	for _, r := range webhookRejectReasons {
		webhookMetrics.rejected.WithLabelValues(source, r)
	}
}

// buildInfo is craftedge_build_info: 1, labelled with craftedge's module
// version and the Go version it was built with, so dashboards and alerts
// can tell which build an instance runs.
var buildInfo = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
	Namespace: metricsNamespace, Name: "build_info",
	Help:        "Always 1; labels name the craftedge version and the Go version of the build.",
	ConstLabels: prometheus.Labels{"version": craftedgeVersion(), "go_version": runtime.Version()},
}, func() float64 { return 1 })

// craftedgeVersion is the version of the craftedge module in this binary:
// its module version when built as a dependency (xcaddy, go install
// ...@v1.2.3), else the VCS revision of a checkout build, else "(devel)".
func craftedgeVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	const module = "github.com/craftedge/craftedge"
	m := &bi.Main
	for _, d := range bi.Deps {
		if d.Path == module {
			m = d
			if d.Replace != nil {
				m = d.Replace
			}
		}
	}
	if m.Path == module && m.Version != "" && m.Version != "(devel)" {
		return m.Version
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if m.Path == module && rev != "" {
		return "(devel)-" + rev[:min(len(rev), 12)] + dirty
	}
	return "(devel)"
}
