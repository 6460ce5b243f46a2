package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/webhook"
)

// What the craftedge_webhook and craftedge_purge handlers
// (caddymodule/webhookhandler) do with a request: the verification,
// deduplication, refetch and purge mechanisms stay in the core, which the
// vendors' webhook blocks and the status page share.

// ServeWebhook answers a vendor's webhook delivery posted for vendor (the
// path segment after the handler's prefix): 202 queued (or joined a
// pending refetch), 200 for a replay or an event type of no interest, 401
// bad or stale signature, 404 unknown vendor, 405 not POST, 413 too large,
// 415 media type, 400 a verified body naming no record, 503 when the
// refetch could not be enqueued (the vendor retries).
func (a *App) ServeWebhook(w http.ResponseWriter, r *http.Request, vendor string, logger *zap.Logger) error {
	now := nowFunc()
	rc := a.webhookReceivers[vendor]
	if rc == nil {
		webhookMetrics.received.WithLabelValues(webhookSourceUnknown).Inc()
		return reject(w, r, logger, webhookSourceUnknown, &rejection{http.StatusNotFound, rejectUnknownVendor,
			fmt.Errorf("no vendor with a webhook block is named %.64q", vendor)}, now)
	}
	body, d, rej := rc.receive(r, now)
	if rej != nil {
		return reject(w, r, logger, vendor, rej, now)
	}
	vc := a.Vendors[vendor]
	p, ignored, err := parseDelivery(vendor, vc, body)
	if err != nil {
		return reject(w, r, logger, vendor, &rejection{http.StatusBadRequest, rejectBadPayload, err}, now)
	}
	if ignored {
		logger.Debug("webhook event of no interest acknowledged", zap.String("vendor", vendor), zap.String("event", vendors.Snippet([]byte(p.Event), nil, 100)))
		w.Header().Set("Cache-Control", "no-store")
		return writeJSON(w, http.StatusOK, map[string]string{"status": "ignored"})
	}
	dup, err := rc.seen(a, d, now)
	if err != nil {
		return reject(w, r, logger, vendor, &rejection{http.StatusServiceUnavailable, rejectInternal, errors.New("reading the delivery ids failed")}, now)
	}
	if dup {
		return reject(w, r, logger, vendor, &rejection{http.StatusOK, rejectReplay, errors.New("delivery already accepted")}, now)
	}
	p.Delivery = d.ID
	job, created, err := a.enqueueRefetch(r.Context(), p, requestID(r))
	if err != nil {
		logger.Error("enqueueing a webhook refetch", zap.String("vendor", vendor), zap.Error(err))
		return reject(w, r, logger, vendor, &rejection{http.StatusServiceUnavailable, rejectInternal, errors.New("enqueueing the refetch failed")}, now)
	}
	rc.remember(a, d, now, logger)
	logger.Info("webhook accepted",
		zap.String("vendor", vendor), zap.String("resource", p.Resource), zap.String("id", p.ID),
		zap.String("version", p.Version), zap.String("delivery", d.ID), zap.String("job", job.ID),
		zap.Bool("coalesced", !created), zap.String("request_id", requestID(r)))
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusAccepted, map[string]any{"status": "queued", "job": job.ID, "coalesced": !created})
}

// maxWebhookField bounds an id or version taken from a payload.
const maxWebhookField = 256

