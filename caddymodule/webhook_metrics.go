package caddymodule

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Webhook metrics, in Caddy's registry like the others (metrics.go):
// created once per process, registered on every config load. The vendor
// label is a configured vendor name, webhookSourceUnknown for a path
// naming no configured vendor, or webhookSourcePurge for craftedge_purge;
// reasons are the fixed set below.
var webhookMetrics = struct {
	once     sync.Once
	received *prometheus.CounterVec
	verified *prometheus.CounterVec
	rejected *prometheus.CounterVec
}{}

// Rejection reasons (label "reason" of craftedge_webhooks_rejected_total).
const (
	rejectMethod          = "method"           // not POST (405)
	rejectUnknownVendor   = "unknown_vendor"   // no such vendor, or no webhook block (404)
	rejectContentType     = "content_type"     // media type not accepted (415)
	rejectTooLarge        = "too_large"        // body over max_body_size (413)
	rejectMissingHeader   = "missing_header"   // a signature/id/timestamp header is absent (401)
	rejectMalformedHeader = "malformed_header" // such a header does not parse (401)
	rejectBadSignature    = "bad_signature"    // no secret's signature matches (401)
	rejectStale           = "stale"            // genuine but older than the window (401)
	rejectFuture          = "future"           // genuine but further ahead than the window (401)
	rejectBadPayload      = "bad_payload"      // verified, but the body names no record / is no purge (400)
	rejectReplay          = "replay"           // a delivery already accepted (200, not processed again)
	rejectInternal        = "internal"         // storing or enqueueing failed (503, the sender retries)
)

// Label values of the vendor label that are not vendor names.
const (
	webhookSourceUnknown = "unknown"
	webhookSourcePurge   = "craftedge_purge"
)

func initWebhookMetrics() {
	webhookMetrics.once.Do(func() {
		webhookMetrics.received = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "webhooks", Name: "received_total",
			Help: "Webhook (and remote purge) requests received, by vendor.",
		}, []string{"vendor"})
		webhookMetrics.verified = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "webhooks", Name: "verified_total",
			Help: "Webhook (and remote purge) requests whose signature verified, by vendor.",
		}, []string{"vendor"})
		webhookMetrics.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "webhooks", Name: "rejected_total",
			Help: "Webhook (and remote purge) requests refused or not processed, by vendor and reason (method, unknown_vendor, content_type, too_large, missing_header, malformed_header, bad_signature, stale, future, bad_payload, replay, internal).",
		}, []string{"vendor", "reason"})
	})
}

// registerWebhookMetrics registers the webhook collectors with a config's
// registry (called where the other metrics are registered).
func registerWebhookMetrics(reg *prometheus.Registry) error {
	initWebhookMetrics()
	if reg == nil {
		return nil
	}
	return registerCollectors(reg, webhookMetrics.received, webhookMetrics.verified, webhookMetrics.rejected)
}
