package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
)

// fakeCDN is a real HTTP server on 127.0.0.1 standing in for a CDN's
// purge API: it records every request and answers what the test scripts
// (200 by default).
type fakeCDN struct {
	t   *testing.T
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	requests []cdnRequest
	// answers are consumed in order; when empty, answer() decides.
	answers []cdnAnswer
	answer  func(r cdnRequest) cdnAnswer
}

type cdnRequest struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

type cdnAnswer struct {
	// hang holds the request until the client gives up (a timeout).
	hang   bool
	status int
	header map[string]string
	body   string
}

func newFakeCDN(t *testing.T) *fakeCDN {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCDN{t: t, ln: ln}
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

func (f *fakeCDN) url() string { return "http://" + f.ln.Addr().String() }

func (f *fakeCDN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	req := cdnRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(b)}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	a := cdnAnswer{status: http.StatusOK, body: `{"success":true,"errors":[],"messages":[],"result":{"id":"x"}}`}
	switch {
	case len(f.answers) > 0:
		a = f.answers[0]
		f.answers = f.answers[1:]
	case f.answer != nil:
		a = f.answer(req)
	}
	f.mu.Unlock()
	if a.hang {
		<-r.Context().Done()
		return
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func (f *fakeCDN) script(answers ...cdnAnswer) {
	f.mu.Lock()
	f.answers = append(f.answers, answers...)
	f.mu.Unlock()
}

func (f *fakeCDN) got() []cdnRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// waitRequests waits until the CDN has received n requests and returns
// them.
func (f *fakeCDN) waitRequests(n int) []cdnRequest {
	f.t.Helper()
	e2e.WaitFor(f.t, fmt.Sprintf("%d requests at the fake CDN", n), func() bool { return len(f.got()) >= n })
	return f.got()
}

const (
	cfToken     = "cf-test-token-7f3a9c"
	fastlyToken = "fastly-test-token-81bd2e"
)

// cdnJobs lists the cdn.purge jobs, oldest first.
func cdnJobs(g *e2e.Gateway) []jobs.Job {
	g.T.Helper()
	r := g.Admin(http.MethodGet, "/craftedge/jobs?kind=cdn.purge&limit=100", "")
	e2e.WantStatus(g.T, r, 200)
	var l jobsList
	if err := json.Unmarshal([]byte(r.Body), &l); err != nil {
		g.T.Fatal(err)
	}
	return l.Jobs
}

// waitCDNJobs waits for n cdn.purge jobs, all in state, and returns them.
func waitCDNJobs(g *e2e.Gateway, n int, state jobs.State) []jobs.Job {
	g.T.Helper()
	var js []jobs.Job
	e2e.WaitFor(g.T, fmt.Sprintf("%d cdn.purge jobs %s", n, state), func() bool {
		js = cdnJobs(g)
		if len(js) != n {
			return false
		}
		for _, j := range js {
			if j.State != state {
				return false
			}
		}
		return true
	})
	return js
}

func purge(g *e2e.Gateway, body string) {
	g.T.Helper()
	e2e.WantStatus(g.T, g.Admin(http.MethodPost, "/craftedge/purge", body), 200)
}

func cdnCounter(g *e2e.Gateway, provider, outcome string) float64 {
	v := scrape(g, fmt.Sprintf(`craftedge_cdn_purge_requests_total{outcome=%q,provider=%q}`, outcome, provider))
	return max(v, 0)
}

func wantJSON(t *testing.T, got string, want any) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	b, _ := json.Marshal(want)
	_ = json.Unmarshal(b, &w)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("body = %s, want %s", gb, wb)
	}
}

