package caddymodule

import (
	"encoding/json"
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
)

func (g *gateway) health() Health {
	g.t.Helper()
	r := g.admin(http.MethodGet, "/craftedge/health", "")
	wantStatus(g.t, r, 200)
	var h Health
	if err := json.Unmarshal([]byte(r.body), &h); err != nil {
		g.t.Fatalf("health is not JSON: %v: %s", err, r.body)
	}
	return h
}

func (g *gateway) breakerState(name string) string {
	for _, u := range g.health().Upstreams {
		if u.Name == name {
			return u.Breaker
		}
	}
	g.t.Fatalf("upstream %q not in health", name)
	return ""
}

func TestOriginDownServesStaleThenSnapshotAfterRestart(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/page", pageHandler("last good", "entry:1"))
	g := startGateway(t, o, gatewayOptions{})
	good := g.get("/page")
	wantCacheStatus(t, good, "craftedge; fwd=miss; stored")
	g.flushSnapshots()

	o.stop() // connection refused from now on
	advance(2 * time.Minute)
	r := g.get("/page")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=502; detail=stale")
	if r.body != good.body {
		t.Fatal("stale copy differs")
	}
	// No copy at all: 502 with Retry-After.
	r = g.get("/never-seen")
	wantStatus(t, r, http.StatusBadGateway)
	wantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=no-copy")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}

	// Restart: the memory tier is gone, the origin is still down; the
	// snapshot from bbolt serves.
	g.restart(gatewayOptions{})
	r = g.get("/page")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot")
	if r.body != good.body {
		t.Fatal("snapshot differs from the last good page")
	}
	gz := g.get("/page", "Accept-Encoding", "gzip, zstd")
	if gz.header.Get("Content-Encoding") != "zstd" || unzstd(t, gz.body) != good.body {
		t.Fatalf("snapshot not served compressed to a zstd client: %q", gz.header.Get("Content-Encoding"))
	}
	// A restart starts with a closed breaker; three failures open it, and
	// then copies are served without calling the upstream.
	wantStatus(t, g.get("/never-seen"), http.StatusBadGateway)
	if st := g.breakerState("craft"); st != "open" {
		t.Fatalf("breaker %s, want open", st)
	}
	r = g.get("/page")
	wantCacheStatus(t, r, "craftedge; hit; detail=snapshot")
	r = g.get("/never-seen")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantCacheStatus(t, r, "craftedge; detail=no-copy")
}

func TestFallbackPageWhenNothingElse(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/down", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("craft exception page"))
	})
	g := startGateway(t, o, gatewayOptions{handlerExtra: `fallback 503 "<h1>Back soon</h1>"`})
	r := g.get("/down")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=500; detail=fallback")
	if r.body != "<h1>Back soon</h1>" || r.header.Get("Retry-After") != "30" {
		t.Fatalf("fallback body %q Retry-After %q", r.body, r.header.Get("Retry-After"))
	}

	fb := filepath.Join(t.TempDir(), "maintenance.html")
	if err := os.WriteFile(fb, []byte("maintenance file"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.reload(gatewayOptions{handlerExtra: "fallback 502 file " + fb})
	r = g.get("/down")
	wantStatus(t, r, http.StatusBadGateway)
	if r.body != "maintenance file" {
		t.Fatalf("fallback file body %q", r.body)
	}
}

func TestUpstream5xxRelayedWithoutFallbackAndStaleServed(t *testing.T) {
	o := newTestOrigin(t)
	var fail atomic.Bool
	o.handle("/s", func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.Header().Set("Set-Cookie", "x=1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("maintenance"))
			return
		}
		pageHandler("stale me", "s")(w, r)
	})
	g := startGateway(t, o, gatewayOptions{})
	g.get("/s")
	fail.Store(true)
	advance(2 * time.Minute)
	r := g.get("/s")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=503; detail=stale")
	if r.header.Get("Set-Cookie") != "" {
		t.Fatal("a failed response's Set-Cookie leaked onto a cached page")
	}
	// Without any copy the upstream's own error page is relayed.
	r = g.get("/s?new=1")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=503; detail=upstream-error")
	if r.body != "maintenance" {
		t.Fatalf("upstream error body %q", r.body)
	}
}

func TestTimeoutFallsBackToStaleCopy(t *testing.T) {
	o := newTestOrigin(t)
	var slow atomic.Bool
	o.handle("/t", func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			<-r.Context().Done() // hang until the gateway gives up
			return
		}
		pageHandler("timely", "t")(w, r)
	})
	g := startGateway(t, o, gatewayOptions{handlerExtra: "timeout 300ms"})
	g.get("/t")
	slow.Store(true)
	advance(2 * time.Minute)
	r := g.get("/t")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=504; detail=stale")
	r = g.get("/t?uncached=1")
	wantStatus(t, r, http.StatusGatewayTimeout)
	wantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=504; detail=no-copy")
}

