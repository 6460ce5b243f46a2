package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
)

// The core's CDN tests: the cdn.purge fan-out (durable job, retries,
// Retry-After, dead letters, purge-all bookkeeping, resumption, metrics)
// and the cdn block's own parsing. They use testHook, a provider this
// file registers as a third party would; cloudflare, fastly and generic
// are tested in caddymodule/cdn (the core cannot import them).

func init() {
	caddy.RegisterModule(testHook{})
	// test.purge: a job that purges the tags in its payload, as refetch,
	// sync and outbox jobs do (purgeFor).
	registerJobKind("test.purge", jobs.KindConfig{}, func(a *App) jobs.Handler {
		return jobs.Single(func(ctx context.Context, t *jobs.Task) error {
			_, err := a.purgeFor(ctx, &PurgeRequest{Tags: strings.Fields(string(t.Job.Payload))}, "webhook")
			return err
		})
	})
}

// testHook is the CDN provider craftedge.cdn.testhook:
//
//	testhook <url> {
//	    token <token>
//	}
//
// It POSTs {"tags": [...]} at most two tags per call (so a purge takes
// several calls), then {"urls"}, {"all": true}; Authorization: Bearer
// <token>. Hosts and prefixes are skipped.
type testHook struct {
	URL   string `json:"url,omitempty"`
	Token string `json:"token,omitempty"`
	token string
}

func (testHook) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: CDNNamespace + ".testhook", New: func() caddy.Module { return new(testHook) }}
}

func (h *testHook) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if !d.NextArg() {
		return d.Errf("testhook needs a URL")
	}
	h.URL = d.Val()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "token":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			h.Token = v
		default:
			return d.Errf("testhook: unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}

func (h *testHook) Provision(caddy.Context) error {
	h.token = caddy.NewReplacer().ReplaceAll(h.Token, "")
	return nil
}

func (h *testHook) Target() string    { return h.URL }
func (h *testHook) Secrets() []string { return []string{h.token} }

func (h *testHook) PurgeCalls(p *PurgeRequest) (calls []CDNCall, skipped []string, err error) {
	call := func(body any) CDNCall {
		b, _ := json.Marshal(body)
		hd := http.Header{}
		hd.Set("Content-Type", "application/json")
		if h.token != "" {
			hd.Set("Authorization", "Bearer "+h.token)
		}
		return CDNCall{Method: http.MethodPost, URL: h.URL, Header: hd, Body: b, What: "POST /hook"}
	}
	if p.All {
		return []CDNCall{call(map[string]bool{"all": true})}, nil, nil
	}
	for i := 0; i < len(p.Tags); i += 2 {
		calls = append(calls, call(map[string][]string{"tags": p.Tags[i:min(i+2, len(p.Tags))]}))
	}
	if len(p.URLs) > 0 {
		calls = append(calls, call(map[string][]string{"urls": p.URLs}))
	}
	for _, x := range p.Hosts {
		skipped = append(skipped, "host "+x)
	}
	for _, x := range p.Prefixes {
		skipped = append(skipped, "prefix "+x)
	}
	return calls, skipped, nil
}

const hookToken = "hook-test-token-3e9d1a"

// hookBlock is a cdn block sending to the fake CDN through testHook.
func hookBlock(cdn *e2e.FakeCDN, extra string) string {
	return `cdn testhook ` + cdn.URL() + `/hook {
			token {env.HOOK_TOKEN}
			` + extra + `
		}`
}

func tagsBody(tags ...string) map[string]any { return map[string]any{"tags": tags} }

// 500 then 200: retried with backoff and delivered once; a CDN that does
// not answer within the cdn block's timeout is retried too; the
// requests are counted by provider and outcome.
func TestCDNRetriesServerErrors(t *testing.T) {
	t.Setenv("HOOK_TOKEN", hookToken)
	cdn := e2e.NewFakeCDN(t)
	cdn.Script(e2e.CDNAnswer{Status: 500, Body: `{"error":"internal"}`})
	o := e2e.NewOrigin(t)
	// The timeout is the cdn block's (the core's HTTP client); the block
	// in its flat form: the provider line among the others.
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `cdn {
			timeout 200ms
			testhook ` + cdn.URL() + `/hook
			token {env.HOOK_TOKEN}
		}
		jobs {
			kind cdn.purge {
				backoff 1ms 5ms
			}
		}`})
	retryBefore := e2e.CDNCounter(g, "testhook", "retry")
	okBefore := e2e.CDNCounter(g, "testhook", "ok")
	e2e.Purge(g, `{"tags":["entry:9"]}`)
	j := e2e.WaitCDNJobs(g, 1, jobs.StateDone)[0]
	reqs := cdn.Got()
	if len(reqs) != 2 || reqs[0].Body != reqs[1].Body || reqs[0].Path != "/hook" {
		t.Fatalf("requests %+v", reqs)
	}
	if reqs[1].Header.Get("Authorization") != "Bearer "+hookToken {
		t.Fatalf("headers %v", reqs[1].Header)
	}
	if j.Attempts != 2 || len(j.History) != 2 || !strings.Contains(j.History[0].Error, "500") ||
		!strings.Contains(j.History[0].Error, "cdn testhook: POST /hook") {
		t.Fatalf("job %+v", j)
	}
	if d := e2e.CDNCounter(g, "testhook", "retry") - retryBefore; d != 1 {
		t.Fatalf("retry counted %v", d)
	}
	if d := e2e.CDNCounter(g, "testhook", "ok") - okBefore; d != 1 {
		t.Fatalf("ok counted %v", d)
	}
	// No answer within the timeout: retried.
	cdn.Script(e2e.CDNAnswer{Hang: true})
	e2e.Purge(g, `{"tags":["entry:11"]}`)
	j = e2e.WaitCDNJobs(g, 2, jobs.StateDone)[1]
	if j.Attempts != 2 || !strings.Contains(j.History[0].Error, "Timeout") {
		t.Fatalf("job %+v", j)
	}
	if n := len(cdn.Got()); n != 4 {
		t.Fatalf("%d requests, want 4", n)
	}
}

