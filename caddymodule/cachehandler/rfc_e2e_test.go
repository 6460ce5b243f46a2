package cachehandler

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// Tests written from RFC 9110, RFC 9111 and RFC 9213 (issue 12), each
// citing the section it checks, end to end through Caddy.

// ttl 0 / ttl off: only what the origin marks fresh is served without
// contacting it; a response without freshness is kept (stale) for errors.
func TestTTLZeroCachesOnlyWhatTheOriginMarksFresh(t *testing.T) {
	for _, setting := range []string{"ttl 0", "ttl off"} {
		t.Run(setting, func(t *testing.T) {
			o := e2e.NewOrigin(t)
			o.Handle("/plain", e2e.PageHandler("plain", "p"))
			o.Handle("/fresh", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				_, _ = w.Write([]byte(e2e.HTMLPage("fresh")))
			})
			g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: setting})
			e2e.WantCacheStatus(t, g.Get("/plain"), "craftedge; fwd=miss; stored")
			e2e.WantCacheStatus(t, g.Get("/plain"), "craftedge; fwd=stale; stored")
			if n := o.Count("/plain"); n != 2 {
				t.Fatalf("origin saw %d requests for a page without freshness, want 2", n)
			}
			g.Get("/fresh")
			e2e.Advance(30 * time.Second)
			e2e.WantCacheStatus(t, g.Get("/fresh"), "craftedge; hit")
			// The stored copy still serves when the origin fails (stale 1h).
			o.Stop()
			r := g.Get("/plain")
			e2e.WantStatus(t, r, 200)
			e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=stale; fwd-status=502; detail=stale")
		})
	}
}

// stale 0 / stale off: no stale memory copy on errors; the snapshot (the
// product's last resort) still answers.
func TestStaleZeroServesNoStaleMemoryCopy(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/s", e2e.PageHandler("s", "s"))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale off"})
	g.Get("/s")
	g.FlushSnapshots()
	o.Stop()
	e2e.Advance(2 * time.Minute)
	r := g.Get("/s")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=502; detail=snapshot")
}

// Zero-valued and negative options are either meaningful or a load error
// naming the Caddyfile line.
func TestZeroAndNegativeOptionsAreLoadErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"ttl -1s", "ttl must not be negative"},
		{"stale -5m", "stale must not be negative"},
		{"ttl", "ttl needs a duration or off"},
		{"timeout 0", "timeout must be positive"},
		{"timeout off", "timeout: invalid duration"},
		{"max_entry_size 0", "out of range"},
		{"serve_stale_despite_origin maybe", "serve_stale_despite_origin wants on or off"},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), HandlerExtra: tc.extra})
		e2e.AssertLoadError(t, cfg, tc.want)
	}
}

