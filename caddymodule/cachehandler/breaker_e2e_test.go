package cachehandler

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// e2e.BoomPaths are three distinct paths: failures on all of them are spread
// enough to open a breaker with the default min_paths (3).

func serverError(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte("template error"))
}

// startPlainGateway starts the plainest configuration a new user writes:
// `craftedge` (no block, or handlerBlock when not empty) then
// `reverse_proxy`, with the default upstream and breaker. Caddy's logs go
// to logPath as JSON.
func startPlainGateway(t *testing.T, o *e2e.Origin, handlerBlock string) (g *e2e.Gateway, logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "caddy.log")
	handler := "craftedge"
	if handlerBlock != "" {
		handler += " {\n\t\t" + handlerBlock + "\n\t}"
	}
	cfg := fmt.Sprintf(`{
%s	grace_period 1ns
	skip_install_trust
	log {
		output file %s
		format json
	}
	craftedge {
		storage %s
	}
}
%s {
	%s
	reverse_proxy %s
}
`, e2e.GlobalPorts(), logPath, filepath.Join(dir, "craftedge.db"), e2e.SiteAddr, handler, o.Addr())
	g = e2e.StartConfig(t, o, cfg, filepath.Join(dir, "craftedge.db"))
	return g, logPath
}

// breakerLogs returns the breaker transitions logged, as "state: reason".
func breakerLogs(t *testing.T, logPath, upstream string) []string {
	t.Helper()
	var out []string
	for _, l := range e2e.LogLines(t, logPath) {
		if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "circuit breaker ") && l["upstream"] == upstream {
			if l["logger"] != "craftedge.breaker" {
				t.Errorf("breaker transition logged by %v, want craftedge.breaker", l["logger"])
			}
			out = append(out, fmt.Sprintf("%v: %v", l["state"], l["reason"]))
		}
	}
	return out
}

// wantHealthyPages checks that n uncached pages still come from the origin.
func wantHealthyPages(t *testing.T, g *e2e.Gateway, o *e2e.Origin, n int) {
	t.Helper()
	for i := range n {
		p := fmt.Sprintf("/healthy/%d", i)
		r := g.Get(p)
		e2e.WantStatus(t, r, http.StatusOK)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
		if o.Count(p) != 1 {
			t.Fatalf("%s: the origin saw %d requests, want 1", p, o.Count(p))
		}
	}
	if st := e2e.BreakerState(g, "default"); st != "closed" {
		t.Fatalf("breaker %s, want closed", st)
	}
}

// Issue 12: one URL that always answers 500 (a broken template a crawler
// keeps requesting), however often and with whatever query strings, never
// opens the breaker: that page gets its own error, every other page keeps
// reaching Craft. The plainest Caddyfile, default breaker.
func TestBreakerOneBrokenPageNeverOpensIt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		query func(i int) string
	}{
		{"same URL", func(int) string { return "" }},
		{"20 query strings", func(i int) string { return fmt.Sprintf("?q=%d&page=%d", i, i%3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := e2e.NewOrigin(t)
			o.Handle("/broken", serverError)
			g, logPath := startPlainGateway(t, o, "")
			for i := range 20 {
				r := g.Get("/broken" + tc.query(i))
				e2e.WantStatus(t, r, http.StatusInternalServerError)
				e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=500; detail=upstream-error")
			}
			if o.Count("/broken") != 20 {
				t.Fatalf("the origin saw %d requests for /broken, want 20", o.Count("/broken"))
			}
			wantHealthyPages(t, g, o, 5)
			if logs := breakerLogs(t, logPath, "default"); len(logs) != 0 {
				t.Fatalf("breaker transitions logged: %q", logs)
			}
		})
	}
}

// One always-slow page (a search with an odd query) times out every time
// and never opens the breaker either.
func TestBreakerOneSlowPageNeverOpensIt(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/search", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // hang until the gateway gives up
	})
	g, _ := startPlainGateway(t, o, "timeout 50ms")
	for i := range 20 {
		r := g.Get(fmt.Sprintf("/search?q=odd%d", i))
		e2e.WantStatus(t, r, http.StatusGatewayTimeout)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=504; detail=no-copy")
	}
	wantHealthyPages(t, g, o, 5)
}

