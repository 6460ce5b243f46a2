package caddymodule

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// opsCaddyfile is vendorCaddyfile with vendor.sync jobs dead-lettered
// after two attempts and, if logPath is set, Caddy's logs written there as
// JSON at debug level.
func opsCaddyfile(o vendorOptions, logPath string) string {
	cfg := vendorCaddyfile(o)
	cfg = strings.Replace(cfg, "kind vendor.sync {\n", "kind vendor.sync {\n\t\t\t\tmax_attempts 2\n", 1)
	if logPath != "" {
		cfg = strings.Replace(cfg, "{\n", "{\n\tlog {\n\t\toutput file "+logPath+"\n\t\tformat json\n\t\tlevel DEBUG\n\t}\n", 1)
	}
	return cfg
}

// startOpsGateway starts the vendor simulator and a Caddy with
// opsCaddyfile; it returns the simulator's URL too.
func startOpsGateway(t *testing.T, products int, o vendorOptions, logPath string) (*vendorEnv, string) {
	t.Helper()
	o.caddyfile = func(o vendorOptions) string { return opsCaddyfile(o, logPath) }
	e := startVendorGateway(t, products, o)
	return e, e.SimURL
}

// enqueueSync enqueues a vendor.sync of shop/product and returns its id.
func (e *vendorEnv) enqueueSync(key string) string {
	e.T.Helper()
	job, created, err := currentApp.Load().jobs.Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: jobKindVendorSync, Key: key, Payload: []byte(`{"vendor":"shop","resource":"product"}`),
	})
	if err != nil || !created {
		e.T.Fatalf("enqueue sync: created=%v err=%v", created, err)
	}
	return job.ID
}

// counters reads several series at once; absent series read as 0.
func scrapeCounters(g *e2e.Gateway, series ...string) map[string]float64 {
	g.T.Helper()
	out := make(map[string]float64, len(series))
	for _, s := range series {
		out[s] = max(scrape(g, s), 0)
	}
	return out
}

// closedPort returns a loopback URL on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