func TestBreakerOpensAndClosesAfterCooldown(t *testing.T) {
	o := newTestOrigin(t)
	var failing atomic.Bool
	failing.Store(true)
	// Failures on three paths: spread enough to open (min_paths 3).
	paths := []string{"/b", "/b/2", "/b/3"}
	for _, p := range paths {
		o.handle(p, func(w http.ResponseWriter, r *http.Request) {
			if failing.Load() {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte("boom"))
				return
			}
			pageHandler("recovered", "b")(w, r)
		})
	}
	g := startGateway(t, o, gatewayOptions{handlerExtra: "breaker {\n cooldown 300ms\n}"})
	for _, p := range paths {
		r := g.get(p)
		wantStatus(t, r, http.StatusInternalServerError)
		wantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=500; detail=upstream-error")
		if r.body != "boom" {
			t.Fatalf("upstream error page not relayed: %q", r.body)
		}
	}
	if st := g.breakerState("craft"); st != "open" {
		t.Fatalf("breaker %s after 3 failures over 3 paths, want open", st)
	}
	// While open, nothing goes upstream.
	for i := 0; i < 5; i++ {
		r := g.get("/b")
		wantStatus(t, r, http.StatusServiceUnavailable)
		wantCacheStatus(t, r, "craftedge; detail=no-copy")
	}
	if got := o.total.Load(); got != 3 {
		t.Fatalf("origin saw %d requests, want 3 (breaker open)", got)
	}
	failing.Store(false)
	waitFor(t, "breaker to half-open after its cooldown", func() bool { return g.breakerState("craft") == "half-open" })
	r := g.get("/b")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	if st := g.breakerState("craft"); st != "closed" {
		t.Fatalf("breaker %s after a success, want closed", st)
	}
}

// Half-open lets one trial call through: while it is in flight, other
// requests are answered from copies (or the no-copy error) at once instead
// of all waiting on a struggling upstream.
func TestBreakerHalfOpenLetsOneTrialThrough(t *testing.T) {
	o := newTestOrigin(t)
	var failing atomic.Bool
	release := make(chan struct{})
	fail := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }
	o.handle("/trial", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			fail(w, r)
			return
		}
		<-release
		pageHandler("trial", "trial")(w, r)
	})
	o.handle("/trial/2", fail)
	o.handle("/trial/3", fail)
	o.handle("/cached", pageHandler("cached", "cached"))
	o.handle("/other", pageHandler("other", "other"))
	g := startGateway(t, o, gatewayOptions{handlerExtra: "breaker {\n cooldown 300ms\n}"})
	wantCacheStatus(t, g.get("/cached"), "craftedge; fwd=miss; stored")
	failing.Store(true)
	for _, p := range []string{"/trial", "/trial/2", "/trial/3"} {
		wantStatus(t, g.get(p), http.StatusInternalServerError)
	}
	failing.Store(false)
	advance(time.Hour) // /cached is stale now
	waitFor(t, "breaker to half-open after its cooldown", func() bool { return g.breakerState("craft") == "half-open" })

	trial := make(chan response, 1)
	go func() { trial <- g.get("/trial") }()
	waitFor(t, "the trial call to reach the origin", func() bool { return o.count("/trial") == 2 })
	r := g.get("/cached")
	wantStatus(t, r, 200)
	wantCacheStatusPrefix(t, r, "craftedge; hit; detail=") // stale memory copy or snapshot
	wantCacheStatus(t, g.get("/other"), "craftedge; detail=no-copy")
	if n := o.count("/cached") + o.count("/other"); n != 1 {
		t.Fatalf("origin saw %d requests besides the trial, want 1 (the first /cached)", n)
	}
	close(release)
	wantCacheStatus(t, <-trial, "craftedge; fwd=miss; stored")
	if st := g.breakerState("craft"); st != "closed" {
		t.Fatalf("breaker %s after the trial succeeded, want closed", st)
	}
	wantCacheStatus(t, g.get("/other"), "craftedge; fwd=miss; stored")
}