// Failures spread over many URLs are an outage: the default breaker opens
// at the fifth consecutive failure (over more than three paths), logs why,
// counts the transition, and uncached pages get the no-copy error without
// reaching Craft.
func TestBreakerEveryPageFailingOpensIt(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Fallback = serverError
	g, logPath := startPlainGateway(t, o, "")
	for i := range 4 {
		e2e.WantStatus(t, g.Get(fmt.Sprintf("/page/%d", i)), http.StatusInternalServerError)
	}
	if st := e2e.BreakerState(g, "default"); st != "closed" {
		t.Fatalf("breaker %s after 4 failures, want closed (failures 5)", st)
	}
	e2e.WantStatus(t, g.Get("/page/4"), http.StatusInternalServerError)
	if st := e2e.BreakerState(g, "default"); st != "open" {
		t.Fatalf("breaker %s after 5 failures over 5 paths, want open", st)
	}
	r := g.Get("/page/5")
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	e2e.WantCacheStatus(t, r, "craftedge; detail=no-copy")
	if n := o.Total.Load(); n != 5 {
		t.Fatalf("the origin saw %d requests, want 5 (none once open)", n)
	}
	if v := e2e.Scrape(g, `craftedge_breaker_transitions_total{state="open",upstream="default"}`); v != 1 {
		t.Fatalf("open transitions counted: %v, want 1", v)
	}
	want := []string{"open: 5 consecutive failures over 5 distinct paths, last: status 500 on /page/4"}
	if logs := breakerLogs(t, logPath, "default"); strings.Join(logs, "|") != strings.Join(want, "|") {
		t.Fatalf("breaker transitions logged: %q, want %q", logs, want)
	}
}

// Craft down (connection refused) opens the breaker as fast as before,
// whatever the paths: five failures in a row, here all on one page.
func TestBreakerOriginDownOpensItOnAnyPath(t *testing.T) {
	o := e2e.NewOrigin(t)
	g, logPath := startPlainGateway(t, o, "")
	e2e.WantStatus(t, g.Get("/page"), http.StatusOK)
	o.Stop()
	e2e.Advance(time.Hour) // the copy is stale: every request tries Craft
	for i := range 5 {
		r := g.Get("/page")
		e2e.WantStatus(t, r, http.StatusOK)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=502; detail=stale")
		if st := e2e.BreakerState(g, "default"); (st == "open") != (i == 4) {
			t.Fatalf("breaker %s after %d refused connections", st, i+1)
		}
	}
	r := g.Get("/page")
	e2e.WantStatus(t, r, http.StatusOK)
	e2e.WantCacheStatus(t, r, "craftedge; hit; detail=stale")
	logs := breakerLogs(t, logPath, "default")
	if len(logs) != 1 || !strings.HasPrefix(logs[0], "open: 5 consecutive failures all connection failures, last: dial tcp") ||
		!strings.Contains(logs[0], "connection refused on /page") {
		t.Fatalf("breaker transitions logged: %q", logs)
	}
}

// Successes count: a steady mix of successes with runs of up to four
// errors on ever-different pages never adds up to an open breaker (the
// old breaker counted every failure within its cooldown and opened).
func TestBreakerSporadicErrorsAmongSuccessesKeepItClosed(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Fallback = serverError
	g, _ := startPlainGateway(t, o, "")
	for i := range 60 {
		p := fmt.Sprintf("/mix/%d", i)
		if i%5 == 4 {
			o.Handle(p, e2e.PageHandler("ok", "mix"))
			e2e.WantStatus(t, g.Get(p), http.StatusOK)
		} else {
			e2e.WantStatus(t, g.Get(p), http.StatusInternalServerError)
		}
	}
	if st := e2e.BreakerState(g, "default"); st != "closed" {
		t.Fatalf("breaker %s after runs of 4 failures between successes, want closed", st)
	}
	if n := o.Total.Load(); n != 60 {
		t.Fatalf("the origin saw %d requests, want 60", n)
	}
}

// Bad breaker settings are load errors naming the line; zero is never
// silently a default, `breaker off` turns it off.
func TestBreakerCaddyfileErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"breaker {\n failures 0\n}", "(use 'breaker off' to turn the breaker off)"},
		{"breaker {\n min_paths 0\n}", "(1 means failures on any paths open it)"},
		{"breaker {\n successes -1\n}", "breaker successes must be a positive integer"},
		{"breaker {\n cooldown 0s\n}", "breaker cooldown must be positive"},
		{"breaker {\n cooldown -5s\n}", "cooldown must not be negative"},
		{"breaker {\n failures 3 4\n}", "wrong argument count"},
		{"breaker {\n window 10\n}", "unrecognized breaker option"},
		{"breaker on", "breaker takes 'off' or a block"},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), HandlerExtra: tc.extra})
		e2e.AssertLoadError(t, cfg, tc.want)
	}
	// The vendor block uses the same parser (TestVendorBreakerCaddyfileError
	// in the core).
}

// `breaker off`: no failure opens it, and health says closed.
func TestBreakerOff(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Fallback = serverError
	g, _ := startPlainGateway(t, o, "breaker off")
	for i := range 10 {
		e2e.WantStatus(t, g.Get(fmt.Sprintf("/p/%d", i)), http.StatusInternalServerError)
	}
	if st := e2e.BreakerState(g, "default"); st != "closed" {
		t.Fatalf("breaker %s with breaker off", st)
	}
	if n := o.Total.Load(); n != 10 {
		t.Fatalf("the origin saw %d requests, want 10", n)
	}
}