// RFC 9111 §4.4: a non-error response to an unsafe method invalidates the
// target URI (every variant) and same-origin Location / Content-Location.
func TestUnsafeMethodsInvalidate(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/var", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "X-Lang")
		_, _ = w.Write([]byte("lang=" + r.Header.Get("X-Lang")))
	})
	o.Handle("/form", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(e2e.HTMLPage("form")))
			return
		}
		w.Header().Set("Location", "/thanks?x=1")
		w.Header().Set("Content-Location", e2e.SiteAddr+"/result")
		w.WriteHeader(http.StatusSeeOther)
	})
	o.Handle("/other", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(e2e.HTMLPage("other")))
			return
		}
		// Another origin (127.0.0.1 is not localhost): never invalidated.
		w.Header().Set("Location", strings.Replace(e2e.SiteAddr, "localhost", "127.0.0.1", 1)+"/kept")
		w.WriteHeader(http.StatusCreated)
	})
	o.Handle("/broken", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(e2e.HTMLPage("broken")))
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	warm := func(path string, hdr ...string) {
		t.Helper()
		g.Get(path, hdr...)
		e2e.WantCacheStatus(t, g.Get(path, hdr...), "craftedge; hit")
	}

	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, "FROBNICATE"} {
		warm("/page?a=1")
		warm("/page?a=2")
		r := g.Do(method, "/page?a=1", nil, "x=1")
		e2e.WantStatus(t, r, 200)
		e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=bypass")
		e2e.WantCacheStatus(t, g.Get("/page?a=1"), "craftedge; fwd=miss; stored")
		// Another query is another target URI.
		e2e.WantCacheStatus(t, g.Get("/page?a=2"), "craftedge; hit")
	}
	// Safe methods invalidate nothing.
	warm("/page?a=1")
	g.Do(http.MethodOptions, "/page?a=1", nil, "")
	e2e.WantCacheStatus(t, g.Get("/page?a=1"), "craftedge; hit")

	// Every Vary variant of the target goes.
	warm("/var", "X-Lang", "de")
	warm("/var", "X-Lang", "en")
	g.Do(http.MethodPost, "/var", nil, "")
	e2e.WantCacheStatus(t, g.Get("/var", "X-Lang", "de"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/var", "X-Lang", "en"), "craftedge; fwd=miss; stored")

	// Same-origin Location and Content-Location go too, and the snapshots
	// of those paths are marked stale (kept, as after a purge).
	warm("/form")
	warm("/thanks?x=1")
	warm("/result")
	g.FlushSnapshots()
	e2e.WantStatus(t, g.Do(http.MethodPost, "/form", nil, "a=b"), http.StatusSeeOther)
	for _, p := range []string{"/form", "/thanks?x=1", "/result"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	app := caddymodule.ActiveApp()
	rec, ok, err := app.Snapshot("http://" + e2e.SiteHost + "/result")
	if err != nil || !ok {
		t.Fatalf("snapshot of /result: found %v, err %v (invalidation must not delete it)", ok, err)
	}
	rec.StoredAt = rec.StoredAt.Add(-time.Second) // the copy before the POST
	if !app.SnapshotStale(rec) {
		t.Fatal("the snapshot of an invalidated URI is not marked stale")
	}

	// Another origin's Location is left alone.
	warm("/kept")
	warm("/other")
	e2e.WantStatus(t, g.Do(http.MethodPost, "/other", nil, ""), http.StatusCreated)
	e2e.WantCacheStatus(t, g.Get("/kept"), "craftedge; hit")
	e2e.WantCacheStatus(t, g.Get("/other"), "craftedge; fwd=miss; stored")

	// An error response invalidates nothing.
	warm("/broken")
	e2e.WantStatus(t, g.Do(http.MethodPost, "/broken", nil, ""), http.StatusInternalServerError)
	e2e.WantCacheStatus(t, g.Get("/broken"), "craftedge; hit")
}

// RFC 9111 §3.2 and §4.3.4: a 304 freshens the stored response: its header
// fields replace the stored ones, Cache-Control included, so its new
// freshness applies.
func TestNotModifiedFreshensStoredHeaders(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/f", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("Cache-Control", "max-age=100")
			w.Header().Set("X-Version", "2")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("X-Version", "1")
		w.Header().Set("X-Kept", "yes")
		_, _ = w.Write([]byte(e2e.HTMLPage("freshen")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/f")
	e2e.Advance(11 * time.Second)
	r := g.Get("/f")
	e2e.WantCacheStatus(t, r, statusRevalidated)
	if r.Header.Get("X-Version") != "2" || r.Header.Get("Cache-Control") != "max-age=100" || r.Header.Get("X-Kept") != "yes" {
		t.Fatalf("304 did not freshen the headers: X-Version %q, Cache-Control %q, X-Kept %q",
			r.Header.Get("X-Version"), r.Header.Get("Cache-Control"), r.Header.Get("X-Kept"))
	}
	if !strings.Contains(r.Body, "freshen") || r.Header.Get("Etag") != `"v1"` {
		t.Fatal("freshened response lost its body or validator")
	}
	// The new max-age (100s) applies, not the stored 10s.
	e2e.Advance(50 * time.Second)
	r = g.Get("/f")
	e2e.WantCacheStatus(t, r, "craftedge; hit")
	if r.Header.Get("X-Version") != "2" {
		t.Fatalf("hit after freshening has X-Version %q", r.Header.Get("X-Version"))
	}
	if n := o.Count("/f"); n != 2 {
		t.Fatalf("origin saw %d requests, want 2", n)
	}
}

// RFC 9110 §6.6.1 with RFC 9111 §5.1: a stored response is served with the
// Date it was received with; Age says how long it has been stored.
func TestStoredResponseKeepsItsDate(t *testing.T) {
	o := e2e.NewOrigin(t)
	const originDate = "Tue, 01 Dec 2026 10:00:00 GMT"
	o.Handle("/dated", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", originDate)
		_, _ = w.Write([]byte(e2e.HTMLPage("dated")))
	})
	o.Handle("/undated", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // the origin sends no Date
		_, _ = w.Write([]byte(e2e.HTMLPage("undated")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	if d := g.Get("/dated").Header.Get("Date"); d != originDate {
		t.Fatalf("miss Date = %q, want the origin's %q", d, originDate)
	}
	received := g.Get("/undated").Header.Get("Date")
	if _, err := http.ParseTime(received); err != nil {
		t.Fatalf("no valid Date on a response whose origin sent none: %q", received)
	}
	e2e.Advance(40 * time.Second)
	r := g.Get("/dated")
	e2e.WantCacheStatus(t, r, "craftedge; hit")
	if r.Header.Get("Date") != originDate || r.Header.Get("Age") != "40" {
		t.Fatalf("hit: Date %q Age %q, want %q and 40", r.Header.Get("Date"), r.Header.Get("Age"), originDate)
	}
	r = g.Get("/undated")
	if r.Header.Get("Date") != received {
		t.Fatalf("hit Date %q, want the time it was received %q", r.Header.Get("Date"), received)
	}
}

// RFC 9110 §5.6.7 and RFC 9111 §5.3: an Expires that is not a valid
// HTTP-date means already expired; the three valid forms are honoured.
// RFC 9111 §5.1: an Age that is not delta-seconds is ignored.
func TestStrictExpiresAndAgeParsing(t *testing.T) {
	o := e2e.NewOrigin(t)
	future := time.Now().Add(24 * time.Hour).UTC()
	expires := map[string][]string{
		"imf":     {future.Format(http.TimeFormat)},
		"rfc850":  {future.Format("Monday, 02-Jan-06 15:04:05 GMT")},
		"asctime": {future.Format(time.ANSIC)},
		"spaces":  {strings.Replace(future.Format(http.TimeFormat), " ", "  ", 1)},
		// A one-digit hour (3 a.m. the day after): at 10 to 12 o'clock
		// the "3" layout would print two digits, a valid date.
		"shorthour": {time.Date(future.Year(), future.Month(), future.Day()+1, 3, 4, 5, 0, time.UTC).Format("Mon, 02 Jan 2006 3:04:05 GMT")},
		"twolines":  {future.Format(http.TimeFormat), future.Format(http.TimeFormat)},
		"zero":      {"0"},
	}
	for name, lines := range expires {
		o.Handle("/expires/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Expires"] = lines
			_, _ = w.Write([]byte(e2e.HTMLPage(name)))
		})
	}
	for name, age := range map[string]string{"suffix": "10s", "valid": "10", "negative": "-10", "float": "10.0"} {
		o.Handle("/age/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Age", age)
			_, _ = w.Write([]byte(e2e.HTMLPage(name)))
		})
	}
	g := e2e.StartGateway(t, o, e2e.Options{})
	for name := range expires {
		g.Get("/expires/" + name)
		r := g.Get("/expires/" + name)
		valid := name == "imf" || name == "rfc850" || name == "asctime"
		if got := r.Header.Get("Cache-Status") == "craftedge; hit"; got != valid {
			t.Errorf("Expires %q: Cache-Status %q; want a hit only for a valid HTTP-date", expires[name], r.Header.Get("Cache-Status"))
		}
	}
	for _, name := range []string{"suffix", "valid", "negative", "float"} {
		if a := g.Get("/age/" + name).Header.Get("Age"); name == "valid" && a != "10" || name != "valid" && a != "0" {
			t.Errorf("Age %s: served Age %q", name, a)
		}
	}
	e2e.Advance(55 * time.Second)
	for _, name := range []string{"suffix", "negative", "float"} {
		e2e.WantCacheStatus(t, g.Get("/age/"+name), "craftedge; hit")
	}
	// A valid Age of 10 makes max-age=60 expire 10 s earlier.
	e2e.WantCacheStatusPrefix(t, g.Get("/age/valid"), "craftedge; fwd=stale")
}

// RFC 9111 §4.2.4: no-cache, must-revalidate, proxy-revalidate and
// s-maxage forbid serving a stale copy, also when the origin closes the
// connection; serve_stale_despite_origin makes it the operator's choice,
// labelled in Cache-Status.
func TestStaleServingProhibitions(t *testing.T) {
	cases := []struct{ name, cc string }{
		{"no-cache", "max-age=10, no-cache"},
		{"must-revalidate", "max-age=10, must-revalidate"},
		{"proxy-revalidate", "max-age=10, proxy-revalidate"},
		{"s-maxage", "s-maxage=10"},
	}
	o := e2e.NewOrigin(t)
	var closingMu sync.Mutex
	closing := false
	for _, tc := range append(cases, struct{ name, cc string }{"allowed", "max-age=10"},
		struct{ name, cc string }{"s-maxage-sie", "s-maxage=10, stale-if-error=60"}) {
		o.Handle("/"+tc.name, func(w http.ResponseWriter, r *http.Request) {
			closingMu.Lock()
			c := closing
			closingMu.Unlock()
			if c {
				panic(http.ErrAbortHandler) // the origin closes the connection
			}
			w.Header().Set("Cache-Control", tc.cc)
			_, _ = w.Write([]byte(e2e.HTMLPage(tc.name)))
		})
	}
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "breaker {\n failures 1000\n}"})
	for _, p := range []string{"no-cache", "must-revalidate", "proxy-revalidate", "s-maxage", "allowed", "s-maxage-sie"} {
		e2e.WantStatus(t, g.Get("/"+p), 200)
	}
	g.FlushSnapshots()
	closingMu.Lock()
	closing = true
	closingMu.Unlock()
	e2e.Advance(20 * time.Second)
	for _, tc := range cases {
		r := g.Get("/" + tc.name)
		if r.Status != http.StatusBadGateway || !strings.HasSuffix(r.Header.Get("Cache-Status"), "detail=no-copy") {
			t.Errorf("%s: status %d, Cache-Status %q; want 502 and no copy", tc.cc, r.Status, r.Header.Get("Cache-Status"))
		}
	}
	e2e.WantCacheStatus(t, g.Get("/allowed"), "craftedge; fwd=stale; fwd-status=502; detail=stale")
	// The origin's own stale-if-error is its explicit permission.
	e2e.WantCacheStatus(t, g.Get("/s-maxage-sie"), "craftedge; fwd=stale; fwd-status=502; detail=stale")

	// The operator's override: memory copies, then snapshots after a restart.
	override := e2e.Options{HandlerExtra: "breaker {\n failures 1000\n}\nserve_stale_despite_origin on"}
	g.Reload(override)
	for _, tc := range cases {
		r := g.Get("/" + tc.name)
		e2e.WantStatus(t, r, 200)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=502; detail=stale-prohibited-override")
	}
	override.GlobalExtra = "warm_start off" // the snapshots serve, not refilled copies
	g.Restart(override)
	for _, tc := range cases {
		r := g.Get("/" + tc.name)
		e2e.WantStatus(t, r, 200)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot-prohibited-override")
	}
}

