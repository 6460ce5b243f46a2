package cdn

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/caddymodule"
)

// checkURL accepts an absolute http(s) URL without credentials.
func checkURL(s string) error {
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

// resolveToken resolves a token's placeholders ({env.CF_API_TOKEN}); a
// token that resolves to nothing is an error (an unset variable must not
// send unauthenticated purges).
func resolveToken(token string) (string, error) {
	v := strings.TrimSpace(caddy.NewReplacer().ReplaceAll(token, ""))
	if v == "" {
		return "", fmt.Errorf("token %s resolves to nothing (is the variable set?)", token)
	}
	return v, nil
}

// unmarshalProvider reads `<name> <arg> { <subdirectives> }`: the one
// argument into *arg (what names it, e.g. "a zone id"), then each
// subdirective through sub, which reads its arguments; arguments left
// over are an error. Finally check runs with placeholders unresolved; its
// error names the provider line.
func unmarshalProvider(d *caddyfile.Dispenser, arg *string, what string,
	sub func(d *caddyfile.Dispenser, name string) error, check func() error) error {
	d.Next() // provider name
	name := d.Val()
	file, line := d.File(), d.Line()
	if !d.NextArg() {
		return d.Errf("cdn: %s needs %s", name, what)
	}
	*arg = d.Val()
	if d.NextArg() {
		return d.Errf("cdn: too many arguments to %s: %q", name, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sd := d.Val()
		if err := sub(d, sd); err != nil {
			return err
		}
		if d.NextArg() {
			return d.Errf("cdn: too many arguments to %q: %q", sd, d.Val())
		}
	}
	if err := check(); err != nil {
		return fmt.Errorf("%s:%d: cdn: %v", file, line, err)
	}
	return nil
}

// endpointArg reads an endpoint subdirective's URL.
func endpointArg(d *caddyfile.Dispenser) (string, error) {
	v, err := caddymodule.OneArg(d)
	if err != nil {
		return "", err
	}
	if err := checkURL(v); err != nil {
		return "", d.Errf("cdn: endpoint: %v", err)
	}
	return v, nil
}

// endpointOr returns the endpoint without a trailing slash, or def.
func endpointOr(endpoint, def string) string {
	if endpoint == "" {
		return def
	}
	return strings.TrimRight(endpoint, "/")
}

// jsonHeader is the header of a JSON API call.
func jsonHeader() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	return h
}

// chunks splits s into slices of at most n elements.
func chunks(s []string, n int) [][]string {
	var out [][]string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	if len(s) > 0 {
		out = append(out, s)
	}
	return out
}