// The half-open breaker follows the same rule (issue 12): when the trial
// call happens to be the one broken page (always 500, however often it is
// the trial), the breaker stays half-open instead of reopening a healthy
// site's for another cooldown, and the next page's trial closes it.
// Trials failing over min_paths distinct pages still reopen it.
func TestBreakerHalfOpenTrialOnABrokenPageDoesNotReopenIt(t *testing.T) {
	o, down := downOrigin(t)
	o.Handle("/broken", serverError)
	g, logPath := startPlainGateway(t, o, "breaker {\n\t\t\tcooldown 100ms\n\t\t}")
	openAndWait := func() {
		t.Helper()
		for i := range 5 {
			e2e.WantStatus(t, g.Get(fmt.Sprintf("/outage/%d", i)), http.StatusInternalServerError)
		}
		if st := e2e.BreakerState(g, "default"); st != "open" {
			t.Fatalf("breaker %s after an outage, want open", st)
		}
		e2e.WaitFor(t, "breaker to half-open after its cooldown", func() bool { return e2e.BreakerState(g, "default") == "half-open" })
	}
	openAndWait()
	down.Store(false) // Craft is back; /broken still is not
	r := g.Get("/broken?try=0")
	e2e.WantStatus(t, r, http.StatusInternalServerError)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=500; detail=upstream-error")
	if st := e2e.BreakerState(g, "default"); st != "half-open" {
		t.Fatalf("breaker %s after the broken page was the trial, want half-open", st)
	}
	// The broken page does not take the next trials (whatever its
	// query): asked again, it is refused as while open, and Craft is not
	// called for it.
	calls := o.Count("/broken")
	for i := 1; i < 3; i++ {
		r := g.Get(fmt.Sprintf("/broken?try=%d", i))
		e2e.WantStatus(t, r, http.StatusServiceUnavailable)
		if st := e2e.BreakerState(g, "default"); st != "half-open" {
			t.Fatalf("breaker %s after the broken page was asked again, want half-open", st)
		}
	}
	if n := o.Count("/broken"); n != calls {
		t.Fatalf("Craft called %d more times for /broken after its trial failed, want 0", n-calls)
	}
	e2e.WantCacheStatus(t, g.Get("/healthy"), "craftedge; fwd=miss; stored")
	if st := e2e.BreakerState(g, "default"); st != "closed" {
		t.Fatalf("breaker %s after a healthy trial, want closed", st)
	}

	// Still an outage: trials failing on three pages reopen it.
	down.Store(true)
	openAndWait()
	for i := range 3 {
		e2e.WantStatus(t, g.Get(fmt.Sprintf("/still-down/%d", i)), http.StatusInternalServerError)
	}
	if st := e2e.BreakerState(g, "default"); st != "open" {
		t.Fatalf("breaker %s after trials failed on 3 pages, want open", st)
	}
	logs := breakerLogs(t, logPath, "default")
	if last := logs[len(logs)-1]; last != "open: trial calls failed on 3 distinct paths, last: status 500 on /still-down/2" {
		t.Fatalf("last transition logged: %q (all: %q)", last, logs)
	}
}

// A half-open breaker asked only for the page whose trial failed is not
// stuck half-open once Craft is back: the page is refused (served as
// while open) for one cooldown from its failed trial, then is a trial
// again, which closes the breaker. (Refused until the breaker closed or
// reopened, a site whose traffic was that page alone stayed half-open,
// answering 503, for good.)
func TestBreakerHalfOpenRetriesAFailedPageAfterACooldown(t *testing.T) {
	o, down := downOrigin(t)
	g, _ := startPlainGateway(t, o, "breaker {\n\t\t\tcooldown 100ms\n\t\t}")
	for i := range 5 {
		e2e.WantStatus(t, g.Get(fmt.Sprintf("/outage/%d", i)), http.StatusInternalServerError)
	}
	e2e.WaitFor(t, "breaker to half-open after its cooldown", func() bool { return e2e.BreakerState(g, "default") == "half-open" })
	e2e.WantStatus(t, g.Get("/only"), http.StatusInternalServerError) // its trial: Craft still down
	down.Store(false)                                                 // Craft is back; only /only is asked for
	e2e.WantStatus(t, g.Get("/only?again=1"), http.StatusServiceUnavailable)
	e2e.Advance(100 * time.Millisecond)
	r := g.Get("/only?again=2")
	e2e.WantStatus(t, r, http.StatusOK)
	if st := e2e.BreakerState(g, "default"); st != "closed" {
		t.Fatalf("breaker %s after /only's second trial succeeded, want closed", st)
	}
}

// downOrigin is an origin answering every page 500 while down is true
// (as it is at first), and a cacheable "ok" page once it is set false.
func downOrigin(t *testing.T) (*e2e.Origin, *atomic.Bool) {
	t.Helper()
	o := e2e.NewOrigin(t)
	down := new(atomic.Bool)
	down.Store(true)
	o.Fallback = func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			serverError(w, r)
			return
		}
		e2e.PageHandler("ok", "ok")(w, r)
	}
	return o, down
}
