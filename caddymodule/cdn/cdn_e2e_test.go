package cdn

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
)

// The providers end to end: a real Caddy whose cdn block names the
// provider, purges through the admin API and Craft's Cache-Purge-Tag, a
// fake CDN API on 127.0.0.1 recording what arrives. The fan-out itself
// (retries, Retry-After, dead letters) is tested in the core.

const (
	cfToken     = "cf-test-token-7f3a9c"
	fastlyToken = "fastly-test-token-81bd2e"
)

// Cloudflare: admin purge by tag, Craft's Cache-Purge-Tag, URLs, prefixes
// and purge-all each reach purge_cache in Cloudflare's shape, with the
// token, batched at 100 per call.
func TestCloudflareForwardsPurges(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := e2e.NewFakeCDN(t)
	o := e2e.NewOrigin(t)
	o.Handle("/blog/a", e2e.PageHandler("a", "entry:1 section:blog"))
	o.Handle("/admin/actions/entries/save-entry", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag", "entry:2,section:news")
		w.WriteHeader(http.StatusOK)
	})
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			cloudflare zone-abc
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.URL() + `/client/v4/
		}`})
	okBefore := e2e.CDNCounter(g, "cloudflare", "ok")

	e2e.WantCacheStatusPrefix(t, g.Get("/blog/a"), "craftedge; fwd=miss")
	e2e.WantCacheStatus(t, g.Get("/blog/a"), "craftedge; hit")
	// The hit path enqueues nothing.
	if js := e2e.CDNJobs(g); len(js) != 0 {
		t.Fatalf("cdn jobs after hits: %+v", js)
	}

	e2e.Purge(g, `{"tags":["entry:1"]}`)
	// The memory purge is done when the admin call returns (soft, the
	// default: the copy is revalidated).
	e2e.WantCacheStatusPrefix(t, g.Get("/blog/a"), "craftedge; fwd=stale")
	reqs := cdn.WaitRequests(1)
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/client/v4/zones/zone-abc/purge_cache" {
		t.Fatalf("request %s %s", r.Method, r.Path)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+cfToken {
		t.Fatalf("Authorization = %q", got)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	e2e.WantJSON(t, r.Body, map[string]any{"tags": []string{"entry:1"}})
	js := e2e.WaitCDNJobs(g, 1, jobs.StateDone)
	if js[0].Attempts != 1 || !strings.Contains(string(js[0].Payload), `"provider":"cloudflare"`) {
		t.Fatalf("job %+v", js[0])
	}

	// Craft's Cache-Purge-Tag on a control-panel POST.
	resp := g.Do(http.MethodPost, "/admin/actions/entries/save-entry", nil, "title=x")
	e2e.WantStatus(t, resp, 200)
	if resp.Header.Get("Cache-Purge-Tag") != "" {
		t.Fatal("Cache-Purge-Tag reached the client")
	}
	reqs = cdn.WaitRequests(2)
	e2e.WantJSON(t, reqs[1].Body, map[string]any{"tags": []string{"entry:2", "section:news"}})

	// URLs, prefixes and hosts: one call per kind, Cloudflare's fields.
	e2e.Purge(g, `{"urls":["https://www.example.com/blog/a?p=2"],"prefixes":["https://www.example.com/blog/"],"hosts":["www.example.com"]}`)
	reqs = cdn.WaitRequests(5)
	e2e.WantJSON(t, reqs[2].Body, map[string]any{"hosts": []string{"www.example.com"}})
	e2e.WantJSON(t, reqs[3].Body, map[string]any{"prefixes": []string{"www.example.com/blog/"}})
	e2e.WantJSON(t, reqs[4].Body, map[string]any{"files": []string{"https://www.example.com/blog/a?p=2"}})

	// 150 tags: two calls, 100 then 50.
	tags := make([]string, 150)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%d", i)
	}
	b, _ := json.Marshal(map[string]any{"tags": tags})
	e2e.Purge(g, string(b))
	reqs = cdn.WaitRequests(7)
	e2e.WantJSON(t, reqs[5].Body, map[string]any{"tags": tags[:100]})
	e2e.WantJSON(t, reqs[6].Body, map[string]any{"tags": tags[100:]})

	e2e.Purge(g, `{"all":true}`)
	reqs = cdn.WaitRequests(8)
	e2e.WantJSON(t, reqs[7].Body, map[string]any{"purge_everything": true})
	e2e.WaitCDNJobs(g, 5, jobs.StateDone)
	if d := e2e.CDNCounter(g, "cloudflare", "ok") - okBefore; d != 8 {
		t.Fatalf("ok requests counted %v, want 8", d)
	}
	if n := len(cdn.Got()); n != 8 {
		t.Fatalf("%d requests at the CDN, want 8", n)
	}
}

