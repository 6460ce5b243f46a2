package cachehandler

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// health is GET /craftedge/health.
func health(g *e2e.Gateway) caddymodule.Health {
	return e2e.AdminJSON[caddymodule.Health](g, "/craftedge/health")
}

func TestOriginDownServesStaleThenSnapshotAfterRestart(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/page", e2e.PageHandler("last good", "entry:1"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	good := g.Get("/page")
	e2e.WantCacheStatus(t, good, "craftedge; fwd=miss; stored")
	g.FlushSnapshots()

	o.Stop() // connection refused from now on
	e2e.Advance(2 * time.Minute)
	r := g.Get("/page")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=502; detail=stale")
	if r.Body != good.Body {
		t.Fatal("stale copy differs")
	}
	// No copy at all: 502 with Retry-After.
	r = g.Get("/never-seen")
	e2e.WantStatus(t, r, http.StatusBadGateway)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=no-copy")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}

	// Restart without the warm start: the memory tier is gone, the origin
	// is still down; the snapshot from bbolt serves.
	g.Restart(e2e.Options{GlobalExtra: "warm_start off"})
	r = g.Get("/page")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot")
	if r.Body != good.Body {
		t.Fatal("snapshot differs from the last good page")
	}
	gz := g.Get("/page", "Accept-Encoding", "gzip, zstd")
	if gz.Header.Get("Content-Encoding") != "zstd" || e2e.Unzstd(t, gz.Body) != good.Body {
		t.Fatalf("snapshot not served compressed to a zstd client: %q", gz.Header.Get("Content-Encoding"))
	}
	// A restart starts with a closed breaker; three failures open it, and
	// then copies are served without calling the upstream.
	e2e.WantStatus(t, g.Get("/never-seen"), http.StatusBadGateway)
	if st := e2e.BreakerState(g, "craft"); st != "open" {
		t.Fatalf("breaker %s, want open", st)
	}
	r = g.Get("/page")
	e2e.WantCacheStatus(t, r, "craftedge; hit; detail=snapshot")
	r = g.Get("/never-seen")
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	e2e.WantCacheStatus(t, r, "craftedge; detail=no-copy")
}

func TestFallbackPageWhenNothingElse(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/down", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("craft exception page"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: `fallback 503 "<h1>Back soon</h1>"`})
	r := g.Get("/down")
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=500; detail=fallback")
	if r.Body != "<h1>Back soon</h1>" || r.Header.Get("Retry-After") != "30" {
		t.Fatalf("fallback body %q Retry-After %q", r.Body, r.Header.Get("Retry-After"))
	}

	fb := filepath.Join(t.TempDir(), "maintenance.html")
	if err := os.WriteFile(fb, []byte("maintenance file"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.Reload(e2e.Options{HandlerExtra: "fallback 502 file " + fb})
	r = g.Get("/down")
	e2e.WantStatus(t, r, http.StatusBadGateway)
	if r.Body != "maintenance file" {
		t.Fatalf("fallback file body %q", r.Body)
	}
}

func TestUpstream5xxRelayedWithoutFallbackAndStaleServed(t *testing.T) {
	o := e2e.NewOrigin(t)
	var fail atomic.Bool
	o.Handle("/s", func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.Header().Set("Set-Cookie", "x=1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("maintenance"))
			return
		}
		e2e.PageHandler("stale me", "s")(w, r)
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/s")
	fail.Store(true)
	e2e.Advance(2 * time.Minute)
	r := g.Get("/s")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=503; detail=stale")
	if r.Header.Get("Set-Cookie") != "" {
		t.Fatal("a failed response's Set-Cookie leaked onto a cached page")
	}
	// Without any copy the upstream's own error page is relayed.
	r = g.Get("/s?new=1")
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=503; detail=upstream-error")
	if r.Body != "maintenance" {
		t.Fatalf("upstream error body %q", r.Body)
	}
}

func TestTimeoutFallsBackToStaleCopy(t *testing.T) {
	o := e2e.NewOrigin(t)
	var slow atomic.Bool
	o.Handle("/t", func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			<-r.Context().Done() // hang until the gateway gives up
			return
		}
		e2e.PageHandler("timely", "t")(w, r)
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "timeout 300ms"})
	g.Get("/t")
	slow.Store(true)
	e2e.Advance(2 * time.Minute)
	r := g.Get("/t")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=504; detail=stale")
	r = g.Get("/t?uncached=1")
	e2e.WantStatus(t, r, http.StatusGatewayTimeout)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=504; detail=no-copy")
}

func TestBreakerOpensAndClosesAfterCooldown(t *testing.T) {
	o := e2e.NewOrigin(t)
	var failing atomic.Bool
	failing.Store(true)
	// Failures on three paths: spread enough to open (min_paths 3).
	paths := []string{"/b", "/b/2", "/b/3"}
	for _, p := range paths {
		o.Handle(p, func(w http.ResponseWriter, r *http.Request) {
			if failing.Load() {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte("boom"))
				return
			}
			e2e.PageHandler("recovered", "b")(w, r)
		})
	}
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "breaker {\n cooldown 300ms\n}"})
	for _, p := range paths {
		r := g.Get(p)
		e2e.WantStatus(t, r, http.StatusInternalServerError)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=500; detail=upstream-error")
		if r.Body != "boom" {
			t.Fatalf("upstream error page not relayed: %q", r.Body)
		}
	}
	if st := e2e.BreakerState(g, "craft"); st != "open" {
		t.Fatalf("breaker %s after 3 failures over 3 paths, want open", st)
	}
	// While open, nothing goes upstream.
	for i := 0; i < 5; i++ {
		r := g.Get("/b")
		e2e.WantStatus(t, r, http.StatusServiceUnavailable)
		e2e.WantCacheStatus(t, r, "craftedge; detail=no-copy")
	}
	if got := o.Total.Load(); got != 3 {
		t.Fatalf("origin saw %d requests, want 3 (breaker open)", got)
	}
	failing.Store(false)
	e2e.WaitFor(t, "breaker to half-open after its cooldown", func() bool { return e2e.BreakerState(g, "craft") == "half-open" })
	r := g.Get("/b")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	if st := e2e.BreakerState(g, "craft"); st != "closed" {
		t.Fatalf("breaker %s after a success, want closed", st)
	}
}

