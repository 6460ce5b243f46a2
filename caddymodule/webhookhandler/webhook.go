// Package webhookhandler holds the craftedge_webhook and craftedge_purge
// handlers: the vendors' signed webhooks and Craft's signed remote purges.
// Verification, deduplication, the refetch jobs and the purge are the
// core's (caddymodule), reached through its App API.
package webhookhandler

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/caddymodule"
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

	app    *caddymodule.App
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
	h.app = appIface.(*caddymodule.App)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	vendor, ok := strings.CutPrefix(r.URL.Path, h.PathPrefix+"/")
	if !ok {
		return next.ServeHTTP(w, r)
	}
	return h.app.ServeWebhook(w, r, vendor, h.logger)
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
			v, err := caddymodule.OneArg(d)
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
