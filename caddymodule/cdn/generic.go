package cdn

import (
	"encoding/json"
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
	caddy.RegisterModule(Generic{})
}

// Generic forwards purges to an endpoint of yours: one POST of
// craftedge's own purge JSON ({"tags", "urls", "prefixes", "hosts",
// "all"}, as POST /craftedge/purge takes it) to the URL, with the
// configured headers.
//
//	cdn generic <url> {
//	    header <name> <value>   # repeatable; values may be {env.*}
//	}
type Generic struct {
	// URL is where the purge JSON is POSTed: an absolute http or https
	// URL without credentials (put them in a header).
	URL string `json:"url,omitempty"`

	// Headers are extra request headers, by name; values may hold
	// placeholders ({env.*}), resolved at provision and redacted from
	// errors.
	Headers map[string]string `json:"headers,omitempty"`

	headers http.Header // resolved
	secrets []string
}

// CaddyModule returns the Caddy module information.
func (Generic) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  caddymodule.CDNNamespace + ".generic",
		New: func() caddy.Module { return new(Generic) },
	}
}

// UnmarshalCaddyfile reads `generic <url> { header <name> <value> … }`.
func (g *Generic) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalProvider(d, &g.URL, "a URL", func(d *caddyfile.Dispenser, name string) error {
		switch name {
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("cdn: header wants <name> <value>, got %d arguments", len(args))
			}
			if err := checkHeaderName(args[0]); err != nil {
				return d.Errf("cdn: %v", err)
			}
			key := http.CanonicalHeaderKey(args[0])
			if g.Headers == nil {
				g.Headers = map[string]string{}
			}
			if _, dup := g.Headers[key]; dup {
				return d.Errf("cdn: header %s is set twice", key)
			}
			g.Headers[key] = args[1]
			return nil
		case "token":
			return d.Errf("cdn: the generic provider takes no token: use header Authorization \"Bearer {env.NAME}\"")
		case "endpoint":
			return d.Errf("cdn: the generic provider takes no endpoint: its URL is the endpoint")
		default:
			return d.Errf("cdn: generic: unrecognized subdirective %q (want header)", name)
		}
	}, g.check)
}

// check validates the config, placeholders resolved or not.
func (g *Generic) check() error {
	if g.URL == "" {
		return errors.New("generic needs a URL: generic <url>")
	}
	if err := checkURL(g.URL); err != nil {
		return fmt.Errorf("generic url: %w", err)
	}
	canonical := make(map[string]string, len(g.Headers))
	for name := range g.Headers {
		if err := checkHeaderName(name); err != nil {
			return err
		}
		// JSON config can spell one header twice (x-site, X-Site).
		if other, dup := canonical[http.CanonicalHeaderKey(name)]; dup {
			return fmt.Errorf("header %q and %q are the same header", other, name)
		}
		canonical[http.CanonicalHeaderKey(name)] = name
	}
	return nil
}

func checkHeaderName(name string) error {
	if name == "" || strings.ContainsAny(name, " \t\r\n:") {
		return fmt.Errorf("invalid header name %q", name)
	}
	return nil
}

// Provision resolves the headers' placeholders; a resolved placeholder
// is a credential, redacted from errors.
func (g *Generic) Provision(caddy.Context) error {
	if err := g.check(); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	g.headers = http.Header{}
	g.secrets = nil
	for k, v := range g.Headers {
		rv := repl.ReplaceAll(v, "")
		g.headers.Set(k, rv)
		if rv != v {
			for _, f := range strings.Fields(rv) {
				if len(f) >= 8 {
					g.secrets = append(g.secrets, f)
				}
			}
			g.secrets = append(g.secrets, rv)
		}
	}
	g.headers.Set("Content-Type", "application/json")
	return nil
}

// Validate checks the config.
func (g *Generic) Validate() error { return g.check() }

// Target is the URL without its query (which may hold a key).
func (g *Generic) Target() string { return g.what() }

// Secrets are the resolved header values that held placeholders.
func (g *Generic) Secrets() []string { return g.secrets }

// what describes the URL in errors: no query, it may hold a key.
func (g *Generic) what() string {
	if u, err := url.Parse(g.URL); err == nil {
		return u.Scheme + "://" + u.Host + u.Path
	}
	return "(unparsable url)"
}

// PurgeCalls: one POST of craftedge's own purge JSON to the URL, with the
// configured headers.
func (g *Generic) PurgeCalls(p *caddymodule.PurgeRequest) ([]caddymodule.CDNCall, []string, error) {
	b, err := json.Marshal(caddymodule.PurgeRequest{Tags: p.Tags, URLs: p.URLs, Prefixes: p.Prefixes, Hosts: p.Hosts, All: p.All})
	if err != nil {
		return nil, nil, err
	}
	return []caddymodule.CDNCall{{Method: http.MethodPost, URL: g.URL, Header: g.headers.Clone(), Body: b,
		What: "POST " + g.what()}}, nil, nil
}

// Interface guards.
var (
	_ caddymodule.CDNProvider = (*Generic)(nil)
	_ caddy.Provisioner       = (*Generic)(nil)
	_ caddy.Validator         = (*Generic)(nil)
	_ caddyfile.Unmarshaler   = (*Generic)(nil)
)
