package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalCDN parses the cdn block of the global option:
//
//	cdn {
//	    cloudflare <zone_id> | fastly <service_id> | generic <url>
//	    token    <token>              # cloudflare, fastly; {env.*}
//	    header   <name> <value>       # generic; repeatable; values may be {env.*}
//	    endpoint <url>                # cloudflare, fastly: API base URL override
//	    soft                          # fastly: soft purges
//	    timeout  <duration>           # per API request; default 10s
//	}
//
// The provider may also go on the cdn line: cdn cloudflare <zone_id> { … }.
func (a *App) unmarshalCDN(d *caddyfile.Dispenser) error {
	file, line := d.File(), d.Line()
	if a.CDN != nil {
		return d.Errf("cdn is configured twice")
	}
	c := &CDNConfig{}
	setProvider := func() error {
		if c.Provider != "" {
			return d.Errf("cdn: provider given twice (%s and %s)", c.Provider, d.Val())
		}
		provider := d.Val()
		switch provider {
		case cdnCloudflare, cdnFastly, cdnGeneric:
		default:
			return d.Errf("cdn: unknown provider %q (want cloudflare, fastly or generic)", provider)
		}
		if !d.NextArg() {
			return d.Errf("cdn: %s needs %s", provider, map[string]string{
				cdnCloudflare: "a zone id", cdnFastly: "a service id", cdnGeneric: "a URL"}[provider])
		}
		c.Provider = provider
		switch provider {
		case cdnCloudflare:
			c.Zone = d.Val()
		case cdnFastly:
			c.Service = d.Val()
		case cdnGeneric:
			c.URL = d.Val()
			if err := checkCDNURL(c.URL); err != nil {
				return d.Errf("cdn: generic: %v", err)
			}
		}
		if d.NextArg() {
			return d.Errf("cdn: too many arguments to %s: %q", provider, d.Val())
		}
		return nil
	}
	if d.NextArg() {
		if err := setProvider(); err != nil {
			return err
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case cdnCloudflare, cdnFastly, cdnGeneric:
			if err := setProvider(); err != nil {
				return err
			}
			continue
		case "token":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			c.Token = v
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("cdn: header wants <name> <value>, got %d arguments", len(args))
			}
			name := http.CanonicalHeaderKey(args[0])
			if c.Headers == nil {
				c.Headers = map[string]string{}
			}
			if _, dup := c.Headers[name]; dup {
				return d.Errf("cdn: header %s is set twice", name)
			}
			c.Headers[name] = args[1]
			continue
		case "endpoint":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if err := checkCDNURL(v); err != nil {
				return d.Errf("cdn: endpoint: %v", err)
			}
			c.Endpoint = v
		case "soft":
			c.Soft = true
		case "timeout":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			c.Timeout = dur
		default:
			return d.Errf("cdn: unrecognized subdirective %q (want cloudflare, fastly, generic, token, header, endpoint, soft or timeout)", sub)
		}
		if d.NextArg() {
			return d.Errf("cdn: too many arguments to %q: %q", sub, d.Val())
		}
	}
	// Checked with placeholders unresolved, so mistakes name the block.
	if err := c.validate(); err != nil {
		return fmt.Errorf("%s:%d: cdn: %v", file, line, err)
	}
	a.CDN = c
	return nil
}
