package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Per-request limits of the CDN APIs.
const (
	// cloudflareMaxPerRequest: Cloudflare accepts at most 100 tags,
	// hosts, prefixes or URLs per purge_cache call on every plan
	// (developers.cloudflare.com/cache/how-to/purge-cache/).
	cloudflareMaxPerRequest = 100
	// fastlyMaxKeysPerRequest: Fastly purges up to 256 surrogate keys in
	// one batch request (POST /service/{id}/purge).
	fastlyMaxKeysPerRequest = 256
)

// cdnCall is one request to the CDN's API.
type cdnCall struct {
	method string
	url    string
	header http.Header
	body   []byte
	// what describes the call for errors and logs (no secrets, no body).
	what string
}

// cdnCalls translates a purge into the provider's API requests, in a
// stable order (a retried job skips the calls it already sent). Purges
// the provider cannot express are returned in skipped.
func (t *cdnTarget) cdnCalls(p *cdnPurgePayload) (calls []cdnCall, skipped []string, err error) {
	switch t.cfg.Provider {
	case cdnCloudflare:
		calls, err = t.cloudflareCalls(p)
	case cdnFastly:
		calls, skipped = t.fastlyCalls(p)
	case cdnGeneric:
		calls, err = t.genericCalls(p)
	default:
		err = fmt.Errorf("unknown provider %q", t.cfg.Provider)
	}
	return calls, skipped, err
}

// cloudflareCalls: POST /zones/{zone}/purge_cache with one of
// {"purge_everything":true}, {"tags":[…]}, {"hosts":[…]},
// {"prefixes":[…]} (host/path, no scheme) or {"files":[…]} (plus a
// prefix per URL without a query, see below), each at most
// cloudflareMaxPerRequest entries; Authorization: Bearer <token>.
func (t *cdnTarget) cloudflareCalls(p *cdnPurgePayload) ([]cdnCall, error) {
	endpoint := t.cfg.Endpoint + "/zones/" + url.PathEscape(t.cfg.Zone) + "/purge_cache"
	header := func() http.Header {
		h := http.Header{}
		h.Set("Authorization", "Bearer "+t.cfg.Token)
		h.Set("Content-Type", "application/json")
		h.Set("Accept", "application/json")
		return h
	}
	call := func(what string, body any) (cdnCall, error) {
		b, err := json.Marshal(body)
		if err != nil {
			return cdnCall{}, err
		}
		return cdnCall{method: http.MethodPost, url: endpoint, header: header(), body: b,
			what: "POST /zones/" + t.cfg.Zone + "/purge_cache (" + what + ")"}, nil
	}
	if p.All {
		c, err := call("purge_everything", map[string]bool{"purge_everything": true})
		return []cdnCall{c}, err
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
	var calls []cdnCall
	for _, group := range []struct {
		field  string
		values []string
	}{{"tags", p.Tags}, {"hosts", p.Hosts}, {"prefixes", prefixes}, {"files", p.URLs}, {"prefixes", variants}} {
		for _, chunk := range chunks(group.values, cloudflareMaxPerRequest) {
			c, err := call(fmt.Sprintf("%d %s", len(chunk), group.field), map[string][]string{group.field: chunk})
			if err != nil {
				return nil, err
			}
			calls = append(calls, c)
		}
	}
	return calls, nil
}

// fastlyCalls: POST /service/{id}/purge with Surrogate-Key: k1 k2 … (at
// most fastlyMaxKeysPerRequest keys), POST /purge/{host/path?query} per
// URL, POST /service/{id}/purge_all; Fastly-Key: <token>, and
// Fastly-Soft-Purge: 1 when soft (not for purge_all, which is always
// hard). Fastly has no host or prefix purge: those are skipped, and so
// are the query variants of a URL without a query (only the exact URL is
// purged).
func (t *cdnTarget) fastlyCalls(p *cdnPurgePayload) (calls []cdnCall, skipped []string) {
	service := url.PathEscape(t.cfg.Service)
	header := func(soft bool) http.Header {
		h := http.Header{}
		h.Set("Fastly-Key", t.cfg.Token)
		h.Set("Accept", "application/json")
		if soft {
			h.Set("Fastly-Soft-Purge", "1")
		}
		return h
	}
	if p.All {
		return []cdnCall{{method: http.MethodPost, url: t.cfg.Endpoint + "/service/" + service + "/purge_all",
			header: header(false), what: "POST /service/" + t.cfg.Service + "/purge_all"}}, nil
	}
	for _, chunk := range chunks(p.Tags, fastlyMaxKeysPerRequest) {
		h := header(t.cfg.Soft)
		h.Set("Surrogate-Key", strings.Join(chunk, " "))
		calls = append(calls, cdnCall{method: http.MethodPost, url: t.cfg.Endpoint + "/service/" + service + "/purge",
			header: h, what: fmt.Sprintf("POST /service/%s/purge (%d keys)", t.cfg.Service, len(chunk))})
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
		calls = append(calls, cdnCall{method: http.MethodPost, url: t.cfg.Endpoint + "/purge/" + cached,
			header: header(t.cfg.Soft), what: "POST /purge/" + cached})
	}
	for _, h := range p.Hosts {
		skipped = append(skipped, "host "+h)
	}
	for _, pre := range p.Prefixes {
		skipped = append(skipped, "prefix "+pre)
	}
	return calls, skipped
}

// genericCalls: one POST of craftedge's own purge JSON to the URL, with
// the configured headers.
func (t *cdnTarget) genericCalls(p *cdnPurgePayload) ([]cdnCall, error) {
	b, err := json.Marshal(PurgeRequest{Tags: p.Tags, URLs: p.URLs, Prefixes: p.Prefixes, Hosts: p.Hosts, All: p.All})
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for k, v := range t.cfg.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	what := "POST " + t.cfg.URL
	if u, err := url.Parse(t.cfg.URL); err == nil {
		what = "POST " + u.Scheme + "://" + u.Host + u.Path // no query: it may hold a key
	}
	return []cdnCall{{method: http.MethodPost, url: t.cfg.URL, header: h, body: b, what: what}}, nil
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