// Cloudflare's envelope saying success:false on a 200 is retried; a 403
// echoing the token dead-letters without it.
func TestCloudflareUnsuccessfulAnswers(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := e2e.NewFakeCDN(t)
	cdn.Script(e2e.CDNAnswer{Status: 200, Body: `{"success":false,"errors":[{"code":1,"message":"x"}]}`})
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn cloudflare zone-abc {
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.URL() + `
		}
		jobs {
			kind cdn.purge {
				backoff 1ms 5ms
			}
		}`})
	e2e.Purge(g, `{"tags":["entry:10"]}`)
	j := e2e.WaitCDNJobs(g, 1, jobs.StateDone)[0]
	if j.Attempts != 2 || !strings.Contains(j.History[0].Error, "200 but success is false") {
		t.Fatalf("job %+v", j)
	}
	if n := len(cdn.Got()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	cdn.Script(e2e.CDNAnswer{Status: 403, Body: `{"success":false,"errors":[{"code":10000,"message":"Authentication error for Bearer ` + cfToken + `"}]}`})
	e2e.Purge(g, `{"tags":["entry:11"]}`)
	e2e.WaitFor(t, "the dead letter", func() bool {
		js := e2e.CDNJobs(g)
		return len(js) == 2 && js[1].State == jobs.StateDead
	})
	j = e2e.CDNJobs(g)[1]
	if !strings.Contains(j.LastError, "403") || !strings.Contains(j.LastError, "Authentication error for Bearer REDACTED") ||
		strings.Contains(j.LastError, cfToken) {
		t.Fatalf("dead letter %q", j.LastError)
	}
}