// Half-open lets one trial call through: while it is in flight, other
// requests are answered from copies (or the no-copy error) at once instead
// of all waiting on a struggling upstream.
func TestBreakerHalfOpenLetsOneTrialThrough(t *testing.T) {
	o := e2e.NewOrigin(t)
	var failing atomic.Bool
	release := make(chan struct{})
	fail := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }
	o.Handle("/trial", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			fail(w, r)
			return
		}
		<-release
		e2e.PageHandler("trial", "trial")(w, r)
	})
	o.Handle("/trial/2", fail)
	o.Handle("/trial/3", fail)
	o.Handle("/cached", e2e.PageHandler("cached", "cached"))
	o.Handle("/other", e2e.PageHandler("other", "other"))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "breaker {\n cooldown 300ms\n}"})
	e2e.WantCacheStatus(t, g.Get("/cached"), "craftedge; fwd=miss; stored")
	failing.Store(true)
	for _, p := range []string{"/trial", "/trial/2", "/trial/3"} {
		e2e.WantStatus(t, g.Get(p), http.StatusInternalServerError)
	}
	failing.Store(false)
	e2e.Advance(time.Hour) // /cached is stale now
	e2e.WaitFor(t, "breaker to half-open after its cooldown", func() bool { return e2e.BreakerState(g, "craft") == "half-open" })

	trial := make(chan e2e.Response, 1)
	go func() { trial <- g.Get("/trial") }()
	e2e.WaitFor(t, "the trial call to reach the origin", func() bool { return o.Count("/trial") == 2 })
	r := g.Get("/cached")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; hit; detail=") // stale memory copy or snapshot
	e2e.WantCacheStatus(t, g.Get("/other"), "craftedge; detail=no-copy")
	if n := o.Count("/cached") + o.Count("/other"); n != 1 {
		t.Fatalf("origin saw %d requests besides the trial, want 1 (the first /cached)", n)
	}
	close(release)
	e2e.WantCacheStatus(t, <-trial, "craftedge; fwd=miss; stored")
	if st := e2e.BreakerState(g, "craft"); st != "closed" {
		t.Fatalf("breaker %s after the trial succeeded, want closed", st)
	}
	e2e.WantCacheStatus(t, g.Get("/other"), "craftedge; fwd=miss; stored")
}