func TestKillSwitchByCaddyfileReloadKeepsCacheWarm(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/k", pageHandler("kill switch", "k"))
	g := startGateway(t, o, gatewayOptions{})
	g.get("/k")
	entries := g.health().Memory.(map[string]any)["entries"]

	g.reload(gatewayOptions{handlerExtra: "snapshot_only on"})
	if e := g.health().Memory.(map[string]any)["entries"]; e != entries {
		t.Fatalf("reload dropped the cache: entries %v -> %v", entries, e)
	}
	wantCacheStatus(t, g.get("/k"), "craftedge; hit")
	advance(2 * time.Hour) // past ttl and stale: still no upstream call
	r := g.get("/k")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; hit; detail=stale")
	r = g.get("/unknown")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantCacheStatus(t, r, "craftedge; detail=no-copy")
	// Editors still reach Craft.
	wantCacheStatus(t, g.get("/admin/dashboard"), "craftedge; fwd=bypass; detail=cp")
	if got := o.count("/k") + o.count("/unknown"); got != 1 {
		t.Fatalf("origin saw %d page requests under the kill switch, want 1 (before it)", got)
	}
	if !g.health().Upstreams[0].SnapshotOnly {
		t.Fatal("health does not show the handler kill switch")
	}
	// Editors can be blocked too, when configured.
	g.reload(gatewayOptions{handlerExtra: "snapshot_only on\nsnapshot_only_editors block"})
	wantStatus(t, g.get("/admin/dashboard"), http.StatusServiceUnavailable)

	// Global kill switch in the app block.
	g.reload(gatewayOptions{globalExtra: "snapshot_only"})
	wantCacheStatus(t, g.get("/k"), "craftedge; hit; detail=stale")
	if !g.health().KillSwitch.Configured {
		t.Fatal("health does not show the global kill switch")
	}

	g.reload(gatewayOptions{})
	wantCacheStatus(t, g.get("/k"), "craftedge; fwd=stale; stored")
}

// PUT /craftedge/snapshot-only names a configured upstream (or none): an
// unknown or huge name is a 400 naming the problem, and nothing is stored.
func TestKillSwitchAdminValidatesUpstream(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/o", pageHandler("override", "o"))
	g := startGateway(t, o, gatewayOptions{})
	g.get("/o")

	for _, name := range []string{"shop", strings.Repeat("x", 500<<10)} {
		for _, enabled := range []string{"true", "false"} {
			r := g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":`+enabled+`,"upstream":"`+name+`"}`)
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, "unknown upstream") || !strings.Contains(r.body, "craft") {
				t.Fatalf("upstream of %d bytes, enabled %s: %d %.300s; want 400 naming the configured upstreams", len(name), enabled, r.status, r.body)
			}
			if len(r.body) > 1000 {
				t.Fatalf("the error echoes the whole name: %d bytes", len(r.body))
			}
		}
	}
	if ov := g.health().KillSwitch.Overrides; len(ov) != 0 {
		t.Fatalf("overrides stored for unknown upstreams: %v", ov)
	}
	wantStatus(t, g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true,"upstream":"craft"}`), 200)
	wantStatus(t, g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false,"upstream":"craft"}`), 200)
	wantStatus(t, g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false}`), 200)
}

func TestKillSwitchAdminOverrideSurvivesRestart(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/o", pageHandler("override", "o"))
	g := startGateway(t, o, gatewayOptions{})
	g.get("/o")
	g.flushSnapshots()

	// An override for an upstream that is not configured is refused (see
	// TestKillSwitchAdminValidatesUpstream) and changes nothing here.
	wantStatus(t, g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true,"upstream":"shop"}`), 400)
	advance(2 * time.Minute)
	wantCacheStatusPrefix(t, g.get("/o"), "craftedge; fwd=")

	wantStatus(t, g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true}`), 200)
	before := o.count("/o")
	advance(2 * time.Minute)
	wantCacheStatus(t, g.get("/o"), "craftedge; hit; detail=stale")

	g.restart(gatewayOptions{})
	if !g.health().KillSwitch.Overrides[""] {
		t.Fatal("override lost across restart")
	}
	r := g.get("/o")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; hit; detail=snapshot")
	if o.count("/o") != before {
		t.Fatal("upstream called under the kill switch")
	}

	wantStatus(t, g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false}`), 200)
	if len(g.health().KillSwitch.Overrides) != 0 {
		t.Fatal("override not cleared")
	}
	wantCacheStatus(t, g.get("/o"), "craftedge; fwd=miss; stored")
}