// Fastly: Surrogate-Key batch purge (soft), URL purge through the API,
// purge_all (always hard); hosts and prefixes have no Fastly equivalent.
func TestFastlyForwardsPurges(t *testing.T) {
	t.Setenv("FASTLY_API_TOKEN", fastlyToken)
	cdn := e2e.NewFakeCDN(t)
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn fastly svc123 {
			token {env.FASTLY_API_TOKEN}
			endpoint ` + cdn.URL() + `
			soft
			timeout 5s
		}`})
	e2e.Purge(g, `{"tags":["entry:1","section:blog"]}`)
	r := cdn.WaitRequests(1)[0]
	if r.Method != http.MethodPost || r.Path != "/service/svc123/purge" {
		t.Fatalf("request %s %s", r.Method, r.Path)
	}
	if got := r.Header.Get("Surrogate-Key"); got != "entry:1 section:blog" {
		t.Fatalf("Surrogate-Key = %q", got)
	}
	if r.Header.Get("Fastly-Key") != fastlyToken || r.Header.Get("Fastly-Soft-Purge") != "1" {
		t.Fatalf("headers %v", r.Header)
	}
	if r.Header.Get("Authorization") != "" {
		t.Fatal("fastly request carries an Authorization header")
	}

	e2e.Purge(g, `{"urls":["https://www.example.com/blog/a?p=2"]}`)
	r = cdn.WaitRequests(2)[1]
	if r.Path != "/purge/www.example.com/blog/a" || r.Query != "p=2" || r.Header.Get("Fastly-Key") != fastlyToken {
		t.Fatalf("url purge %s %s?%s", r.Method, r.Path, r.Query)
	}

	// 300 keys: 256 then 44.
	tags := make([]string, 300)
	for i := range tags {
		tags[i] = fmt.Sprintf("k%d", i)
	}
	b, _ := json.Marshal(map[string]any{"tags": tags})
	e2e.Purge(g, string(b))
	reqs := cdn.WaitRequests(4)
	if got := strings.Fields(reqs[2].Header.Get("Surrogate-Key")); len(got) != 256 || got[0] != "k0" {
		t.Fatalf("first batch has %d keys", len(got))
	}
	if got := strings.Fields(reqs[3].Header.Get("Surrogate-Key")); len(got) != 44 || got[43] != "k299" {
		t.Fatalf("second batch has %d keys", len(got))
	}

	e2e.Purge(g, `{"all":true}`)
	r = cdn.WaitRequests(5)[4]
	if r.Path != "/service/svc123/purge_all" || r.Header.Get("Fastly-Soft-Purge") != "" || r.Header.Get("Fastly-Key") != fastlyToken {
		t.Fatalf("purge all %s %v", r.Path, r.Header)
	}

	// Hosts only: nothing Fastly can do; the job is done without a call.
	e2e.Purge(g, `{"hosts":["www.example.com"]}`)
	e2e.WaitCDNJobs(g, 5, jobs.StateDone)
	if n := len(cdn.Got()); n != 5 {
		t.Fatalf("%d requests, want 5", n)
	}
}

// Generic: craftedge's purge JSON with the configured headers.
func TestGenericForwardsPurges(t *testing.T) {
	t.Setenv("PURGE_HOOK_KEY", "generic-secret-55")
	cdn := e2e.NewFakeCDN(t)
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			generic ` + cdn.URL() + `/hooks/purge?site=www
			header Authorization "Bearer {env.PURGE_HOOK_KEY}"
			header X-Site www
		}`})
	e2e.Purge(g, `{"tags":["entry:1"],"urls":["https://www.example.com/a"]}`)
	r := cdn.WaitRequests(1)[0]
	if r.Method != http.MethodPost || r.Path != "/hooks/purge" || r.Query != "site=www" {
		t.Fatalf("request %s %s?%s", r.Method, r.Path, r.Query)
	}
	if r.Header.Get("Authorization") != "Bearer generic-secret-55" || r.Header.Get("X-Site") != "www" ||
		r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", r.Header)
	}
	e2e.WantJSON(t, r.Body, map[string]any{"tags": []string{"entry:1"}, "urls": []string{"https://www.example.com/a"}})
	e2e.Purge(g, `{"all":true}`)
	e2e.WantJSON(t, cdn.WaitRequests(2)[1].Body, map[string]any{"all": true})
	// A refusal names the URL without its query, and the resolved header
	// value is redacted from the answer's snippet.
	cdn.Script(e2e.CDNAnswer{Status: 401, Body: `bad key generic-secret-55`})
	e2e.Purge(g, `{"tags":["entry:2"]}`)
	e2e.WaitFor(t, "the dead letter", func() bool {
		js := e2e.CDNJobs(g)
		return len(js) == 3 && js[2].State == jobs.StateDead
	})
	j := e2e.CDNJobs(g)[2]
	if !strings.Contains(j.LastError, "cdn generic: POST "+cdn.URL()+"/hooks/purge: 401: bad key REDACTED") ||
		strings.Contains(j.LastError, "site=www") {
		t.Fatalf("dead letter %q", j.LastError)
	}
}

// A URL purge without a query purges every query variant in craftedge;
// at Cloudflare it is the exact URL plus the prefix host/path (the root
// path gets no prefix: that would be the whole host).
func TestCloudflareURLWithoutQueryPurgesVariants(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := e2e.NewFakeCDN(t)
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn cloudflare zone-abc {
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.URL() + `
		}`})
	e2e.Purge(g, `{"urls":["https://www.example.com/blog/a","https://www.example.com/blog/b?p=2","https://www.example.com/"]}`)
	reqs := cdn.WaitRequests(2)
	e2e.WaitCDNJobs(g, 1, jobs.StateDone)
	e2e.WantJSON(t, reqs[0].Body, map[string]any{"files": []string{"https://www.example.com/blog/a", "https://www.example.com/blog/b?p=2", "https://www.example.com/"}})
	e2e.WantJSON(t, reqs[1].Body, map[string]any{"prefixes": []string{"www.example.com/blog/a"}})
	if n := len(cdn.Got()); n != 2 {
		t.Fatalf("%d requests at the CDN, want 2", n)
	}
}