func TestKillSwitchByCaddyfileReloadKeepsCacheWarm(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/k", e2e.PageHandler("kill switch", "k"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/k")
	entries := health(g).Memory.(map[string]any)["entries"]

	g.Reload(e2e.Options{HandlerExtra: "snapshot_only on"})
	if e := health(g).Memory.(map[string]any)["entries"]; e != entries {
		t.Fatalf("reload dropped the cache: entries %v -> %v", entries, e)
	}
	e2e.WantCacheStatus(t, g.Get("/k"), "craftedge; hit")
	e2e.Advance(2 * time.Hour) // past ttl and stale: still no upstream call
	r := g.Get("/k")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; hit; detail=stale")
	r = g.Get("/unknown")
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	e2e.WantCacheStatus(t, r, "craftedge; detail=no-copy")
	// Editors still reach Craft.
	e2e.WantCacheStatus(t, g.Get("/admin/dashboard"), "craftedge; fwd=bypass; detail=cp")
	if got := o.Count("/k") + o.Count("/unknown"); got != 1 {
		t.Fatalf("origin saw %d page requests under the kill switch, want 1 (before it)", got)
	}
	if !health(g).Upstreams[0].SnapshotOnly {
		t.Fatal("health does not show the handler kill switch")
	}
	// Editors can be blocked too, when configured.
	g.Reload(e2e.Options{HandlerExtra: "snapshot_only on\nsnapshot_only_editors block"})
	e2e.WantStatus(t, g.Get("/admin/dashboard"), http.StatusServiceUnavailable)

	// Global kill switch in the app block.
	g.Reload(e2e.Options{GlobalExtra: "snapshot_only"})
	e2e.WantCacheStatus(t, g.Get("/k"), "craftedge; hit; detail=stale")
	if !health(g).KillSwitch.Configured {
		t.Fatal("health does not show the global kill switch")
	}

	g.Reload(e2e.Options{})
	e2e.WantCacheStatus(t, g.Get("/k"), "craftedge; fwd=stale; stored")
}

// PUT /craftedge/snapshot-only names a configured upstream (or none): an
// unknown or huge name is a 400 naming the problem, and nothing is stored.
func TestKillSwitchAdminValidatesUpstream(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/o", e2e.PageHandler("override", "o"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/o")

	for _, name := range []string{"shop", strings.Repeat("x", 500<<10)} {
		for _, enabled := range []string{"true", "false"} {
			r := g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":`+enabled+`,"upstream":"`+name+`"}`)
			if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "unknown upstream") || !strings.Contains(r.Body, "craft") {
				t.Fatalf("upstream of %d bytes, enabled %s: %d %.300s; want 400 naming the configured upstreams", len(name), enabled, r.Status, r.Body)
			}
			if len(r.Body) > 1000 {
				t.Fatalf("the error echoes the whole name: %d bytes", len(r.Body))
			}
		}
	}
	if ov := health(g).KillSwitch.Overrides; len(ov) != 0 {
		t.Fatalf("overrides stored for unknown upstreams: %v", ov)
	}
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true,"upstream":"craft"}`), 200)
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false,"upstream":"craft"}`), 200)
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false}`), 200)
}

func TestKillSwitchAdminOverrideSurvivesRestart(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/o", e2e.PageHandler("override", "o"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/o")
	g.FlushSnapshots()

	// An override for an upstream that is not configured is refused (see
	// TestKillSwitchAdminValidatesUpstream) and changes nothing here.
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true,"upstream":"shop"}`), 400)
	e2e.Advance(2 * time.Minute)
	e2e.WantCacheStatusPrefix(t, g.Get("/o"), "craftedge; fwd=")

	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true}`), 200)
	before := o.Count("/o")
	e2e.Advance(2 * time.Minute)
	e2e.WantCacheStatus(t, g.Get("/o"), "craftedge; hit; detail=stale")

	g.Restart(e2e.Options{GlobalExtra: "warm_start off"}) // the snapshot serves, not a refilled copy
	if !health(g).KillSwitch.Overrides[""] {
		t.Fatal("override lost across restart")
	}
	r := g.Get("/o")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; hit; detail=snapshot")
	if o.Count("/o") != before {
		t.Fatal("upstream called under the kill switch")
	}

	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false}`), 200)
	if len(health(g).KillSwitch.Overrides) != 0 {
		t.Fatal("override not cleared")
	}
	// The snapshot served above was promoted into memory, never fresh:
	// the page is fetched again.
	e2e.WantCacheStatus(t, g.Get("/o"), "craftedge; fwd=stale; stored")
}

func TestPurgedSnapshotStillServesWhenOriginFails(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/p", e2e.PageHandler("purged but last good", "entry:9"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/p")
	g.FlushSnapshots()
	e2e.WantStatus(t, g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:9"],"mode":"hard"}`), 200)
	o.Stop()
	r := g.Get("/p")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot")
}