// Cloudflare: admin purge by tag, Craft's Cache-Purge-Tag, URLs, prefixes
// and purge-all each reach purge_cache in Cloudflare's shape, with the
// token, batched at 100 per call.
func TestCDNCloudflareForwardsPurges(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := newFakeCDN(t)
	o := e2e.NewOrigin(t)
	o.Handle("/blog/a", e2e.PageHandler("a", "entry:1 section:blog"))
	o.Handle("/admin/actions/entries/save-entry", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag", "entry:2,section:news")
		w.WriteHeader(http.StatusOK)
	})
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			cloudflare zone-abc
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.url() + `/client/v4
		}`})
	okBefore := cdnCounter(g, "cloudflare", "ok")

	e2e.WantCacheStatusPrefix(t, g.Get("/blog/a"), "craftedge; fwd=miss")
	e2e.WantCacheStatus(t, g.Get("/blog/a"), "craftedge; hit")
	// The hit path enqueues nothing.
	if js := cdnJobs(g); len(js) != 0 {
		t.Fatalf("cdn jobs after hits: %+v", js)
	}

	purge(g, `{"tags":["entry:1"]}`)
	// The memory purge is done when the admin call returns.
	e2e.WantCacheStatusPrefix(t, g.Get("/blog/a"), "craftedge; fwd=miss")
	reqs := cdn.waitRequests(1)
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
	wantJSON(t, r.Body, map[string]any{"tags": []string{"entry:1"}})
	js := waitCDNJobs(g, 1, jobs.StateDone)
	if js[0].Attempts != 1 {
		t.Fatalf("job %+v", js[0])
	}

	// Craft's Cache-Purge-Tag on a control-panel POST.
	resp := g.Do(http.MethodPost, "/admin/actions/entries/save-entry", nil, "title=x")
	e2e.WantStatus(t, resp, 200)
	if resp.Header.Get("Cache-Purge-Tag") != "" {
		t.Fatal("Cache-Purge-Tag reached the client")
	}
	reqs = cdn.waitRequests(2)
	wantJSON(t, reqs[1].Body, map[string]any{"tags": []string{"entry:2", "section:news"}})

	// URLs, prefixes and hosts: one call per kind, Cloudflare's fields.
	purge(g, `{"urls":["https://www.example.com/blog/a?p=2"],"prefixes":["https://www.example.com/blog/"],"hosts":["www.example.com"]}`)
	reqs = cdn.waitRequests(5)
	wantJSON(t, reqs[2].Body, map[string]any{"hosts": []string{"www.example.com"}})
	wantJSON(t, reqs[3].Body, map[string]any{"prefixes": []string{"www.example.com/blog/"}})
	wantJSON(t, reqs[4].Body, map[string]any{"files": []string{"https://www.example.com/blog/a?p=2"}})

	// 150 tags: two calls, 100 then 50.
	tags := make([]string, 150)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%d", i)
	}
	b, _ := json.Marshal(map[string]any{"tags": tags})
	purge(g, string(b))
	reqs = cdn.waitRequests(7)
	wantJSON(t, reqs[5].Body, map[string]any{"tags": tags[:100]})
	wantJSON(t, reqs[6].Body, map[string]any{"tags": tags[100:]})

	purge(g, `{"all":true}`)
	reqs = cdn.waitRequests(8)
	wantJSON(t, reqs[7].Body, map[string]any{"purge_everything": true})
	waitCDNJobs(g, 5, jobs.StateDone)
	if d := cdnCounter(g, "cloudflare", "ok") - okBefore; d != 8 {
		t.Fatalf("ok requests counted %v, want 8", d)
	}
	if n := len(cdn.got()); n != 8 {
		t.Fatalf("%d requests at the CDN, want 8", n)
	}
}

