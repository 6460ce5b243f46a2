package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// CDN providers craftedge can forward purges to.
const (
	cdnCloudflare = "cloudflare"
	cdnFastly     = "fastly"
	cdnGeneric    = "generic"
)

// Defaults of the CDN block.
const (
	defaultCDNTimeout         = 10 * time.Second
	defaultCloudflareEndpoint = "https://api.cloudflare.com/client/v4"
	defaultFastlyEndpoint     = "https://api.fastly.com"
)

// CDNConfig configures forwarding of purges to the downstream CDN: every
// purge craftedge does (admin API, Cache-Purge-Tag, craftedge_purge,
// vendor syncs, outbox writes, webhook refetches) is also sent to the CDN,
// from a durable cdn.purge job, so the purge caller never waits on the
// CDN's API and a CDN outage only delays the purge.
type CDNConfig struct {
	// Provider is the CDN's API: cloudflare, fastly or generic.
	Provider string `json:"provider"`

	// Zone is the Cloudflare zone id (cloudflare only).
	Zone string `json:"zone,omitempty"`

	// Service is the Fastly service id (fastly only).
	Service string `json:"service,omitempty"`

	// URL is where the generic provider POSTs craftedge's purge JSON
	// (generic only).
	URL string `json:"url,omitempty"`

	// Token is the API token (cloudflare: sent as a Bearer token; fastly:
	// as Fastly-Key). Use a placeholder such as {env.CF_API_TOKEN}: it is
	// resolved when the config is provisioned and never logged.
	Token string `json:"token,omitempty"`

	// Headers are extra request headers of the generic provider, by name;
	// values may hold placeholders ({env.*}), resolved at provision.
	Headers map[string]string `json:"headers,omitempty"`

	// Endpoint overrides the API base URL of cloudflare
	// (https://api.cloudflare.com/client/v4) or fastly
	// (https://api.fastly.com): for a proxy, or a test server.
	Endpoint string `json:"endpoint,omitempty"`

	// Soft makes Fastly purges soft (Fastly-Soft-Purge: 1): objects are
	// marked stale instead of removed. Purge-all is always hard.
	Soft bool `json:"soft,omitempty"`

	// Timeout bounds one request to the CDN's API. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// validate checks the config with placeholders unresolved (so Caddyfile
// mistakes are reported at load, naming the line) or resolved.
func (c *CDNConfig) validate() error {
	switch c.Provider {
	case cdnCloudflare:
		if c.Zone == "" {
			return fmt.Errorf("cloudflare needs a zone id: cloudflare <zone_id>")
		}
	case cdnFastly:
		if c.Service == "" {
			return fmt.Errorf("fastly needs a service id: fastly <service_id>")
		}
	case cdnGeneric:
		if c.URL == "" {
			return fmt.Errorf("generic needs a URL: generic <url>")
		}
		if err := checkCDNURL(c.URL); err != nil {
			return fmt.Errorf("generic url: %w", err)
		}
	case "":
		return fmt.Errorf("no provider: want cloudflare <zone_id>, fastly <service_id> or generic <url>")
	default:
		return fmt.Errorf("unknown provider %q (want cloudflare, fastly or generic)", c.Provider)
	}
	switch c.Provider {
	case cdnCloudflare, cdnFastly:
		if c.Token == "" {
			return fmt.Errorf("%s needs a token (token {env.%s})", c.Provider, map[string]string{
				cdnCloudflare: "CF_API_TOKEN", cdnFastly: "FASTLY_API_TOKEN"}[c.Provider])
		}
		if len(c.Headers) > 0 {
			return fmt.Errorf("header is only used by the generic provider")
		}
	case cdnGeneric:
		if c.Token != "" {
			return fmt.Errorf("the generic provider takes no token: use header Authorization \"Bearer {env.NAME}\"")
		}
		if c.Endpoint != "" {
			return fmt.Errorf("the generic provider takes no endpoint: its URL is the endpoint")
		}
	}
	if c.Soft && c.Provider != cdnFastly {
		return fmt.Errorf("soft is only supported by fastly")
	}
	if c.Endpoint != "" {
		if err := checkCDNURL(c.Endpoint); err != nil {
			return fmt.Errorf("endpoint: %w", err)
		}
	}
	canonical := make(map[string]string, len(c.Headers))
	for name := range c.Headers {
		if name == "" || strings.ContainsAny(name, " \t\r\n:") {
			return fmt.Errorf("invalid header name %q", name)
		}
		// JSON config can spell one header twice (x-site, X-Site).
		if other, dup := canonical[http.CanonicalHeaderKey(name)]; dup {
			return fmt.Errorf("header %q and %q are the same header", other, name)
		}
		canonical[http.CanonicalHeaderKey(name)] = name
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout must not be negative")
	}
	return nil
}

// checkCDNURL accepts an absolute http(s) URL without credentials.
func checkCDNURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must be an absolute http or https URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not carry credentials (use token or header)", s)
	}
	return nil
}

// cdnTarget is the provisioned CDN of a config: the config with its
// placeholders resolved and the HTTP client that sends the purges.
type cdnTarget struct {
	cfg    CDNConfig // resolved
	client *http.Client
	// secrets are the resolved credentials, redacted from error snippets.
	secrets []string
	// key identifies the CDN (provider and zone, service or URL) for the
	// purge-all bookkeeping; never holds a secret.
	key string
}

// provisionCDN resolves the CDN block, if any.
func (a *App) provisionCDN() error {
	if err := registerCDNMetrics(a.ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("craftedge: registering cdn metrics: %w", err)
	}
	if a.CDN == nil {
		return nil
	}
	if err := a.CDN.validate(); err != nil {
		return fmt.Errorf("craftedge: cdn: %w", err)
	}
	repl := caddy.NewReplacer()
	cfg := *a.CDN
	cfg.Token = strings.TrimSpace(repl.ReplaceAll(cfg.Token, ""))
	var secrets []string
	if a.CDN.Token != "" {
		if cfg.Token == "" {
			return fmt.Errorf("craftedge: cdn: token %s resolves to nothing (is the variable set?)", a.CDN.Token)
		}
		secrets = append(secrets, cfg.Token)
	}
	if len(a.CDN.Headers) > 0 {
		cfg.Headers = make(map[string]string, len(a.CDN.Headers))
		for k, v := range a.CDN.Headers {
			rv := repl.ReplaceAll(v, "")
			cfg.Headers[k] = rv
			if rv != v {
				// A resolved placeholder is a credential: redact it.
				for _, f := range strings.Fields(rv) {
					if len(f) >= 8 {
						secrets = append(secrets, f)
					}
				}
				secrets = append(secrets, rv)
			}
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = caddy.Duration(defaultCDNTimeout)
	}
	if cfg.Endpoint == "" {
		switch cfg.Provider {
		case cdnCloudflare:
			cfg.Endpoint = defaultCloudflareEndpoint
		case cdnFastly:
			cfg.Endpoint = defaultFastlyEndpoint
		}
	}
	cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	key := cfg.Provider + ":" + cfg.Zone + cfg.Service + cfg.URL
	a.cdn = &cdnTarget{
		cfg:     cfg,
		secrets: secrets,
		key:     key,
		client: &http.Client{
			Timeout: time.Duration(cfg.Timeout),
			// A purge API answers; it never redirects somewhere we
			// should send the token to.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	return nil
}