func TestStaleWhileRevalidateRefreshesInBackground(t *testing.T) {
	o := e2e.NewOrigin(t)
	var version atomic.Value
	version.Store("v1")
	o.Handle("/swr", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		_, _ = w.Write([]byte(version.Load().(string)))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/swr")
	version.Store("v2")
	e2e.Advance(20 * time.Second)
	r := g.Get("/swr")
	e2e.WantCacheStatus(t, r, "craftedge; hit; detail=stale")
	if r.Body != "v1" {
		t.Fatalf("got %q, want the stale v1", r.Body)
	}
	e2e.WaitFor(t, "the background refresh", func() bool {
		// Each stale serve may start a refresh: wait for one to land.
		return o.Count("/swr") >= 2 && inFlight.Load() == 0 && g.Get("/swr").Body == "v2"
	})
	e2e.WantCacheStatus(t, g.Get("/swr"), "craftedge; hit")
}

func TestMustRevalidateIsNeverServedStale(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/mr", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, must-revalidate")
		_, _ = w.Write([]byte("strict"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/mr")
	o.Stop()
	e2e.Advance(20 * time.Second)
	r := g.Get("/mr")
	e2e.WantStatus(t, r, http.StatusBadGateway)
}

func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"frobnicate on", "unrecognized craftedge subdirective"},
		{"ttl", "ttl needs a duration"},
		{"ttl soon", "ttl: invalid duration"},
		{"fallback 99", "fallback status must be an HTTP status"},
		{"breaker {\n failures zero\n}", "breaker failures must be a positive integer"},
		{"breaker {\n failures\n}", "failures needs a value"},
		{"max_entry_size huge", "max_entry_size: invalid size"},
		{"snapshot_only maybe", "snapshot_only wants on or off"},
		{"upstream a b", "too many arguments to"},
		{"graphql api", "graphql path must start with /"},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), HandlerExtra: tc.extra})
		e2e.AssertLoadError(t, cfg, tc.want)
	}
	cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: "/tmp/x.db", GlobalExtra: "memory lots"})
	e2e.AssertLoadError(t, cfg, "memory: invalid size")
}

func TestUnopenableStorageIsAClearError(t *testing.T) {
	o := e2e.NewOrigin(t)
	file := filepath.Join(t.TempDir(), "plainfile")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tester := caddytest.NewTester(t)
	cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(file, "craftedge.db")})
	r, err := http.Post("http://"+e2e.AdminAddr+"/load", "text/caddyfile", strings.NewReader(cfg))
	if err != nil {
		// Caddy may not be running yet in this process: start it.
		tester.InitServer("{\n\tadmin "+e2e.AdminAddr+"\n}\n", "caddyfile")
		r, err = http.Post("http://"+e2e.AdminAddr+"/load", "text/caddyfile", strings.NewReader(cfg))
		if err != nil {
			t.Fatal(err)
		}
	}
	defer r.Body.Close()
	body := new(strings.Builder)
	_, _ = e2e.CopyBody(body, r)
	if r.StatusCode == 200 || !strings.Contains(body.String(), "craftedge: storage") || !strings.Contains(body.String(), "plainfile") {
		t.Fatalf("load of an unopenable storage path: status %d, body %s", r.StatusCode, body)
	}
}

// The snapshot store stays open across reloads; a reload with tighter
// bounds applies them to it (evicting the oldest) without a restart.
func TestSnapshotBoundsApplyOnReload(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Fallback = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		// Bodies that do not compress to nothing: the path repeated with
		// a counter.
		var b strings.Builder
		for i := range 400 {
			fmt.Fprintf(&b, "<p>%s %d %x</p>", r.URL.Path, i, i*7919)
		}
		_, _ = io.WriteString(w, b.String())
	}
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: "snapshot_max_size 64MiB"})
	for i := range 20 {
		e2e.WantStatus(t, g.Get(fmt.Sprintf("/bounded/%d", i)), 200)
	}
	g.FlushSnapshots()
	before := health(g).Snapshots
	if before.Count != 20 {
		t.Fatalf("snapshots before the reload: %+v", before)
	}
	bound := before.Bytes / 2
	g.Reload(e2e.Options{GlobalExtra: fmt.Sprintf("snapshot_max_size %d", bound)})
	e2e.WaitFor(t, "eviction under the reloaded bound", func() bool {
		s := health(g).Snapshots
		return s.Bytes <= bound && s.Evicted > 0
	})
	if s := health(g).Snapshots; s.Count == 0 || s.Count >= 20 {
		t.Fatalf("after the reload: %+v (bound %d)", s, bound)
	}
}