// A purge of several calls whose second call fails resumes at that call:
// the first is not sent again.
func TestCDNRetryResumesAtFirstUnsentCall(t *testing.T) {
	t.Setenv("HOOK_TOKEN", hookToken)
	cdn := e2e.NewFakeCDN(t)
	cdn.Script(e2e.CDNAnswer{Status: 200}, e2e.CDNAnswer{Status: 503})
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: hookBlock(cdn, "") + `
		jobs {
			kind cdn.purge {
				backoff 1ms 5ms
			}
		}`})
	e2e.Purge(g, `{"tags":["a","b","c","d","e"]}`)
	j := e2e.WaitCDNJobs(g, 1, jobs.StateDone)[0]
	reqs := cdn.Got()
	if len(reqs) != 4 || j.Attempts != 2 {
		t.Fatalf("%d requests, job %+v", len(reqs), j)
	}
	for i, want := range []map[string]any{tagsBody("a", "b"), tagsBody("c", "d"), tagsBody("c", "d"), tagsBody("e")} {
		e2e.WantJSON(t, reqs[i].Body, want)
	}
}

// 429 with Retry-After: the job waits that long (on the test clock), then
// delivers.
func TestCDNHonoursRetryAfter(t *testing.T) {
	t.Setenv("HOOK_TOKEN", hookToken)
	cdn := e2e.NewFakeCDN(t)
	cdn.Script(e2e.CDNAnswer{Status: 429, Header: map[string]string{"Retry-After": "120"}, Body: `{"msg":"slow down"}`})
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: hookBlock(cdn, "")})
	e2e.Purge(g, `{"tags":["entry:1"]}`)
	cdn.WaitRequests(1)
	var j jobs.Job
	e2e.WaitFor(t, "the job to back off", func() bool {
		js := e2e.CDNJobs(g)
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
	if j := e2e.CDNJobs(g)[0]; j.State != jobs.StateReady || j.Attempts != 1 {
		t.Fatalf("job ran before its Retry-After: %+v", j)
	}
	e2e.Advance(61 * time.Second)
	e2e.WaitCDNJobs(g, 1, jobs.StateDone)
	if n := len(cdn.Got()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// 403: dead letter at once, with the CDN's error and no token (the
// provider's Secrets are redacted); the memory purge is done anyway;
// replay delivers it.
func TestCDNForbiddenDeadLetters(t *testing.T) {
	t.Setenv("HOOK_TOKEN", hookToken)
	cdn := e2e.NewFakeCDN(t)
	// A CDN that echoes the credential back must not leak it.
	cdn.Script(e2e.CDNAnswer{Status: 403, Body: `{"error":"Authentication error for Bearer ` + hookToken + `"}`})
	o := e2e.NewOrigin(t)
	o.Handle("/p", e2e.PageHandler("p", "entry:4"))
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: hookBlock(cdn, "")})
	failedBefore := e2e.CDNCounter(g, "testhook", "failed")
	e2e.WantCacheStatusPrefix(t, g.Get("/p"), "craftedge; fwd=miss")
	e2e.WantCacheStatus(t, g.Get("/p"), "craftedge; hit")
	e2e.Purge(g, `{"tags":["entry:4"]}`)
	e2e.WantCacheStatusPrefix(t, g.Get("/p"), "craftedge; fwd=stale") // soft: revalidated

	j := e2e.WaitCDNJobs(g, 1, jobs.StateDead)[0]
	if j.Attempts != 1 || !strings.Contains(j.LastError, "403") || !strings.Contains(j.LastError, "Authentication error") {
		t.Fatalf("dead letter %+v", j)
	}
	if strings.Contains(j.LastError, hookToken) || strings.Contains(string(j.Payload), hookToken) {
		t.Fatalf("the token leaked into the job: %q", j.LastError)
	}
	if d := e2e.CDNCounter(g, "testhook", "failed") - failedBefore; d != 1 {
		t.Fatalf("failed counted %v", d)
	}
	r := g.Admin(http.MethodPost, "/craftedge/jobs/dead/cdn.purge/replay", "")
	e2e.WantStatus(t, r, 200)
	e2e.WaitCDNJobs(g, 1, jobs.StateDone)
	if n := len(cdn.Got()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// A purge-all delivered while a tag purge is backing off supersedes it:
// the tag purge is done without another call. Purges the provider cannot
// express are skipped and the job is done without a call.
func TestCDNPurgeAllSupersedesPending(t *testing.T) {
	t.Setenv("HOOK_TOKEN", hookToken)
	cdn := e2e.NewFakeCDN(t)
	key := "testhook:" + cdn.URL() + "/hook"
	forget := func() {
		cdnPurgedAll.Lock()
		delete(cdnPurgedAll.at, key)
		cdnPurgedAll.Unlock()
	}
	forget()
	t.Cleanup(forget)
	cdn.AnswerWith(func(r e2e.CDNRequest) e2e.CDNAnswer {
		if strings.Contains(r.Body, `"all"`) {
			return e2e.CDNAnswer{Status: 200, Body: `{}`}
		}
		return e2e.CDNAnswer{Status: 503, Body: `{}`}
	})
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: hookBlock(cdn, "") + `
		jobs {
			kind cdn.purge {
				backoff 1h 1h
			}
		}`})
	e2e.Purge(g, `{"tags":["entry:1"]}`)
	cdn.WaitRequests(1)
	e2e.WaitFor(t, "the tag purge to back off", func() bool {
		js := e2e.CDNJobs(g)
		return len(js) == 1 && js[0].State == jobs.StateReady && js[0].Attempts == 1
	})
	e2e.Advance(time.Second) // the purge-all is accepted after the tag purge
	e2e.Purge(g, `{"all":true}`)
	e2e.WaitFor(t, "the purge-all to be done", func() bool {
		js := e2e.CDNJobs(g)
		return len(js) == 2 && js[1].State == jobs.StateDone
	})
	e2e.Advance(2 * time.Hour)
	e2e.WaitCDNJobs(g, 2, jobs.StateDone)
	if n := len(cdn.Got()); n != 2 {
		t.Fatalf("%d requests, want 2 (the tag purge was superseded)", n)
	}
	// Hosts only: nothing testhook can do.
	e2e.Advance(time.Second)
	e2e.Purge(g, `{"hosts":["www.example.com"]}`)
	e2e.WaitCDNJobs(g, 3, jobs.StateDone)
	if n := len(cdn.Got()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// Without a cdn block no cdn.purge job is ever enqueued.
func TestCDNNotConfiguredNoJob(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{})
	e2e.Purge(g, `{"tags":["entry:1"]}`)
	e2e.Purge(g, `{"all":true}`)
	if js := e2e.CDNJobs(g); len(js) != 0 {
		t.Fatalf("cdn jobs without a cdn: %+v", js)
	}
}

// A purge made by a job forwards with the job's request id as the CDN
// job's correlation and the job's id as caused_by.
func TestCDNPurgeForJobCarriesCorrelation(t *testing.T) {
	t.Setenv("HOOK_TOKEN", hookToken)
	cdn := e2e.NewFakeCDN(t)
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: hookBlock(cdn, "")})
	parent, _, err := currentApp.Load().jobs.Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: "test.purge", Correlation: "req-123", Payload: []byte("product:3 product"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitJobState(g, parent.ID, jobs.StateDone)
	j := e2e.WaitCDNJobs(g, 1, jobs.StateDone)[0]
	if j.Correlation != "req-123" || !strings.Contains(string(j.Payload), `"caused_by":"`+parent.ID+`"`) ||
		!strings.Contains(string(j.Payload), `"source":"webhook"`) || !strings.Contains(string(j.Payload), `"provider":"testhook"`) {
		t.Fatalf("job %+v payload %s", j, j.Payload)
	}
	e2e.WantJSON(t, cdn.WaitRequests(1)[0].Body, tagsBody("product:3", "product"))
}

// A purge whose CDN job cannot be queued still purged craftedge: the
// admin route answers 200 with cdn_error (not 500), and the failure is
// counted; nothing reaches the CDN.
func TestCDNEnqueueFailureKeepsLocalPurge(t *testing.T) {
	t.Setenv("HOOK_TOKEN", hookToken)
	cdn := e2e.NewFakeCDN(t)
	o := e2e.NewOrigin(t)
	o.Handle("/blog/a", e2e.PageHandler("a", "entry:1 section:blog"))
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: hookBlock(cdn, "")})
	t.Cleanup(func() { cdnEnqueueFaults.Store(0) })
	failures := func() float64 {
		return max(e2e.Scrape(g, `craftedge_cdn_purge_enqueue_failures_total{source="admin"}`), 0)
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
	e2e.WantCacheStatusPrefix(t, g.Get("/blog/a"), "craftedge; fwd=stale") // soft: revalidated
	if got := failures(); got != before+1 {
		t.Fatalf("enqueue failures %v → %v", before, got)
	}
	if js := e2e.CDNJobs(g); len(js) != 0 {
		t.Fatalf("cdn jobs: %+v", js)
	}
	// The next purge is forwarded again, and its answer has no cdn_error.
	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:1"]}`)
	e2e.WantStatus(t, r, http.StatusOK)
	if strings.Contains(r.Body, "cdn_error") {
		t.Fatalf("answer %s", r.Body)
	}
	e2e.WaitCDNJobs(g, 1, jobs.StateDone)
}

