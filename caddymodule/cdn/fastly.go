package cdn

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/caddymodule"
)

func init() {
	caddy.RegisterModule(Fastly{})
}

const (
	defaultFastlyEndpoint = "https://api.fastly.com"
	// fastlyMaxKeysPerRequest: Fastly purges up to 256 surrogate keys in
	// one batch request (POST /service/{id}/purge).
	fastlyMaxKeysPerRequest = 256
)

// Fastly forwards purges to Fastly's API: surrogate keys in batches of
// 256 (POST /service/{id}/purge), URLs one by one (POST /purge/{url}) and
// purge-all (POST /service/{id}/purge_all), with the token as Fastly-Key.
// Fastly has no host or prefix purge: those are skipped (logged).
//
//	cdn fastly <service_id> {
//	    token    <token>      # {env.FASTLY_API_TOKEN}
//	    soft                  # Fastly-Soft-Purge: mark stale
//	    endpoint <url>        # default https://api.fastly.com
//	}
type Fastly struct {
	// Service is the Fastly service id whose cache is purged.
	Service string `json:"service,omitempty"`

	// Token is the API token (purge_select; purge_all for purge-all),
	// sent as Fastly-Key. Use a placeholder such as
	// {env.FASTLY_API_TOKEN}: it is resolved when the config is
	// provisioned and never logged.
	Token string `json:"token,omitempty"`

	// Soft makes purges soft (Fastly-Soft-Purge: 1): objects are marked
	// stale instead of removed. Purge-all is always hard.
	Soft bool `json:"soft,omitempty"`

	// Endpoint overrides the API base URL (https://api.fastly.com): for
	// a proxy, or a test server.
	Endpoint string `json:"endpoint,omitempty"`

	token    string // resolved
	endpoint string // resolved, without a trailing slash
}

// CaddyModule returns the Caddy module information.
func (Fastly) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  caddymodule.CDNNamespace + ".fastly",
		New: func() caddy.Module { return new(Fastly) },
	}
}

// UnmarshalCaddyfile reads `fastly <service_id> { token …; soft; endpoint … }`.
func (f *Fastly) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalProvider(d, &f.Service, "a service id", func(d *caddyfile.Dispenser, name string) error {
		var err error
		switch name {
		case "token":
			f.Token, err = caddymodule.OneArg(d)
		case "soft":
			f.Soft = true
		case "endpoint":
			f.Endpoint, err = endpointArg(d)
		default:
			err = d.Errf("cdn: fastly: unrecognized subdirective %q (want token, soft or endpoint)", name)
		}
		return err
	}, f.check)
}

// check validates the config, placeholders resolved or not.
func (f *Fastly) check() error {
	if f.Service == "" {
		return errors.New("fastly needs a service id: fastly <service_id>")
	}
	if f.Token == "" {
		return errors.New("fastly needs a token (token {env.FASTLY_API_TOKEN})")
	}
	if f.Endpoint != "" {
		if err := checkURL(f.Endpoint); err != nil {
			return fmt.Errorf("fastly endpoint: %w", err)
		}
	}
	return nil
}

// Provision resolves the token and the endpoint.
func (f *Fastly) Provision(caddy.Context) error {
	if err := f.check(); err != nil {
		return err
	}
	token, err := resolveToken(f.Token)
	if err != nil {
		return err
	}
	f.token = token
	f.endpoint = endpointOr(f.Endpoint, defaultFastlyEndpoint)
	return nil
}

// Validate checks the config.
func (f *Fastly) Validate() error { return f.check() }

// Target is the service.
func (f *Fastly) Target() string { return f.Service }

// Secrets is the resolved token.
func (f *Fastly) Secrets() []string { return []string{f.token} }

// PurgeCalls: POST /service/{id}/purge with Surrogate-Key: k1 k2 … (at
// most fastlyMaxKeysPerRequest keys), POST /purge/{host/path?query} per
// URL, POST /service/{id}/purge_all; Fastly-Key: <token>, and
// Fastly-Soft-Purge: 1 when soft (not for purge_all, which is always
// hard). Fastly has no host or prefix purge: those are skipped, and so
// are the query variants of a URL without a query (only the exact URL is
// purged).
func (f *Fastly) PurgeCalls(p *caddymodule.PurgeRequest) (calls []caddymodule.CDNCall, skipped []string, err error) {
	service := url.PathEscape(f.Service)
	header := func(soft bool) http.Header {
		h := http.Header{}
		h.Set("Fastly-Key", f.token)
		h.Set("Accept", "application/json")
		if soft {
			h.Set("Fastly-Soft-Purge", "1")
		}
		return h
	}
	if p.All {
		return []caddymodule.CDNCall{{Method: http.MethodPost, URL: f.endpoint + "/service/" + service + "/purge_all",
			Header: header(false), What: "POST /service/" + f.Service + "/purge_all"}}, nil, nil
	}
	for _, chunk := range chunks(p.Tags, fastlyMaxKeysPerRequest) {
		h := header(f.Soft)
		h.Set("Surrogate-Key", strings.Join(chunk, " "))
		calls = append(calls, caddymodule.CDNCall{Method: http.MethodPost, URL: f.endpoint + "/service/" + service + "/purge",
			Header: h, What: fmt.Sprintf("POST /service/%s/purge (%d keys)", f.Service, len(chunk))})
	}
	for _, raw := range p.URLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			skipped = append(skipped, "url "+raw)
			continue
		}
		// The cached URL without its scheme: /purge/www.example.com/path?q.
		cached := u.Host + u.EscapedPath()
		if cached == u.Host {
			cached += "/"
		}
		if u.RawQuery != "" {
			cached += "?" + u.RawQuery
		} else {
			// craftedge purged every query variant; Fastly purges
			// this exact URL only (it has no prefix purge).
			skipped = append(skipped, "query variants of url "+raw)
		}
		calls = append(calls, caddymodule.CDNCall{Method: http.MethodPost, URL: f.endpoint + "/purge/" + cached,
			Header: header(f.Soft), What: "POST /purge/" + cached})
	}
	for _, h := range p.Hosts {
		skipped = append(skipped, "host "+h)
	}
	for _, pre := range p.Prefixes {
		skipped = append(skipped, "prefix "+pre)
	}
	return calls, skipped, nil
}

// Interface guards.
var (
	_ caddymodule.CDNProvider = (*Fastly)(nil)
	_ caddy.Provisioner       = (*Fastly)(nil)
	_ caddy.Validator         = (*Fastly)(nil)
	_ caddyfile.Unmarshaler   = (*Fastly)(nil)
)