// Fastly: Surrogate-Key batch purge (soft), URL purge through the API,
// purge_all (always hard); hosts and prefixes have no Fastly equivalent.
func TestCDNFastlyForwardsPurges(t *testing.T) {
	t.Setenv("FASTLY_API_TOKEN", fastlyToken)
	cdn := newFakeCDN(t)
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn fastly svc123 {
			token {env.FASTLY_API_TOKEN}
			endpoint ` + cdn.url() + `
			soft
			timeout 5s
		}`})
	purge(g, `{"tags":["entry:1","section:blog"]}`)
	r := cdn.waitRequests(1)[0]
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

	purge(g, `{"urls":["https://www.example.com/blog/a?p=2"]}`)
	r = cdn.waitRequests(2)[1]
	if r.Path != "/purge/www.example.com/blog/a" || r.Query != "p=2" || r.Header.Get("Fastly-Key") != fastlyToken {
		t.Fatalf("url purge %s %s?%s", r.Method, r.Path, r.Query)
	}

	// 300 keys: 256 then 44.
	tags := make([]string, 300)
	for i := range tags {
		tags[i] = fmt.Sprintf("k%d", i)
	}
	b, _ := json.Marshal(map[string]any{"tags": tags})
	purge(g, string(b))
	reqs := cdn.waitRequests(4)
	if got := strings.Fields(reqs[2].Header.Get("Surrogate-Key")); len(got) != 256 || got[0] != "k0" {
		t.Fatalf("first batch has %d keys", len(got))
	}
	if got := strings.Fields(reqs[3].Header.Get("Surrogate-Key")); len(got) != 44 || got[43] != "k299" {
		t.Fatalf("second batch has %d keys", len(got))
	}

	purge(g, `{"all":true}`)
	r = cdn.waitRequests(5)[4]
	if r.Path != "/service/svc123/purge_all" || r.Header.Get("Fastly-Soft-Purge") != "" || r.Header.Get("Fastly-Key") != fastlyToken {
		t.Fatalf("purge all %s %v", r.Path, r.Header)
	}

	// Hosts only: nothing Fastly can do; the job is done without a call.
	purge(g, `{"hosts":["www.example.com"]}`)
	waitCDNJobs(g, 5, jobs.StateDone)
	if n := len(cdn.got()); n != 5 {
		t.Fatalf("%d requests, want 5", n)
	}
}

// Generic: craftedge's purge JSON with the configured headers.
func TestCDNGenericForwardsPurges(t *testing.T) {
	t.Setenv("PURGE_HOOK_KEY", "generic-secret-55")
	cdn := newFakeCDN(t)
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			generic ` + cdn.url() + `/hooks/purge
			header Authorization "Bearer {env.PURGE_HOOK_KEY}"
			header X-Site www
		}`})
	purge(g, `{"tags":["entry:1"],"urls":["https://www.example.com/a"]}`)
	r := cdn.waitRequests(1)[0]
	if r.Method != http.MethodPost || r.Path != "/hooks/purge" {
		t.Fatalf("request %s %s", r.Method, r.Path)
	}
	if r.Header.Get("Authorization") != "Bearer generic-secret-55" || r.Header.Get("X-Site") != "www" {
		t.Fatalf("headers %v", r.Header)
	}
	wantJSON(t, r.Body, map[string]any{"tags": []string{"entry:1"}, "urls": []string{"https://www.example.com/a"}})
	purge(g, `{"all":true}`)
	wantJSON(t, cdn.waitRequests(2)[1].Body, map[string]any{"all": true})
}

// 500 then 200: retried with backoff and delivered once; a CDN that does
// not answer within timeout is retried too.
func TestCDNRetriesServerErrors(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := newFakeCDN(t)
	cdn.script(cdnAnswer{status: 500, body: `{"success":false,"errors":[{"code":10000,"message":"internal"}]}`})
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			cloudflare zone-abc
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.url() + `
			timeout 200ms
		}
		jobs {
			kind cdn.purge {
				backoff 1ms 5ms
			}
		}`})
	retryBefore := cdnCounter(g, "cloudflare", "retry")
	purge(g, `{"tags":["entry:9"]}`)
	j := waitCDNJobs(g, 1, jobs.StateDone)[0]
	reqs := cdn.got()
	if len(reqs) != 2 || reqs[0].Body != reqs[1].Body {
		t.Fatalf("requests %+v", reqs)
	}
	if j.Attempts != 2 || len(j.History) != 2 || !strings.Contains(j.History[0].Error, "500") {
		t.Fatalf("job %+v", j)
	}
	if d := cdnCounter(g, "cloudflare", "retry") - retryBefore; d != 1 {
		t.Fatalf("retry counted %v", d)
	}
	// Cloudflare's envelope saying success:false on a 200 is retried too.
	cdn.script(cdnAnswer{status: 200, body: `{"success":false,"errors":[{"code":1,"message":"x"}]}`})
	purge(g, `{"tags":["entry:10"]}`)
	waitCDNJobs(g, 2, jobs.StateDone)
	if n := len(cdn.got()); n != 4 {
		t.Fatalf("%d requests, want 4", n)
	}
	// No answer within the timeout: retried.
	cdn.script(cdnAnswer{hang: true})
	purge(g, `{"tags":["entry:11"]}`)
	j = waitCDNJobs(g, 3, jobs.StateDone)[2]
	if j.Attempts != 2 || !strings.Contains(j.History[0].Error, "Timeout") {
		t.Fatalf("job %+v", j)
	}
	if n := len(cdn.got()); n != 6 {
		t.Fatalf("%d requests, want 6", n)
	}
}