// The cdn block's own mistakes fail at adapt, naming the Caddyfile line;
// so do the provider module's (its UnmarshalCaddyfile sees the lines
// with their positions).
func TestCDNCaddyfileErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "x.db")
	for _, tc := range []struct {
		block, want string
		line        int // the line the error names, counted from the cdn line
	}{
		{"cdn akamai x", `unknown provider "akamai" (registered: testhook)`, 0},
		{"cdn {\n\t\t\takamai x\n\t\t}", `no provider: name one on the cdn line or in its block (registered: testhook); "akamai" is not a provider`, 0},
		{"cdn {\n\t\t\ttimeout 1s\n\t\t}", "no provider", 0},
		{"cdn testhook http://x {\n\t\t\ttimeout soon\n\t\t}", "invalid duration", 1},
		{"cdn testhook http://x {\n\t\t\ttimeout -1s\n\t\t}", "must not be negative", 1},
		{"cdn testhook http://x {\n\t\t\ttimeout 1s 2s\n\t\t}", `too many arguments to timeout: "2s"`, 1},
		{"cdn testhook http://x {\n\t\t\ttoken t\n\t\t\ttesthook http://y\n\t\t}", "provider given twice (testhook and testhook)", 2},
		{"cdn {\n\t\t\ttesthook http://x {\n\t\t\t\ttoken t\n\t\t\t}\n\t\t\ttoken u\n\t\t}", "testhook has a block of its own and lines in the cdn block (token)", 2},
		{"cdn testhook http://x {\n\t\t\ttoken t\n\t\t}\n\t\tcdn testhook http://y", "cdn is configured twice", 3},
		{"cdn {\n\t\t\ttesthook http://x {\n\t\t\t\ttoken t\n\t\t\t\ttimeout 1s\n\t\t\t}\n\t\t}", "cdn: timeout belongs to the cdn block, not to testhook's", 3},
		// The module's own errors name their lines.
		{"cdn {\n\t\t\ttimeout 1s\n\t\t\ttesthook\n\t\t}", "testhook needs a URL", 2},
		{"cdn {\n\t\t\ttesthook http://x\n\t\t\tfrobnicate\n\t\t}", `testhook: unrecognized subdirective "frobnicate"`, 2},
	} {
		e2e.WantGlobalError(t, o, storage, tc.block, tc.want, tc.line)
	}
}

