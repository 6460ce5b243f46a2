package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/vendors"
)

func init() {
	caddy.RegisterModule(WebhookHandler{})
	httpcaddyfile.RegisterHandlerDirective("craftedge_webhook", parseWebhookDirective)
	// Ordered in directives.go.
}

// defaultWebhookPathPrefix is where vendors post: <prefix>/<vendor>.
const defaultWebhookPathPrefix = "/webhooks"

// WebhookHandler receives the vendors' signed webhooks at
// POST <path_prefix>/<vendor>. It trusts no delivery: each is bounded
// (size, media type), verified with the vendor's webhook block (scheme,
// secrets, timestamp window) and deduplicated by delivery id; a verified
// delivery only names a record, which a vendor.refetch job then pulls by id
// through the vendor client. The payload is never stored.
//
// Answers: 202 queued (or joined a pending refetch), 200 for a replay or
// an event type of no interest, 401 bad or stale signature, 404 unknown
// vendor, 405 not POST, 413 too large, 415 media type, 400 a verified body
// naming no record, 503 when the refetch could not be enqueued (the
// vendor retries). Requests outside the prefix go to the next handler.
type WebhookHandler struct {
	// PathPrefix is the path under which vendors post, one segment per
	// vendor name. Default /webhooks.
	PathPrefix string `json:"path_prefix,omitempty"`

	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (WebhookHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.craftedge_webhook",
		New: func() caddy.Module { return new(WebhookHandler) },
	}
}

// Provision binds the handler to the craftedge app.
func (h *WebhookHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.PathPrefix == "" {
		h.PathPrefix = defaultWebhookPathPrefix
	}
	if !strings.HasPrefix(h.PathPrefix, "/") {
		return fmt.Errorf("craftedge_webhook: path_prefix must start with /, got %q", h.PathPrefix)
	}
	h.PathPrefix = strings.TrimSuffix(h.PathPrefix, "/")
	appIface, err := ctx.App("craftedge")
	if err != nil {
		return fmt.Errorf("craftedge_webhook: loading the craftedge app: %w", err)
	}
	h.app = appIface.(*App)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	vendor, ok := strings.CutPrefix(r.URL.Path, h.PathPrefix+"/")
	if !ok {
		return next.ServeHTTP(w, r)
	}
	now := nowFunc()
	rc := h.app.webhookReceivers[vendor]
	if rc == nil {
		webhookMetrics.received.WithLabelValues(webhookSourceUnknown).Inc()
		return reject(w, r, h.logger, webhookSourceUnknown, &rejection{http.StatusNotFound, rejectUnknownVendor,
			fmt.Errorf("no vendor with a webhook block is named %.64q", vendor)}, now)
	}
	body, d, rej := rc.receive(r, now)
	if rej != nil {
		return reject(w, r, h.logger, vendor, rej, now)
	}
	vc := h.app.Vendors[vendor]
	p, ignored, err := parseDelivery(vendor, vc, body)
	if err != nil {
		return reject(w, r, h.logger, vendor, &rejection{http.StatusBadRequest, rejectBadPayload, err}, now)
	}
	if ignored {
		h.logger.Debug("webhook event of no interest acknowledged", zap.String("vendor", vendor), zap.String("event", vendors.Snippet([]byte(p.Event), nil, 100)))
		w.Header().Set("Cache-Control", "no-store")
		return writeJSON(w, http.StatusOK, map[string]string{"status": "ignored"})
	}
	dup, err := rc.seen(h.app, d, now)
	if err != nil {
		return reject(w, r, h.logger, vendor, &rejection{http.StatusServiceUnavailable, rejectInternal, errors.New("reading the delivery ids failed")}, now)
	}
	if dup {
		return reject(w, r, h.logger, vendor, &rejection{http.StatusOK, rejectReplay, errors.New("delivery already accepted")}, now)
	}
	p.Delivery = d.ID
	job, created, err := h.app.enqueueRefetch(r.Context(), p, requestID(r))
	if err != nil {
		h.logger.Error("enqueueing a webhook refetch", zap.String("vendor", vendor), zap.Error(err))
		return reject(w, r, h.logger, vendor, &rejection{http.StatusServiceUnavailable, rejectInternal, errors.New("enqueueing the refetch failed")}, now)
	}
	rc.remember(h.app, d, now, h.logger)
	h.logger.Info("webhook accepted",
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

func parseWebhookDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	wh := new(WebhookHandler)
	if err := wh.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return wh, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	craftedge_webhook [<matcher>] {
//	    path_prefix <path>   # default /webhooks
//	}
//
// The vendors, secrets and mappings are in the vendor blocks' webhook
// sections of the global craftedge option.
func (h *WebhookHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("craftedge_webhook takes no arguments besides a matcher, got %q (use a block)", d.Val())
	}
	for d.NextBlock(0) {
		switch sub := d.Val(); sub {
		case "path_prefix":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, "*{") {
				return d.Errf("path_prefix must be a path starting with /, got %q", v)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			h.PathPrefix = strings.TrimSuffix(v, "/")
		default:
			return d.Errf("unrecognized craftedge_webhook subdirective %q (want path_prefix; the webhook settings are in the vendor's webhook block)", sub)
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*WebhookHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*WebhookHandler)(nil)
	_ caddyfile.Unmarshaler       = (*WebhookHandler)(nil)
)