// 429 with Retry-After: the job waits that long (on the test clock), then
// delivers.
func TestCDNHonoursRetryAfter(t *testing.T) {
	t.Setenv("FASTLY_API_TOKEN", fastlyToken)
	cdn := newFakeCDN(t)
	cdn.script(cdnAnswer{status: 429, header: map[string]string{"Retry-After": "120"}, body: `{"msg":"slow down"}`})
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn fastly svc123 {
			token {env.FASTLY_API_TOKEN}
			endpoint ` + cdn.url() + `
		}`})
	purge(g, `{"tags":["entry:1"]}`)
	cdn.waitRequests(1)
	var j jobs.Job
	e2e.WaitFor(t, "the job to back off", func() bool {
		js := cdnJobs(g)
		if len(js) != 1 {
			return false
		}
		j = js[0]
		return j.State == jobs.StateReady && j.Attempts == 1
	})
	wait := j.RunAt.Sub(j.History[0].At)
	if wait < 119*time.Second || wait > 121*time.Second {
		t.Fatalf("run_at is %v after the attempt, want the Retry-After of 120s", wait)
	}
	if !strings.Contains(j.LastError, "429") {
		t.Fatalf("last error %q", j.LastError)
	}
	e2e.Advance(60 * time.Second)
	if j := cdnJobs(g)[0]; j.State != jobs.StateReady || j.Attempts != 1 {
		t.Fatalf("job ran before its Retry-After: %+v", j)
	}
	e2e.Advance(61 * time.Second)
	waitCDNJobs(g, 1, jobs.StateDone)
	if n := len(cdn.got()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// 403: dead letter at once, with the CDN's error and no token; the memory
// purge is done anyway; replay after fixing the token delivers it.
func TestCDNForbiddenDeadLetters(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := newFakeCDN(t)
	// A CDN that echoes the credential back must not leak it.
	cdn.script(cdnAnswer{status: 403, body: `{"success":false,"errors":[{"code":10000,"message":"Authentication error for Bearer ` + cfToken + `"}]}`})
	o := e2e.NewOrigin(t)
	o.Handle("/p", e2e.PageHandler("p", "entry:4"))
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			cloudflare zone-abc
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.url() + `
		}`})
	failedBefore := cdnCounter(g, "cloudflare", "failed")
	e2e.WantCacheStatusPrefix(t, g.Get("/p"), "craftedge; fwd=miss")
	e2e.WantCacheStatus(t, g.Get("/p"), "craftedge; hit")
	purge(g, `{"tags":["entry:4"]}`)
	e2e.WantCacheStatusPrefix(t, g.Get("/p"), "craftedge; fwd=miss")

	j := waitCDNJobs(g, 1, jobs.StateDead)[0]
	if j.Attempts != 1 || !strings.Contains(j.LastError, "403") || !strings.Contains(j.LastError, "Authentication error") {
		t.Fatalf("dead letter %+v", j)
	}
	if strings.Contains(j.LastError, cfToken) || strings.Contains(string(j.Payload), cfToken) {
		t.Fatalf("the token leaked into the job: %q", j.LastError)
	}
	if d := cdnCounter(g, "cloudflare", "failed") - failedBefore; d != 1 {
		t.Fatalf("failed counted %v", d)
	}
	// The status page's dead letters and the jobs routes show it; replay
	// (the token fixed) delivers it.
	r := g.Admin(http.MethodPost, "/craftedge/jobs/dead/cdn.purge/replay", "")
	e2e.WantStatus(t, r, 200)
	waitCDNJobs(g, 1, jobs.StateDone)
	if n := len(cdn.got()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// A purge-all delivered while a tag purge is backing off supersedes it:
// the tag purge is done without another call.
func TestCDNPurgeAllSupersedesPending(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	forget := func() {
		cdnPurgedAll.Lock()
		delete(cdnPurgedAll.at, "cloudflare:zone-super")
		cdnPurgedAll.Unlock()
	}
	forget()
	t.Cleanup(forget)
	cdn := newFakeCDN(t)
	cdn.answer = func(r cdnRequest) cdnAnswer {
		if strings.Contains(r.Body, "purge_everything") {
			return cdnAnswer{status: 200, body: `{"success":true}`}
		}
		return cdnAnswer{status: 503, body: `{"success":false}`}
	}
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			cloudflare zone-super
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.url() + `
		}
		jobs {
			kind cdn.purge {
				backoff 1h 1h
			}
		}`})
	purge(g, `{"tags":["entry:1"]}`)
	cdn.waitRequests(1)
	e2e.WaitFor(t, "the tag purge to back off", func() bool {
		js := cdnJobs(g)
		return len(js) == 1 && js[0].State == jobs.StateReady && js[0].Attempts == 1
	})
	e2e.Advance(time.Second) // the purge-all is accepted after the tag purge
	purge(g, `{"all":true}`)
	e2e.WaitFor(t, "the purge-all to be done", func() bool {
		js := cdnJobs(g)
		return len(js) == 2 && js[1].State == jobs.StateDone
	})
	e2e.Advance(2 * time.Hour)
	waitCDNJobs(g, 2, jobs.StateDone)
	if n := len(cdn.got()); n != 2 {
		t.Fatalf("%d requests, want 2 (the tag purge was superseded)", n)
	}
}

// Without a cdn block no cdn.purge job is ever enqueued.
func TestCDNNotConfiguredNoJob(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{})
	purge(g, `{"tags":["entry:1"]}`)
	purge(g, `{"all":true}`)
	if js := cdnJobs(g); len(js) != 0 {
		t.Fatalf("cdn jobs without a cdn: %+v", js)
	}
}

func init() {
	// test.purge: a job that purges the tags in its payload, as refetch,
	// sync and outbox jobs do (purgeFor).
	registerJobKind("test.purge", jobs.KindConfig{}, func(a *App) jobs.Handler {
		return jobs.Single(func(ctx context.Context, t *jobs.Task) error {
			_, err := a.purgeFor(ctx, &PurgeRequest{Tags: strings.Fields(string(t.Job.Payload))}, "webhook")
			return err
		})
	})
}

// A purge made by a job forwards with the job's request id as the CDN
// job's correlation and the job's id as caused_by.
func TestCDNPurgeForJobCarriesCorrelation(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := newFakeCDN(t)
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			cloudflare zone-abc
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.url() + `
		}`})
	parent, _, err := currentApp.Load().jobs.Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: "test.purge", Correlation: "req-123", Payload: []byte("product:3 product"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitJobState(g, parent.ID, jobs.StateDone)
	j := waitCDNJobs(g, 1, jobs.StateDone)[0]
	if j.Correlation != "req-123" || !strings.Contains(string(j.Payload), `"caused_by":"`+parent.ID+`"`) ||
		!strings.Contains(string(j.Payload), `"source":"webhook"`) {
		t.Fatalf("job %+v payload %s", j, j.Payload)
	}
	wantJSON(t, cdn.waitRequests(1)[0].Body, map[string]any{"tags": []string{"product:3", "product"}})
}

// Bad cdn config fails at load, naming the Caddyfile line.
func TestCDNCaddyfileErrors(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "x.db")
	for _, tc := range []struct {
		block, want string
		line        int // the line the error names, counted from the cdn line
	}{
		{"cdn {\n\t\t\takamai x\n\t\t}", `unrecognized subdirective "akamai" (want cloudflare, fastly, generic`, 1},
		{"cdn akamai x", `unknown provider "akamai"`, 0},
		{"cdn {\n\t\t\tcloudflare\n\t\t}", "cloudflare needs a zone id", 1},
		{"cdn {\n\t\t\tcloudflare z\n\t\t}", "cloudflare needs a token", 0},
		{"cdn fastly svc", "fastly needs a token", 0},
		{"cdn {\n\t\t\ttoken x\n\t\t}", "no provider", 0},
		{"cdn generic ftp://x/purge", "must be an absolute http or https URL", 0},
		{"cdn generic /purge", "must be an absolute http or https URL", 0},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t\tendpoint not-a-url\n\t\t}", "endpoint", 2},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t\tsoft\n\t\t}", "soft is only supported by fastly", 0},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t\tfrobnicate\n\t\t}", `unrecognized subdirective "frobnicate"`, 2},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t\ttimeout soon\n\t\t}", "invalid duration", 2},
		{"cdn generic http://127.0.0.1:1/p {\n\t\t\ttoken t\n\t\t}", "takes no token", 0},
		{"cdn generic http://127.0.0.1:1/p {\n\t\t\theader X-Only\n\t\t}", "header wants <name> <value>", 1},
		{"cdn generic http://127.0.0.1:1/p {\n\t\t\theader X-Site a\n\t\t\theader x-site b\n\t\t}", "cdn: header X-Site is set twice", 2},
		{"cdn cloudflare z {\n\t\t\ttoken t\n\t\t}\n\t\tcdn fastly s {\n\t\t\ttoken t\n\t\t}", "cdn is configured twice", 3},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: tc.block})
		line := 1 + strings.Count(cfg[:strings.Index(cfg, "cdn ")], "\n") + tc.line
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
		if err == nil {
			t.Errorf("%q: adapted without error", tc.block)
			continue
		}
		if want := fmt.Sprintf("Caddyfile:%d", line); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q, want %q at %s", tc.block, err, tc.want, want)
		}
	}
	// Through a real load too.
	e2e.AssertLoadError(t, e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: "cdn fastly svc"}), "fastly needs a token")
	// A token placeholder that resolves to nothing fails at provision.
	t.Setenv("CF_API_TOKEN", "")
	cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: "cdn cloudflare z {\n\t\t\ttoken {env.CF_API_TOKEN}\n\t\t}"})
	caddytest.AssertLoadError(t, cfg, "caddyfile", "token {env.CF_API_TOKEN} resolves to nothing")
}

// A purge whose CDN job cannot be queued still purged craftedge: the
// admin route answers 200 with cdn_error (not 500), and the
// failure is counted; nothing reaches the CDN.
func TestCDNEnqueueFailureKeepsLocalPurge(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := newFakeCDN(t)
	o := e2e.NewOrigin(t)
	o.Handle("/blog/a", e2e.PageHandler("a", "entry:1 section:blog"))
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn cloudflare zone-abc {
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.url() + `
		}`})
	t.Cleanup(func() { cdnEnqueueFaults.Store(0) })
	failures := func() float64 {
		return max(scrape(g, `craftedge_cdn_purge_enqueue_failures_total{source="admin"}`), 0)
	}
	before := failures()
	e2e.WantCacheStatusPrefix(t, g.Get("/blog/a"), "craftedge; fwd=miss")
	e2e.WantCacheStatus(t, g.Get("/blog/a"), "craftedge; hit")

	cdnEnqueueFaults.Store(1)
	r := g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:1"]}`)
	e2e.WantStatus(t, r, http.StatusOK)
	var ans struct {
		Purged   int    `json:"purged"`
		CDNError string `json:"cdn_error"`
	}
	if err := json.Unmarshal([]byte(r.Body), &ans); err != nil || ans.Purged != 1 || !strings.Contains(ans.CDNError, "forwarding the purge to the CDN") {
		t.Fatalf("answer %s (%v)", r.Body, err)
	}
	e2e.WantCacheStatusPrefix(t, g.Get("/blog/a"), "craftedge; fwd=miss")
	if got := failures(); got != before+1 {
		t.Fatalf("enqueue failures %v → %v", before, got)
	}
	if js := cdnJobs(g); len(js) != 0 {
		t.Fatalf("cdn jobs: %+v", js)
	}
	// The next purge is forwarded again, and its answer has no cdn_error.
	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:1"]}`)
	e2e.WantStatus(t, r, http.StatusOK)
	if strings.Contains(r.Body, "cdn_error") {
		t.Fatalf("answer %s", r.Body)
	}
	waitCDNJobs(g, 1, jobs.StateDone)
}

// A URL purge without a query purges every query variant in craftedge;
// at Cloudflare it is the exact URL plus the prefix host/path (the root
// path gets no prefix: that would be the whole host).
func TestCDNCloudflareURLWithoutQueryPurgesVariants(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := newFakeCDN(t)
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn cloudflare zone-abc {
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.url() + `
		}`})
	purge(g, `{"urls":["https://www.example.com/blog/a","https://www.example.com/blog/b?p=2","https://www.example.com/"]}`)
	reqs := cdn.waitRequests(2)
	waitCDNJobs(g, 1, jobs.StateDone)
	wantJSON(t, reqs[0].Body, map[string]any{"files": []string{"https://www.example.com/blog/a", "https://www.example.com/blog/b?p=2", "https://www.example.com/"}})
	wantJSON(t, reqs[1].Body, map[string]any{"prefixes": []string{"www.example.com/blog/a"}})
	if n := len(cdn.got()); n != 2 {
		t.Fatalf("%d requests at the CDN, want 2", n)
	}
}