// The provider's fields sit under "provider" in JSON; the flat and the
// nested Caddyfile forms adapt to the same JSON.
func TestCDNCaddyfileForms(t *testing.T) {
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "x.db")
	adapt := func(block string) string {
		t.Helper()
		b := e2e.Adapt(t, e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: block}))
		var c struct {
			Apps struct {
				Craftedge struct {
					CDN json.RawMessage `json:"cdn"`
				} `json:"craftedge"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return string(c.Apps.Craftedge.CDN)
	}
	want := `{"provider":{"name":"testhook","token":"t","url":"http://x"},"timeout":5000000000}`
	for _, block := range []string{
		"cdn testhook http://x {\n\t\t\ttoken t\n\t\t\ttimeout 5s\n\t\t}",
		"cdn {\n\t\t\ttoken t\n\t\t\ttimeout 5s\n\t\t\ttesthook http://x\n\t\t}",
		"cdn {\n\t\t\ttimeout 5s\n\t\t\ttesthook http://x {\n\t\t\t\ttoken t\n\t\t\t}\n\t\t}",
	} {
		if got := adapt(block); got != want {
			t.Errorf("%q adapted to %s, want %s", block, got, want)
		}
	}
}

// A JSON config naming a provider no module provides, or none, fails to
// load with an error naming the namespace.
func TestCDNJSONProviderErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "x.db")
	cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: "cdn testhook http://127.0.0.1:9/hook"})
	b := e2e.Adapt(t, cfg)
	for _, tc := range []struct{ from, to, want string }{
		{`"name":"testhook"`, `"name":"akamai"`, "craftedge.cdn.akamai"},
		{`"provider":{"name":"testhook","url":"http://127.0.0.1:9/hook"}`, `"timeout":1`, "cdn: no provider"},
	} {
		js := string(b)
		if !strings.Contains(js, tc.from) {
			t.Fatalf("%s not in %s", tc.from, js)
		}
		caddytest.AssertLoadError(t, strings.Replace(js, tc.from, tc.to, 1), "json", tc.want)
	}
}