func TestVendorAndJobMetricsMoveAndSurviveReload(t *testing.T) {
	const (
		ok          = `craftedge_vendor_requests_total{code_class="2xx",outcome="ok",vendor="shop"}`
		serverError = `craftedge_vendor_requests_total{code_class="5xx",outcome="server_error",vendor="shop"}`
		breakerOpen = `craftedge_vendor_requests_total{code_class="none",outcome="breaker_open",vendor="shop"}`
		limited     = `craftedge_vendor_requests_total{code_class="4xx",outcome="rate_limited",vendor="shop"}`
		transport   = `craftedge_vendor_requests_total{code_class="none",outcome="transport_error",vendor="shop"}`
		latency     = `craftedge_vendor_request_duration_seconds_count{vendor="shop"}`
		rlHits      = `craftedge_vendor_rate_limit_hits_total{vendor="shop"}`
		tokenWaits  = `craftedge_vendor_token_waits_total{vendor="shop"}`
		retries     = `craftedge_vendor_retries_total{vendor="shop"}`
		hedges      = `craftedge_vendor_hedges_total{vendor="shop"}`
		opened      = `craftedge_vendor_breaker_transitions_total{state="open",vendor="shop"}`
		state       = `craftedge_vendor_breaker_state{vendor="shop"}`
		jobDone     = `craftedge_jobs_attempts_total{kind="vendor.sync",outcome="done"}`
		jobRetry    = `craftedge_jobs_attempts_total{kind="vendor.sync",outcome="retry"}`
		jobDead     = `craftedge_jobs_attempts_total{kind="vendor.sync",outcome="dead"}`
		deadLetters = `craftedge_jobs_dead_letters_total{kind="vendor.sync"}`
	)
	all := []string{ok, serverError, breakerOpen, limited, transport, latency, rlHits, tokenWaits, retries, hedges,
		opened, jobDone, jobRetry, jobDead, deadLetters}

	// A tight token bucket (2/s, burst 1) and a breaker that opens after
	// three failures and stays open. A sync pass reads one path (the list),
	// so min_paths 1 lets its failures open the breaker: this test is about
	// the metrics; the spread rule has its own tests (breaker_e2e_test.go).
	o := vendorOptions{vendor: "rate 2/s burst 1\n\t\t\tbreaker {\n\t\t\t\tfailures 3\n\t\t\t\tmin_paths 1\n\t\t\t\tcooldown 1h\n\t\t\t}"}
	e, simURL := startOpsGateway(t, 25, o, "")
	o.baseURL, o.storage = simURL, e.Storage
	base := scrapeCounters(e.Gateway, all...)
	moved := func(series string) float64 { return max(scrape(e.Gateway, series), 0) - base[series] }

	// Success: a sync pass reads three pages (25 products, 10 per page).
	e2e.WaitJobState(e.Gateway, e.enqueueSync("m-ok"), jobs.StateDone)
	pages := float64(e.Sim.Requests().ByRoute[vendorsim.RouteProductList].ByStatus[200])
	if pages < 3 || moved(ok) != pages {
		t.Fatalf("ok requests moved by %v, the vendor answered %v pages with 200", moved(ok), pages)
	}
	if moved(latency) < pages {
		t.Fatalf("latency histogram observed %v requests, want ≥ %v", moved(latency), pages)
	}
	// Back-to-back pages under burst 1 wait for tokens.
	if moved(tokenWaits) < 1 || scrape(e.Gateway, `craftedge_vendor_token_wait_seconds_total{vendor="shop"}`) <= 0 {
		t.Fatalf("token waits moved by %v", moved(tokenWaits))
	}
	if moved(jobDone) != 1 || scrape(e.Gateway, state) != 0 || scrape(e.Gateway, `craftedge_vendor_enabled{vendor="shop"}`) != 1 {
		t.Fatalf("done attempts %v, breaker state %v", moved(jobDone), scrape(e.Gateway, state))
	}

	// 5xx: every request fails. First attempt: a request and its retry
	// fail; second attempt: the third failure opens the breaker, which
	// refuses the retry; the job (max_attempts 2) is dead-lettered.
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	id := e.enqueueSync("m-fail")
	e2e.WaitFor(t, "the failing sync to be dead-lettered", func() bool {
		e2e.Advance(time.Second) // past the 503's Retry-After and the job's backoff
		return e2e.JobByID(e.Gateway, id).State == jobs.StateDead
	})
	if moved(serverError) < 3 || moved(breakerOpen) < 1 || moved(retries) < 2 {
		t.Fatalf("5xx moved by %v, breaker_open by %v, retries by %v; want ≥ 3, 1, 2",
			moved(serverError), moved(breakerOpen), moved(retries))
	}
	if scrape(e.Gateway, state) != 2 || moved(opened) != 1 {
		t.Fatalf("breaker state %v, open transitions moved by %v; want 2 (open), 1", scrape(e.Gateway, state), moved(opened))
	}
	if moved(jobRetry) != 1 || moved(jobDead) != 1 || moved(deadLetters) != 1 {
		t.Fatalf("job attempts: retry %v, dead %v, dead letters %v; want 1 each", moved(jobRetry), moved(jobDead), moved(deadLetters))
	}
	if scrape(e.Gateway, `craftedge_jobs{kind="vendor.sync",state="dead"}`) != 1 {
		t.Fatal("dead-letter gauge not 1")
	}

	// A reload that changes the vendor (default breaker) gets a new client:
	// the counters carry on, the new breaker is closed.
	before := scrapeCounters(e.Gateway, all...)
	o.vendor = ""
	e.Tester.InitServer(opsCaddyfile(o, ""), "caddyfile")
	for s, v := range scrapeCounters(e.Gateway, all...) {
		if v != before[s] {
			t.Errorf("%s changed across reload: %v -> %v", s, before[s], v)
		}
	}
	if scrape(e.Gateway, state) != 0 {
		t.Fatalf("breaker state %v after the reload, want 0", scrape(e.Gateway, state))
	}

	// 429: the vendor throttles the first request; the client retries it
	// after Retry-After (1s) and the pass completes.
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{ThrottleNext: 1}); err != nil {
		t.Fatal(err)
	}
	retries0 := scrape(e.Gateway, retries)
	e2e.WaitJobState(e.Gateway, e.enqueueSync("m-429"), jobs.StateDone)
	if moved(rlHits) != 1 || moved(limited) != 1 || scrape(e.Gateway, retries) != retries0+1 {
		t.Fatalf("rate-limit hits moved by %v, rate_limited by %v, retries by %v; want 1 each",
			moved(rlHits), moved(limited), scrape(e.Gateway, retries)-retries0)
	}

	// Hedges: the first region refuses connections, every page fails over
	// to the second at once.
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{}); err != nil {
		t.Fatal(err)
	}
	o.baseURL = closedPort(t) + " " + simURL
	e.Tester.InitServer(opsCaddyfile(o, ""), "caddyfile")
	h0, t0 := scrape(e.Gateway, hedges), max(scrape(e.Gateway, transport), 0)
	e2e.WaitJobState(e.Gateway, e.enqueueSync("m-hedge"), jobs.StateDone)
	if dh, dt := scrape(e.Gateway, hedges)-max(h0, 0), scrape(e.Gateway, transport)-t0; dh < 1 || dh != dt {
		t.Fatalf("hedges moved by %v, transport errors by %v; want equal and ≥ 1 (one per page)", dh, dt)
	}
	if moved(jobDone) != 3 || scrape(e.Gateway, state) != 0 {
		t.Fatalf("done attempts moved by %v (want 3), breaker state %v", moved(jobDone), scrape(e.Gateway, state))
	}
}