// RFC 9213: CDN-Cache-Control (and craftedge's own targeted field,
// Craftedge-Cache-Control) take precedence over Cache-Control for
// craftedge's freshness and storability; an invalid one is ignored;
// CDN-Cache-Control is passed on unchanged, Craftedge-Cache-Control never.
func TestTargetedCacheControl(t *testing.T) {
	o := e2e.NewOrigin(t)
	set := func(path string, fields map[string]string) {
		o.Handle(path, func(w http.ResponseWriter, r *http.Request) {
			for k, v := range fields {
				w.Header().Set(k, v)
			}
			_, _ = w.Write([]byte(e2e.HTMLPage(path)))
		})
	}
	set("/cdn-stores", map[string]string{"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=600"})
	set("/cdn-no-store", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": "no-store"})
	set("/cdn-private", map[string]string{"Cache-Control": "public, max-age=600", "CDN-Cache-Control": "private"})
	set("/cdn-invalid", map[string]string{"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=600, ]]"})
	set("/cdn-wrong-type", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": `max-age="5"`})
	set("/cdn-short", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": "max-age=5"})
	set("/cdn-no-cache", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": "no-cache", "Etag": `"n1"`})
	set("/own", map[string]string{"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=5", "Craftedge-Cache-Control": "max-age=120"})
	set("/cdn-swr", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": "max-age=10, stale-if-error=300, must-revalidate=?0"})
	g := e2e.StartGateway(t, o, e2e.Options{})

	r := g.Get("/cdn-stores")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("CDN-Cache-Control") != "max-age=600" {
		t.Fatalf("fields not passed on unchanged: Cache-Control %q, CDN-Cache-Control %q",
			r.Header.Get("Cache-Control"), r.Header.Get("CDN-Cache-Control"))
	}
	r = g.Get("/cdn-stores")
	e2e.WantCacheStatus(t, r, "craftedge; hit")
	if r.Header.Get("CDN-Cache-Control") != "max-age=600" {
		t.Fatalf("hit lost CDN-Cache-Control: %q", r.Header.Get("CDN-Cache-Control"))
	}
	e2e.WantCacheStatus(t, g.Get("/cdn-no-store"), "craftedge; fwd=miss; detail=no-store")
	e2e.WantCacheStatus(t, g.Get("/cdn-private"), "craftedge; fwd=miss; detail=private")
	// Invalid (not a Structured Fields Dictionary): Cache-Control rules.
	e2e.WantCacheStatus(t, g.Get("/cdn-invalid"), "craftedge; fwd=miss; detail=no-store")
	g.Get("/cdn-wrong-type")
	g.Get("/cdn-short")
	g.Get("/cdn-no-cache")
	e2e.WantCacheStatus(t, g.Get("/cdn-no-cache"), statusRevalidated[:len("craftedge; fwd=stale")]+"; stored")
	r = g.Get("/own")
	if r.Header.Get("Craftedge-Cache-Control") != "" || r.Header.Get("CDN-Cache-Control") != "max-age=5" {
		t.Fatalf("Craftedge-Cache-Control must not be passed on, CDN-Cache-Control must: %v", r.Header)
	}
	g.Get("/cdn-swr")

	e2e.Advance(60 * time.Second)
	// A max-age of the wrong type is ignored, not coerced: no freshness
	// from the targeted field, and Cache-Control is not consulted (ttl 1m).
	e2e.WantCacheStatusPrefix(t, g.Get("/cdn-wrong-type"), "craftedge; fwd=stale")
	e2e.WantCacheStatusPrefix(t, g.Get("/cdn-short"), "craftedge; fwd=stale")
	r = g.Get("/own")
	e2e.WantCacheStatus(t, r, "craftedge; hit")
	if r.Header.Get("Craftedge-Cache-Control") != "" {
		t.Fatal("Craftedge-Cache-Control replayed on a hit")
	}
	o.Stop()
	e2e.WantCacheStatus(t, g.Get("/cdn-swr"), "craftedge; fwd=stale; fwd-status=502; detail=stale")
}

// RFC 9110 §14 and RFC 9111 §3.3: a Range request for a stored complete
// 200 is answered from the cache, for every stored encoding.
func TestRangeRequestsFromTheCache(t *testing.T) {
	o := e2e.NewOrigin(t)
	const lastModified = "Mon, 02 Jan 2006 15:04:05 GMT"
	o.Handle("/r", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Etag", `"r1"`)
		w.Header().Set("Last-Modified", lastModified)
		_, _ = w.Write([]byte(e2e.HTMLPage("ranges")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	// Even the first request (a miss) is answered from the stored copy.
	r := g.Get("/r", "Range", "bytes=0-9")
	e2e.WantStatus(t, r, http.StatusPartialContent)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	full := e2e.HTMLPage("ranges")
	size := strconv.Itoa(len(full))
	if r.Body != full[:10] || r.Header.Get("Content-Range") != "bytes 0-9/"+size {
		t.Fatalf("206: body %q Content-Range %q", r.Body, r.Header.Get("Content-Range"))
	}
	r = g.Get("/r", "Range", "bytes=-5")
	e2e.WantStatus(t, r, http.StatusPartialContent)
	e2e.WantCacheStatus(t, r, "craftedge; hit")
	if r.Body != full[len(full)-5:] || r.Header.Get("Content-Length") != "5" {
		t.Fatalf("suffix range: %q, Content-Length %q", r.Body, r.Header.Get("Content-Length"))
	}
	r = g.Get("/r", "Range", "bytes=100-")
	if r.Status != http.StatusPartialContent || r.Body != full[100:] {
		t.Fatalf("open range: status %d", r.Status)
	}
	// The range applies to the encoded representation that is sent.
	for _, coding := range []string{"gzip", "zstd"} {
		whole := g.Get("/r", "Accept-Encoding", coding)
		if whole.Header.Get("Accept-Ranges") != "bytes" {
			t.Fatalf("%s: Accept-Ranges %q", coding, whole.Header.Get("Accept-Ranges"))
		}
		part := g.Get("/r", "Accept-Encoding", coding, "Range", "bytes=0-19")
		e2e.WantStatus(t, part, http.StatusPartialContent)
		want := fmt.Sprintf("bytes 0-19/%d", len(whole.Body))
		if part.Body != whole.Body[:20] || part.Header.Get("Content-Range") != want || part.Header.Get("Content-Encoding") != coding {
			t.Fatalf("%s range: Content-Range %q want %q, Content-Encoding %q", coding,
				part.Header.Get("Content-Range"), want, part.Header.Get("Content-Encoding"))
		}
	}
	// Unsatisfiable: 416 with the current length.
	r = g.Get("/r", "Range", "bytes=999999-")
	e2e.WantStatus(t, r, http.StatusRequestedRangeNotSatisfiable)
	if r.Header.Get("Content-Range") != "bytes */"+size {
		t.Fatalf("416 Content-Range %q", r.Header.Get("Content-Range"))
	}
	// Several ranges: the whole representation.
	r = g.Get("/r", "Range", "bytes=0-1,5-6")
	if r.Status != 200 || r.Body != full {
		t.Fatalf("multiple ranges: status %d", r.Status)
	}
	// An invalid Range is ignored.
	e2e.WantStatus(t, g.Get("/r", "Range", "bytes=9-1"), 200)
	// If-Range: a strong entity tag or the exact (strong) Last-Modified.
	e2e.WantStatus(t, g.Get("/r", "Range", "bytes=0-9", "If-Range", `"r1"`), http.StatusPartialContent)
	e2e.WantStatus(t, g.Get("/r", "Range", "bytes=0-9", "If-Range", `"old"`), 200)
	e2e.WantStatus(t, g.Get("/r", "Range", "bytes=0-9", "If-Range", `W/"r1"`), 200)
	e2e.WantStatus(t, g.Get("/r", "Range", "bytes=0-9", "If-Range", lastModified), http.StatusPartialContent)
	e2e.WantStatus(t, g.Get("/r", "Range", "bytes=0-9", "If-Range", "Tue, 03 Jan 2006 15:04:05 GMT"), 200)
	if n := o.Count("/r"); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
}

// RFC 9110 §13.1.2 and §8.8.3.2: If-None-Match uses weak comparison, and
// the origin's weak ETag is kept as sent (and used to revalidate).
func TestWeakETagsKeptAndComparedWeakly(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/weak", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `W/"w1"`)
		w.Header().Set("Cache-Control", "max-age=10")
		if r.Header.Get("If-None-Match") == `W/"w1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(e2e.HTMLPage("weak")))
	})
	o.Handle("/strong", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"s1"`)
		_, _ = w.Write([]byte(e2e.HTMLPage("strong")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	if e := g.Get("/weak").Header.Get("Etag"); e != `W/"w1"` {
		t.Fatalf("weak ETag served as %q, want it as the origin sent it", e)
	}
	for _, inm := range []string{`"w1"`, `W/"w1"`, `"x", W/"w1"`} {
		r := g.Get("/weak", "If-None-Match", inm)
		e2e.WantStatus(t, r, http.StatusNotModified)
		if r.Header.Get("Etag") != `W/"w1"` {
			t.Fatalf("304 ETag %q", r.Header.Get("Etag"))
		}
	}
	g.Get("/strong")
	e2e.WantStatus(t, g.Get("/strong", "If-None-Match", `W/"s1"`), http.StatusNotModified)
	e2e.WantStatus(t, g.Get("/strong", "If-None-Match", `W/"s2"`), 200)
	// Revalidation sends the weak ETag upstream; the 304 refreshes the copy.
	e2e.Advance(11 * time.Second)
	r := g.Get("/weak")
	e2e.WantCacheStatus(t, r, statusRevalidated)
	if r.Header.Get("Etag") != `W/"w1"` || !strings.Contains(r.Body, "weak") {
		t.Fatalf("revalidated weak copy: ETag %q", r.Header.Get("Etag"))
	}
}

// RFC 9111 §4.2.4 under the kill switch: Craft is not called, so a copy
// the origin forbade serving stale is not served either, unless the
// operator chose serve_stale_despite_origin.
func TestKillSwitchHonoursStaleProhibitions(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/strict", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, must-revalidate")
		_, _ = w.Write([]byte(e2e.HTMLPage("strict")))
	})
	o.Handle("/lax", e2e.PageHandler("lax", "lax"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/strict")
	g.Get("/lax")
	g.FlushSnapshots()
	e2e.Advance(2 * time.Minute)
	g.Reload(e2e.Options{HandlerExtra: "snapshot_only on"})
	r := g.Get("/strict")
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	e2e.WantCacheStatus(t, r, "craftedge; detail=no-copy")
	e2e.WantCacheStatus(t, g.Get("/lax"), "craftedge; hit; detail=stale")
	g.Reload(e2e.Options{HandlerExtra: "snapshot_only on\nserve_stale_despite_origin on"})
	r = g.Get("/strict")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; hit; detail=stale-prohibited-override")
	if n := o.Count("/strict"); n != 1 {
		t.Fatalf("origin saw %d requests under the kill switch", n)
	}
}

// RFC 9111 §4.2.4 forbids serving a *stale* copy of a response with
// s-maxage (which carries proxy-revalidate's semantics, §5.2.2.10),
// must-revalidate or proxy-revalidate; a copy within its freshness
// lifetime is not stale (§4.2). When the memory copy is gone (a restart
// before the warm start refilled it, an eviction) and Craft fails, or the
// kill switch is on, the snapshot of such a page serves while it is
// fresh, and not after; one a purge invalidated (§4.4) does not.
func TestFreshSnapshotOfProhibitedPageServesWhenOriginFails(t *testing.T) {
	o := e2e.NewOrigin(t)
	pages := map[string]string{
		"/smax":    "s-maxage=60",
		"/mustrev": "max-age=60, must-revalidate",
		"/kill":    "public, s-maxage=60, max-age=0",
		"/purged":  "s-maxage=60",
	}
	for p, cc := range pages {
		o.Handle(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", cc)
			w.Header().Set("Cache-Tag", "page"+p)
			_, _ = w.Write([]byte(e2e.HTMLPage(p)))
		})
	}
	opts := e2e.Options{GlobalExtra: "warm_start off", HandlerExtra: "breaker {\n failures 1000\n}"}
	g := e2e.StartGateway(t, o, opts)
	for p := range pages {
		e2e.WantStatus(t, g.Get(p), 200)
	}
	g.FlushSnapshots()
	e2e.Purge(g, `{"tags":["page/purged"],"mode":"hard"}`)
	g.Restart(opts)
	o.Stop()
	e2e.Advance(30 * time.Second)
	for _, p := range []string{"/smax", "/mustrev"} {
		r := g.Get(p)
		e2e.WantStatus(t, r, 200)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot")
		// Again, through the copy the first fallback promoted.
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=stale; fwd-status=502; detail=snapshot")
	}
	r := g.Get("/purged")
	e2e.WantStatus(t, r, http.StatusBadGateway)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=no-copy")

	killOpts := opts
	killOpts.HandlerExtra += "\nsnapshot_only on"
	g.Reload(killOpts)
	e2e.WantCacheStatus(t, g.Get("/kill"), "craftedge; hit; detail=snapshot")
	g.Reload(opts)

	// Past its freshness the copy is stale: forbidden.
	e2e.Advance(31 * time.Second)
	for _, p := range []string{"/smax", "/mustrev", "/kill"} {
		r := g.Get(p)
		e2e.WantStatus(t, r, http.StatusBadGateway)
		if cs := r.Header.Get("Cache-Status"); !strings.HasSuffix(cs, "detail=no-copy") {
			t.Errorf("%s past its freshness: Cache-Status %q, want no copy", p, cs)
		}
	}
}

// RFC 9111 §4.4 under concurrent unsafe requests (their snapshot marks
// share a bbolt transaction, snapshot.markQueue): each invalidation has
// landed when its response reaches the client. Right after its POST, the
// page's memory copy is gone and its snapshot is marked stale: with Craft
// failing on the page from then on, the still-fresh s-maxage snapshot is
// not served (as it would be, unmarked: TestFreshSnapshotOfProhibitedPage…).
func TestConcurrentInvalidationsLandBeforeTheResponse(t *testing.T) {
	const pages = 16
	o := e2e.NewOrigin(t)
	var posted sync.Map
	for i := range pages {
		p := fmt.Sprintf("/form/%d", i)
		o.Handle(p, func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				posted.Store(p, true)
				w.Header().Set("Location", p+"?sent=1")
				w.WriteHeader(http.StatusSeeOther)
				return
			}
			if _, ok := posted.Load(p); ok {
				serverError(w, r)
				return
			}
			w.Header().Set("Cache-Control", "public, s-maxage=600")
			_, _ = w.Write([]byte(e2e.HTMLPage(p)))
		})
	}
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "breaker off"})
	for i := range pages {
		p := fmt.Sprintf("/form/%d", i)
		g.Get(p)
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; hit")
	}
	g.FlushSnapshots()
	type result struct{ post, get e2e.Response }
	results := make([]result, pages)
	var wg sync.WaitGroup
	for i := range pages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := fmt.Sprintf("/form/%d", i)
			results[i].post = g.Do(http.MethodPost, p, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "a=1")
			results[i].get = g.Get(p)
		}()
	}
	wg.Wait()
	for i, res := range results {
		if res.post.Status != http.StatusSeeOther {
			t.Errorf("POST /form/%d: status %d", i, res.post.Status)
		}
		if res.get.Status != http.StatusInternalServerError ||
			res.get.Header.Get("Cache-Status") != "craftedge; fwd=miss; fwd-status=500; detail=upstream-error" {
			t.Errorf("GET /form/%d after its POST: status %d, Cache-Status %q; want the origin's 500, no copy",
				i, res.get.Status, res.get.Header.Get("Cache-Status"))
		}
	}
}
