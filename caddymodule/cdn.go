package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// defaultCDNTimeout bounds one request to the CDN's API when the cdn block
// sets no timeout.
const defaultCDNTimeout = 10 * time.Second

// CDNConfig configures forwarding of purges to the downstream CDN: every
// purge craftedge does (admin API, Cache-Purge-Tag, craftedge_purge,
// vendor syncs, outbox writes, webhook refetches) is also sent to the CDN,
// from a durable cdn.purge job, so the purge caller never waits on the
// CDN's API and a CDN outage only delays the purge.
type CDNConfig struct {
	// ProviderRaw is the CDN's purge API: a module in the craftedge.cdn
	// namespace, named by its "name" field (cloudflare, fastly,
	// generic, or a third party's), with that module's own fields.
	ProviderRaw json.RawMessage `json:"provider,omitempty" caddy:"namespace=craftedge.cdn inline_key=name"`

	// Timeout bounds one request to the CDN's API. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// cdnTarget is the provisioned CDN: its provider module and the HTTP
// client that sends the purges.
type cdnTarget struct {
	provider CDNProvider
	// name is the provider's module name (cloudflare): the metrics'
	// provider label and the payload's provider.
	name   string
	client *http.Client
	// key identifies the CDN (provider and target) for the purge-all
	// bookkeeping; never holds a secret.
	key string
}

// provisionCDN loads the CDN block's provider module, if any.
func (a *App) provisionCDN() error {
	if err := registerCDNMetrics(a.ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("craftedge: registering cdn metrics: %w", err)
	}
	if a.CDN == nil {
		return nil
	}
	if len(a.CDN.ProviderRaw) == 0 {
		return fmt.Errorf("craftedge: cdn: no provider (a module of the %s namespace, e.g. \"provider\": {\"provider\": \"cloudflare\", …})", CDNNamespace)
	}
	if a.CDN.Timeout < 0 {
		return fmt.Errorf("craftedge: cdn: timeout must not be negative")
	}
	mod, err := a.ctx.LoadModule(a.CDN, "ProviderRaw")
	if err != nil {
		return fmt.Errorf("craftedge: cdn: %w", err)
	}
	provider, ok := mod.(CDNProvider)
	if !ok {
		return fmt.Errorf("craftedge: cdn: module %s is not a CDN provider (%T lacks the CDNProvider methods)", caddy.GetModuleID(mod), mod)
	}
	timeout := time.Duration(a.CDN.Timeout)
	if timeout == 0 {
		timeout = defaultCDNTimeout
	}
	name := caddy.GetModuleName(mod)
	a.cdn = &cdnTarget{
		provider: provider,
		name:     name,
		key:      name + ":" + provider.Target(),
		client: &http.Client{
			Timeout: timeout,
			// A purge API answers; it never redirects somewhere we
			// should send the token to.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	return nil
}
