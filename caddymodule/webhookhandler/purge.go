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
	"github.com/craftedge/craftedge/webhook"
)

func init() {
	caddy.RegisterModule(RemotePurgeHandler{})
	httpcaddyfile.RegisterHandlerDirective("craftedge_purge", parseRemotePurgeDirective)
	// Ordered in directives.go.
}

// Defaults of craftedge_purge.
const (
	defaultRemotePurgePath    = "/.craftedge/purge"
	defaultRemotePurgeMaxBody = 64 << 10
)

// RemotePurgeHandler lets Craft (a module, a Blitz purger) on another host
// purge the cache without Caddy's admin endpoint being exposed: a POST to
// Path with the admin purge route's JSON body ({"tags":[...]}, urls,
// prefixes, hosts, all), signed like a webhook (Standard Webhooks by
// default) and held to the same rules: size and media type limits, the
// timestamp window, replay protection by delivery id, rejections logged and
// counted (vendor label "craftedge_purge"). Other paths go to the next
// handler.
type RemotePurgeHandler struct {
	// Path is the purge endpoint's path. Default /.craftedge/purge.
	Path string `json:"path,omitempty"`

	// WebhookAuth is how requests are signed; Scheme defaults to
	// standard and MaxBodySize to 64KiB.
	caddymodule.WebhookAuth

	app      *caddymodule.App
	receiver *caddymodule.RemotePurgeReceiver
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (RemotePurgeHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.craftedge_purge",
		New: func() caddy.Module { return new(RemotePurgeHandler) },
	}
}

// Provision resolves the secrets and binds the handler to the app.
func (h *RemotePurgeHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Path == "" {
		h.Path = defaultRemotePurgePath
	}
	if !strings.HasPrefix(h.Path, "/") {
		return fmt.Errorf("craftedge_purge: path must start with /, got %q", h.Path)
	}
	auth := h.WebhookAuth
	if auth.MaxBodySize == 0 {
		auth.MaxBodySize = defaultRemotePurgeMaxBody
	}
	rc, err := caddymodule.NewRemotePurgeReceiver(&auth, h.logger)
	if err != nil {
		return fmt.Errorf("craftedge_purge: %w", err)
	}
	h.receiver = rc
	appIface, err := ctx.App("craftedge")
	if err != nil {
		return fmt.Errorf("craftedge_purge: loading the craftedge app: %w", err)
	}
	h.app = appIface.(*caddymodule.App)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *RemotePurgeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path != h.Path {
		return next.ServeHTTP(w, r)
	}
	return h.app.ServeRemotePurge(w, r, h.receiver, h.logger)
}

func parseRemotePurgeDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	ph := new(RemotePurgeHandler)
	if err := ph.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return ph, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	craftedge_purge [<matcher>] {
//	    path             <path>               # default /.craftedge/purge
//	    scheme           <scheme>             # default standard
//	    secret           <secret...>          # required; {env.*}
//	    header, encoding, prefix, timestamp_header, public_url
//	    window           <duration>           # default 5m
//	    replay_ttl       <duration>           # default 24h
//	    max_body_size    <size>               # default 64KiB
//	    content_type     <media type...>      # default application/json
//	}
func (h *RemotePurgeHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	line := d.Line()
	if d.NextArg() {
		return d.Errf("craftedge_purge takes no arguments besides a matcher, got %q (use a block)", d.Val())
	}
	for d.NextBlock(0) {
		ok, err := h.UnmarshalAuthOption(d)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		switch sub := d.Val(); sub {
		case "path":
			v, err := caddymodule.OneArg(d)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(v, "/") || d.NextArg() {
				return d.Errf("path wants one path starting with /")
			}
			h.Path = v
		default:
			return d.Errf("unrecognized craftedge_purge subdirective %q", sub)
		}
	}
	if len(h.Secrets) == 0 {
		return fmt.Errorf("%s:%d: craftedge_purge: secret is required", d.File(), line)
	}
	if err := h.Check(webhook.SchemeStandard); err != nil {
		return fmt.Errorf("%s:%d: craftedge_purge: %v", d.File(), line, err)
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*RemotePurgeHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*RemotePurgeHandler)(nil)
	_ caddyfile.Unmarshaler       = (*RemotePurgeHandler)(nil)
)