// parseDelivery reads what a verified body names: the event type, the
// resource, the record id and (optionally) version. ignored is true for an
// event type the webhook block does not map.
func parseDelivery(vendor string, vc *VendorConfig, body []byte) (p refetchPayload, ignored bool, err error) {
	wh := vc.Webhook
	doc, err := vendors.DecodePayload(body)
	if err != nil {
		return p, false, fmt.Errorf("body is not JSON: %v", err)
	}
	typePath := wh.Type
	if typePath == "" {
		typePath = defaultWebhookType
	}
	p.Vendor = vendor
	p.Event, _ = vendors.PayloadString(doc, typePath)
	resource, ok := wh.resourceFor(vc, p.Event)
	if !ok {
		return p, true, nil
	}
	res := vc.Resources[resource]
	p.Resource = resource
	idPath := wh.ID
	if idPath == "" {
		idPath = res.ID
	}
	p.ID, ok = vendors.PayloadString(doc, idPath)
	if !ok || p.ID == "" || len(p.ID) > maxWebhookField || strings.ContainsAny(p.ID, "\x00/") {
		return p, false, fmt.Errorf("payload has no usable record id at %q", idPath)
	}
	versionPath := wh.Version
	if versionPath == "" {
		versionPath = res.Version
	}
	if versionPath != "" {
		if v, ok := vendors.PayloadString(doc, versionPath); ok && len(v) <= maxWebhookField && !strings.ContainsRune(v, 0) {
			p.Version = v
		}
	}
	return p, false, nil
}

// RemotePurgeReceiver verifies the signed requests of one craftedge_purge
// handler (rejections counted under the vendor label "craftedge_purge").
type RemotePurgeReceiver struct {
	rc *signedReceiver
}

// NewRemotePurgeReceiver resolves auth's secrets; requests are signed with
// the Standard Webhooks scheme unless auth names another.
func NewRemotePurgeReceiver(auth *WebhookAuth, logger *zap.Logger) (*RemotePurgeReceiver, error) {
	rc, err := newSignedReceiver(webhookSourcePurge, auth, webhook.SchemeStandard, logger)
	if err != nil {
		return nil, err
	}
	return &RemotePurgeReceiver{rc: rc}, nil
}

// ServeRemotePurge answers a signed purge request with the admin purge
// route's JSON body, verified and deduplicated by pr.
func (a *App) ServeRemotePurge(w http.ResponseWriter, r *http.Request, pr *RemotePurgeReceiver, logger *zap.Logger) error {
	now := nowFunc()
	src := webhookSourcePurge
	body, d, rej := pr.rc.receive(r, now)
	if rej != nil {
		return reject(w, r, logger, src, rej, now)
	}
	req, err := parsePurgeRequest(body)
	if err != nil {
		return reject(w, r, logger, src, &rejection{http.StatusBadRequest, rejectBadPayload, err}, now)
	}
	dup, err := pr.rc.seen(a, d, now)
	if err != nil {
		return reject(w, r, logger, src, &rejection{http.StatusServiceUnavailable, rejectInternal, errors.New("reading the delivery ids failed")}, now)
	}
	if dup {
		return reject(w, r, logger, src, &rejection{http.StatusOK, rejectReplay, errors.New("purge already applied")}, now)
	}
	n, err := a.purge(req, "remote")
	if cdnForwardFailed(err) {
		// The local purge stands (logged and counted by purge). The
		// delivery is not remembered, so resending it reaches the CDN.
		w.Header().Set("Cache-Control", "no-store")
		return writeJSON(w, http.StatusOK, map[string]any{"purged": n, "cdn_error": "forwarding the purge to the CDN failed"})
	}
	if err != nil {
		logger.Error("remote purge failed", zap.Error(err))
		return reject(w, r, logger, src, &rejection{http.StatusServiceUnavailable, rejectInternal, errors.New("purge failed")}, now)
	}
	pr.rc.remember(a, d, now, logger)
	logger.Info("remote purge", zap.String("delivery", d.ID), zap.Int("entries", n),
		zap.String("remote_ip", remoteIP(r)), zap.String("request_id", requestID(r)))
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}

// UnmarshalAuthOption reads one signing subdirective (scheme, secret,
// header, encoding, prefix, timestamp_header, public_url, window,
// replay_ttl, max_body_size, content_type) of a Caddyfile block; ok is
// false for any other subdirective.
func (a *WebhookAuth) UnmarshalAuthOption(d *caddyfile.Dispenser) (ok bool, err error) {
	return a.unmarshalAuthOption(d)
}

// Check validates the signing settings, defaultScheme applying when
// Scheme is empty.
func (a *WebhookAuth) Check(defaultScheme webhook.Scheme) error { return a.check(defaultScheme) }