// Bad provider config fails at adapt, naming the Caddyfile line.
func TestProviderCaddyfileErrors(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "x.db")
	for _, tc := range []struct {
		block, want string
		line        int // the line the error names, counted from the cdn line
	}{
		{"cdn akamai x", `unknown provider "akamai" (registered: cloudflare, fastly, generic)`, 0},
		{"cdn {\n\t\t\takamai x\n\t\t}", `"akamai" is not a provider`, 0},
		{"cdn {\n\t\t\tcloudflare\n\t\t}", "cloudflare needs a zone id", 1},
		{"cdn {\n\t\t\tcloudflare z\n\t\t}", "cloudflare needs a token", 1},
		{"cdn cloudflare z y", `too many arguments to cloudflare: "y"`, 0},
		{"cdn fastly svc", "fastly needs a token", 0},
		{"cdn {\n\t\t\ttoken x\n\t\t}", "no provider", 0},
		{"cdn generic", "generic needs a URL", 0},
		{"cdn generic ftp://x/purge", "must be an absolute http or https URL", 0},
		{"cdn generic /purge", "must be an absolute http or https URL", 0},
		{"cdn generic http://user:pw@x/purge", "must not carry credentials", 0},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t\tendpoint not-a-url\n\t\t}", "endpoint", 2},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t\tsoft\n\t\t}", `cloudflare: unrecognized subdirective "soft" (want token or endpoint)`, 2},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t\tfrobnicate\n\t\t}", `unrecognized subdirective "frobnicate"`, 2},
		{"cdn fastly s {\n\t\t\ttoken t\n\t\t\theader X-A b\n\t\t}", `fastly: unrecognized subdirective "header"`, 2},
		{"cdn fastly s {\n\t\t\ttoken t\n\t\t\tsoft yes\n\t\t}", `too many arguments to "soft"`, 2},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t\ttimeout soon\n\t\t}", "invalid duration", 2},
		{"cdn generic http://127.0.0.1:1/p {\n\t\t\ttoken t\n\t\t}", "takes no token", 1},
		{"cdn generic http://127.0.0.1:1/p {\n\t\t\tendpoint http://x\n\t\t}", "takes no endpoint", 1},
		{"cdn generic http://127.0.0.1:1/p {\n\t\t\theader X-Only\n\t\t}", "header wants <name> <value>", 1},
		{"cdn generic http://127.0.0.1:1/p {\n\t\t\theader \"X A\" b\n\t\t}", `invalid header name "X A"`, 1},
		{"cdn generic http://127.0.0.1:1/p {\n\t\t\theader X-Site a\n\t\t\theader x-site b\n\t\t}", "cdn: header X-Site is set twice", 2},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t}\n\t\tcdn fastly s {\n\t\t\ttoken t\n\t\t}", "cdn is configured twice", 3},
	} {
		e2e.WantGlobalError(t, o, storage, tc.block, tc.want, tc.line)
	}
	// Through a real load too.
	e2e.AssertLoadError(t, e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: "cdn fastly svc"}), "fastly needs a token")
	// A token placeholder that resolves to nothing fails at provision.
	t.Setenv("CF_API_TOKEN", "")
	cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: "cdn cloudflare z {\n\t\t\ttoken {env.CF_API_TOKEN}\n\t\t}"})
	caddytest.AssertLoadError(t, cfg, "caddyfile", "token {env.CF_API_TOKEN} resolves to nothing")
}

// JSON configs are checked at provision: what the Caddyfile refuses at
// adapt, a JSON config cannot slip past.
func TestProviderJSONErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "x.db")
	cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: "cdn generic http://127.0.0.1:9/purge {\n\t\t\theader X-Site a\n\t\t}"})
	b := e2e.Adapt(t, cfg)
	from := `{"headers":{"X-Site":"a"},"name":"generic","url":"http://127.0.0.1:9/purge"}`
	if !strings.Contains(string(b), from) {
		t.Fatalf("%s not in %s", from, b)
	}
	for _, tc := range []struct{ to, want string }{
		{`{"headers":{"X-Site":"a","x-site":"b"},"name":"generic","url":"http://127.0.0.1:9/purge"}`, "are the same header"},
		{`{"name":"generic","url":"ftp://x"}`, "must be an absolute http or https URL"},
		{`{"name":"generic"}`, "generic needs a URL"},
		{`{"name":"cloudflare","zone":"z"}`, "cloudflare needs a token"},
		{`{"name":"fastly","token":"t"}`, "fastly needs a service id"},
		{`{"name":"fastly","service":"s","token":"t","endpoint":"http://u:p@x"}`, "must not carry credentials"},
		{`{"name":"cloudflare","zone":"z","token":"t","soft":true}`, "unknown field"},
	} {
		caddytest.AssertLoadError(t, strings.Replace(string(b), from, tc.to, 1), "json", tc.want)
	}
}
