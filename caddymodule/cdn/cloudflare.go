package cdn

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/caddymodule"
)

func init() {
	caddy.RegisterModule(Cloudflare{})
}

const (
	defaultCloudflareEndpoint = "https://api.cloudflare.com/client/v4"
	// cloudflareMaxPerRequest: Cloudflare accepts at most 100 tags,
	// hosts, prefixes or URLs per purge_cache call on every plan
	// (developers.cloudflare.com/cache/how-to/purge-cache/).
	cloudflareMaxPerRequest = 100
)

// Cloudflare forwards purges to Cloudflare's purge_cache API: POST
// /zones/{zone}/purge_cache with purge_everything, tags, hosts, prefixes
// or files, at most 100 entries per request, with the token as a Bearer
// token.
//
//	cdn cloudflare <zone_id> {
//	    token    <token>      # {env.CF_API_TOKEN}
//	    endpoint <url>        # default https://api.cloudflare.com/client/v4
//	}
type Cloudflare struct {
	// Zone is the Cloudflare zone id whose cache is purged.
	Zone string `json:"zone,omitempty"`

	// Token is the API token (with the Zone > Cache Purge permission),
	// sent as a Bearer token. Use a placeholder such as
	// {env.CF_API_TOKEN}: it is resolved when the config is provisioned
	// and never logged.
	Token string `json:"token,omitempty"`

	// Endpoint overrides the API base URL
	// (https://api.cloudflare.com/client/v4): for a proxy, or a test
	// server.
	Endpoint string `json:"endpoint,omitempty"`

	token    string // resolved
	endpoint string // resolved, without a trailing slash
}

// CaddyModule returns the Caddy module information.
func (Cloudflare) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  caddymodule.CDNNamespace + ".cloudflare",
		New: func() caddy.Module { return new(Cloudflare) },
	}
}

// UnmarshalCaddyfile reads `cloudflare <zone_id> { token …; endpoint … }`.
func (c *Cloudflare) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalProvider(d, &c.Zone, "a zone id", func(d *caddyfile.Dispenser, name string) error {
		var err error
		switch name {
		case "token":
			c.Token, err = caddymodule.OneArg(d)
		case "endpoint":
			c.Endpoint, err = endpointArg(d)
		default:
			err = d.Errf("cdn: cloudflare: unrecognized subdirective %q (want token or endpoint)", name)
		}
		return err
	}, c.check)
}

// check validates the config, placeholders resolved or not.
func (c *Cloudflare) check() error {
	if c.Zone == "" {
		return errors.New("cloudflare needs a zone id: cloudflare <zone_id>")
	}
	if c.Token == "" {
		return errors.New("cloudflare needs a token (token {env.CF_API_TOKEN})")
	}
	if c.Endpoint != "" {
		if err := checkURL(c.Endpoint); err != nil {
			return fmt.Errorf("cloudflare endpoint: %w", err)
		}
	}
	return nil
}

// Provision resolves the token and the endpoint.
func (c *Cloudflare) Provision(caddy.Context) error {
	if err := c.check(); err != nil {
		return err
	}
	token, err := resolveToken(c.Token)
	if err != nil {
		return err
	}
	c.token = token
	c.endpoint = endpointOr(c.Endpoint, defaultCloudflareEndpoint)
	return nil
}

// Validate checks the config.
func (c *Cloudflare) Validate() error { return c.check() }

// Target is the zone.
func (c *Cloudflare) Target() string { return c.Zone }

// Secrets is the resolved token.
func (c *Cloudflare) Secrets() []string { return []string{c.token} }

// PurgeCalls: POST /zones/{zone}/purge_cache with one of
// {"purge_everything":true}, {"tags":[…]}, {"hosts":[…]},
// {"prefixes":[…]} (host/path, no scheme) or {"files":[…]} (plus a
// prefix per URL without a query, see below), each at most
// cloudflareMaxPerRequest entries; Authorization: Bearer <token>.
func (c *Cloudflare) PurgeCalls(p *caddymodule.PurgeRequest) ([]caddymodule.CDNCall, []string, error) {
	endpoint := c.endpoint + "/zones/" + url.PathEscape(c.Zone) + "/purge_cache"
	call := func(what string, body any) (caddymodule.CDNCall, error) {
		b, err := json.Marshal(body)
		if err != nil {
			return caddymodule.CDNCall{}, err
		}
		h := jsonHeader()
		h.Set("Authorization", "Bearer "+c.token)
		return caddymodule.CDNCall{Method: http.MethodPost, URL: endpoint, Header: h, Body: b,
			What: "POST /zones/" + c.Zone + "/purge_cache (" + what + ")", Check: cloudflareSuccess}, nil
	}
	if p.All {
		call, err := call("purge_everything", map[string]bool{"purge_everything": true})
		return []caddymodule.CDNCall{call}, nil, err
	}
	prefixes := make([]string, 0, len(p.Prefixes))
	for _, pre := range p.Prefixes {
		// Cloudflare prefixes are host/path, without the scheme.
		if u, err := url.Parse(pre); err == nil && u.Host != "" {
			pre = u.Host + u.EscapedPath()
		}
		prefixes = append(prefixes, pre)
	}
	// A craftedge URL purge without a query purges every query variant;
	// files purges only the exact URL, so such a URL is also purged as
	// the prefix host/path (which also reaches longer paths: a safe
	// over-purge). Not for the root path, whose prefix is the whole host.
	// After the other groups, so calls of jobs queued before keep their
	// positions.
	var variants []string
	for _, raw := range p.URLs {
		if u, err := url.Parse(raw); err == nil && u.Host != "" && u.RawQuery == "" && !u.ForceQuery &&
			u.EscapedPath() != "" && u.EscapedPath() != "/" {
			variants = append(variants, u.Host+u.EscapedPath())
		}
	}
	var calls []caddymodule.CDNCall
	for _, group := range []struct {
		field  string
		values []string
	}{{"tags", p.Tags}, {"hosts", p.Hosts}, {"prefixes", prefixes}, {"files", p.URLs}, {"prefixes", variants}} {
		for _, chunk := range chunks(group.values, cloudflareMaxPerRequest) {
			call, err := call(fmt.Sprintf("%d %s", len(chunk), group.field), map[string][]string{group.field: chunk})
			if err != nil {
				return nil, nil, err
			}
			calls = append(calls, call)
		}
	}
	return calls, nil, nil
}

// cloudflareSuccess refuses a Cloudflare answer saying "success": false
// (Cloudflare's envelope: success, errors, messages, result).
func cloudflareSuccess(body []byte) error {
	var env struct {
		Success *bool `json:"success"`
	}
	if json.Unmarshal(body, &env) != nil || env.Success == nil || *env.Success {
		return nil
	}
	return errors.New("success is false")
}

// Interface guards.
var (
	_ caddymodule.CDNProvider = (*Cloudflare)(nil)
	_ caddy.Provisioner       = (*Cloudflare)(nil)
	_ caddy.Validator         = (*Cloudflare)(nil)
	_ caddyfile.Unmarshaler   = (*Cloudflare)(nil)
)