func TestPurgedSnapshotStillServesWhenOriginFails(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/p", pageHandler("purged but last good", "entry:9"))
	g := startGateway(t, o, gatewayOptions{})
	g.get("/p")
	g.flushSnapshots()
	wantStatus(t, g.admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:9"]}`), 200)
	o.stop()
	r := g.get("/p")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot")
}

func TestStaleWhileRevalidateRefreshesInBackground(t *testing.T) {
	o := newTestOrigin(t)
	var version atomic.Value
	version.Store("v1")
	o.handle("/swr", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		_, _ = w.Write([]byte(version.Load().(string)))
	})
	g := startGateway(t, o, gatewayOptions{})
	g.get("/swr")
	version.Store("v2")
	advance(20 * time.Second)
	r := g.get("/swr")
	wantCacheStatus(t, r, "craftedge; hit; detail=stale")
	if r.body != "v1" {
		t.Fatalf("got %q, want the stale v1", r.body)
	}
	waitFor(t, "the background refresh", func() bool {
		// Each stale serve may start a refresh: wait for one to land.
		return o.count("/swr") >= 2 && inFlight.Load() == 0 && g.get("/swr").body == "v2"
	})
	wantCacheStatus(t, g.get("/swr"), "craftedge; hit")
}

func TestMustRevalidateIsNeverServedStale(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/mr", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, must-revalidate")
		_, _ = w.Write([]byte("strict"))
	})
	g := startGateway(t, o, gatewayOptions{})
	g.get("/mr")
	o.stop()
	advance(20 * time.Second)
	r := g.get("/mr")
	wantStatus(t, r, http.StatusBadGateway)
}

func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	o := newTestOrigin(t)
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
		cfg := caddyfileFor(o, gatewayOptions{storage: filepath.Join(t.TempDir(), "x.db"), handlerExtra: tc.extra})
		assertLoadError(t, cfg, tc.want)
	}
	cfg := caddyfileFor(o, gatewayOptions{storage: "/tmp/x.db", globalExtra: "memory lots"})
	assertLoadError(t, cfg, "memory: invalid size")
}

func TestUnopenableStorageIsAClearError(t *testing.T) {
	o := newTestOrigin(t)
	file := filepath.Join(t.TempDir(), "plainfile")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tester := caddytest.NewTester(t)
	cfg := caddyfileFor(o, gatewayOptions{storage: filepath.Join(file, "craftedge.db")})
	r, err := http.Post("http://"+adminAddr+"/load", "text/caddyfile", strings.NewReader(cfg))
	if err != nil {
		// Caddy may not be running yet in this process: start it.
		tester.InitServer("{\n\tadmin "+adminAddr+"\n}\n", "caddyfile")
		r, err = http.Post("http://"+adminAddr+"/load", "text/caddyfile", strings.NewReader(cfg))
		if err != nil {
			t.Fatal(err)
		}
	}
	defer r.Body.Close()
	body := new(strings.Builder)
	_, _ = ioCopy(body, r)
	if r.StatusCode == 200 || !strings.Contains(body.String(), "craftedge: storage") || !strings.Contains(body.String(), "plainfile") {
		t.Fatalf("load of an unopenable storage path: status %d, body %s", r.StatusCode, body)
	}
}

// assertLoadError loads a Caddyfile that must fail with an error containing
// want and naming the Caddyfile line.
func assertLoadError(t *testing.T, cfg, want string) {
	t.Helper()
	caddytest.AssertLoadError(t, cfg, "caddyfile", want)
	caddytest.AssertLoadError(t, cfg, "caddyfile", "Caddyfile:")
}

// The snapshot store stays open across reloads; a reload with tighter
// bounds applies them to it (evicting the oldest) without a restart.
func TestSnapshotBoundsApplyOnReload(t *testing.T) {
	o := newTestOrigin(t)
	o.fallback = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		// Bodies that do not compress to nothing: the path repeated with
		// a counter.
		var b strings.Builder
		for i := range 400 {
			fmt.Fprintf(&b, "<p>%s %d %x</p>", r.URL.Path, i, i*7919)
		}
		_, _ = io.WriteString(w, b.String())
	}
	g := startGateway(t, o, gatewayOptions{globalExtra: "snapshot_max_size 64MiB"})
	for i := range 20 {
		wantStatus(t, g.get(fmt.Sprintf("/bounded/%d", i)), 200)
	}
	g.flushSnapshots()
	before := g.health().Snapshots
	if before.Count != 20 {
		t.Fatalf("snapshots before the reload: %+v", before)
	}
	bound := before.Bytes / 2
	g.reload(gatewayOptions{globalExtra: fmt.Sprintf("snapshot_max_size %d", bound)})
	waitFor(t, "eviction under the reloaded bound", func() bool {
		s := g.health().Snapshots
		return s.Bytes <= bound && s.Evicted > 0
	})
	if s := g.health().Snapshots; s.Count == 0 || s.Count >= 20 {
		t.Fatalf("after the reload: %+v (bound %d)", s, bound)
	}
}