// An outbox write's request id is on the job's log lines and on the purge
// the job caused; the outbox's depth and age are gauges.
func TestOutboxCorrelatedLogsAndAgeMetrics(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	e, _ := startOpsGateway(t, 5, vendorOptions{}, logPath)

	body := `{"sku":"SKU-3","title":{"en":"Logged"},"price":{"amount":1299,"currency":"EUR"},"stock":3}`
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", map[string]string{"Content-Type": "application/json"}, body)
	e2e.WantStatus(t, r, http.StatusAccepted)
	var acc OutboxAccepted
	if err := json.Unmarshal([]byte(r.Body), &acc); err != nil {
		t.Fatal(err)
	}
	e2e.WaitJobState(e.Gateway, acc.Job, jobs.StateDone)

	var rid string
	want := map[string]bool{"job started": false, "job done": false, "purged": false}
	e2e.WaitFor(t, "the outbox job's log lines", func() bool {
		for _, l := range e2e.LogLines(t, logPath) {
			if l["job_id"] != acc.Job {
				continue
			}
			if l["msg"] == "outbox write accepted" {
				rid, _ = l["request_id"].(string)
				continue
			}
			if _, ok := want[l["msg"].(string)]; ok && rid != "" && l["request_id"] == rid && l["kind"] == jobKindOutbox {
				want[l["msg"].(string)] = true
			}
		}
		return rid != "" && want["job started"] && want["job done"] && want["purged"]
	})
	if len(rid) != 36 || strings.Count(rid, "-") != 4 {
		t.Fatalf("request id %q is not Caddy's request UUID", rid)
	}
	job := e2e.JobByID(e.Gateway, acc.Job)
	if job.Correlation != rid {
		t.Fatalf("job correlation %q, want the request id %q", job.Correlation, rid)
	}
	for _, l := range e2e.LogLines(t, logPath) {
		if (l["msg"] == "job started" || l["msg"] == "job done") && l["logger"] != "craftedge.jobs" {
			t.Fatalf("job line from logger %v, want craftedge.jobs: %v", l["logger"], l)
		}
		if l["msg"] == "purged" && l["job_id"] == acc.Job && (l["source"] != "outbox" || !strings.Contains(strings.Join(toStrings(l["tags"]), ","), "shop:product:3")) {
			t.Fatalf("purge line %v: want source outbox and the record's tag", l)
		}
		for _, secret := range []string{vendorsim.DefaultCommerceToken, `"Logged"`} {
			if raw, _ := json.Marshal(l); strings.Contains(string(raw), secret) {
				t.Fatalf("log line leaks %q: %s", secret, raw)
			}
		}
	}

	// Outbox age: the vendor throttles the next write for an hour; the job
	// waits (ready, not due) and its age grows with the clock.
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{ThrottleNext: 1, RetryAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r = e.Do(http.MethodPut, "/vendors/v1/shop/product/4", nil, strings.Replace(body, "SKU-3", "SKU-4", 1))
	e2e.WantStatus(t, r, http.StatusAccepted)
	if err := json.Unmarshal([]byte(r.Body), &acc); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "the throttled write to back off", func() bool {
		j := e2e.JobByID(e.Gateway, acc.Job)
		return j.State == jobs.StateReady && j.Attempts == 1
	})
	e2e.Advance(10 * time.Minute)
	if age := scrape(e.Gateway, `craftedge_jobs_oldest_pending_age_seconds{kind="outbox"}`); age < 600 {
		t.Fatalf("outbox age %v, want ≥ 600", age)
	}
	if d := scrape(e.Gateway, `craftedge_jobs{kind="outbox",state="ready"}`); d != 1 {
		t.Fatalf("outbox depth (ready) %v, want 1", d)
	}
	if scrape(e.Gateway, `craftedge_jobs_queue_age_seconds{kind="outbox"}`) != 0 {
		t.Fatal("a job backing off counted as queue lag")
	}
	e2e.Advance(2 * time.Hour)
	e2e.WaitJobState(e.Gateway, acc.Job, jobs.StateDone)
	if age := scrape(e.Gateway, `craftedge_jobs_oldest_pending_age_seconds{kind="outbox"}`); age != 0 {
		t.Fatalf("outbox age %v with nothing pending", age)
	}
	if scrape(e.Gateway, `craftedge_jobs_attempts_total{kind="outbox",outcome="retry"}`) < 1 {
		t.Fatal("outbox retry attempt not counted")
	}
}

func toStrings(v any) []string {
	var out []string
	if vs, ok := v.([]any); ok {
		for _, x := range vs {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
